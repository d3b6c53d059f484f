"""pf's ruleset as `pfctl -vvsr` prints it (macOS, FreeBSD), and its tables.

    @2 block return in quick on en0 inet proto tcp from 192.0.2.0/24 to any port = 8080
      [ Evaluations: 120  Packets: 4  Bytes: 240  States: 0  ]
    @3 block drop in all

pfctl prints each loaded rule on one line, with `{ }` lists already expanded into one rule per
element, `@N` (the rule number, with -vv) in front and counters on the lines below (with -v).
Each rule becomes a `FilterRule` (portdoctor.firewall.bsdfilter); a word portdoctor does not
model (`user`, `group`, `tagged`, `os`, `probability`, `received-on`) is kept in `unsupported`,
so the rule never silently decides. Plain `block` follows the `set block-policy` the
configuration names (pf's default: drop).
"""

from __future__ import annotations

import re
from dataclasses import replace

from portdoctor.firewall.bsdfilter import FilterRule

_ACTIONS = ("pass", "block", "match")
_NOT_MODELLED = ("user", "group", "tagged", "os", "probability", "received-on", "prio", "once")
_ADDR_STOP = ("port", "to", "flags", "keep", "modulate", "synproxy", "no", "label", "tag", "queue", "rtable",
              "route-to", "reply-to", "dup-to", "max-mss", "allow-opts", "fragment", "icmp-type",
              "icmp6-type", "os", "user", "group", "tagged", "probability", "set", "divert-to", "rdr-to",
              "nat-to", "state", "(", "received-on")
_COUNTERS = re.compile(r"Packets:\s*(\d+)")


def block_policy(pf_conf: str | None) -> str:
    """The `set block-policy` of a pf.conf text ("drop" when it names none: pf's default)."""
    for line in (pf_conf or "").splitlines():
        words = line.split("#")[0].split()
        if len(words) >= 3 and words[0] == "set" and words[1] == "block-policy":
            return words[2]
    return "drop"


def skip_interfaces(pf_conf: str | None) -> tuple[str, ...]:
    """Interfaces pf does not filter at all: `set skip on lo0` / `set skip on { lo0 bridge0 }`."""
    out: list[str] = []
    for line in (pf_conf or "").splitlines():
        words = line.split("#")[0].replace("{", " ").replace("}", " ").replace(",", " ").split()
        if len(words) >= 4 and words[:3] == ["set", "skip", "on"]:
            out += words[3:]
    return tuple(out)


def parse_tables(names_text: str) -> list[str]:
    """Table names from `pfctl -s Tables` (one per line, `-v` flags in front are skipped)."""
    out = []
    for line in names_text.splitlines():
        words = line.split()
        if words:
            out.append(words[-1])
    return out


def parse_table_entries(text: str) -> tuple[str, ...]:
    """Addresses from `pfctl -t NAME -T show` ("   10.0.0.0/8", "  !192.0.2.1")."""
    out = []
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith(("Cleared", "No ALTQ")):
            continue
        out.append(s.replace("! ", "!"))
    return tuple(out)


def _take_addr(words: list[str], i: int) -> tuple[tuple[str, ...], bool, int]:
    """An address after from/to: ('any' -> ()), negation, and the next index."""
    neg = False
    if i < len(words) and words[i] == "!":
        neg, i = True, i + 1
    elif i < len(words) and words[i].startswith("!") and len(words[i]) > 1:
        neg, words[i] = True, words[i][1:]
    if i >= len(words):
        return (), neg, i
    if words[i] == "{":
        j = words.index("}", i) if "}" in words[i:] else len(words)
        items = tuple(w.strip(",") for w in words[i + 1:j] if w.strip(","))
        return items, neg, j + 1
    w = words[i]
    i += 1
    if w == "any":
        return (), neg, i
    return (w,), neg, i


def _take_port(words: list[str], i: int) -> tuple[str, int]:
    """The port condition after `port`: "= 8080" -> "8080", "8000:8100", "!= 22", "8000 >< 8100"."""
    if i >= len(words):
        return "", i
    w = words[i]
    if w in ("=", "!=", "<", "<=", ">", ">="):
        val = words[i + 1] if i + 1 < len(words) else ""
        return (val if w == "=" else w + val), i + 2
    if i + 2 < len(words) and words[i + 1] in ("><", "<>"):
        return f"{w}{words[i + 1]}{words[i + 2]}", i + 3
    return w, i + 1


