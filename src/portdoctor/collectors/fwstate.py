"""The kernel state stateful firewall rules consult, read for the kinds the ruleset uses:
xt_recent lists (/proc/net/xt_recent/NAME), hashlimit tables (/proc/net/ipt_hashlimit/NAME),
the live TCP connections per client (/proc/net/nf_conntrack when present, else this host's own
sockets from /proc/net/tcp and tcp6), bridge ports (/sys/class/net/BR/brif) and the user the
probe ran as. Facts only: `firewall.stateful.judge` decides what they mean for a flow.
"""

from __future__ import annotations

import os
import socket
import struct
import time

from portdoctor.firewall.model import Ruleset
from portdoctor.firewall.stateful import (
    ConnCount,
    HashlimitEntry,
    RecentEntry,
    StatefulFacts,
    jiffies_and_hz,
    parse_conntrack,
    parse_hashlimit,
    parse_recent,
)
from portdoctor.host import Host

MAX_ENTRIES = 20000  # per list or table: kube-proxy affinity lists can be long
_LIVE_TCP = frozenset({"01", "02", "03", "04", "05", "08", "09", "0B"})


def kinds_used(ruleset: Ruleset) -> set[str]:
    """The stateful match kinds (recent, hashlimit, connlimit, physdev, ...) the ruleset has."""
    kinds = {"recent", "limit", "hashlimit", "connlimit", "owner", "physdev"}
    return {m.kind for t in ruleset.tables for c in t.chains for r in c.rules for m in r.matches
            if m.kind in kinds}


def read_stateful(system: Host, ruleset: Ruleset, before_time: float | None = None) -> StatefulFacts | None:
    """The state of every stateful kind the ruleset uses; None when it uses none."""
    kinds = kinds_used(ruleset)
    if not kinds:
        return None
    notes: list[str] = []
    recent = _recent(system, notes) if "recent" in kinds else None
    hashlimit = _hashlimit(system, notes) if "hashlimit" in kinds else None
    conns, source = _connections(system, notes) if "connlimit" in kinds else (None, "")
    bridges = _bridges(system) if "physdev" in kinds else None
    live = getattr(system, "live", False)
    return StatefulFacts(
        recent=recent, hashlimit=hashlimit, connections=conns, connections_source=source, bridges=bridges,
        uid=os.geteuid() if live and hasattr(os, "geteuid") else None,
        gid=os.getegid() if live and hasattr(os, "getegid") else None,
        window=round(time.time() - before_time, 3) if before_time else None,
        notes=tuple(notes))


def _recent(system: Host, notes: list[str]) -> dict[str, tuple[RecentEntry, ...]] | None:
    base = f"{system.proc_root}/net/xt_recent"
    try:
        names = system.listdir(base)
    except OSError:
        if not system.exists(f"{system.proc_root}/net"):
            notes.append("xt_recent lists not read: no /proc/net")
            return None
        return {}  # the module keeps no list in this namespace: every list is empty
    try:
        clock = jiffies_and_hz(system.read_text(f"{system.proc_root}/timer_list", limit=1 << 16))
    except OSError as exc:
        clock = None
        notes.append(f"xt_recent lists not read: {system.proc_root}/timer_list unreadable ({exc.strerror or exc})")
    if clock is None:
        if not notes:
            notes.append("xt_recent lists not read: the kernel clock (jiffies) could not be read")
        return None
    out: dict[str, tuple[RecentEntry, ...]] = {}
    for name in sorted(names):
        try:
            text = system.read_text(f"{base}/{name}")
        except OSError as exc:
            notes.append(f"xt_recent list {name} not read: {exc.strerror or exc}")
            return None
        out[name] = parse_recent(text, *clock)[:MAX_ENTRIES]
    return out


def _hashlimit(system: Host, notes: list[str]) -> dict[str, tuple[HashlimitEntry, ...]] | None:
    out: dict[str, tuple[HashlimitEntry, ...]] = {}
    for d in ("ipt_hashlimit", "ip6t_hashlimit"):
        base = f"{system.proc_root}/net/{d}"
        try:
            names = system.listdir(base)
        except OSError:
            continue
        for name in names:
            try:
                out[name] = out.get(name, ()) + parse_hashlimit(system.read_text(f"{base}/{name}"))[:MAX_ENTRIES]
            except OSError as exc:
                notes.append(f"hashlimit table {name} not read: {exc.strerror or exc}")
                return None
    return out


def _connections(system: Host, notes: list[str]) -> tuple[tuple[ConnCount, ...] | None, str]:
    try:
        return parse_conntrack(system.read_text(f"{system.proc_root}/net/nf_conntrack", limit=1 << 24)), "conntrack"
    except OSError:
        pass
    counts: dict[tuple[str, str, int], int] = {}
    read_any = False
    for name in ("tcp", "tcp6"):
        try:
            text = system.read_text(f"{system.proc_root}/net/{name}", limit=1 << 24)
        except OSError:
            continue
        read_any = True
        for key in _sockets(text):
            counts[key] = counts.get(key, 0) + 1
    if not read_any:
        notes.append("connections not read: neither /proc/net/nf_conntrack nor /proc/net/tcp could be read")
        return None, ""
    return tuple(ConnCount(s, d, p, n) for (s, d, p), n in sorted(counts.items())), "sockets"


def _hex_endpoint(text: str) -> tuple[str, int]:
    addr, _, port = text.partition(":")
    raw = bytes.fromhex(addr)
    words = struct.unpack(f"={len(raw) // 4}I", raw)
    packed = struct.pack(f">{len(words)}I", *words)
    fam = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
    ip = socket.inet_ntop(fam, packed)
    if ip.startswith("::ffff:") and "." in ip:
        ip = ip[7:]
    return ip, int(port, 16)


def _sockets(text: str) -> list[tuple[str, str, int]]:
    """(remote, local, local port) of every live connected socket of a /proc/net/tcp table: the
    connections clients have open to this host, as connlimit counts them on its input."""
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4 or parts[3] not in _LIVE_TCP:
            continue
        try:
            local, lport = _hex_endpoint(parts[1])
            remote, _rport = _hex_endpoint(parts[2])
        except (ValueError, struct.error, OSError):
            continue
        out.append((remote, local, lport))
    return out


def _bridges(system: Host) -> dict[str, tuple[str, ...]] | None:
    try:
        names = system.listdir("/sys/class/net")
    except OSError:
        return None
    out = {}
    for n in names:
        try:
            out[n] = tuple(sorted(system.listdir(f"/sys/class/net/{n}/brif")))
        except OSError:
            continue
    return out
