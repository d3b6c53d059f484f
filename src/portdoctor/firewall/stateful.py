"""Stateful matches judged from the kernel's own state: xt_recent lists, hashlimit tables, the
connections each client has open (connlimit, nft ct count), the user of a local process (owner)
and bridge ports (physdev).

Facts (`StatefulFacts`) are read by the firewall collector and travel in the snapshot; the
evaluator asks `judge` whether one stateful match holds for one packet: True, False, or a
reason it cannot be told (that reason forks the walk, as an unknown client address does). The
reasons start with one of STATEFUL_KINDS, so the checks can word each kind.

Kernel semantics followed (net/netfilter/xt_recent.c, xt_connlimit.c, xt_hashlimit.c):
- recent --set always matches and stamps the source; --remove matches when the source is on
  the list; --rcheck/--update match when it is on the list and, with --seconds/--hitcount, when
  at least `hitcount` of its stamps are younger than `seconds`. A packet that passed a --set
  (or --update) on its way carries that stamp too.
- connlimit counts the connections the source (under its mask) already has plus the new one:
  --connlimit-above N matches when that exceeds N, --connlimit-upto N when it does not.
- hashlimit keeps credits per key: a packet whose entry has less credit than its cost is over
  the limit.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from portdoctor.firewall.model import Match

# the words a stateful reason starts with (before ": ")
RATE = "rate limit"
RECENT = "recent list"
COUNT = "connection count"
USER = "user of the local process"
BRIDGE = "bridge port"
STATEFUL_KINDS = frozenset({RATE, RECENT, COUNT, USER, BRIDGE})

Tri = bool | str

_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0,
        "hour": 3600.0, "d": 86400.0, "day": 86400.0}


# --------------------------------------------------------------------------- facts


@dataclass(frozen=True, slots=True)
class RecentEntry:
    """One address on an xt_recent list: its TTL and the age in seconds of each stamp kept."""

    address: str
    ttl: int = 0
    ages: tuple[float, ...] = ()  # seconds before the list was read, oldest first


@dataclass(frozen=True, slots=True)
class HashlimitEntry:
    """One bucket of a hashlimit table (/proc/net/ipt_hashlimit/NAME)."""

    src: str
    dst: str
    sport: int
    dport: int
    credit: int
    credit_cap: int
    cost: int
    expires: int = 0


@dataclass(frozen=True, slots=True)
class ConnCount:
    """How many live TCP connections go from `src` to `dst`:`dport`."""

    src: str
    dst: str
    dport: int
    count: int


@dataclass(frozen=True, slots=True)
class StatefulFacts:
    """The kernel state stateful rules consult. A field is None when it could not be read."""

    recent: dict[str, tuple[RecentEntry, ...]] | None = None  # list name -> entries
    hashlimit: dict[str, tuple[HashlimitEntry, ...]] | None = None  # table name -> buckets
    connections: tuple[ConnCount, ...] | None = None
    connections_source: str = ""  # "conntrack" (/proc/net/nf_conntrack) or "sockets" (this host's)
    bridges: dict[str, tuple[str, ...]] | None = None  # bridge -> its ports
    uid: int | None = None  # the user and group the probe ran as
    gid: int | None = None
    window: float | None = None  # seconds between the counter samples around the probe
    notes: tuple[str, ...] = ()  # what could not be read, in words


# --------------------------------------------------------------------------- /proc parsers

_RECENT_LINE = re.compile(r"^src=(\S+)\s+ttl:\s*(\d+)\s+last_seen:\s*(\d+)\s+oldest_pkt:\s*(\d+)\s*(.*)$")


def parse_recent(text: str, jiffies: int, hz: int) -> tuple[RecentEntry, ...]:
    """Entries of /proc/net/xt_recent/NAME, with stamps as ages in seconds at `jiffies`.

    >>> parse_recent("src=10.0.0.1 ttl: 64 last_seen: 1500 oldest_pkt: 2 1000, 1500", 2000, 250)
    (RecentEntry(address='10.0.0.1', ttl=64, ages=(4.0, 2.0)),)
    """
    out = []
    for line in text.splitlines():
        m = _RECENT_LINE.match(line.strip())
        if not m:
            continue
        stamps = [int(x) for x in re.findall(r"\d+", m.group(5))] or [int(m.group(3))]
        ages = tuple(round((jiffies - s) / hz, 3) if jiffies >= s else 0.0 for s in stamps)
        out.append(RecentEntry(m.group(1), int(m.group(2)), tuple(sorted(ages, reverse=True))))
    return tuple(out)


def jiffies_and_hz(timer_list: str) -> tuple[int, int] | None:
    """The kernel's jiffies and HZ from /proc/timer_list ("now at N nsecs", "jiffies: N").

    On 64-bit kernels jiffies start at 2**32 - 300*HZ at boot, so the one HZ among the usual
    values for which jiffies and the monotonic clock agree is the kernel's.
    """
    now = re.search(r"now at (\d+) nsecs", timer_list)
    jif = re.search(r"^jiffies:\s*(\d+)", timer_list, re.M)
    if not now or not jif:
        return None
    seconds = int(now.group(1)) / 1e9
    j = int(jif.group(1))
    best = min((abs((j - (1 << 32) + 300 * hz) / hz - seconds), hz) for hz in (100, 250, 300, 1000))
    return (j, best[1]) if best[0] < 5 else None


_HASHLIMIT_LINE = re.compile(r"^(\d+)\s+(\S+?):(\d+)->(\S+?):(\d+)\s+(\d+)\s+(\d+)\s+(\d+)")


def parse_hashlimit(text: str) -> tuple[HashlimitEntry, ...]:
    """Buckets of /proc/net/ipt_hashlimit/NAME: "expires src:sport->dst:dport credit cap cost".

    >>> parse_hashlimit("9 10.0.0.1:0->0.0.0.0:0 0 160000 32000")[0].credit
    0
    """
    out = []
    for line in text.splitlines():
        m = _HASHLIMIT_LINE.match(line.strip())
        if m:
            out.append(HashlimitEntry(m.group(2).strip("[]"), m.group(4).strip("[]"), int(m.group(3)),
                                      int(m.group(5)), int(m.group(6)), int(m.group(7)), int(m.group(8)),
                                      int(m.group(1))))
    return tuple(out)


_LIVE = frozenset({"SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK"})


def parse_conntrack(text: str) -> tuple[ConnCount, ...]:
    """Live TCP connections of /proc/net/nf_conntrack, counted by (src, dst, dport) of the
    original direction (TIME_WAIT and CLOSE ones are gone for connlimit too).

    >>> parse_conntrack("ipv4 2 tcp 6 431999 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=4 dport=80 "
    ...                 "src=10.0.0.2 dst=10.0.0.1 sport=80 dport=4 [ASSURED] mark=0 use=1")
    (ConnCount(src='10.0.0.1', dst='10.0.0.2', dport=80, count=1),)
    """
    counts: dict[tuple[str, str, int], int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6 or parts[2] != "tcp" or parts[5] not in _LIVE:
            continue
        kv: dict[str, str] = {}
        for p in parts[6:]:
            k, _, v = p.partition("=")
            if v and k not in kv:
                kv[k] = v
        try:
            key = (kv["src"], kv["dst"], int(kv["dport"]))
        except (KeyError, ValueError):
            continue
        counts[key] = counts.get(key, 0) + 1
    return tuple(ConnCount(s, d, p, n) for (s, d, p), n in sorted(counts.items()))


# --------------------------------------------------------------------------- matches


def options(m: Match) -> dict[str, str]:
    """A stateful match's options ("seconds=30", "rttl") as a dict ("rttl" -> "")."""
    out = {}
    for v in m.values:
        k, _, val = str(v).partition("=")
        out[k] = val
    return out


