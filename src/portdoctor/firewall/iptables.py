"""Parse `iptables-save -c` / `ip6tables-save -c` (nf_tables or legacy) and `ipset save`.

>>> rs = parse_iptables_save('''*filter
... :INPUT ACCEPT [3:180]
... [2:120] -A INPUT -s 10.0.0.1/32 -p tcp -m tcp --dport 8080 -j REJECT --reject-with tcp-reset
... COMMIT''', family="ip")
>>> rule = rs[0].chain("INPUT").rules[0]
>>> rule.action.kind, rule.action.arg, rule.packets
('reject', 'tcp-reset', 2)
"""

from __future__ import annotations

import re
import shlex
from dataclasses import replace
from typing import Any

from portdoctor.firewall.model import (
    IPTABLES_BUILTINS, Action, Chain, Match, NamedSet, Rule, Table, unreadable_rule,
)

# targets that do not end the walk through a chain
CONTINUE_TARGETS = frozenset({
    "LOG", "NFLOG", "ULOG", "TRACE", "CONNMARK", "CT", "NOTRACK", "TCPMSS", "CLASSIFY",
    "CHECKSUM", "TOS", "DSCP", "TTL", "HL", "SET", "AUDIT", "SECMARK", "CONNSECMARK", "IDLETIMER",
    "LED", "TEE", "HMARK", "SYNPROXY", "TPROXY", "RATEEST", "NETMAP",
})

# options that start something other than a module option
_TOP = frozenset({"-m", "--match", "-j", "--jump", "-g", "--goto", "-s", "--source", "-d",
                  "--destination", "-p", "--protocol", "-i", "--in-interface", "-o", "--out-interface",
                  "-f", "--fragment", "-A", "--append"})


def _ports(text: str) -> tuple[str, ...]:
    """'80,443,9000:9010' -> ('80', '443', '9000-9010')."""
    return tuple(p.replace(":", "-") for p in text.split(",") if p)


def _iface(name: str) -> str:
    """iptables writes a wildcard as a trailing '+'; the model uses '*'."""
    return name[:-1] + "*" if name.endswith("+") else name


def _addr(value: str) -> tuple[str, ...]:
    return tuple(v for v in value.split(",") if v)


class _Rule:
    """Accumulates one rule's matches while walking its tokens."""

    def __init__(self) -> None:
        self.matches: list[Match] = []
        self.comment = ""
        self.chain = ""
        self.target = ""
        self.goto = False
        self.target_opts: dict[str, list[str]] = {}


# modules whose options make one stateful match together (judged by portdoctor.firewall.stateful)
STATEFUL_MODULES = frozenset({"recent", "limit", "hashlimit", "connlimit", "owner", "physdev"})
_RECENT_MODES = {"--set": "set", "--rcheck": "rcheck", "--update": "update", "--remove": "remove"}


