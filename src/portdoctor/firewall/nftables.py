"""Parse `nft -j list ruleset` (JSON) into the ruleset model, with rule text from `nft -a list ruleset`.

Tables that iptables-nft manages (its rules use `xt` compat expressions) are skipped when the
caller says iptables-save already reported them: the same rules must not be walked twice. A
native table with one of iptables' names (`table ip filter`) is not skipped: iptables-save notes
that it cannot show it, and the caller skips only what iptables-save did show.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from portdoctor.errors import BadInput
from portdoctor.firewall.iptables import CONTINUE_TARGETS
from portdoctor.firewall.model import Action, Chain, Match, NamedSet, Rule, Table, VmapEntry, unreadable_rule

_FAMILY = {"ipv4": "ip", "ipv6": "ip6", "ip": "ip", "ip6": "ip6"}
_SET_FIELD = {"ipv4_addr": "addr", "ipv6_addr": "addr", "inet_service": "port", "ifname": "iface",
              "inet_proto": "proto", "mark": "mark", "ether_addr": "mac"}
_ADDR_FIELDS = {"saddr", "daddr"}
_L4 = {"tcp", "udp", "sctp", "dccp", "udplite"}
_PRIO_NAMES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}


class _Unsupported(Exception):
    """An expression the evaluator has no model for."""


# what a JSON element of an unexpected shape raises while it is read (a key missing, a string
# where an object belongs, a list of the wrong length)
_READ_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError)


def _why(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"no key {exc}"
    return f"{type(exc).__name__}: {exc}"


def _short(obj: Any, limit: int = 300) -> str:
    text = json.dumps(obj, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit] + "..."


def _value(v: Any) -> Any:
    """A JSON right-hand value as a model value: '10.0.0.0/8', '5000-5010', 22, 'lo', [concat]."""
    if isinstance(v, dict):
        if "prefix" in v:
            return f"{v['prefix']['addr']}/{v['prefix']['len']}"
        if "range" in v:
            lo, hi = v["range"]
            return f"{_value(lo)}-{_value(hi)}"
        if "concat" in v:
            return [_value(x) for x in v["concat"]]
        if "elem" in v:
            return _value(v["elem"]["val"])
        raise _Unsupported(json.dumps(v))
    if isinstance(v, (int, str)):
        return v
    raise _Unsupported(json.dumps(v))


def _values(right: Any) -> tuple[Any, ...]:
    if isinstance(right, dict) and "set" in right:
        return tuple(_value(x) for x in right["set"])
    if isinstance(right, list):
        return tuple(_value(x) for x in right)
    return (_value(right),)


def _field_of(left: dict[str, Any], implied: list[Match]) -> str:
    """The model field a left-hand expression reads (saddr, dport, iif, ...), noting dependencies."""
    if "payload" in left:
        p = left["payload"]
        proto, fld = p.get("protocol", ""), p.get("field", "")
        if proto in ("ip", "ip6") and fld in _ADDR_FIELDS:
            implied.append(Match("family", (proto,)))
            return fld
        if proto in ("ip", "ip6") and fld in ("protocol", "nexthdr"):
            implied.append(Match("family", (proto,)))
            return "proto"
        if (proto in _L4 or proto == "th") and fld in ("sport", "dport"):
            if proto != "th":
                implied.append(Match("proto", (proto,)))
            return fld
        raise _Unsupported(f"{proto} {fld}")
    if "meta" in left:
        key = left["meta"].get("key")
        return {"iifname": "iif", "oifname": "oif", "iif": "iif", "oif": "oif", "l4proto": "proto",
                "protocol": "etherproto", "nfproto": "family", "pkttype": "pkttype"}.get(key) or _raise(f"meta {key}")
    if "ct" in left:
        key = left["ct"].get("key")
        if key in ("state", "status"):
            return "ctstate"
        raise _Unsupported(f"ct {key}")
    if "fib" in left:
        f = left["fib"]
        if f.get("result") == "type" and f.get("flags") in (["daddr"], ["saddr"]):
            return "addrtype:" + ("dst" if f["flags"] == ["daddr"] else "src")
        raise _Unsupported(f"fib {f}")
    raise _Unsupported(json.dumps(left))


def _raise(text: str) -> str:
    raise _Unsupported(text)


def _match(m: dict[str, Any]) -> list[Match]:
    """Translate one {"match": ...} expression."""
    op = m.get("op", "==")
    left, right = m["left"], m["right"]
    neg = op == "!="
    implied: list[Match] = []
    if isinstance(left, dict) and "&" in left and left["&"][0] == {"meta": {"key": "mark"}} \
            and isinstance(left["&"][1], int) and isinstance(right, int) and op in ("==", "!="):
        return [Match("mark", (right, left["&"][1]), neg)]
    if left == {"meta": {"key": "mark"}} and isinstance(right, int) and op in ("==", "!="):
        return [Match("mark", (right, 0xFFFFFFFF), neg)]
    if isinstance(left, dict) and "numgen" in left and left["numgen"].get("mode") in ("random", "inc") \
            and op in ("==", "!=", "in"):
        mod = int(left["numgen"].get("mod") or 1)
        share = len(_values(right)) if not isinstance(right, dict) or "range" not in right else \
            right["range"][1] - right["range"][0] + 1
        p = min(1.0, share / mod)
        return [Match("random", (1.0 - p if neg else p,))]
    if isinstance(left, dict) and left.get("meta", {}).get("key") in ("skuid", "skgid") and op in ("==", "!="):
        key = "uid" if left["meta"]["key"] == "skuid" else "gid"
        v = right["range"] if isinstance(right, dict) and "range" in right else [right, right]
        spec = f"{v[0]}" if v[0] == v[1] else f"{v[0]}-{v[1]}"
        return [Match("owner", (f"{key}={spec}",), neg, text=f"meta sk{key} {'!= ' if neg else ''}{spec}")]
    if isinstance(left, dict) and "&" in left:  # tcp flags & (syn | ack) == syn
        inner, mask = left["&"]
        if inner.get("payload", {}).get("field") == "flags":
            mask_v = ",".join(mask) if isinstance(mask, list) else str(mask)
            comp = ",".join(right) if isinstance(right, list) else str(right)
            return [Match("proto", ("tcp",)), Match("tcpflags", (comp,), neg, field=mask_v)]
        raise _Unsupported(json.dumps(m))
    if isinstance(left, dict) and "payload" in left and left["payload"].get("field") == "flags" \
            and left["payload"].get("protocol") == "tcp":
        if op == "==" or op == "!=":
            comp = ",".join(right) if isinstance(right, list) else str(right)
            return [Match("proto", ("tcp",)), Match("tcpflags", (comp,), neg, field="all")]
        raise _Unsupported(json.dumps(m))
    if isinstance(left, dict) and "concat" in left:
        fields = tuple(_field_of(x, implied) for x in left["concat"])
        if isinstance(right, str) and right.startswith("@"):
            return implied + [Match("set", (), neg, set=right[1:], fields=fields)]
        return implied + [Match("set", _values(right), neg, fields=fields)]
    fld = _field_of(left, implied)
    if isinstance(right, str) and right.startswith("@"):
        return implied + [Match("set", (), neg, set=right[1:], fields=(fld,))]
    vals = _values(right)
    if op in ("<", ">", "<=", ">=") and fld in ("sport", "dport") and isinstance(vals[0], int):
        n = vals[0]
        lo, hi = {"<": (0, n - 1), "<=": (0, n), ">": (n + 1, 65535), ">=": (n, 65535)}[op]
        return implied + [Match(fld, (f"{lo}-{hi}",))]
    if op not in ("==", "!=", "in"):
        raise _Unsupported(json.dumps(m))
    if fld == "family":
        vals = tuple(_FAMILY.get(str(v), str(v)) for v in vals)
    if fld == "ctstate":
        vals = tuple(str(v).lower() for v in vals)
    if fld.startswith("addrtype:"):
        return implied + [Match("addrtype", tuple(str(v) for v in vals), neg, field=fld.split(":")[1])]
    if fld == "etherproto":
        return implied + [Match("family", tuple(_FAMILY.get(str(v), str(v)) for v in vals), neg)]
    return implied + [Match(fld, tuple(str(v) if fld not in ("proto",) else str(v) for v in vals), neg)]


def _reject(r: Any) -> str:
    """The reject type as iptables names it: tcp-reset, icmp-host-prohibited, icmpx-admin-prohibited, ..."""
    if not r:
        return ""
    t = r.get("type", "")
    if t == "tcp reset":
        return "tcp-reset"
    expr = r.get("expr", "port-unreachable")
    prefix = {"icmp": "icmp", "icmpv6": "icmp6", "icmpx": "icmpx"}.get(t, t)
    return f"{prefix}-{expr}"


def _verdict(v: dict[str, Any]) -> Action | None:
    for k in ("accept", "drop", "return"):
        if k in v:
            return Action(k)
    for k in ("jump", "goto"):
        if k in v:
            target = v[k]["target"]
            if not isinstance(target, str):
                raise TypeError(f"{k} target {_short(target)} is not a chain name")
            return Action(k, arg=target)
    if "reject" in v:
        return Action("reject", arg=_reject(v["reject"]))
    return None


def _key_fields(key: Any) -> tuple[str, ...]:
    if isinstance(key, dict) and "numgen" in key:
        return ("random",)
    if isinstance(key, dict) and "jhash" in key:
        return ("random",)
    implied: list[Match] = []
    if isinstance(key, dict) and "concat" in key:
        return tuple(_field_of(x, implied) for x in key["concat"])
    return (_field_of(key, implied),)


def _port_of(p: Any) -> str:
    if p is None:
        return ""
    if isinstance(p, dict) and "range" in p:
        return f"{p['range'][0]}-{p['range'][1]}"
    if isinstance(p, (int, str)):
        return str(p)
    raise _Unsupported(json.dumps(p))


def _dnat(d: dict[str, Any]) -> Action:
    addr = d.get("addr", "")
    port = _port_of(d.get("port"))
    if isinstance(addr, dict) and "map" in addr:
        mp = addr["map"]
        fields = _key_fields(mp["key"])
        data = mp["data"]
        if isinstance(data, str) and data.startswith("@"):
            return Action("vmap", fields=fields, set=data[1:], arg="dnat", port=port)
        entries = []
        for k, val in data["set"]:
            if isinstance(val, dict) and "concat" in val:
                a, p = val["concat"]
                entries.append(VmapEntry(_value(k), Action("dnat", addr=str(a), port=str(p))))
            else:
                entries.append(VmapEntry(_value(k), Action("dnat", addr=str(_value(val)), port=port)))
        return Action("vmap", fields=fields, entries=tuple(entries))
    if isinstance(addr, dict):
        raise _Unsupported(json.dumps(d))
    return Action("dnat", addr=str(addr), port=port)


def _rule(obj: dict[str, Any], text: str) -> Rule:
    matches: list[Match] = []
    action = Action("continue")
    packets = byts = None
    for e in obj.get("expr", []):
        try:
            if "match" in e:
                matches.extend(_match(e["match"]))
                continue
            if "counter" in e:
                c = e["counter"] or {}
                if isinstance(c, dict):
                    packets, byts = c.get("packets"), c.get("bytes")
                continue
            v = _verdict(e)
            if v is not None:
                action = v
                continue
            if "vmap" in e:
                vm = e["vmap"]
                fields = _key_fields(vm["key"])
                data = vm["data"]
                if isinstance(data, str) and data.startswith("@"):
                    action = Action("vmap", fields=fields, set=data[1:])
                else:
                    entries = tuple(VmapEntry(_value(k), _verdict(val) or Action("unsupported", text=json.dumps(val)))
                                    for k, val in data["set"])
                    action = Action("vmap", fields=fields, entries=entries)
                continue
            if "dnat" in e:
                action = _dnat(e["dnat"])
                continue
            if "redirect" in e:
                action = Action("redirect", port=_port_of((e["redirect"] or {}).get("port")))
                continue
            if "masquerade" in e:
                action = Action("masquerade")
                continue
            if "snat" in e:
                action = Action("snat", arg=str((e["snat"] or {}).get("addr", "")))
                continue
            if "queue" in e:
                action = Action("queue", text="queue")
                continue
            if "mangle" in e and e["mangle"].get("key") == {"meta": {"key": "mark"}}:
                val = e["mangle"].get("value")
                if isinstance(val, int):
                    action = Action("mark", arg="set", addr=str(val))
                    continue
                # meta mark set meta mark | 0x4000 (and &, ^)
                if isinstance(val, dict) and len(val) == 1:
                    (op, args), = val.items()
                    how = {"|": "or", "&": "and", "^": "xor"}.get(op)
                    if how and isinstance(args, list) and len(args) == 2 and args[0] == {"meta": {"key": "mark"}} \
                            and isinstance(args[1], int):
                        action = Action("mark", arg=how, addr=str(args[1]))
                        continue
                matches.append(Match("unsupported", text="meta mark set " + json.dumps(val)))
                continue
            if "xt" in e:
                xt = e["xt"]
                if xt.get("type") == "target":
                    name = str(xt.get("name"))
                    if name in CONTINUE_TARGETS or name == "MARK":
                        action = Action("continue", arg=name)  # no verdict: the walk goes on
                    elif name == "REJECT":  # nft does not show the compat target's reject type
                        action = Action("reject", text="xt target REJECT (type not shown by nft)")
                    else:
                        action = Action("unsupported", text=f"xt target {name}")
                else:
                    matches.append(Match("unsupported", text=f"xt match {xt.get('name')}"))
                continue
            if "limit" in e or "ct count" in e:
                matches.append(_stateful(e, ""))
                continue
            if "set" in e and isinstance(e["set"], dict) and e["set"].get("stmt"):
                # a meter: add @m { ip saddr limit rate over ... } keeps one limit or count per key
                st = e["set"]
                fields = _key_fields(st.get("elem"))
                for x in st["stmt"]:
                    matches.append(_stateful(x, ",".join(fields), str(st.get("set", "")).lstrip("@")))
                continue
            if any(k in e for k in ("log", "mangle", "notrack", "set", "counter", "quota", "dup", "synproxy",
                                    "ct helper", "ct timeout", "ct expectation", "tproxy", "flow", "meter")):
                if "quota" in e or "meter" in e:
                    matches.append(Match("unsupported", text=json.dumps(e)))
                continue
            matches.append(Match("unsupported", text=json.dumps(e)))
        except _Unsupported as exc:
            matches.append(Match("unsupported", text=str(exc)))
    comment = obj.get("comment", "") or ""
    return Rule(position=0, text=text, matches=tuple(matches), action=action, handle=_int_or_none(obj.get("handle")),
                packets=_int_or_none(packets), bytes=_int_or_none(byts),
                comment=comment if isinstance(comment, str) else json.dumps(comment))


def _stateful(e: dict[str, Any], per: str, meter: str = "") -> Match:
    """nft `limit rate [over] N/unit burst B packets` and `ct count [over] N` (alone, or per key
    of a meter `add @m { ip saddr ... }`) as the model's limit / hashlimit / connlimit match."""
    text = json.dumps(e)
    if "limit" in e and isinstance(e["limit"], dict):
        lim = e["limit"]
        if lim.get("rate_unit", "packets") != "packets":
            return Match("unsupported", text="limit " + text)
        vals = [f"rate={lim.get('rate')}/{lim.get('per', 'second')}", f"burst={lim.get('burst', 5)}"]
        if lim.get("inv"):
            vals.append("over=1")
        over = "over " if lim.get("inv") else ""
        words = f"limit rate {over}{lim.get('rate')}/{lim.get('per', 'second')} burst {lim.get('burst', 5)} packets"
        if per:
            mode = ",".join({"saddr": "srcip", "daddr": "dstip", "dport": "dstport", "sport": "srcport"}.get(f, f)
                            for f in per.split(","))
            return Match("hashlimit", (*vals, f"mode={mode}", f"name={meter}"), set=meter,
                         text=f"add @{meter} {{ {per} {words} }}")
        return Match("limit", tuple(vals), text=words)
    if "ct count" in e and isinstance(e["ct count"], dict):
        c = e["ct count"]
        vals = (f"above={c.get('val')}",) if c.get("inv") else (f"upto={c.get('val')}",)
        if not per:
            vals += ("all",)  # no meter: one count for every connection that passed the rule
        elif per == "daddr":
            vals += ("daddr",)
        words = f"ct count {'over ' if c.get('inv') else ''}{c.get('val')}"
        return Match("connlimit", vals, text=f"add @{meter} {{ {per} {words} }}" if per else words)
    return Match("unsupported", text=text)