def parse_rate(text: str) -> float:
    """'3/min' -> 0.05 packets per second; '10/second' -> 10.0; a bare number is per second.

    >>> parse_rate("3/min"), parse_rate("100/sec")
    (0.05, 100.0)
    """
    n, _, per = text.strip().partition("/")
    return float(n) / _PER[(per or "s").strip().lower()]


def rate_words(per_second: float) -> str:
    """0.05 -> '3 per minute'; 10 -> '10 per second'."""
    for unit, secs in (("second", 1.0), ("minute", 60.0), ("hour", 3600.0), ("day", 86400.0)):
        n = per_second * secs
        if n >= 1 - 1e-9:
            return f"{n:g} per {unit}"
    return f"{per_second * 86400:g} per day"


def _masked(addr: str, mask: str) -> int | None:
    try:
        a = ipaddress.ip_address(addr)
    except ValueError:
        return None
    if not mask:
        return int(a)
    if mask.isdigit():
        bits = 32 if a.version == 4 else 128
        m = ((1 << bits) - 1) ^ ((1 << (bits - int(mask))) - 1)
    else:
        try:
            m = int(ipaddress.ip_address(mask))
        except ValueError:
            return int(a)
    return int(a) & m


def judge(m: Match, src: str | None, dst: str, dport: int, facts: StatefulFacts | None, *,
          stamped: tuple[str, ...] = (), uid: int | None = None, gid: int | None = None,
          iif: str | None = None, local_src: bool = False) -> Tri:
    """Whether stateful match `m` holds for this packet (before its `neg`), or why it cannot be
    told. `stamped`: the recent lists this packet was already stamped into on its way."""
    o = options(m)
    k = m.kind
    if facts is None and k != "owner" and not (k == "recent" and o.get("mode") == "set"):
        # no kernel state was read (an older snapshot, or it could not be): say so, as before
        return f"could not evaluate: {m.text or k}"
    if k == "recent":
        return _recent(m, o, src, dst, facts, stamped)
    if k in ("limit", "hashlimit"):
        return _limit(m, o, src, dst, dport, facts)
    if k == "connlimit":
        return _connlimit(o, src, dst, dport, facts)
    if k == "owner":
        return _owner(o, uid, gid, local_src)
    if k == "physdev":
        return _physdev(o, iif, facts)
    return f"could not evaluate: {m.text or k}"


