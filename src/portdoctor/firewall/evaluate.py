"""Walk a flow through a ruleset the way the kernel does, and say what happens to it.

A new TCP connection from elsewhere meets the prerouting hook (raw, mangle, nat: DNAT rewrites
the destination), is routed (local: input hook, otherwise forward and postrouting); a
connection made on this host meets output (nat OUTPUT may DNAT), postrouting and, when the
destination is local, input on `lo`. At each hook every base chain of every table (iptables,
iptables-legacy, nftables) runs in priority order; accept ends one base chain, drop or reject
ends the walk. Inside a chain: jump, goto, return, policies, verdict maps.

Matches are three-valued: true, false, or "cannot tell" (the source of "any client", a random
choice, a match portdoctor does not model). "Cannot tell" forks the walk: one branch assumes
the rule matched, one that it did not, and each outcome lists the assumptions it rests on. So
an unsupported match is never silently taken as matching or not matching.

Rules are compiled once: each chain keeps its rules indexed by destination port, destination
and source address, so a flow only looks at the rules that could match it.
"""

from __future__ import annotations

import bisect
import enum
import heapq
import ipaddress
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from portdoctor.firewall.model import Action, Chain, Match, NamedSet, Rule, Ruleset, Table
from portdoctor.firewall.stateful import StatefulFacts, judge, kind_of, options

EPHEMERAL = (32768, 60999)  # Linux net.ipv4.ip_local_port_range default: where client ports come from
MAX_STATES = 256  # forks per evaluation before the walk stops forking
MAX_DEPTH = 64  # nested jumps (the kernel allows fewer)

_PROTO_NUM = {"6": "tcp", "17": "udp", "1": "icmp", "58": "ipv6-icmp", "132": "sctp", "33": "dccp",
              "icmpv6": "ipv6-icmp", "icmp6": "ipv6-icmp"}


# --------------------------------------------------------------------------- flows and results


@dataclass(frozen=True, slots=True)
class Flow:
    """The first packet (SYN) of a new TCP connection, as the firewall sees it.

    src None means "any client from elsewhere"; iif None means "not known" (but not `lo` when
    not_lo is set).
    """

    dst: str
    dport: int
    src: str | None = None
    proto: str = "tcp"
    iif: str | None = None
    oif: str | None = None
    sport: int | None = None
    local_src: bool = False  # made by a process on this host
    not_lo: bool = False
    dnat: bool = False
    mark: int = 0  # the packet mark (MARK / meta mark set), 0 on arrival
    ct: str = "new"  # conntrack state: "new" (the SYN) or "established" (the handshake's ACK)
    # the server's answer (SYN-ACK) going back to the client: sport is the service's port, dst the
    # client, and dport the client's ephemeral port, which is not known (the dport field is ignored)
    reply: bool = False
    uid: int | None = None  # local_src: the user and group of the connecting process (None: not known)
    gid: int | None = None
    # xt_recent lists this connection was stamped into so far (--set, --update), once per stamp: on
    # this packet's way, and for the handshake's ACK also by its SYN
    recent: tuple[str, ...] = ()

    @property
    def family(self) -> int:
        return 6 if ":" in self.dst else 4

    def describe(self) -> str:
        """'10.0.0.1 -> 10.0.0.2:8080/tcp on eth0'."""
        dst = f"[{self.dst}]" if self.family == 6 else self.dst
        src = self.src or "any source"
        iface = f" in on {self.iif}" if self.iif else ""
        return f"{src} -> {dst}:{self.dport}/{self.proto}{iface}"


@dataclass(frozen=True, slots=True)
class Step:
    """A place in the ruleset: a rule, or a chain's policy (rule None)."""

    table: Table
    chain: str
    rule: Rule | None = None

    @property
    def table_words(self) -> str:
        """'iptables nat', 'ip6tables-legacy filter', 'nft inet fw'."""
        fam = self.table.family
        src = self.table.source
        if src == "nft":
            return f"nft {fam} {self.table.name}"
        tool = "ip6tables" if fam == "ip6" else "iptables"
        return f"{tool}{'-legacy' if src.endswith('legacy') else ''} {self.table.name}"

    @property
    def short(self) -> str:
        """'rule 1, iptables nat table' (with the handle for nft), for use after a chain name."""
        if self.rule is None:
            return f"policy, {self.table_words} table"
        h = f", handle {self.rule.handle}" if self.rule.handle is not None else ""
        return f"rule {self.rule.position}, {self.table_words} table{h}"

    @property
    def where(self) -> str:
        """'rule 3 of chain INPUT (iptables filter table)' or 'policy DROP of chain FORWARD (...)'."""
        tbl = self.table_words
        if self.rule is None:
            c = self.table.chain(self.chain)
            pol = c.policy if c is not None else "?"
            return f"policy {pol} of chain {self.chain} ({tbl} table)"
        h = f", handle {self.rule.handle}" if self.rule.handle is not None else ""
        return f"rule {self.rule.position} of chain {self.chain} ({tbl} table{h})"


class FlowVerdict(str, enum.Enum):
    """How one way of a flow ends. A str, so it reads and compares as its value."""

    ACCEPT = "accept"
    DROP = "drop"
    REJECT = "reject"
    UNKNOWN = "unknown"  # a verdict portdoctor cannot follow (queue, an unsupported action)

    __hash__ = str.__hash__  # "accept" and FlowVerdict.ACCEPT are one set member

    def __str__(self) -> str:
        return self.value


# the reason of an Assumption whose match the evaluator does not model
UNEVALUATED = "could not evaluate:"