def stateful_match(mod: str, opts: list[tuple[str, list[str], bool]]) -> Match:
    """One Match for a stateful module's options (`-m recent --update --seconds 30 ...`).

    Options become "key=value" strings in `values` (see `stateful.options`); a module option
    portdoctor does not know makes the match unsupported, never silently dropped.

    >>> stateful_match("connlimit", [("--connlimit-above", ["2"], False), ("--connlimit-mask", ["32"], False)]).values
    ('above=2', 'mask=32')
    """
    text = " ".join([f"-m {mod}"] + [("! " if n else "") + " ".join([o, *a]) for o, a, n in opts])
    vals: list[str] = []
    neg = False
    name = ""
    for opt, args, n in opts:
        a0 = args[0] if args else ""
        key = ""
        if mod == "recent":
            if opt in _RECENT_MODES:
                key, a0, neg = "mode", _RECENT_MODES[opt], neg or n
            elif opt in ("--seconds", "--hitcount", "--name", "--mask"):
                key = opt[2:]
                name = a0 if key == "name" else name
            elif opt in ("--rsource", "--rdest", "--rttl", "--reap"):
                key, a0 = opt[2:], ""
        elif mod in ("limit", "hashlimit"):
            if opt in ("--limit", "--hashlimit-upto", "--hashlimit"):
                key = "rate"
            elif opt == "--hashlimit-above":
                vals.append("over=1")
                key = "rate"
            elif opt in ("--limit-burst", "--hashlimit-burst"):
                key = "burst"
            elif opt in ("--hashlimit-mode", "--hashlimit-name", "--hashlimit-srcmask", "--hashlimit-dstmask",
                         "--hashlimit-htable-expire", "--hashlimit-htable-size", "--hashlimit-htable-max",
                         "--hashlimit-htable-gcinterval"):
                key = opt[len("--hashlimit-"):]
                name = a0 if key == "name" else name
            if key == "rate" and "b/" in a0.lower():
                key = ""  # a byte rate: not modelled
        elif mod == "connlimit":
            if opt in ("--connlimit-above", "--connlimit-upto", "--connlimit-mask"):
                key = opt[len("--connlimit-"):]
                neg = neg or n
            elif opt in ("--connlimit-saddr", "--connlimit-daddr"):
                key, a0 = opt[len("--connlimit-"):], ""
        elif mod == "owner":
            if opt in ("--uid-owner", "--gid-owner"):
                key = opt[2:5]
                neg = neg or n
            elif opt == "--socket-exists":
                key, a0 = "socket-exists", ""
        elif mod == "physdev":
            if opt in ("--physdev-in", "--physdev-out"):
                key = opt[len("--physdev-"):]
            elif opt in ("--physdev-is-in", "--physdev-is-out", "--physdev-is-bridged"):
                key, a0 = opt[len("--physdev-"):], ""
            neg = neg or n
        if not key:
            return Match("unsupported", text=text)
        vals.append(f"{key}={a0}" if a0 else key)
    kind = "limit" if mod == "limit" else mod
    return Match(kind, tuple(vals), neg, set=name if mod in ("recent", "hashlimit") else "", text=text)


def _take_args(tokens: list[str], i: int) -> tuple[list[str], int]:
    """The arguments of an option at tokens[i-1]: following tokens up to the next option."""
    args: list[str] = []
    while i < len(tokens) and not tokens[i].startswith("-") and tokens[i] != "!":
        args.append(tokens[i])
        i += 1
    return args, i


def _module_option(mod: str, opt: str, args: list[str], neg: bool, r: _Rule) -> Match | None:
    """Translate one module option to a Match; None when portdoctor does not know it."""
    a0 = args[0] if args else ""
    if mod in ("tcp", "udp", "sctp", "dccp"):
        if opt in ("--dport", "--destination-port"):
            return Match("dport", _ports(a0), neg)
        if opt in ("--sport", "--source-port"):
            return Match("sport", _ports(a0), neg)
        if opt == "--tcp-flags" and len(args) == 2:
            return Match("tcpflags", (args[1].lower(),), neg, field=args[0].lower())
        if opt == "--syn":
            return Match("tcpflags", ("syn",), neg, field="syn,rst,ack,fin")
        return None
    if mod == "multiport":
        if opt in ("--dports", "--destination-ports"):
            return Match("dport", _ports(a0), neg)
        if opt in ("--sports", "--source-ports"):
            return Match("sport", _ports(a0), neg)
        if opt == "--ports":
            return Match("anyport", _ports(a0), neg)
        return None
    if mod in ("conntrack", "state"):
        if opt in ("--ctstate", "--state"):
            return Match("ctstate", tuple(s.lower() for s in a0.split(",")), neg)
        return None
    if mod == "nfacct" and opt == "--nfacct-name":
        return Match("comment")  # accounting only: it matches every packet
    if mod == "comment" and opt == "--comment":
        r.comment = a0.replace("\\'", "'")  # iptables-save writes ' as \' inside double quotes
        return Match("comment")
    if mod == "addrtype":
        if opt in ("--dst-type", "--src-type"):
            return Match("addrtype", tuple(s.lower() for s in a0.split(",")), neg,
                         field="dst" if opt == "--dst-type" else "src")
        if opt in ("--limit-iface-in", "--limit-iface-out"):
            return Match("comment")  # narrows LOCAL to the interface's own addresses; same for us
        return None
    if mod == "iprange":
        if opt == "--src-range":
            return Match("saddr", (a0,), neg)
        if opt == "--dst-range":
            return Match("daddr", (a0,), neg)
        return None
    if mod == "set" and opt == "--match-set" and len(args) == 2:
        dirs = tuple("saddr" if d == "src" else "daddr" for d in args[1].split(","))
        return Match("set", (), neg, set=args[0], fields=dirs)
    if mod == "statistic":
        if opt == "--probability":
            return Match("random", (float(a0),), neg)
        if opt == "--mode":
            return Match("comment")
        if opt in ("--every", "--packet"):
            return Match("random", (1.0 / max(1, int(a0)),) if opt == "--every" else (), neg)
        return None
    if mod == "mark" and opt == "--mark":
        value, _, mask = a0.partition("/")
        return Match("mark", (int(value, 0), int(mask, 0) if mask else 0xFFFFFFFF), neg)
    if mod == "pkttype" and opt == "--pkt-type":
        return Match("pkttype", (a0.lower(),), neg)
    return None


