"""ipfw's ruleset as `ipfw -a list` (or `ipfw list`) prints it on FreeBSD.

    00300      4      240 reset tcp from 192.0.2.0/24 to me 8080
    00400 unreach port tcp from any to me 8081 in
    65535     12     1024 deny ip from any to any

The first matching rule decides (portdoctor.firewall.bsdfilter). `reset` and `unreach port`
refuse (the client sees ECONNREFUSED), `deny` drops (a timeout), `allow` passes. Rules that
steer rather than decide (count, skipto, call, nat, divert, pipe, fwd...) decide nothing here
and are noted as not modelled; `established` never matches a new connection.
"""

from __future__ import annotations

from portdoctor.firewall.bsdfilter import FilterRule

_PASS = ("allow", "accept", "pass", "permit")
_DROP = ("deny", "drop")
_STEER = ("count", "skipto", "call", "return", "nat", "divert", "tee", "pipe", "queue", "fwd", "forward",
          "setfib", "tag", "untag", "netgraph", "ngtee", "setdscp", "reass", "nat64lsn", "nat64stl", "nptv6")
_NOT_MODELLED = ("uid", "gid", "jail", "prob", "lookup", "tagged", "sockarg", "diverted", "ipsec", "antispoof",
                 "verrevpath", "versrcreach", "dst-port", "src-port", "frag", "tcpflags")


def _addr(words: list[str], i: int) -> tuple[tuple[str, ...], bool, int]:
    neg = False
    if i < len(words) and words[i] == "not":
        neg, i = True, i + 1
    if i >= len(words):
        return (), neg, i
    if words[i] == "{":
        j = words.index("}", i) if "}" in words[i:] else len(words)
        items = tuple(w for w in words[i + 1:j] if w != "or")
        return items, neg, j + 1
    w = words[i]
    i += 1
    if w == "any":
        return (), neg, i
    if w.startswith("table(") and w.endswith(")"):
        return (f"<{w[6:-1].split(',')[0]}>",), neg, i
    return (w,), neg, i


def _ports(words: list[str], i: int) -> tuple[str, int]:
    if i < len(words) and words[i] and (words[i][0].isdigit()):
        return words[i], i + 1
    return "", i


def parse_rule(line: str) -> FilterRule | None:
    """One line of `ipfw [-a] list`; None for a line that is no rule."""
    text = line.split("//")[0].strip()
    words = text.split()
    if not words or not words[0].isdigit():
        return None
    number = int(words[0])
    i = 1
    packets = None
    if len(words) > 3 and words[1].isdigit() and words[2].isdigit():  # -a: packets bytes
        packets, i = int(words[1]), 3
    if i < len(words) and words[i] == "set":
        i += 2
    if i + 1 < len(words) and words[i] == "prob":
        i += 2
    shown = " ".join(words[i:])
    act = words[i] if i < len(words) else ""
    i += 1
    block = ""
    if act in _PASS:
        action = "pass"
    elif act in _DROP:
        action, block = "block", "drop"
    elif act in ("reset", "reset6"):
        action, block = "block", "reset"
    elif act in ("unreach", "unreach6"):
        code = words[i] if i < len(words) else ""
        i += 1
        action = "block"
        block = {"port": "unreach-port", "host": "unreach-host", "net": "unreach-net",
                 "filter-prohib": "unreach-filter", "admin": "unreach-filter"}.get(code, "unreach-host")
    elif act in ("count", "check-state", "setfib", "tag", "untag", "setdscp"):
        return FilterRule(number, f"ipfw add {number} {shown}", "none", packets=packets)  # the walk goes on
    elif act in _STEER:
        # skipto, call, nat, divert, pipe, fwd...: the packet may leave this path here; not modelled
        return FilterRule(number, f"ipfw add {number} {shown}", "none", unsupported=act, packets=packets)
    else:
        return FilterRule(number, f"ipfw add {number} {shown}", "none", unsupported=act, packets=packets)
    if i < len(words) and words[i] == "log":
        i += 1
        if i + 1 < len(words) and words[i] == "logamount":
            i += 2
    proto = words[i] if i < len(words) else "ip"
    i += 1
    protos: tuple[str, ...] = () if proto in ("ip", "all", "ip4", "ip6") else (proto,)
    family = 4 if proto == "ip4" else (6 if proto == "ip6" else 0)
    src: tuple[str, ...] = ()
    dst: tuple[str, ...] = ()
    src_neg = dst_neg = False
    dport = ""
    direction = ""
    iface, iface_neg = "", False
    unsupported: list[str] = []
    never = False
    while i < len(words):
        w = words[i]
        if w == "from":
            src, src_neg, i = _addr(words, i + 1)
            sport, i = _ports(words, i)
            if sport:
                unsupported.append(f"source port {sport}")
        elif w == "to":
            dst, dst_neg, i = _addr(words, i + 1)
            dport, i = _ports(words, i)
        elif w in ("in", "out"):
            direction, i = w, i + 1
        elif w in ("via", "recv"):
            iface = words[i + 1] if i + 1 < len(words) else ""
            i += 2
        elif w == "xmit":
            i += 2  # the outgoing interface: an inbound connection is still to be delivered locally
        elif w == "established":
            never, i = True, i + 1
        elif w == "not" and i + 1 < len(words) and words[i + 1] in ("via", "recv"):
            iface_neg, iface = True, (words[i + 2] if i + 2 < len(words) else "")
            i += 3
        elif w in _NOT_MODELLED:
            unsupported.append(" ".join(words[i:i + 2]))
            i += 2
        else:
            i += 1  # setup, keep-state, record-state, limit ...: a new connection still matches
    if never:
        return FilterRule(number, f"ipfw add {number} {shown}", "none", packets=packets)
    return FilterRule(number, f"ipfw add {number} {shown}", action, block, True, direction, iface, iface_neg,
                      family, protos, src, src_neg, dst, dst_neg, dport.replace("-", ":"), "; ".join(unsupported),
                      packets)


def parse_rules(text: str) -> list[FilterRule]:
    """Every rule of `ipfw [-a] list`, in rule-number order (the order ipfw walks them)."""
    out = [r for r in (parse_rule(line) for line in text.splitlines()) if r is not None]
    return sorted(out, key=lambda r: r.number)


def default_verdict(rules: list[FilterRule]) -> str:
    """What rule 65535 does (deny unless the kernel was built to accept by default)."""
    for r in rules:
        if r.number == 65535:
            return r.verdict
    return "drop"