@dataclass(frozen=True, slots=True)
class Assumption:
    """A rule whose match could not be decided, and which branch this outcome took."""

    step: Step
    reason: str  # "source address", "random choice", "could not evaluate: -m recent ...", ...
    matched: bool

    @property
    def unevaluated(self) -> str | None:
        """The match portdoctor could not evaluate (`-m recent ...`), or None for a known unknown
        such as the client's source address."""
        if self.reason.startswith(UNEVALUATED):
            return self.reason[len(UNEVALUATED):].strip()
        return None

    @property
    def stateful(self) -> str | None:
        """The kind of kernel state this fork depends on (a rate limit, a recent list, the
        client's connection count, the local user), or None (see `firewall.stateful`)."""
        return kind_of(self.reason)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One way the flow can end."""

    verdict: FlowVerdict
    step: Step | None  # the deciding rule or policy (None: no rule; e.g. forwarding off)
    hook: str
    flow: Flow  # the flow at the decision (after any NAT)
    reject_with: str = ""
    nat: Step | None = None  # the rule that rewrote the destination
    original: Flow | None = None  # the flow before NAT
    path: tuple[Step, ...] = ()  # jumps taken to reach the decision
    assumptions: tuple[Assumption, ...] = ()
    note: str = ""
    notes: tuple[str, ...] = ()  # comments of the map elements that chose the way (kube-proxy names)

    @property
    def definite(self) -> bool:
        """True when no undecidable match was assumed on the way."""
        return not self.assumptions


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Every possible outcome of one flow."""

    flow: Flow
    outcomes: tuple[Outcome, ...]
    truncated: bool = False

    @property
    def verdicts(self) -> set[FlowVerdict]:
        return {o.verdict for o in self.outcomes}


# --------------------------------------------------------------------------- address helpers


def _net(text: str) -> tuple[int, int, int]:
    """'10.0.0.0/8' / '10.0.0.1' / '10.0.0.1-10.0.0.9' -> (version, low, high)."""
    text = str(text)
    if "-" in text and "/" not in text:
        a, b = text.split("-", 1)
        lo, hi = ipaddress.ip_address(a.strip()), ipaddress.ip_address(b.strip())
        return lo.version, int(lo), int(hi)
    n = ipaddress.ip_network(text, strict=False)
    return n.version, int(n.network_address), int(n.broadcast_address)


def _addr_int(text: str) -> tuple[int, int]:
    a = ipaddress.ip_address(text.split("%")[0])
    return a.version, int(a)


def _port_range(v: Any) -> tuple[int, int]:
    s = str(v)
    if "-" in s:
        a, b = s.split("-", 1)
        return int(a), int(b)
    return int(s), int(s)


def _iface_match(pattern: str, name: str) -> bool:
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return pattern == name


# --------------------------------------------------------------------------- compiled rules

Tri = bool | str  # True, False, or the reason it cannot be told


@dataclass(frozen=True, slots=True)
class _Packet:
    """The flow with addresses as integers, for fast matching."""

    flow: Flow
    fam: int
    src: tuple[int, int] | None
    dst: tuple[int, int]
    dst_local: bool
    src_local: bool


class _Compiled:
    """One rule compiled to predicates."""

    __slots__ = ("rule", "table", "chain", "preds", "action", "index")

    def __init__(self, rule: Rule, table: Table, chain: str, preds: list[Callable[[_Packet], Tri]],
                 action: Action, index: int) -> None:
        self.rule = rule
        self.table = table
        self.chain = chain
        self.preds = preds
        self.action = action
        self.index = index

    def match(self, pkt: _Packet) -> Tri | list[str]:
        reasons: list[str] = []
        for p in self.preds:
            r = p(pkt)
            if r is False:
                return False
            if r is not True:
                reasons.append(r)
        return reasons or True


def _prefix_of(ver: int, lo: int, hi: int) -> int | None:
    """The prefix length of the block lo..hi, or None when it is not one CIDR block."""
    size = hi - lo + 1
    bits = 32 if ver == 4 else 128
    if size & (size - 1) or lo & (size - 1):
        return None
    return bits - (size.bit_length() - 1)


def _blocks(ver: int, lo: int, hi: int, limit: int = 32) -> list[tuple[int, int, int]] | None:
    """lo..hi as CIDR blocks (version, prefix length, network); None past `limit` blocks."""
    plen = _prefix_of(ver, lo, hi)
    if plen is not None:
        return [(ver, plen, lo)]
    cls = ipaddress.IPv4Address if ver == 4 else ipaddress.IPv6Address
    out = []
    for net in ipaddress.summarize_address_range(cls(lo), cls(hi)):
        out.append((ver, net.prefixlen, int(net.network_address)))
        if len(out) > limit:
            return None
    return out