def parse_rule(line: str, chains: set[str] | None = None) -> tuple[str, list[Match], Action, str]:
    """Parse one `-A CHAIN ...` line; returns (chain, matches, action, comment).

    >>> parse_rule('-A INPUT ! -s 10.1.0.0/16 -p tcp -m tcp --dport 22 -j DROP')[1][0]
    Match(kind='saddr', values=('10.1.0.0/16',), neg=True, field='', set='', fields=(), text='')
    """
    tokens = shlex.split(line, posix=True)
    r = _Rule()
    i = 0
    mod = ""
    mod_start = 0
    neg = False
    unknown_mod: list[str] | None = None
    stateful: list[tuple[str, list[str], bool]] | None = None  # options of a stateful module
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if tok == "!":
            neg = True
            continue
        if stateful is not None and tok.startswith("--") and tok not in _TOP:
            args, i = _take_args(tokens, i)
            stateful.append((tok, args, neg))
            neg = False
            continue
        if stateful is not None:
            r.matches.append(stateful_match(mod, stateful))
            stateful = None
        if unknown_mod is not None and tok not in _TOP:
            unknown_mod.append(("! " if neg else "") + tok)
            neg = False
            continue
        if unknown_mod is not None:
            r.matches.append(Match("unsupported", text=" ".join(unknown_mod)))
            unknown_mod = None
        if tok in ("-A", "--append"):
            r.chain = tokens[i]
            i += 1
        elif tok in ("-s", "--source"):
            r.matches.append(Match("saddr", _addr(tokens[i]), neg))
            i += 1
        elif tok in ("-d", "--destination"):
            r.matches.append(Match("daddr", _addr(tokens[i]), neg))
            i += 1
        elif tok in ("-p", "--protocol"):
            r.matches.append(Match("proto", (tokens[i].lower(),), neg))
            i += 1
        elif tok in ("-i", "--in-interface"):
            r.matches.append(Match("iif", (_iface(tokens[i]),), neg))
            i += 1
        elif tok in ("-o", "--out-interface"):
            r.matches.append(Match("oif", (_iface(tokens[i]),), neg))
            i += 1
        elif tok in ("-f", "--fragment"):
            r.matches.append(Match("fragment", (), neg))
        elif tok in ("-m", "--match"):
            mod = tokens[i]
            i += 1
            mod_start = i
            if mod in STATEFUL_MODULES:
                stateful = []
            elif mod not in ("nfacct", "tcp", "udp", "sctp", "dccp", "multiport", "conntrack", "state", "comment",
                           "addrtype", "iprange", "set", "statistic", "pkttype", "mark"):
                unknown_mod = [("! " if neg else "") + f"-m {mod}"]
        elif tok in ("-j", "--jump", "-g", "--goto"):
            r.target = tokens[i]
            r.goto = tok in ("-g", "--goto")
            i += 1
            while i < len(tokens):  # target options
                opt = tokens[i]
                args, i = _take_args(tokens, i + 1)
                r.target_opts.setdefault(opt, args)
        elif tok.startswith("--"):
            args, i = _take_args(tokens, i)
            m = _module_option(mod, tok, args, neg, r) if mod else None
            if m is None:
                text = f"-m {mod} " if mod and mod_start else ""
                text += ("! " if neg else "") + " ".join([tok, *args])
                m = Match("unsupported", text=text.strip())
            if m.kind != "comment":
                r.matches.append(m)
        else:
            r.matches.append(Match("unsupported", text=tok))
        neg = False
    if unknown_mod is not None:
        r.matches.append(Match("unsupported", text=" ".join(unknown_mod)))
    if stateful is not None:
        r.matches.append(stateful_match(mod, stateful))
    return r.chain, r.matches, _action(r, chains), r.comment