def _int_or_none(v: Any) -> int | None:
    """v when it is a number nft would print (an int, not a bool), else None."""
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _named_set(obj: dict[str, Any], is_map: bool, problems: list[str]) -> NamedSet:
    """One set or map; an element that cannot be read is left out and noted in `problems`."""
    name = obj["name"]
    if not isinstance(name, str):
        raise TypeError(f"name {json.dumps(name)} is not a string")
    t = obj.get("type", [])
    types = t if isinstance(t, list) else [t]
    fields = tuple(_SET_FIELD.get(x, x) if isinstance(x, str) else json.dumps(x) for x in types)
    elems: list[Any] = []
    verdicts: list[Action] = []
    data: list[Any] = []
    comments: list[str] = []
    found = obj.get("elem", []) or []
    if not isinstance(found, list):
        problems.append(f"could not read the elements of set {name}: {_short(found)} is not a list")
        found = []
    for i, el in enumerate(found, 1):
        try:
            verdict: Action | None = None
            value: Any = None
            if is_map:
                k, v = el
                key = _value(k)
                comment = str(k["elem"].get("comment", "")) if isinstance(k, dict) and "elem" in k else ""
                if obj.get("map") == "verdict":
                    verdict = _verdict(v) or Action("unsupported", text=json.dumps(v))
                else:
                    value = (_value(v) if not isinstance(v, dict) or "concat" not in v
                             else [_value(x) for x in v["concat"]])
            else:
                key = _value(el)
                comment = str(el["elem"].get("comment", "")) if isinstance(el, dict) and "elem" in el else ""
        except _Unsupported:
            continue
        except _READ_ERRORS as exc:
            problems.append(f"could not read element {i} of set {name}: {_short(el)} ({_why(exc)})")
            continue
        elems.append(key)
        comments.append(comment)
        if is_map and obj.get("map") == "verdict":
            verdicts.append(verdict)  # type: ignore[arg-type]
        elif is_map:
            data.append(value)
    return NamedSet(name=name, fields=fields, elements=tuple(elems), verdicts=tuple(verdicts),
                    data=tuple(data), kind="nft", comments=tuple(comments) if any(comments) else ())


