"""pf and ipfw rules in one small model, and the walk that says what they do to a new connection.

The two filters order their rules differently:

- pf (macOS, FreeBSD): every rule is evaluated and the LAST one that matches decides, unless a
  matching rule is `quick`, which decides at once. With no match the packet passes.
- ipfw (FreeBSD): the FIRST matching rule decides; rule 65535 (the default rule) always matches.

`first_match_order` turns a pf ruleset into the equivalent first-match list (the quick rules in
their order, then the others from last to first), so one walk serves both. The verdicts:

| rule | what the client sees |
| --- | --- |
| pf `block return`, `block return-rst`, ipfw `reset` | a TCP reset: ECONNREFUSED |
| pf `block return-icmp`, ipfw `unreach port` | ICMP port unreachable: ECONNREFUSED |
| ipfw `unreach host`/`net`, `unreach filter-prohib` | ICMP unreachable: EHOSTUNREACH |
| pf `block drop`, plain `block` (block-policy drop, pf's default), ipfw `deny` | nothing: a timeout |

A match portdoctor cannot judge for this flow (the source of "any client" against a rule that
names sources, an option it does not model) does not decide: the rule is kept as one that
applies to some clients only, and the walk goes on as if it did not match.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

# rule.block values and what a client sees
REFUSING = ("return", "return-rst", "return-icmp", "reset", "unreach-port")
UNREACH = ("unreach-host", "unreach-net", "unreach-filter")


@dataclass(frozen=True, slots=True)
class FilterRule:
    """One pf or ipfw rule, reduced to what decides a new inbound TCP connection."""

    number: int  # pf: @N (evaluation order); ipfw: the rule number
    text: str  # as the tool printed it
    action: str  # pass, block, or none (count, match, anchor, scrub: decides nothing)
    block: str = ""  # drop, return, return-rst, return-icmp, reset, unreach-port, unreach-host, ...
    quick: bool = True  # pf: `quick`; ipfw rules always decide at once
    direction: str = ""  # in, out, "" (both)
    iface: str = ""  # on / via IFACE ("" any)
    iface_neg: bool = False
    family: int = 0  # 4, 6, 0 (both)
    protos: tuple[str, ...] = ()  # () any
    src: tuple[str, ...] = ()  # () any; "10.0.0.0/8", "<table>", "self"
    src_neg: bool = False
    dst: tuple[str, ...] = ()
    dst_neg: bool = False
    dport: str = ""  # "8080", "8000:8100", "!=22", ">1024", "8000><8100", "1:1024" ("" any)
    unsupported: str = ""  # a condition portdoctor does not model (the rule may or may not match)
    packets: int | None = None

    @property
    def refuses(self) -> bool:
        """A client sees ECONNREFUSED (a TCP reset or ICMP port unreachable)."""
        return self.action == "block" and self.block in REFUSING

    @property
    def verdict(self) -> str:
        """pass, reject (refused), unreachable, or drop (timeout)."""
        if self.action == "pass":
            return "pass"
        if self.refuses:
            return "reject"
        if self.block in UNREACH:
            return "unreachable"
        return "drop"


@dataclass(frozen=True, slots=True)
class FilterFlow:
    """A new TCP connection coming in: its source (None: any client), destination and interface."""

    dst: str
    dport: int
    src: str | None = None
    iface: str | None = None  # None: not known
    proto: str = "tcp"

    @property
    def family(self) -> int:
        return 6 if ":" in self.dst else 4


@dataclass(frozen=True, slots=True)
class FilterOutcome:
    """What the ruleset does to a flow: the deciding rule (None: nothing matched, the default
    applies) and the rules before it that would decide for some clients only."""

    verdict: str  # pass, reject, unreachable, drop
    rule: FilterRule | None
    some_clients: tuple[FilterRule, ...] = ()


def first_match_order(rules: tuple[FilterRule, ...] | list[FilterRule]) -> list[FilterRule]:
    """pf's "last match wins unless quick" as an equivalent first-match list.

    >>> a = FilterRule(1, "block all", "block", "drop", quick=False)
    >>> b = FilterRule(2, "pass in proto tcp to port 22", "pass", quick=False)
    >>> c = FilterRule(3, "block return quick from 192.0.2.1", "block", "return", quick=True)
    >>> [r.number for r in first_match_order([a, b, c])]
    [3, 2, 1]
    """
    deciding = [r for r in rules if r.action in ("pass", "block")]
    return [r for r in deciding if r.quick] + [r for r in reversed(deciding) if not r.quick]


def _in_net(address: str, spec: str) -> bool | None:
    try:
        net = ipaddress.ip_network(spec, strict=False)
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return None
    if ip.version != net.version:
        return False
    return ip in net


def _addr_match(address: str | None, specs: tuple[str, ...], neg: bool, tables: dict[str, tuple[str, ...]],
                local: tuple[str, ...], ifaddrs: dict[str, tuple[str, ...]] | None = None) -> bool | None:
    """True/False, or None when it depends on which client (address None) or is not modelled."""
    if not specs:
        return True
    if address is None:
        return None
    hit: bool | None = False
    for spec in specs:
        if spec in ("any", "all"):
            r: bool | None = True
        elif spec in ("self", "me", "me6"):
            r = any(_in_net(address, a) for a in local) if local else None
        elif spec.startswith("<") and spec.endswith(">"):
            entries = tables.get(spec[1:-1])
            if entries is None:
                r = None
            else:
                pos = [e for e in entries if not e.startswith("!")]
                negs = [e[1:].strip() for e in entries if e.startswith("!")]
                r = any(_in_net(address, e) for e in pos) and not any(_in_net(address, e) for e in negs)
        elif spec.startswith("("):
            # (en0), (en0:0), (en0:network): the interface's addresses (its networks for :network)
            name, _, mod = spec.strip("()").partition(":")
            addrs = (ifaddrs or {}).get(name)
            if addrs is None or mod == "broadcast" or mod == "peer":
                r = None
            elif mod == "network":
                r = any(_in_net(address, a) for a in addrs)
            else:
                r = any(_in_net(address, a.split("/")[0]) for a in addrs)
        else:
            r = _in_net(address, spec)
        if r is True:
            hit = True
            break
        if r is None:
            hit = None
    if hit is None:
        return None
    return hit != neg


def port_matches(port: int, spec: str) -> bool | None:
    """Does `port` satisfy a pf/ipfw port condition ("8080", "8000:8100", "!=22", ">1024", "a><b")?

    >>> port_matches(8080, "8000:8100"), port_matches(22, "!=22"), port_matches(9000, "8000><9000")
    (True, False, False)
    """
    s = spec.replace(" ", "")
    if not s:
        return True
    try:
        for op in ("!=", "<=", ">=", "<>", "><", "<", ">", "="):
            if op in ("<>", "><") and op in s:
                lo, hi = (int(x) for x in s.split(op))
                return (lo < port < hi) if op == "><" else (port < lo or port > hi)
            if s.startswith(op):
                v = int(s[len(op):])
                return {"!=": port != v, "<=": port <= v, ">=": port >= v, "<": port < v, ">": port > v,
                        "=": port == v}[op]
        if ":" in s or "-" in s:
            lo, hi = (int(x) for x in s.replace("-", ":").split(":"))
            return lo <= port <= hi
        if "," in s:
            return any(port_matches(port, x) for x in s.split(","))
        return port == int(s)
    except ValueError:
        return None


def _matches(rule: FilterRule, flow: FilterFlow, tables: dict[str, tuple[str, ...]],
             local: tuple[str, ...], ifaddrs: dict[str, tuple[str, ...]] | None = None) -> bool | None:
    if rule.direction == "out":
        return False
    if rule.family and rule.family != flow.family:
        return False
    if rule.protos and flow.proto not in rule.protos and "ip" not in rule.protos and "all" not in rule.protos:
        return False
    results: list[bool | None] = []
    if rule.iface:
        if flow.iface is None:
            results.append(None)
        else:
            results.append((flow.iface == rule.iface) != rule.iface_neg)
    results.append(port_matches(flow.dport, rule.dport) if rule.dport else True)
    results.append(_addr_match(flow.dst, rule.dst, rule.dst_neg, tables, local, ifaddrs))
    results.append(_addr_match(flow.src, rule.src, rule.src_neg, tables, local, ifaddrs))
    if rule.unsupported:
        results.append(None)
    if any(r is False for r in results):
        return False
    if any(r is None for r in results):
        return None
    return True


def evaluate(ordered: list[FilterRule], flow: FilterFlow, tables: dict[str, tuple[str, ...]] | None = None,
             local: tuple[str, ...] = (), default: str = "pass",
             ifaddrs: dict[str, tuple[str, ...]] | None = None) -> FilterOutcome:
    """Walk first-match-ordered rules (`first_match_order` for pf) for one flow. `local`: this
    host's addresses (pf `self`, ipfw `me`); `ifaddrs`: interface -> "address/prefixlen" (pf `(en0)`)."""
    tables = tables or {}
    maybe: list[FilterRule] = []
    for rule in ordered:
        if rule.action not in ("pass", "block"):
            continue
        m = _matches(rule, flow, tables, local, ifaddrs)
        if m is True:
            return FilterOutcome(rule.verdict, rule, tuple(maybe))
        if m is None:
            maybe.append(rule)
    return FilterOutcome(default, None, tuple(maybe))