class _CChain:
    """A compiled chain: its rules, indexed by destination port and by address prefix.

    Each rule goes in one index: under each destination port it names (small ranges expanded),
    else under each destination or source prefix it names (looked up per prefix length, as a
    routing table does), else among the rules every packet must be tried against.
    """

    def __init__(self, chain: Chain, table: Table) -> None:
        self.chain = chain
        self.table = table
        self.rules: list[_Compiled] = []
        self.wild: list[int] = []
        self.by_dport: dict[int, list[int]] = {}
        # (version, prefix length, network) -> rules; and the prefix lengths in use
        self.by_daddr: dict[tuple[int, int, int], list[int]] = {}
        self.by_saddr: dict[tuple[int, int, int], list[int]] = {}
        self.dlens: set[tuple[int, int]] = set()
        self.slens: set[tuple[int, int]] = set()
        self.saddr_all: list[int] = []

    def add(self, c: _Compiled, index: bool = True) -> None:
        i = len(self.rules)
        self.rules.append(c)
        if not index:
            self.wild.append(i)
            return
        for m in c.rule.matches:
            if m.neg:
                continue
            if m.kind == "dport":
                ports: list[int] = []
                for v in m.values:
                    try:
                        lo, hi = _port_range(v)
                    except ValueError:  # not a port the index understands: the rule's own match says so
                        ports = []
                        break
                    if hi - lo > 64:
                        ports = []
                        break
                    ports.extend(range(lo, hi + 1))
                if ports:
                    for p in set(ports):
                        self.by_dport.setdefault(p, []).append(i)
                    return
        for kind in ("daddr", "saddr"):
            for m in c.rule.matches:
                if m.neg or m.kind != kind or not m.values or len(m.values) > 16:
                    continue
                keys: list[tuple[int, int, int]] = []
                for v in m.values:
                    try:
                        ver, lo, hi = _net(v)
                    except ValueError:
                        break
                    blocks = _blocks(ver, lo, hi)
                    if blocks is None:
                        break
                    keys.extend(blocks)
                else:
                    index, lens = (self.by_daddr, self.dlens) if kind == "daddr" else (self.by_saddr, self.slens)
                    for k in set(keys):
                        index.setdefault(k, []).append(i)
                        lens.add(k[:2])
                    if kind == "saddr":
                        self.saddr_all.append(i)
                    return
        self.wild.append(i)

    @staticmethod
    def _lookup(index: dict[tuple[int, int, int], list[int]], lens: set[tuple[int, int]],
                addr: tuple[int, int], lists: list[list[int]]) -> None:
        ver, n = addr
        bits = 32 if ver == 4 else 128
        for v, plen in lens:
            if v != ver:
                continue
            hit = index.get((ver, plen, n >> (bits - plen) << (bits - plen) if plen else 0))
            if hit:
                lists.append(hit)

    def candidates(self, pkt: _Packet) -> list[int]:
        """Indexes of the rules that could match this packet, in order."""
        if pkt.flow.reply:  # the destination port is unknown: every rule may match
            return list(range(len(self.rules)))
        lists = [self.wild]
        d = self.by_dport.get(pkt.flow.dport)
        if d:
            lists.append(d)
        if self.dlens:
            self._lookup(self.by_daddr, self.dlens, pkt.dst, lists)
        if pkt.src is None:
            if self.saddr_all:
                lists.append(self.saddr_all)
        elif self.slens:
            self._lookup(self.by_saddr, self.slens, pkt.src, lists)
        if len(lists) == 1:
            return self.wild
        out: list[int] = []
        last = -1
        for i in heapq.merge(*lists):
            if i != last:
                out.append(i)
                last = i
        return out


@dataclass(frozen=True, slots=True)
class _State:
    flow: Flow
    assumptions: tuple[Assumption, ...] = ()
    path: tuple[Step, ...] = ()
    nat: Step | None = None
    original: Flow | None = None
    nat_hooks: frozenset[str] = frozenset()
    accepted: Step | None = None
    accepted_rank: int = -1
    notes: tuple[str, ...] = ()


# --------------------------------------------------------------------------- the evaluator


@dataclass(frozen=True)
class HostInfo:
    """What the evaluator must know about the host besides rules."""

    local_addresses: dict[str, str] = field(default_factory=dict)  # address -> interface
    routes: list[tuple[str, str | None, str]] = field(default_factory=list)  # (prefix, dev, type)
    forwarding: dict[int, bool] = field(default_factory=lambda: {4: True, 6: True})
    # the kernel state stateful matches consult (recent lists, connection counts, ...); None: not
    # read, so those matches cannot be evaluated
    stateful: StatefulFacts | None = None


