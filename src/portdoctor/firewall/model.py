"""One model for every ruleset portdoctor reads: iptables (nft or legacy), ip6tables, nftables.

Parsers turn tool output into these frozen dataclasses; the evaluator compiles them. They
convert to plain JSON (`portdoctor.plain.to_plain`) and back (`ruleset_from_plain`), so the
collector can hand a ruleset to the checks through `Snapshot.firewall` (FirewallFacts).

A rule is a list of matches (all must hold) and one action. Match kinds:

| kind     | values                                   | meaning                                  |
| -------- | ---------------------------------------- | ---------------------------------------- |
| family   | "ip" / "ip6"                             | the packet's address family              |
| proto    | "tcp", "udp", "icmp", ...                | layer 4 protocol                         |
| saddr    | "10.0.0.0/8", "10.0.0.1-10.0.0.9"        | source address (prefix or range)         |
| daddr    | same                                     | destination address                      |
| sport    | "22", "9000-9010"                        | source port (or range)                   |
| dport    | same                                     | destination port                         |
| iif/oif  | "eth0", "veth*"                          | interface name (* = any suffix)          |
| ctstate  | "new", "established", "dnat", ...        | conntrack state (a new flow: "new")      |
| addrtype | field:"src"/"dst", values "local", ...   | address type of this host                |
| tcpflags | mask, comp ("syn,ack", "syn")            | TCP flags of the first packet (SYN)      |
| set      | set: name, fields ("saddr", "dport")     | membership in an ipset / nft named set   |
| random   | values: (probability,)                   | chosen at random (statistic, numgen)     |
| recent   | "mode=rcheck", "seconds=30", "hitcount=6", "name=L", "mask=...", "rsource"/"rdest", "rttl" | xt_recent list; set: the list |
| limit    | "rate=3/min", "burst=5", "over=1"        | a global rate limit (nft: limit rate)    |
| hashlimit | same + "mode=srcip,dstport", "name=T"   | a rate limit per key (nft: meter)        |
| connlimit | "above=2" or "upto=2", "mask=32", "daddr", "all" | connections open (nft: ct count) |
| owner    | "uid=1000", "gid=100-200"                | the local socket's user (nft: meta skuid) |
| physdev  | "in=veth1", "is-bridged", ...            | the bridge port                          |

The stateful kinds (recent ... physdev) keep their options as "key=value" strings and are judged
from kernel state by `portdoctor.firewall.stateful`.
| unsupported | text                                  | a match portdoctor cannot evaluate       |
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any


# Built-in iptables chains: (table, chain) -> (hook, priority, chain type). Priorities are the
# kernel's NF_IP_PRI_* values, the same numbers nftables uses for its named priorities.
IPTABLES_BUILTINS: dict[tuple[str, str], tuple[str, int, str]] = {
    ("raw", "PREROUTING"): ("prerouting", -300, "filter"),
    ("raw", "OUTPUT"): ("output", -300, "filter"),
    ("mangle", "PREROUTING"): ("prerouting", -150, "filter"),
    ("mangle", "INPUT"): ("input", -150, "filter"),
    ("mangle", "FORWARD"): ("forward", -150, "filter"),
    ("mangle", "OUTPUT"): ("output", -150, "filter"),
    ("mangle", "POSTROUTING"): ("postrouting", -150, "filter"),
    ("nat", "PREROUTING"): ("prerouting", -100, "nat"),
    ("nat", "OUTPUT"): ("output", -100, "nat"),
    ("nat", "INPUT"): ("input", 100, "nat"),
    ("nat", "POSTROUTING"): ("postrouting", 100, "nat"),
    ("filter", "INPUT"): ("input", 0, "filter"),
    ("filter", "FORWARD"): ("forward", 0, "filter"),
    ("filter", "OUTPUT"): ("output", 0, "filter"),
    ("security", "INPUT"): ("input", 50, "filter"),
    ("security", "FORWARD"): ("forward", 50, "filter"),
    ("security", "OUTPUT"): ("output", 50, "filter"),
}


@dataclass(frozen=True, slots=True)
class Match:
    """One condition of a rule; see the module docstring for the kinds."""

    kind: str
    values: tuple[Any, ...] = ()
    neg: bool = False
    field: str = ""  # addrtype: "src"/"dst"; tcpflags: the mask
    set: str = ""  # set: the set's name
    fields: tuple[str, ...] = ()  # set: which packet fields, in order (saddr, dport, ...)
    text: str = ""  # how the match is written (for unsupported matches and evidence)


@dataclass(frozen=True, slots=True)
class Action:
    """What a rule does when it matches.

    kind: accept, drop, reject (arg: reject type), jump / goto (arg: chain), return,
    dnat (addr, port), redirect (port), snat, masquerade, continue (log, counter, mark, ...),
    vmap (fields + entries, or set: a named verdict map), queue, unsupported (text).
    """

    kind: str
    arg: str = ""
    addr: str = ""  # dnat: new destination address ("" keeps it)
    port: str = ""  # dnat / redirect: new destination port or range ("" keeps it)
    fields: tuple[str, ...] = ()  # vmap: key fields ("dport", "saddr", "random")
    entries: tuple[VmapEntry, ...] = ()  # vmap: key value -> action
    set: str = ""  # vmap or dnat map: a named map
    text: str = ""


@dataclass(frozen=True, slots=True)
class VmapEntry:
    """One element of a verdict map: the key (a value, or a list for concatenations) and its verdict."""

    key: Any
    action: Action


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule at one position of one chain, as the tool printed it."""

    position: int  # 1-based, as `iptables -L --line-numbers` counts
    text: str  # as a user would type it (iptables -A ..., or the nft rule text)
    matches: tuple[Match, ...] = ()
    action: Action = Action("continue")
    handle: int | None = None  # nftables rule handle
    packets: int | None = None
    bytes: int | None = None
    comment: str = ""