def _recent(m: Match, o: dict[str, str], src: str | None, dst: str, facts: StatefulFacts | None,
            stamped: tuple[str, ...]) -> Tri:
    name = o.get("name") or "DEFAULT"
    mode = o.get("mode", "rcheck")
    if mode == "set":
        return True
    addr = dst if "rdest" in o else src
    seconds = float(o.get("seconds") or 0)
    hitcount = int(o.get("hitcount") or 0)
    need = (f"{hitcount} or more hits" if hitcount else "a hit") + (f" within {seconds:g} s" if seconds else "")
    if addr is None:
        return f"{RECENT}: whether the client is on list {name} with {need} (any client)"
    if facts is None or facts.recent is None:
        return f"could not evaluate: {m.text or 'recent'} (the xt_recent lists were not read)"
    key = _masked(addr, o.get("mask", ""))
    entry = None
    for e in facts.recent.get(name, ()):
        if _masked(e.address, o.get("mask", "")) == key:
            entry = e
    ages = list(entry.ages) if entry is not None else []
    ages.extend([0.0] * stamped.count(name))
    if entry is None and name not in stamped:
        return False
    if "rttl" in o and entry is not None:
        return f"{RECENT}: the TTL of the client's packets against list {name} (--rttl)"
    if mode == "remove":
        return True
    if not seconds and not hitcount:
        return True
    hits = sum(1 for a in ages if not seconds or a <= seconds)
    return hits >= max(hitcount, 1)


def _limit(m: Match, o: dict[str, str], src: str | None, dst: str, dport: int,
           facts: StatefulFacts | None) -> Tri:
    try:
        rate = parse_rate(o.get("rate", ""))
    except (KeyError, ValueError, ZeroDivisionError):
        return f"could not evaluate: {m.text or m.kind} (rate not understood)"
    over = o.get("over") == "1"
    burst = o.get("burst", "5")
    how = f"{rate_words(rate)}, burst {burst}"
    side = "over" if over else "upto"
    if m.kind == "hashlimit" and facts is not None and facts.hashlimit is not None and src is not None:
        entry = _bucket(o, facts.hashlimit.get(o.get("name", ""), ()), src, dst, dport)
        if entry is not None:
            under = entry.credit >= entry.cost
            return (not under) if over else under
        # no bucket yet: the first packet of a key is always within its burst
        if o.get("name", "") in facts.hashlimit:
            return not over
    per = " per " + o["mode"] if o.get("mode") else ""
    return f"{RATE}: {side} {how}{per}"


def _bucket(o: dict[str, str], entries: tuple[HashlimitEntry, ...], src: str, dst: str,
            dport: int) -> HashlimitEntry | None:
    modes = set(o.get("mode", "").split(","))
    want_src = _masked(src, o.get("srcmask", "")) if "srcip" in modes else None
    want_dst = _masked(dst, o.get("dstmask", "")) if "dstip" in modes else None
    for e in entries:
        if want_src is not None and _masked(e.src, o.get("srcmask", "")) != want_src:
            continue
        if want_dst is not None and _masked(e.dst, o.get("dstmask", "")) != want_dst:
            continue
        if "dstport" in modes and e.dport != dport:
            continue
        return e
    return None