class Evaluator:
    """Compile a ruleset once; evaluate many flows."""

    def __init__(self, ruleset: Ruleset, host: HostInfo | None = None, index: bool = True) -> None:
        self.ruleset = ruleset
        self._index = index  # False: walk every rule (the reference the indexes are tested against)
        self.host = host or HostInfo()
        self._local: set[tuple[int, int]] = set()
        for a in self.host.local_addresses:
            try:
                self._local.add(_addr_int(a))
            except ValueError:
                continue
        self._routes: list[tuple[int, int, int, int, str | None, str]] = []
        for prefix, dev, kind in self.host.routes:
            try:
                ver, lo, hi = _net(prefix)
            except ValueError:
                continue
            self._routes.append((ver, lo, hi, hi - lo, dev, kind))
        self._routes.sort(key=lambda r: r[3])  # most specific first
        self._ipsets = {s.name: s for s in ruleset.ipsets}
        self._chains: dict[tuple[int, str], _CChain] = {}  # (id(table), chain name)
        # one nf_tables table read in two parts (the chains iptables-nft-save showed, the rest from
        # nft): a jump from one part to the other finds its chain by (family, table, chain)
        self._nf_chains: dict[tuple[str, str, str], _CChain] = {}
        self._base: dict[str, list[_CChain]] = {}
        self._set_cache: dict[tuple[int, str], NamedSet | None] = {}
        self.kinds: set[str] = set()  # the match kinds the ruleset uses
        for t in ruleset.tables:
            if t.family not in ("ip", "ip6", "inet", "netdev"):
                continue  # arp and bridge tables do not see routed TCP
            for ch in t.chains:
                cc = _CChain(ch, t)
                self._chains[(id(t), ch.name)] = cc
                if t.source in ("iptables", "nft"):
                    self._nf_chains.setdefault((t.family, t.name, ch.name), cc)
                for i, r in enumerate(ch.rules):
                    self.kinds.update(m.kind for m in r.matches)
                    if r.action.kind == "continue" and not _records(r):
                        continue  # logs, counters, marks: no effect on the verdict
                    cc.add(_Compiled(r, t, ch.name, [self._safe_pred(_scoped(m, r), t) for m in r.matches
                                                     if m.kind != "comment"],
                                     r.action, len(cc.rules)), self._index)
                if ch.hook and (t.family != "netdev" or ch.hook == "ingress"):
                    self._base.setdefault(ch.hook, []).append(cc)
        for hook in self._base:
            # equal priorities run in registration order: legacy x_tables first (registered when
            # the module loads), then nft tables (iptables-nft's too) in creation (handle) order
            self._base[hook].sort(key=lambda c: (c.chain.priority, c.table.source != "iptables-legacy",
                                                 c.table.handle if c.table.handle is not None else 1 << 30))

    # ------------------------------------------------------------------ host facts

    def is_local(self, addr: str) -> bool:
        """True when `addr` is an address of this host (or loopback)."""
        try:
            a = ipaddress.ip_address(addr.split("%")[0])
        except ValueError:
            return False
        return a.is_loopback or (a.version, int(a)) in self._local

    def route(self, addr: str) -> tuple[str | None, str]:
        """(interface, route type) this host would use to reach `addr` (longest prefix)."""
        if self.is_local(addr):
            return "lo", "local"
        try:
            ver, n = _addr_int(addr)
        except ValueError:
            return None, "none"
        for rv, lo, hi, _size, dev, kind in self._routes:
            if rv == ver and lo <= n <= hi:
                return dev, kind
        return None, "none"

    def _addr_type(self, ver: int, n: int, local: bool) -> str:
        if local:
            return "local"
        a = ipaddress.ip_address(n) if ver == 4 else ipaddress.IPv6Address(n)
        if a.is_multicast:
            return "multicast"
        if ver == 4 and (n & 0xFF) == 0xFF:
            return "broadcast"  # approximation: x.x.x.255
        return "unicast"

    # ------------------------------------------------------------------ compiling matches

    def _named_set(self, table: Table, name: str) -> NamedSet | None:
        key = (id(table), name)
        if key not in self._set_cache:
            found = None
            for s in table.sets:
                if s.name == name:
                    found = s
            if found is None and table.source != "nft":
                found = self._ipsets.get(name)
            self._set_cache[key] = found
        return self._set_cache[key]

    def _safe_pred(self, m: Match, table: Table) -> Callable[[_Packet], Tri]:
        """`_pred`, or "could not evaluate" for a match whose values make no sense to it."""
        try:
            return self._pred(m, table)
        except (ValueError, TypeError, IndexError) as exc:
            # bind the message now: Python unbinds `exc` when the except block ends
            text = m.text or f"{m.kind} {' '.join(map(str, m.values))}"
            message = f"{UNEVALUATED} {text} ({exc})"
            return lambda p: message

    def _pred(self, m: Match, table: Table) -> Callable[[_Packet], Tri]:
        """A predicate for one match: packet -> True / False / reason it cannot be told."""
        neg = m.neg

        def out(fn: Callable[[_Packet], Tri]) -> Callable[[_Packet], Tri]:
            if not neg:
                return fn

            def negated(p: _Packet) -> Tri:
                r = fn(p)
                return (not r) if isinstance(r, bool) else r
            return negated

        k = m.kind
        if k == "family":
            fams = {4 if v in ("ip", "ipv4", "4") else 6 for v in m.values}
            return out(lambda p: p.fam in fams)
        if k == "proto":
            protos = {_PROTO_NUM.get(str(v), str(v)) for v in m.values}
            if "all" in protos or "0" in protos:
                return out(lambda p: True)
            return out(lambda p: p.flow.proto in protos)
        if k in ("saddr", "daddr"):
            nets = [_net(v) for v in m.values]
            if k == "daddr":
                return out(lambda p: any(v == p.dst[0] and lo <= p.dst[1] <= hi for v, lo, hi in nets))
            full = {v for v, lo, hi in nets if lo == 0 and hi in (2 ** 32 - 1, 2 ** 128 - 1)}

            def saddr(p: _Packet) -> Tri:
                if p.src is None:
                    if p.fam in full:
                        return True
                    if not any(v == p.fam for v, _lo, _hi in nets):
                        return False
                    return "source address"
                return any(v == p.src[0] and lo <= p.src[1] <= hi for v, lo, hi in nets)
            return out(saddr)
        if k == "dport":
            rng = [_port_range(v) for v in m.values]

            def dport(p: _Packet) -> Tri:
                if p.flow.reply:
                    return _ephemeral_in(rng, "destination port")
                return any(lo <= p.flow.dport <= hi for lo, hi in rng)
            return out(dport)
        if k in ("sport", "anyport"):
            rng = [_port_range(v) for v in m.values]

            def sport(p: _Packet) -> Tri:
                if k == "anyport" and not p.flow.reply and any(lo <= p.flow.dport <= hi for lo, hi in rng):
                    return True
                if k == "anyport" and p.flow.reply:
                    if p.flow.sport is not None and any(lo <= p.flow.sport <= hi for lo, hi in rng):
                        return True
                    return _ephemeral_in(rng, "destination port")
                if p.flow.sport is not None:
                    return any(lo <= p.flow.sport <= hi for lo, hi in rng)
                if any(lo <= EPHEMERAL[0] and EPHEMERAL[1] <= hi for lo, hi in rng):
                    return True
                if all(hi < EPHEMERAL[0] or lo > EPHEMERAL[1] for lo, hi in rng):
                    return False
                return "source port"
            return out(sport)
        if k in ("iif", "oif"):
            pats = [str(v) for v in m.values]

            def iface(p: _Packet) -> Tri:
                name = p.flow.iif if k == "iif" else p.flow.oif
                if name is not None:
                    return any(_iface_match(x, name) for x in pats)
                if k == "iif" and p.flow.not_lo and all(x == "lo" for x in pats):
                    return False
                return "incoming interface" if k == "iif" else "outgoing interface"
            return out(iface)
        if k == "ctstate":
            states = {str(v).lower() for v in m.values}

            def ct(p: _Packet) -> Tri:
                if p.flow.ct in states:
                    return True
                if "dnat" in states and p.flow.dnat:
                    return True
                return False
            return out(ct)
        if k == "addrtype":
            types = {str(v).lower() for v in m.values}

            def addrtype(p: _Packet) -> Tri:
                if m.field == "dst":
                    return self._addr_type(p.dst[0], p.dst[1], p.dst_local) in types
                if p.src is None:
                    return "local" not in types and "unicast" in types if not p.flow.local_src else "local" in types
                return self._addr_type(p.src[0], p.src[1], p.src_local) in types
            return out(addrtype)
        if k == "tcpflags":
            mask = {f for f in m.field.lower().split(",") if f} if m.field not in ("all", "ALL") else \
                {"syn", "ack", "fin", "rst", "urg", "psh", "ece", "cwr"}
            if "all" in mask:
                mask = {"syn", "ack", "fin", "rst", "urg", "psh", "ece", "cwr"}
            comp = {f for f in str(m.values[0]).lower().split(",") if f and f != "none"}
            on_syn = ({"syn"} & mask) == comp
            on_ack = ({"ack"} & mask) == comp
            return out(lambda p: p.flow.proto == "tcp" and (on_syn if p.flow.ct == "new" else on_ack))
        if k == "pkttype":
            return out(lambda p: str(m.values[0]) in ("host", "unicast"))
        if k == "fragment":
            return out(lambda p: False)
        if k == "mark":
            value, mask = int(m.values[0]), int(m.values[1])
            return out(lambda p: (p.flow.mark & mask) == value)
        if k == "random":
            prob = float(m.values[0]) if m.values else 0.5
            if prob >= 1.0:
                return out(lambda p: True)
            return out(lambda p: f"random choice (probability {prob:g})")
        if k == "set":
            return out(self._set_pred(m, table))
        if k in ("recent", "limit", "hashlimit", "connlimit", "owner", "physdev"):
            facts = self.host.stateful

            def stateful(p: _Packet) -> Tri:
                f = p.flow
                return judge(m, f.src, f.dst, f.dport, facts, stamped=f.recent, uid=f.uid, gid=f.gid,
                             iif=f.iif, local_src=f.local_src)
            return out(stateful)
        text = m.text or k
        return lambda p: f"{UNEVALUATED} {text}"

    def _set_pred(self, m: Match, table: Table) -> Callable[[_Packet], Tri]:
        fields = m.fields
        if m.set:
            s = self._named_set(table, m.set)
            if s is None:
                return lambda p: f"{UNEVALUATED} set {m.set} not found"
            elements = s.elements
            if s.kind == "ipset":  # directions (src/dst) applied to the set's own dimensions
                if len(fields) < len(s.fields):
                    return lambda p: f"{UNEVALUATED} set {m.set} has more dimensions than directions"
                side = {"addr": ("saddr", "daddr"), "port": ("sport", "dport"), "iface": ("iif", "oif")}
                fields = tuple(side[t][0 if d == "saddr" else 1] if t in side else t
                               for d, t in zip(fields, s.fields))
        else:
            elements = m.values
        checkers = [self._element_checker(f) for f in fields]

        def member(p: _Packet) -> Tri:
            uncertain = ""
            for el in elements:
                ok = _match_key(checkers, p, el, "set element")
                if ok is True:
                    return True
                if ok is not False:
                    uncertain = ok
            return uncertain or False
        return member

    def _element_checker(self, fld: str) -> Callable[[_Packet, Any], Tri]:
        if fld in ("saddr", "daddr"):
            def addr(p: _Packet, v: Any) -> Tri:
                ver, lo, hi = _net(v)
                a = p.dst if fld == "daddr" else p.src
                if a is None:
                    return "source address"
                return a[0] == ver and lo <= a[1] <= hi
            return addr
        if fld in ("dport", "sport"):
            def port(p: _Packet, v: Any) -> Tri:
                s = str(v)
                if ":" in s:  # ipset 'udp:53'
                    return False
                lo, hi = _port_range(s)
                if fld == "dport":
                    return _ephemeral_in([(lo, hi)], "destination port") if p.flow.reply else lo <= p.flow.dport <= hi
                return "source port" if p.flow.sport is None else lo <= p.flow.sport <= hi
            return port
        if fld in ("iif", "oif"):
            def iface(p: _Packet, v: Any) -> Tri:
                name = p.flow.iif if fld == "iif" else p.flow.oif
                return "interface" if name is None else _iface_match(str(v), name)
            return iface
        if fld == "proto":
            return lambda p, v: p.flow.proto == _PROTO_NUM.get(str(v), str(v))
        if fld == "ctstate":  # ct state vmap { established : accept, invalid : drop, ... }
            return lambda p, v: str(v).lower() == p.flow.ct or (str(v).lower() == "dnat" and p.flow.dnat)
        if fld == "family":
            return lambda p, v: {"ipv4": 4, "ip": 4, "ipv6": 6, "ip6": 6}.get(str(v)) == p.fam
        return lambda p, v: f"{UNEVALUATED} set field {fld}"

    # ------------------------------------------------------------------ walking

    def _packet(self, flow: Flow) -> _Packet:
        src = None
        src_local = False
        if flow.src is not None:
            src = _addr_int(flow.src)
            src_local = flow.local_src or self.is_local(flow.src)
        dst = _addr_int(flow.dst)
        return _Packet(flow, dst[0], src, dst, self.is_local(flow.dst), src_local)

    def evaluate(self, flow: Flow) -> Evaluation:
        """All the ways `flow` can end, each with the rule that decides it."""
        self._budget = MAX_STATES
        self._truncated = False
        finals: list[Outcome] = []
        # no interface yet is the empty name: `-i eth0` never matches in OUTPUT, `-o eth0` never in INPUT
        start = _State(replace(flow, iif="", oif=None) if flow.local_src else replace(flow, oif=""))
        if flow.local_src:
            states = self._hook("output", [self._routed(start, output=True)], finals)
            states = self._hook("postrouting", states, finals)
            to_input = []
            for st in states:
                if self.is_local(st.flow.dst):
                    to_input.append(replace(st, flow=replace(st.flow, iif="lo", oif="")))
                else:
                    finals.append(self._accepted(st, "postrouting"))
            for st in self._hook("input", to_input, finals):
                finals.append(self._accepted(st, "input"))
        else:
            states = self._hook("ingress", [start], finals)
            states = self._hook("prerouting", states, finals)
            local, forward = [], []
            for st in states:
                (local if self.is_local(st.flow.dst) else forward).append(st)
            for st in self._hook("input", local, finals):
                finals.append(self._accepted(st, "input"))
            fwd_ok = []
            for st in forward:
                if not self.host.forwarding.get(st.flow.family, True):
                    key = "net.ipv4.ip_forward" if st.flow.family == 4 else "net.ipv6.conf.all.forwarding"
                    finals.append(Outcome(FlowVerdict.DROP, None, "forward", st.flow, nat=st.nat, original=st.original,
                                          assumptions=st.assumptions, path=st.path,
                                          note=f"{key} is 0: this host does not forward the packet"))
                else:
                    fwd_ok.append(self._routed(st))
            states = self._hook("forward", fwd_ok, finals)
            for st in self._hook("postrouting", states, finals):
                finals.append(self._accepted(st, "postrouting"))
        return Evaluation(flow, tuple(_merge(finals)), self._truncated)

    def evaluate_established(self, evaluation: Evaluation, outcome: Outcome) -> Evaluation:
        """The handshake's final ACK of a flow whose SYN ended in `outcome` (accepted).

        Conntrack applies the SYN's NAT to it and NAT chains are not consulted again; a rule that
        drops or rejects this packet breaks the connection right after the client saw it open.
        """
        f = evaluation.flow
        return self.evaluate(replace(f, dst=outcome.flow.dst, dport=outcome.flow.dport, dnat=outcome.nat is not None,
                                     ct="established", recent=outcome.flow.recent))

    def evaluate_reply(self, evaluation: Evaluation, outcome: Outcome, client: str) -> Evaluation | None:
        """The server's answer (SYN-ACK) to a flow whose SYN ended in `outcome` (accepted and
        delivered to this host), sent back to `client`: output and postrouting, as conntrack
        state ESTABLISHED (NAT chains are not consulted), then input on lo when the client is local.
        None when the SYN was not delivered here (a forwarded flow) or the client is not known."""
        f = outcome.flow
        if not client or not self.is_local(f.dst) or (":" in client) != (":" in f.dst):
            return None
        return self.evaluate(Flow(dst=client, dport=0, src=f.dst, sport=f.dport, proto=f.proto, local_src=True,
                                  ct="established", reply=True))

    def _routed(self, st: _State, output: bool = False) -> _State:
        dev, _kind = self.route(st.flow.dst)
        return replace(st, flow=replace(st.flow, oif=dev))

    def _accepted(self, st: _State, hook: str) -> Outcome:
        return Outcome(FlowVerdict.ACCEPT, st.accepted, hook, st.flow, nat=st.nat,
                       original=st.original, path=st.path, assumptions=st.assumptions, notes=st.notes)

    def _hook(self, hook: str, states: list[_State], finals: list[Outcome]) -> list[_State]:
        """Run the states through every base chain of `hook`; return those accepted."""
        for cc in self._base.get(hook, []):
            nxt: list[_State] = []
            for st in states:
                fam = st.flow.family
                tf = cc.table.family
                if tf not in ("inet", "netdev") and (tf == "ip") != (fam == 4):
                    nxt.append(st)
                    continue
                if cc.chain.device and st.flow.iif is not None and st.flow.iif != cc.chain.device:
                    nxt.append(st)  # an ingress chain of another interface
                    continue
                if cc.chain.type == "nat" and (hook in st.nat_hooks or st.flow.ct != "new"):
                    # NAT chains see only a connection's first packet; conntrack rewrites the rest
                    nxt.append(st)
                    continue
                for kind, s2, c in self._walk(cc, 0, st, 0):
                    step = Step(cc.table, c.chain, c.rule) if c is not None else Step(cc.table, cc.chain.name)
                    if kind == "return":
                        pol = (cc.chain.policy or "ACCEPT").upper()
                        if pol == "DROP":
                            finals.append(self._final(FlowVerdict.DROP, Step(cc.table, cc.chain.name), hook, s2))
                        else:
                            nxt.append(_accept(s2, Step(cc.table, cc.chain.name), hook, cc))
                    elif kind == "accept":
                        nxt.append(_accept(s2, step, hook, cc))
                    elif kind in ("dnat", "redirect"):
                        nxt.append(s2)
                    elif kind == "drop":
                        finals.append(self._final(FlowVerdict.DROP, step, hook, s2))
                    elif kind == "reject":
                        finals.append(self._final(FlowVerdict.REJECT, step, hook, s2, c.action.arg if c else ""))
                    else:
                        finals.append(self._final(FlowVerdict.UNKNOWN, step, hook, s2,
                                                  note=c.action.text if c is not None else ""))
            states = nxt
        return states

    def _final(self, verdict: FlowVerdict, step: Step, hook: str, st: _State, reject_with: str = "",
               note: str = "") -> Outcome:
        return Outcome(verdict, step, hook, st.flow, reject_with=reject_with, nat=st.nat, original=st.original,
                       path=st.path, assumptions=st.assumptions, note=note, notes=st.notes)

    def _fork(self, st: _State, c: _Compiled, reasons: list[str]) -> tuple[_State | None, _State]:
        """(state assuming the rule matched, state assuming it did not); None when out of budget."""
        step = Step(c.table, c.chain, c.rule)
        reason = "; ".join(dict.fromkeys(reasons))
        no = replace(st, assumptions=st.assumptions + (Assumption(step, reason, False),))
        if self._budget <= 0:
            self._truncated = True
            return None, no
        self._budget -= 1
        yes = replace(st, assumptions=st.assumptions + (Assumption(step, reason, True),))
        return yes, no

    def _walk(self, cc: _CChain, start: int, st: _State, depth: int
              ) -> list[tuple[str, _State, _Compiled | None]]:
        """Walk chain `cc` from rule index `start`; returns (kind, state, deciding rule) per branch.

        kind: accept, drop, reject, dnat, redirect, unknown, or return (fell off the end / RETURN).
        """
        out: list[tuple[str, _State, _Compiled | None]] = []
        if depth > MAX_DEPTH:
            return [("unknown", st, None)]
        pkt = self._packet(st.flow)
        cands = cc.candidates(pkt)
        pos = bisect.bisect_left(cands, start) if start else 0
        while pos < len(cands):
            c = cc.rules[cands[pos]]
            pos += 1
            m = c.match(pkt)
            if m is False:
                continue
            if m is True:
                out.extend(self._act(cc, c, c.action, st, depth))
                return out
            yes, st = self._fork(st, c, m)  # type: ignore[arg-type]
            if yes is not None:
                out.extend(self._act(cc, c, c.action, yes, depth))
        out.append(("return", st, None))
        return out

    def _act(self, cc: _CChain, c: _Compiled, a: Action, st: _State, depth: int
             ) -> list[tuple[str, _State, _Compiled | None]]:
        """Apply a matched rule's action; continue the chain when the action does not end it."""
        k = a.kind
        stamps = _records(c.rule)
        if stamps:  # recent --set / --update stamp the source as the packet passes
            st = replace(st, flow=replace(st.flow, recent=st.flow.recent + stamps))
        if k == "continue":
            return self._walk(cc, c.index + 1, st, depth)
        if k in ("accept", "drop", "reject"):
            return [(k, st, c)]
        if k in ("snat", "masquerade"):
            return [("accept", st, c)]
        if k == "return":
            return [("return", st, c)]
        if k in ("jump", "goto"):
            target = self._chains.get((id(cc.table), a.arg))
            if target is None and cc.table.source in ("iptables", "nft"):
                target = self._nf_chains.get((cc.table.family, cc.table.name, a.arg))
            if target is None:
                return [("unknown", st, c)]
            step = Step(c.table, c.chain, c.rule)
            inner = replace(st, path=st.path + (step,))
            res: list[tuple[str, _State, _Compiled | None]] = []
            for kind, s2, c2 in self._walk(target, 0, inner, depth + 1):
                if kind == "return":
                    s2 = replace(s2, path=s2.path[:-1] if s2.path and s2.path[-1] == step else s2.path)
                    if k == "goto":
                        res.append(("return", s2, None))
                    else:
                        res.extend(self._walk(cc, c.index + 1, s2, depth))
                else:
                    res.append((kind, s2, c2))
            return res
        if k in ("dnat", "redirect"):
            return [(k, self._nat(st, c, a), c)]
        if k == "vmap":
            return self._vmap(cc, c, a, st, depth)
        if k == "mark":
            return self._walk(cc, c.index + 1, replace(st, flow=replace(st.flow, mark=_marked(st.flow.mark, a))), depth)
        return [("unknown", st, c)]

    def _nat(self, st: _State, c: _Compiled, a: Action) -> _State:
        f = st.flow
        port = f.dport
        if a.port:
            port = _port_range(a.port)[0]
        if a.kind == "redirect":
            dst = f.dst
            if not self.is_local(dst):
                dst = "127.0.0.1" if f.family == 4 else "::1"
                if f.iif and f.iif != "lo":
                    for addr, dev in self.host.local_addresses.items():
                        if dev == f.iif and (":" in addr) == (f.family == 6):
                            dst = addr
                            break
        else:
            dst = a.addr or f.dst
        hook = "output" if f.local_src else "prerouting"
        new = replace(f, dst=dst, dport=port, dnat=True)
        return replace(st, flow=new, nat=Step(c.table, c.chain, c.rule), original=st.original or f,
                       nat_hooks=st.nat_hooks | {hook})

    def _vmap(self, cc: _CChain, c: _Compiled, a: Action, st: _State, depth: int
              ) -> list[tuple[str, _State, _Compiled | None]]:
        entries: list[tuple[Any, Action]] = [(e.key, e.action) for e in a.entries]
        if a.set:
            s = self._named_set(c.table, a.set)
            if s is None:
                return [("unknown", st, c)]
            if a.arg == "dnat":
                entries = [(k, Action("dnat", addr=str(d[0] if isinstance(d, list) else d),
                                      port=str(d[1]) if isinstance(d, list) else a.port))
                           for k, d in zip(s.elements, s.data)]
            else:
                entries = list(zip(s.elements, s.verdicts))
            comments = dict(zip(range(len(s.elements)), s.comments))
        else:
            comments = {}
        pkt = self._packet(st.flow)
        if a.fields == ("random",):
            res = []
            for i, (_k, act) in enumerate(entries):
                if len(entries) > 1:
                    step = Step(c.table, c.chain, c.rule)
                    if self._budget <= 0 and i > 0:
                        self._truncated = True
                        break
                    self._budget -= 1
                    s2 = replace(st, assumptions=st.assumptions + (
                        Assumption(step, f"random choice (element {_k} of {len(entries)})", True),))
                else:
                    s2 = st
                res.extend(self._act(cc, c, act, s2, depth))
            return res
        checkers = [self._element_checker(f) if f not in ("iface",) else self._element_checker("iif")
                    for f in a.fields]
        res: list[tuple[str, _State, _Compiled | None]] = []
        for n, (key, act) in enumerate(entries):
            if comments.get(n):
                noted = replace(st, notes=st.notes + (comments[n],))
            else:
                noted = st
            r = _match_key(checkers, pkt, key, "map key")
            if r is True:
                res.extend(self._act(cc, c, act, noted, depth))
                return res
            if r is not False:
                yes, st = self._fork(st, c, [str(r)])
                if yes is not None:
                    if comments.get(n):
                        yes = replace(yes, notes=yes.notes + (comments[n],))
                    res.extend(self._act(cc, c, act, yes, depth))
        # no element matched: the rule does not decide; continue with the next rule
        res.extend(self._walk(cc, c.index + 1, st, depth))
        return res