def _action(r: _Rule, chains: set[str] | None) -> Action:
    """The Action of a parsed rule's target."""
    t = r.target
    o = r.target_opts
    if not t:
        return Action("continue")
    if t == "ACCEPT":
        return Action("accept")
    if t == "DROP":
        return Action("drop")
    if t == "RETURN":
        return Action("return")
    if t == "REJECT":
        return Action("reject", arg=(o.get("--reject-with") or [""])[0])
    if t == "DNAT":
        dest = (o.get("--to-destination") or o.get("--to") or [""])[0]
        addr, port = split_hostport(dest)
        return Action("dnat", addr=addr, port=port)
    if t == "REDIRECT":
        return Action("redirect", port=(o.get("--to-ports") or o.get("--to-port") or [""])[0].replace(":", "-"))
    if t == "SNAT":
        return Action("snat", arg=(o.get("--to-source") or [""])[0])
    if t == "MASQUERADE":
        return Action("masquerade")
    if t in ("QUEUE", "NFQUEUE"):
        return Action("queue", text=f"-j {t}")
    if t == "MARK":
        for opt, how in (("--set-xmark", "xset"), ("--set-mark", "set"), ("--or-mark", "or"),
                         ("--and-mark", "and"), ("--xor-mark", "xor")):
            if opt in o and o[opt]:
                value, _, mask = o[opt][0].partition("/")
                return Action("mark", arg=how, addr=str(int(value, 0)),
                              port=str(int(mask, 0)) if mask else "")
        return Action("continue", arg=t)
    if t in CONTINUE_TARGETS:
        return Action("continue", arg=t)
    if chains is None or t in chains:
        return Action("goto" if r.goto else "jump", arg=t)
    return Action("unsupported", text=f"-j {t}")


def split_hostport(dest: str) -> tuple[str, str]:
    """'172.17.0.2:80' -> ('172.17.0.2', '80'); '[fd00::3]:80' -> ('fd00::3', '80'); ':80' -> ('', '80')."""
    if dest.startswith("["):
        host, _, rest = dest[1:].partition("]")
        return host, rest.lstrip(":")
    if dest.count(":") == 1:
        host, _, port = dest.partition(":")
        return host, port
    return dest, ""  # an IPv6 address without a port, or an address alone


_COUNTS = re.compile(r"^\[(\d+):(\d+)\]\s+")
_CHAIN_COUNTS = re.compile(r"\[(\d+):(\d+)\]")
# what a rule that cannot be read raises while its tokens are walked (a cut-off option, a bad
# number, an unbalanced quote); anything else is a bug and is not hidden
_READ_ERRORS = (ValueError, IndexError, KeyError, TypeError, OverflowError)
_MAX_NOTED = 20  # lines outside a table noted one by one; the rest are counted