def parse_rule(line: str, number: int, default_block: str = "drop") -> FilterRule:
    """One rule line of `pfctl -sr` (without its @N)."""
    text = line.strip()
    words = text.replace("{", " { ").replace("}", " } ").split()
    action = words[0] if words else ""
    if action not in _ACTIONS or action == "match":
        return FilterRule(number, text, "none")
    i = 1
    block = ""
    if action == "block":
        block = default_block
        word = words[i].split("(")[0] if i < len(words) else ""
        if word in ("drop", "return", "return-rst", "return-icmp", "return-icmp6"):
            block = "return-icmp" if word == "return-icmp6" else word
            # pfctl prints options glued on: return-rst(ttl 100), return-icmp(port-unr)
            if "(" in words[i] and not words[i].endswith(")"):
                while i < len(words) and not words[i].endswith(")"):
                    i += 1
            i += 1
            if i < len(words) and words[i].startswith("("):  # return-rst (ttl 10), return-icmp (code)
                while i < len(words) and not words[i].endswith(")"):
                    i += 1
                i += 1
    direction = ""
    quick = False
    iface, iface_neg = "", False
    family = 0
    protos: tuple[str, ...] = ()
    src: tuple[str, ...] = ()
    dst: tuple[str, ...] = ()
    src_neg = dst_neg = False
    dport = ""
    unsupported: list[str] = []
    while i < len(words):
        w = words[i]
        if w in ("in", "out"):
            direction, i = w, i + 1
        elif w == "log":
            i += 1
            if i < len(words) and words[i].startswith("("):
                while i < len(words) and not words[i].endswith(")"):
                    i += 1
                i += 1
        elif w == "quick":
            quick, i = True, i + 1
        elif w == "on":
            i += 1
            if i < len(words) and words[i] == "!":
                iface_neg, i = True, i + 1
            iface = words[i] if i < len(words) else ""
            i += 1
        elif w in ("inet", "inet6"):
            family, i = (4 if w == "inet" else 6), i + 1
        elif w == "proto":
            i += 1
            if i < len(words) and words[i] == "{":
                j = words.index("}", i) if "}" in words[i:] else len(words)
                protos, i = tuple(x.strip(",") for x in words[i + 1:j]), j + 1
            else:
                protos, i = (words[i],) if i < len(words) else (), i + 1
        elif w == "all":
            i += 1
        elif w == "from":
            src, src_neg, i = _take_addr(words, i + 1)
            if i < len(words) and words[i] == "port":
                _sport, i = _take_port(words, i + 1)  # the client's port: any ephemeral port
                unsupported.append("a source port condition")
        elif w == "to":
            dst, dst_neg, i = _take_addr(words, i + 1)
            if i < len(words) and words[i] == "port":
                dport, i = _take_port(words, i + 1)
        elif w in _NOT_MODELLED:
            unsupported.append(" ".join(words[i:i + 2]))
            i += 2
        else:
            i += 1  # flags S/SA, keep state, label "...", queue ..., rtable ...: no effect on the verdict
    return FilterRule(number, text, action, block, quick, direction, iface, iface_neg, family, protos, src,
                      src_neg, dst, dst_neg, dport, "; ".join(unsupported))


def parse_rules(text: str, default_block: str = "drop") -> list[FilterRule]:
    """Every rule of `pfctl -vvsr` output (also `-sr` or `-vsr`: rules are then numbered 0, 1, ...)."""
    rules: list[FilterRule] = []
    n = 0
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            continue
        s = line.strip()
        if s.startswith("["):
            m = _COUNTERS.search(s)
            if m and rules and rules[-1].packets is None:
                rules[-1] = replace(rules[-1], packets=int(m.group(1)))
            continue
        if s.startswith(("No ALTQ", "ALTQ", "pfctl:")):
            continue
        if s.startswith("@"):
            num, _, rest = s[1:].partition(" ")
            number = int(num) if num.isdigit() else n
            s = rest.strip()
        else:
            number = n
        n = number + 1
        rules.append(parse_rule(s, number, default_block))
    return rules


def enabled(info_text: str) -> bool | None:
    """pf's state from `pfctl -s info` ("Status: Enabled for ..."), None when not said."""
    for line in info_text.splitlines():
        if line.strip().startswith("Status:"):
            return "Enabled" in line
    return None