def _match_key(checkers: list[Callable[[_Packet, Any], Tri]], pkt: _Packet, key: Any, what: str) -> Tri:
    """Match one set element or map key (a value, or a list for concatenated fields) field by
    field: False as soon as one field differs, else True, or the reason a field cannot be told."""
    result: Tri = True
    for chk, v in zip(checkers, key if isinstance(key, list) else [key]):
        try:
            r = chk(pkt, v)
        except (ValueError, TypeError):
            r = f"{UNEVALUATED} {what} {v!r}"
        if r is False:
            return False
        if r is not True:
            result = r
    return result


def _scoped(m: Match, rule: Rule) -> Match:
    """A connection count of a rule that names no destination port counts the client's
    connections to any port (the kernel counts those that passed the rule): say so on the match."""
    if m.kind == "connlimit" and not any(x.kind == "dport" and not x.neg for x in rule.matches):
        return replace(m, values=m.values + ("anyport",))
    return m


def _records(rule: Rule) -> tuple[str, ...]:
    """The xt_recent lists a rule stamps the packet's source into when it matches (--set, --update)."""
    out = []
    for m in rule.matches:
        if m.kind == "recent" and not m.neg:
            o = options(m)
            if o.get("mode") in ("set", "update"):
                out.append(o.get("name") or "DEFAULT")
    return tuple(out)