def parse_iptables_save(text: str, family: str = "ip", source: str = "iptables") -> list[Table]:
    """Parse iptables-save (or ip6tables-save) output, with or without -c counters.

    What cannot be read is kept visible: a rule line that cannot be parsed stays in its chain
    as an `unreadable_rule`; a chain line that cannot be read, lines outside any table and a
    table cut off before its COMMIT are noted in the table's `problems` (a cut-off table keeps
    the rules read so far). Text without any table line has no table to note them on.
    """
    tables: list[Table] = []
    name = ""
    chain_heads: dict[str, tuple[str | None, int | None]] = {}
    order: list[str] = []
    lines: list[tuple[int | None, int | None, str]] = []
    problems: list[str] = []
    stray: list[str] = []  # lines outside a table, noted on the table after them (or the last one)
    tool = "ip6tables" if family == "ip6" else "iptables"

    def flush() -> None:
        chains_set = set(order)
        rules: dict[str, list[Rule]] = {c: [] for c in order}
        table_opt = "" if name == "filter" else f"-t {name} "
        for pk, by, line in lines:
            try:
                chain, matches, action, comment = parse_rule(line, chains_set)
            except _READ_ERRORS as exc:  # an unparsable rule stays visible, undecided
                words = line.split()
                chain = words[1] if len(words) > 1 else "?"
                pos = len(rules.get(chain, ())) + 1
                bad = unreadable_rule(pos, f"{tool} {table_opt}{line}", f"{type(exc).__name__}: {exc}")
                if chain not in rules:
                    rules[chain] = []
                    order.append(chain)
                rules[chain].append(replace(bad, packets=pk, bytes=by))
                continue
            if chain not in rules:
                rules[chain] = []
                order.append(chain)
            pos = len(rules[chain]) + 1
            rules[chain].append(Rule(position=pos, text=f"{tool} {table_opt}{line}", matches=tuple(matches),
                                     action=action, packets=pk, bytes=by, comment=comment))
        chains = []
        for c in order:
            policy, pk = chain_heads.get(c, (None, None))
            hook, prio, ctype = IPTABLES_BUILTINS.get((name, c), (None, 0, "filter"))
            chains.append(Chain(name=c, rules=tuple(rules[c]), hook=hook, priority=prio, type=ctype,
                                policy=policy if hook else None, packets=pk if hook else None))
        noted = stray[:_MAX_NOTED] + ([f"{len(stray) - _MAX_NOTED} more lines outside a table"]
                                      if len(stray) > _MAX_NOTED else [])
        stray.clear()
        tables.append(Table(source=source, family=family, name=name, chains=tuple(chains),
                            problems=tuple(noted + problems)))

    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            if name:  # the previous table never reached its COMMIT: keep what it has
                problems.append(f"no COMMIT before line {no} ({line}): the table may be cut short")
                flush()
            name = line[1:].strip()
            chain_heads, order, lines, problems = {}, [], [], []
            if not name:
                stray.append(f"could not read line {no}: {line} (a table without a name)")
        elif line == "COMMIT":
            if name:
                flush()
            name = ""
        elif not name:
            stray.append(f"could not read line {no}: {line} (outside a table: no *table line before it)")
        elif line.startswith(":"):
            parts = line[1:].split()
            if not parts:
                problems.append(f"could not read line {no}: {line} (a chain without a name)")
                continue
            cname = parts[0]
            policy = parts[1] if len(parts) > 1 and parts[1] != "-" else None
            pk = None
            if len(parts) > 2:
                m = _CHAIN_COUNTS.match(parts[2])
                pk = int(m.group(1)) if m else None
            chain_heads[cname] = (policy, pk)
            order.append(cname)
        else:
            pk = by = None
            m = _COUNTS.match(line)
            if m:
                pk, by = int(m.group(1)), int(m.group(2))
                line = line[m.end():]
            if line.startswith("-A") or line.startswith("--append"):
                lines.append((pk, by, line))
            else:
                problems.append(f"could not read line {no}: {raw.strip()} (neither a chain nor a rule)")
    if name:
        problems.append("no COMMIT at the end: the output may be cut short")
        flush()
    if stray and tables:  # nothing followed them: the last table notes them
        tables[-1] = replace(tables[-1], problems=tables[-1].problems + tuple(stray[:_MAX_NOTED]))
    return tables


# ------------------------------------------------------------------------------------ ipset

_IPSET_FIELDS = {"ip": "addr", "net": "addr", "port": "port", "iface": "iface", "mac": "mac", "mark": "mark",
                 "set": "set"}


def parse_ipset_save(text: str) -> list[NamedSet]:
    """Parse `ipset save` output into named sets (hash:ip, hash:net, hash:ip,port, bitmap:port, ...)."""
    types: dict[str, tuple[str, ...]] = {}
    elems: dict[str, list[Any]] = {}
    order: list[str] = []
    for raw in text.splitlines():
        parts = raw.split()
        if len(parts) < 3:
            continue
        if parts[0] == "create":
            kind = parts[2].split(":", 1)[-1]
            types[parts[1]] = tuple(_IPSET_FIELDS.get(f, f) for f in kind.split(","))
            elems[parts[1]] = []
            order.append(parts[1])
        elif parts[0] == "add" and parts[1] in types:
            if "nomatch" in parts[3:]:
                continue  # an exception carved out of a net; treated as absent
            fields = types[parts[1]]
            vals = parts[2].split(",")
            out: list[Any] = []
            for f, v in zip(fields, vals):
                if f == "port":
                    proto, _, p = v.rpartition(":")
                    out.append(p if proto in ("", "tcp") else f"{proto}:{p}")
                else:
                    out.append(v)
            elems[parts[1]].append(out[0] if len(out) == 1 else out)
    return [NamedSet(name=n, fields=types[n], elements=tuple(elems[n]), kind="ipset") for n in order]