def _connlimit(o: dict[str, str], src: str | None, dst: str, dport: int, facts: StatefulFacts | None) -> Tri:
    above = "above" in o
    limit = int(o.get("above") or o.get("upto") or 0)
    by_dst = "daddr" in o
    words = f"{'more than' if above else 'at most'} {limit} connections"
    if "all" in o:  # nft ct count outside a meter: every connection through the rule counts
        if facts is None or facts.connections is None:
            return f"could not evaluate: connection count ({words}): the connections were not read"
        return (sum(c.count for c in facts.connections if "anyport" in o or c.dport == dport) + 1 > limit) == above
    if src is None and not by_dst:
        return f"{COUNT}: {words} from one client (any client)"
    if facts is None or facts.connections is None:
        return f"could not evaluate: connection count ({words}): the connections were not read"
    mask = o.get("mask", "")
    key = _masked(dst if by_dst else src or "", mask)
    n = 0
    for c in facts.connections:
        if c.dport != dport and "anyport" not in o:
            continue
        if _masked(c.dst if by_dst else c.src, mask) == key:
            n += c.count
    total = n + 1  # the new connection is counted with those it joins
    return total > limit if above else total <= limit


def connections_of(facts: StatefulFacts | None, src: str | None, dport: int, mask: str = "") -> int | None:
    """Live connections from `src` (under `mask`; None: from anywhere) to port `dport`, or None
    when they were not read."""
    if facts is None or facts.connections is None:
        return None
    key = _masked(src, mask) if src is not None else None
    return sum(c.count for c in facts.connections
               if c.dport == dport and (src is None or _masked(c.src, mask) == key))


def _owner(o: dict[str, str], uid: int | None, gid: int | None, local_src: bool) -> Tri:
    if not local_src:
        return False  # only locally generated packets have a socket owner
    checks = []
    if "uid" in o:
        if uid is None:
            return f"{USER}: refused for uid {o['uid']}"
        checks.append(_in_range(uid, o["uid"]))
    if "gid" in o:
        if gid is None:
            return f"{USER}: refused for gid {o['gid']}"
        checks.append(_in_range(gid, o["gid"]))
    return all(checks)


def _in_range(n: int, spec: str) -> bool:
    lo, _, hi = spec.partition("-")
    try:
        return int(lo) <= n <= int(hi or lo)
    except ValueError:
        return False


def _physdev(o: dict[str, str], iif: str | None, facts: StatefulFacts | None) -> Tri:
    if facts is None or facts.bridges is None or iif is None:
        return f"{BRIDGE}: which bridge port the packet came in on"
    if iif not in facts.bridges:
        # not bridged: physdev's options all need a bridge port
        wanted = {k for k in o if k in ("in", "out", "is-in", "is-out", "is-bridged")}
        return False if wanted else True
    port = o.get("in")
    if port is not None:
        ports = facts.bridges[iif]
        if port.endswith("+"):
            hits = [p for p in ports if p.startswith(port[:-1])]
        else:
            hits = [p for p in ports if p == port]
        if not hits:
            return False
        if len(ports) == 1:
            return True
        return f"{BRIDGE}: which port of {iif} the packet came in on ({port}?)"
    if "out" in o or "is-bridged" in o or "is-out" in o:
        return False  # a packet to this host is not bridged onward
    return True


def kind_of(reason: str) -> str | None:
    """The stateful kind a fork's reason names (RATE, RECENT, ...), or None."""
    head = reason.split(":", 1)[0]
    return head if head in STATEFUL_KINDS else None


def match_words(m: Match) -> str:
    """A stateful match in words, for findings: 'more than 2 connections from one client'."""
    o = options(m)
    if m.kind == "recent":
        name = o.get("name") or "DEFAULT"
        if o.get("mode") == "set":
            return f"records the client on list {name}"
        need = (f"{o['hitcount']} or more connections" if o.get("hitcount") else "a connection") + \
               (f" within {o['seconds']} s" if o.get("seconds") else "")
        return f"clients with {need} on list {name}"
    if m.kind in ("limit", "hashlimit"):
        try:
            rate = rate_words(parse_rate(o.get("rate", "")))
        except (KeyError, ValueError, ZeroDivisionError):
            rate = o.get("rate", "?")
        per = f" per {o['mode']}" if o.get("mode") else ""
        return f"{'over' if o.get('over') == '1' else 'up to'} {rate} (burst {o.get('burst', '5')}){per}"
    if m.kind == "connlimit" and "all" in o:
        return f"{'more than' if 'above' in o else 'at most'} {o.get('above') or o.get('upto')} connections in all"
    if m.kind == "connlimit":
        if "above" in o:
            return f"more than {o['above']} connections from one client"
        return f"at most {o.get('upto')} connections from one client"
    if m.kind == "owner":
        return " and ".join(f"{k} {v}" for k, v in o.items() if k in ("uid", "gid")) or "a local socket"
    return m.text or m.kind