@dataclass(frozen=True, slots=True)
class Chain:
    """A chain; base chains have a hook, a priority, a type and a policy."""

    name: str
    rules: tuple[Rule, ...] = ()
    hook: str | None = None
    priority: int = 0
    type: str = "filter"
    policy: str | None = None  # ACCEPT / DROP for base chains
    packets: int | None = None  # iptables policy counter
    handle: int | None = None
    device: str = ""  # netdev ingress chains: the interface they are bound to


@dataclass(frozen=True, slots=True)
class NamedSet:
    """An ipset or nftables named set (or map): its fields and its elements."""

    name: str
    fields: tuple[str, ...]  # element types in order: "addr", "port", "iface", "proto", ...
    elements: tuple[Any, ...] = ()  # single values, or lists for concatenations
    verdicts: tuple[Action, ...] = ()  # for verdict maps, one per element
    data: tuple[Any, ...] = ()  # for data maps (e.g. dnat addresses), one per element
    kind: str = "nft"  # nft or ipset
    comments: tuple[str, ...] = ()  # per element ("" when none): kube-proxy names services there


@dataclass(frozen=True, slots=True)
class Table:
    """One table of one tool and family ("iptables" ip filter, "nft" inet fw, ...)."""

    source: str  # iptables, iptables-legacy, nft
    family: str  # ip, ip6, inet, arp, bridge, netdev
    name: str
    chains: tuple[Chain, ...] = ()
    sets: tuple[NamedSet, ...] = ()
    handle: int | None = None
    # what the parser could not read in this table ("could not read set 2: ..."); a rule it could
    # not read stays in its chain as an `unreadable_rule`
    problems: tuple[str, ...] = ()

    def chain(self, name: str) -> Chain | None:
        """The chain called `name`, or None."""
        for c in self.chains:
            if c.name == name:
                return c
        return None


@dataclass(frozen=True, slots=True)
class Ruleset:
    """Every table this host has, plus the ipsets iptables rules may refer to."""

    tables: tuple[Table, ...] = ()
    ipsets: tuple[NamedSet, ...] = ()