_TABLE_RE = re.compile(r"^table\s+(\S+)\s+(\S+)\s*\{")
_CHAIN_RE = re.compile(r"^chain\s+(\S+)\s*\{")
_HANDLE_RE = re.compile(r"\s*# handle (\d+)\s*$")
_COUNTER_RE = re.compile(r"counter packets \d+ bytes \d+")


def rule_texts(text: str) -> dict[tuple[str, str, str, int], str]:
    """(family, table, chain, handle) -> rule text, from `nft -a list ruleset`."""
    out: dict[tuple[str, str, str, int], str] = {}
    family = table = chain = ""
    depth = 0
    for raw in text.splitlines():
        full = raw.strip()
        m = _HANDLE_RE.search(full)
        handle = int(m.group(1)) if m else None
        line = full[:m.start()].strip() if m else full
        if depth == 0:
            m = _TABLE_RE.match(line)
            if m:
                family, table = m.group(1), m.group(2)
                depth = 1
            continue
        if depth == 1:
            m = _CHAIN_RE.match(line)
            if m:
                chain = m.group(1).strip('"')
                depth = 2
            elif line.endswith("{"):
                depth = 3  # set, map, flowtable: skip to its closing brace
            elif line.startswith("}"):
                depth = 0
            continue
        if depth == 3:
            if line.startswith("}"):
                depth = 1
            continue
        if line.startswith("}"):
            depth = 1
            continue
        if handle is not None and not line.startswith("type "):
            out[(family, table, chain, handle)] = _COUNTER_RE.sub("counter", line)
    return out