def _ephemeral_in(rng: list[tuple[int, int]], what: str) -> Tri:
    """Whether an unknown ephemeral port falls in the ranges: True, False, or cannot tell."""
    if any(lo <= EPHEMERAL[0] and EPHEMERAL[1] <= hi for lo, hi in rng):
        return True
    if all(hi < EPHEMERAL[0] or lo > EPHEMERAL[1] for lo, hi in rng):
        return False
    return what


def _accept(st: _State, step: Step, hook: str, cc: _CChain) -> _State:
    """Remember the accept that explains the flow best: a filter rule at input/forward first."""
    rank = (2 if hook in ("input", "forward") and cc.chain.type == "filter" else 0) + (1 if step.rule else 0)
    if rank >= st.accepted_rank:
        return replace(st, accepted=step, accepted_rank=rank)
    return st


def _marked(mark: int, a: Action) -> int:
    """The packet mark after a MARK action (iptables semantics; nft `meta mark set` is "set")."""
    value = int(a.addr or 0)
    mask = int(a.port) if a.port else 0xFFFFFFFF
    if a.arg == "xset":
        return (mark & ~mask & 0xFFFFFFFF) ^ value
    if a.arg == "set":
        return (mark & ~mask & 0xFFFFFFFF) | value
    if a.arg == "or":
        return mark | value
    if a.arg == "and":
        return mark & value
    if a.arg == "xor":
        return mark ^ value
    return mark


def _merge(outcomes: list[Outcome]) -> list[Outcome]:
    """Fold outcomes that end the same way, keeping only the assumptions all of them share.

    Two branches that differ only in an undecidable rule and still end alike do not depend on it.
    """
    groups: dict[tuple, list[Outcome]] = {}
    for o in outcomes:
        step = None if o.verdict is FlowVerdict.ACCEPT else (o.step.where if o.step else o.note)
        key = (o.verdict, o.reject_with, step, o.hook, o.flow.dst, o.flow.dport,
               o.nat.where if o.nat else None)
        groups.setdefault(key, []).append(o)
    out = []
    for members in groups.values():
        first = members[0]
        if len(members) == 1:
            out.append(first)
            continue
        common = [a for a in first.assumptions
                  if all(any(b.step == a.step and b.matched == a.matched for b in m.assumptions) for m in members)]
        out.append(replace(first, assumptions=tuple(common)))
    return out