def unreadable_rule(position: int, text: str, reason: str, handle: int | None = None) -> Rule:
    """A rule the parser could not read, kept at its position so the rules after it keep theirs.

    Its match and its action are "unsupported": a walk that reaches it forks and names it
    instead of taking it as matching or not.

    >>> unreadable_rule(3, "-A INPUT -m", "no module name").action.text
    'could not read rule 3: -A INPUT -m (no module name)'
    """
    note = f"could not read rule {position}: {text} ({reason})"
    return Rule(position=position, text=text, matches=(Match("unsupported", text=note),),
                action=Action("unsupported", text=note), handle=handle)


def problems_of(ruleset: Ruleset) -> list[str]:
    """Every problem the parsers recorded, each prefixed with its table ("nft inet fw: ...")."""
    return [f"{t.source} {t.family} {t.name}: {p}" for t in ruleset.tables for p in t.problems]


def tool_for(table: Table) -> str:
    """The command that manages `table`: iptables, ip6tables, or nft."""
    if table.source.startswith("iptables"):
        return "ip6tables" if table.family == "ip6" else "iptables"
    return "nft"


def counter_key(table: Table, chain: str, rule: Rule) -> str:
    """A stable key for a rule's counter: source/family/table/chain/position-or-handle."""
    where = f"h{rule.handle}" if rule.handle is not None else str(rule.position)
    return f"{table.source}/{table.family}/{table.name}/{chain}/{where}"


def counters_of(ruleset: Ruleset) -> dict[str, int]:
    """Packet counters of every rule that has one, by `counter_key`."""
    out: dict[str, int] = {}
    for t in ruleset.tables:
        for c in t.chains:
            for r in c.rules:
                if r.packets is not None:
                    out[counter_key(t, c.name, r)] = r.packets
    return out


def _plain(obj: Any) -> Any:
    """A model object as compact JSON data: fields left at their default are omitted."""
    if isinstance(obj, (Match, Action, VmapEntry, Rule, Chain, NamedSet, Table, Ruleset)):
        out: dict[str, Any] = {}
        for f in fields(obj):
            v = getattr(obj, f.name)
            if f.default is not MISSING and v == f.default:
                continue
            out[f.name] = _plain(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [_plain(x) for x in obj]
    return obj


def _tuple(data: Any, fn: Any = None) -> tuple[Any, ...]:
    return tuple(fn(x) if fn else (list(x) if isinstance(x, list) else x) for x in data or ())


def _action(d: dict[str, Any]) -> Action:
    d = dict(d)
    d["fields"] = _tuple(d.get("fields"))
    d["entries"] = _tuple(d.get("entries"), lambda e: VmapEntry(e.get("key"), _action(e["action"])))
    return Action(**d)


def _rule(d: dict[str, Any]) -> Rule:
    d = dict(d)
    d["matches"] = _tuple(d.get("matches"), lambda m: Match(**{**m, "values": _tuple(m.get("values")),
                                                                "fields": _tuple(m.get("fields"))}))
    if "action" in d:
        d["action"] = _action(d["action"])
    return Rule(**d)


def _set(d: dict[str, Any]) -> NamedSet:
    return NamedSet(**{**d, "fields": _tuple(d.get("fields")), "elements": _tuple(d.get("elements")),
                       "verdicts": _tuple(d.get("verdicts"), _action), "data": _tuple(d.get("data")),
                       "comments": _tuple(d.get("comments"))})


def ruleset_to_plain(ruleset: Ruleset) -> dict[str, Any]:
    """The ruleset as compact JSON data (see `ruleset_from_plain`)."""
    return _plain(ruleset)


def ruleset_from_plain(data: dict[str, Any]) -> Ruleset:
    """Rebuild a ruleset from `ruleset_to_plain` output.

    >>> rs = Ruleset((Table("nft", "inet", "t", (Chain("input", (Rule(1, "drop", action=Action("drop")),)),)),))
    >>> ruleset_from_plain(ruleset_to_plain(rs)) == rs
    True
    """
    tables = []
    for t in data.get("tables", ()):
        chains = tuple(Chain(**{**c, "rules": _tuple(c.get("rules"), _rule)}) for c in t.get("chains", ()))
        tables.append(Table(**{**t, "chains": chains, "sets": _tuple(t.get("sets"), _set),
                               "problems": _tuple(t.get("problems"))}))
    return Ruleset(tuple(tables), _tuple(data.get("ipsets"), _set))