_DEVICE_RE = re.compile(r'\bhook\s+ingress\s+device\s+"?([^";\s]+)"?')


def chain_devices(text: str) -> dict[tuple[str, str, str], str]:
    """(family, table, chain) -> device of netdev ingress chains, from `nft list ruleset` text
    (nft 1.0's JSON does not carry it)."""
    out: dict[tuple[str, str, str], str] = {}
    family = table = chain = ""
    for raw in text.splitlines():
        line = _HANDLE_RE.sub("", raw.strip())
        m = _TABLE_RE.match(line)
        if m:
            family, table = m.group(1), m.group(2)
            continue
        m = _CHAIN_RE.match(line)
        if m:
            chain = m.group(1).strip('"')
            continue
        m = _DEVICE_RE.search(line)
        if m and line.startswith("type "):
            out[(family, table, chain)] = m.group(1)
    return out


def _new_table(handle: Any = None) -> dict[str, Any]:
    return {"handle": _int_or_none(handle), "chains": {}, "order": [], "sets": [], "xt": False, "problems": []}


def _chain_attrs(o: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """hook, priority, type, policy, handle and device of a chain object, each checked."""
    name = o["name"]
    out: dict[str, Any] = {}
    for key, default in (("hook", None), ("type", "filter"), ("policy", None)):
        v = o.get(key, default)
        if v is not None and not isinstance(v, str):
            problems.append(f"could not read the {key} of chain {name}: {_short(v)}")
            v = default
        out[key] = v
    prio = o.get("prio", 0)
    if isinstance(prio, str):
        prio = _PRIO_NAMES.get(prio, 0)
    elif not isinstance(prio, int) or isinstance(prio, bool):
        problems.append(f"could not read the priority of chain {name}: {_short(prio)} (taken as 0)")
        prio = 0
    out["prio"] = prio
    out["handle"] = _int_or_none(o.get("handle"))
    dev = o.get("dev")  # None: not in the JSON (nft 1.0), so the text's device is used
    if isinstance(dev, list):
        dev = dev[0] if len(dev) == 1 else ""
    out["dev"] = (dev if isinstance(dev, str) else str(dev)) if dev else None
    return out


def parse_nft_json(doc: dict[str, Any] | str, texts: dict[tuple[str, str, str, int], str] | None = None,
                   skip: set[tuple[str, ...]] | None = None,
                   devices: dict[tuple[str, str, str], str] | None = None) -> list[Table]:
    """Parse `nft -j list ruleset`; skip the (family, table) pairs and the (family, table, chain)
    triples another parser owns. A table left without chains by the triples is left out; one
    that keeps some is returned with those only (the rest of it is iptables-nft's).

    What cannot be read is kept visible: a rule whose JSON has an unexpected shape stays in its
    chain as an `unreadable_rule`; a chain, set or set element that cannot be read is noted in
    its table's `problems`, and so is an item naming no readable table (on the first table).
    Chains and rules of a table whose own item is missing are kept in a table made for them.
    """
    if isinstance(doc, str):
        try:
            doc = json.loads(doc)
        except ValueError as exc:
            raise BadInput(f"nft -j printed invalid JSON ({exc})") from None
    texts = texts or {}
    skip = skip or set()
    items = doc.get("nftables", []) if isinstance(doc, dict) else []
    if not isinstance(items, list):
        items = []
    tables: dict[tuple[str, str], dict[str, Any]] = {}
    lost: list[str] = []  # problems of items that name no readable table
    for n, it in enumerate(items, 1):
        if not isinstance(it, dict) or "table" not in it:
            continue
        t = it["table"]
        if isinstance(t, dict) and isinstance(t.get("family"), str) and isinstance(t.get("name"), str):
            tables[(t["family"], t["name"])] = _new_table(t.get("handle"))
        else:
            lost.append(f"could not read item {n} (table): {_short(t)}")
    for n, it in enumerate(items, 1):
        if not isinstance(it, dict):
            lost.append(f"could not read item {n}: {_short(it)} (not an object)")
            continue
        for kind in ("chain", "rule", "set", "map"):
            if kind not in it:
                continue
            o = it[kind]
            if not isinstance(o, dict) or not isinstance(o.get("family"), str) \
                    or not isinstance(o.get("table"), str):
                lost.append(f"could not read item {n} ({kind}): {_short(o)} (no table named)")
                continue
            t = tables.get((o["family"], o["table"]))
            if t is None:  # its table item is missing or unreadable: keep what names it
                t = tables[(o["family"], o["table"])] = _new_table()
                t["problems"].append(f"no table item for table {o['family']} {o['table']} "
                                     f"(first named by item {n})")
            problems = t["problems"]
            if kind == "chain":
                if not isinstance(o.get("name"), str):
                    problems.append(f"could not read chain item {n}: {_short(o)} (no name)")
                    continue
                t["chains"][o["name"]] = {"obj": o, "rules": [], "attrs": _chain_attrs(o, problems)}
                t["order"].append(o["name"])
            elif kind == "rule":
                cname = o.get("chain")
                if not isinstance(cname, str):
                    problems.append(f"could not read rule item {n}: {_short(o)} (no chain named)")
                    continue
                ch = t["chains"].setdefault(cname, {"obj": {"name": cname}, "rules": [],
                                                    "attrs": _chain_attrs({"name": cname}, problems)})
                if cname not in t["order"]:
                    t["order"].append(cname)
                expr = o.get("expr", [])
                if isinstance(expr, list) and any(isinstance(e, dict) and "xt" in e for e in expr):
                    t["xt"] = True
                handle = _int_or_none(o.get("handle"))
                text = texts.get((o["family"], o["table"], cname, handle if handle is not None else -1), "")
                text = text or _fallback_text(o)
                pos = len(ch["rules"]) + 1
                try:
                    if not isinstance(expr, list):
                        raise TypeError(f"expr {_short(expr)} is not a list")
                    ch["rules"].append(_rule(o, text))
                except _READ_ERRORS as exc:
                    ch["rules"].append(unreadable_rule(pos, text, _why(exc), handle))
            else:
                try:
                    t["sets"].append(_named_set(o, kind == "map", problems))
                except _READ_ERRORS as exc:
                    problems.append(f"could not read {kind} item {n}: {_short(o)} ({_why(exc)})")
    out: list[Table] = []
    for (family, name), t in tables.items():
        if (family, name) in skip:
            continue
        chains = []
        some_skipped = False
        for cname in t["order"]:
            if (family, name, cname) in skip:
                some_skipped = True
                continue
            c = t["chains"][cname]
            a = c["attrs"]
            rules = tuple(_with_position(r, i + 1) for i, r in enumerate(c["rules"]))
            dev = a["dev"] if a["dev"] is not None else (devices or {}).get((family, name, cname), "")
            chains.append(Chain(name=cname, rules=rules, hook=a["hook"], priority=int(a["prio"]),
                                type=a["type"], policy=(a["policy"] or "accept").upper() if a["hook"] else None,
                                handle=a["handle"], device=str(dev)))
        if some_skipped and not chains:
            continue
        out.append(Table(source="nft", family=family, name=name, chains=tuple(chains), sets=tuple(t["sets"]),
                         handle=t["handle"], problems=tuple(t["problems"])))
    if lost and out:
        out[0] = replace(out[0], problems=out[0].problems + tuple(lost))
    return out


def _with_position(r: Rule, pos: int) -> Rule:
    return Rule(position=pos, text=r.text, matches=r.matches, action=r.action, handle=r.handle,
                packets=r.packets, bytes=r.bytes, comment=r.comment)


def _fallback_text(o: dict[str, Any]) -> str:
    return json.dumps(o.get("expr", []), separators=(",", ":"))


def iptables_nft_tables(doc: dict[str, Any] | str) -> set[tuple[str, str]]:
    """(family, table) pairs whose rules use xt compat expressions: iptables-nft owns them.

    Items that cannot be read are passed over (`parse_nft_json` notes them)."""
    if isinstance(doc, str):
        try:
            doc = json.loads(doc)
        except ValueError as exc:
            raise BadInput(f"nft -j printed invalid JSON ({exc})") from None
    owned: set[tuple[str, str]] = set()
    items = doc.get("nftables", []) if isinstance(doc, dict) else []
    for it in items if isinstance(items, list) else []:
        r = it.get("rule") if isinstance(it, dict) else None
        if not isinstance(r, dict) or not isinstance(r.get("family"), str) or not isinstance(r.get("table"), str):
            continue
        expr = r.get("expr", [])
        if isinstance(expr, list) and any(isinstance(e, dict) and "xt" in e for e in expr):
            owned.add((r["family"], r["table"]))
    return owned
