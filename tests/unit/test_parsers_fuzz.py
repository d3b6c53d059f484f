"""Mutation fuzzing of every parser of outside text, on the real captured inputs in tests/data/.

Each test takes a recorded input (iptables-save, nft -j, ipset save, nginx -T, haproxy.cfg,
Caddyfile, Caddy JSON, /proc tables, server config files, a Redis reply), damages it the way
odd or cut-short output does (lines deleted, duplicated, cut, tokens swapped or replaced; JSON
keys dropped, values of the wrong type, objects cut short) and runs the parser on it. Nothing
may escape but portdoctor's own errors, and where one element is damaged the others must still
be read: the parsers keep what they can read and note what they could not.

The examples are derandomized, so a normal run is repeatable; for a deeper, random search run
    PORTDOCTOR_FUZZ=5000 python -m pytest -q -p no:cacheprovider tests/unit/test_parsers_fuzz.py
"""

from __future__ import annotations

import copy
import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portdoctor.collectors import configs, procfs, redisinfo
from portdoctor.errors import PortdoctorError
from portdoctor.firewall.evaluate import Evaluator, Flow, HostInfo
from portdoctor.firewall.iptables import parse_ipset_save, parse_iptables_save
from portdoctor.firewall.model import Ruleset, problems_of, ruleset_from_plain, ruleset_to_plain
from portdoctor.firewall.nftables import chain_devices, iptables_nft_tables, parse_nft_json, rule_texts
from portdoctor.proxyconf import ProxyConfig, caddy, haproxy, nginx

DATA = Path(__file__).resolve().parents[1] / "data"
_DEEP = os.environ.get("PORTDOCTOR_FUZZ")
FUZZ = settings(max_examples=int(_DEEP) if _DEEP else 120, derandomize=not _DEEP, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _texts(*patterns: str) -> list[str]:
    found = sorted(p for pat in patterns for p in DATA.glob(pat) if p.is_file())
    assert found, patterns
    return [p.read_text(encoding="utf-8", errors="replace") for p in found]


IPTABLES = _texts("firewall/*.iptables-save", "firewall/*.ip6tables-save", "firewall/*.rules")
IPSETS = _texts("firewall/ipset.save", "firewall/features.ipset")
NFT_JSON = [json.loads(t) for t in _texts("firewall/*.nft.json")]
NFT_TEXT = _texts("firewall/*.nft.txt")
NGINX = _texts("proxy/nginx-T-*.txt")
HAPROXY = _texts("proxy/haproxy-*.cfg", "configs/haproxy/haproxy.cfg")
CADDYFILES = _texts("proxy/Caddyfile-*")
CADDY_JSON = json.loads((DATA / "proxy" / "caddy-app.json").read_text())
PROC_TCP = _texts("proc/lab1/net/tcp", "proc/lab1/net/tcp6")
SNMP = _texts("proc/lab1/net/netstat", "proc/lab1/net/snmp")
LIMITS = _texts("proc/lab1/15178/limits", "proc/lab1/15185/limits")
CGROUPS = _texts("proc/cgroup/*", "proc/lab1/15178/cgroup")
ENVIRON = [(DATA / "proc/lab1" / pid / "environ").read_bytes().decode("latin-1") for pid in ("15178", "15185")]
RESP = (DATA / "redis-info-server.resp").read_bytes().decode("latin-1")
CONFIGS: dict[str, tuple[Callable[[str], Any], list[str]]] = {
    "postgresql": (configs.parse_postgresql, _texts("configs/postgresql/*.conf")),
    "redis": (configs.parse_redis, _texts("configs/redis/*.conf")),
    "mysql": (configs.parse_mysql, _texts("configs/mysql/**/*.cnf")),
    "yaml": (configs.parse_yaml_keys, _texts("configs/mongodb/*.conf")),
    "directives": (configs.parse_directives, _texts("configs/nginx/**/*", "configs/haproxy/*.cfg")),
    # no captured file of these syntaxes: every captured config must not trip them either
    "properties": (configs.parse_properties, _texts("configs/**/*.c*f", "configs/**/*.conf")),
    "xml": (configs.parse_xml_tags, _texts("configs/**/*.c*f", "configs/nginx/**/*")),
}

# tokens that odd output puts where another belongs: structure of the formats, numbers that do
# not fit, quotes left open, bytes that are not text
JUNK = ["", "!", "-A", "-m", "-j", "--dport", "--every", ":", "*", "*filter", "COMMIT", "[", "]", "[1:2]",
        "{", "}", ";", '"', "'", "`", "\\", "#", "=", "/", ",", "@", "%[src]", "$host", "unix:", "::", "[::1]",
        ":::80", "0x", "-1", "1" + "0" * 400, "1:2:3", "65536", "tcp:", "a,b,c", "\x00", "\ufffd", "é", "-", "--",
        "create", "add", "server", "listen", "bind", "}}", "{{"]
# for tests that mutate one element and check the others: no token that changes the structure
SAFE_JUNK = [j for j in JUNK if not any(c in j for c in "{}*;#\"'`\\") and j not in ("COMMIT", "")]
WRONG = [None, "", "x", "@set", 0, -1, 1.5, True, [], [1], ["a", "b"], {}, {"x": 1}, [[]], {"set": "x"},
         {"range": 5}, {"prefix": "10.0.0.0/8"}, {"concat": 3}, {"jump": "x"}, {"match": []}, "9" * 30]


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args); portdoctor's own errors are allowed (None), anything else fails the test."""
    try:
        return fn(*args)
    except PortdoctorError:
        return None


# --------------------------------------------------------------------------- text mutations


# characters str.splitlines() breaks at: a damaged line stays one line (lines are deleted,
# duplicated and moved by their own operations)
_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_WORD = st.text(st.characters(blacklist_characters=_BREAKS), max_size=6)


def _bytes(text: str) -> bytes:
    """Damaged text back to bytes (the byte inputs were read as latin-1)."""
    return text.encode("latin-1", "replace")


def _mutate_line(draw: st.DrawFn, line: str, junk: list[str], keep_first: bool = False) -> str:
    """One line, damaged by one operation (keep_first: the first word stays in place)."""
    words = line.split(" ")
    lo = 1 if keep_first and len(words) > 1 else 0
    op = draw(st.sampled_from(["cut", "swap", "replace", "drop", "insert"]))
    if op == "cut":
        return line[:draw(st.integers(1 if keep_first else 0, max(len(line), 1)))]
    if len(words) <= lo:
        return line + " " + draw(st.sampled_from(junk))
    i = draw(st.integers(lo, len(words) - 1))
    if op == "swap":
        j = draw(st.integers(lo, len(words) - 1))
        words[i], words[j] = words[j], words[i]
    elif op == "replace":
        words[i] = draw(st.sampled_from(junk) | _WORD)
    elif op == "drop":
        del words[i]
    else:
        words.insert(i, draw(st.sampled_from(junk)))
    return " ".join(words)


@st.composite
def damaged_text(draw: st.DrawFn, corpus: list[str], sep: str = "\n") -> str:
    """A captured text with 1-4 of: a line deleted, duplicated, moved or damaged; the text cut."""
    lines = draw(st.sampled_from(corpus)).split(sep)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            lines = [""]
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "move", "line", "line", "line", "cut"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "move":
            lines.insert(draw(st.integers(0, len(lines))), lines.pop(i))
        elif op == "line":
            lines[i] = _mutate_line(draw, lines[i], JUNK)
        else:
            lines = lines[:i + 1]
    return sep.join(lines)


@st.composite
def one_line_damaged(draw: st.DrawFn, text: str, wanted: Callable[[str], bool], junk: list[str] = SAFE_JUNK,
                     keep_first: bool = True) -> tuple[int, str]:
    """(index, text) with one line that `wanted` picks damaged in place, the others as they were."""
    lines = text.split("\n")
    candidates = [i for i, ln in enumerate(lines) if wanted(ln)]
    assert candidates
    i = draw(st.sampled_from(candidates))
    lines[i] = _mutate_line(draw, lines[i], junk, keep_first)
    return i, "\n".join(lines)


# --------------------------------------------------------------------------- JSON mutations


def _paths(obj: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at] if at else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(_paths(v, at + (k,)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(_paths(v, at + (i,)))
    return out


def _damage_at(draw: st.DrawFn, doc: Any, path: tuple[Any, ...]) -> None:
    """Damage doc at path in place: drop it, give it a value of the wrong type, cut it short, or
    write it as a string."""
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    value = parent[key]
    ops = ["drop", "wrong", "wrong", "string"] + (["cut"] if isinstance(value, (dict, list)) and value else [])
    op = draw(st.sampled_from(ops))
    if op == "drop":
        del parent[key]
    elif op == "wrong":
        parent[key] = copy.deepcopy(draw(st.sampled_from(WRONG)))
    elif op == "string":
        parent[key] = json.dumps(value) if not isinstance(value, str) else value[: len(value) // 2]
    elif isinstance(value, list):
        del value[draw(st.integers(0, len(value) - 1)):]
    else:
        for k in list(value)[draw(st.integers(0, len(value) - 1)):]:
            del value[k]


@st.composite
def damaged_json(draw: st.DrawFn, corpus: list[Any], under: tuple[Any, ...] = ()) -> Any:
    """A captured JSON document with 1-3 values below `under` dropped, retyped or cut short."""
    doc = copy.deepcopy(draw(st.sampled_from(corpus)))
    for _ in range(draw(st.integers(1, 3))):
        root = doc
        for k in under:
            root = root[k]
        paths = _paths(root)
        if not paths:
            break
        _damage_at(draw, doc, under + draw(st.sampled_from(paths)))
    return doc


# --------------------------------------------------------------------------- firewall


def _rule_keys(tables) -> Counter:
    return Counter((t.family, t.name, c.name, r.text, r.matches) for t in tables for c in t.chains for r in c.rules)


def _nrules(tables) -> int:
    return sum(len(c.rules) for t in tables for c in t.chains)


def _still_usable(tables) -> None:
    """What a parser returned goes through the snapshot and the evaluator like any ruleset."""
    rs = Ruleset(tuple(tables))
    back = ruleset_from_plain(json.loads(json.dumps(ruleset_to_plain(rs))))
    assert back == rs
    assert all(isinstance(p, str) for p in problems_of(rs))
    ev = Evaluator(back, HostInfo({"10.0.0.2": "eth0"}, [("10.0.0.0/8", "eth0", "unicast")]))
    for flow in (Flow(dst="10.0.0.2", dport=8080, src="10.0.0.1", iif="eth0", not_lo=True),
                 Flow(dst="10.0.0.2", dport=22, src=None, iif="eth0", not_lo=True)):
        assert ev.evaluate(flow).outcomes


def _is_rule_line(line: str) -> bool:
    return line.lstrip().startswith(("-A ", "[")) and " -A " in f" {line} "


@FUZZ
@given(damaged_text(IPTABLES), st.sampled_from(["ip", "ip6"]))
def test_iptables_save_damaged_anywhere(text: str, family: str) -> None:
    tables = _call(parse_iptables_save, text, family)
    if tables is not None:
        _still_usable(tables)


@FUZZ
@given(st.data(), st.sampled_from([t for t in IPTABLES if any(_is_rule_line(ln) for ln in t.split("\n"))]))
def test_iptables_one_rule_damaged_keeps_the_others(data: st.DataObject, original: str) -> None:
    before = parse_iptables_save(original, "ip")
    text = data.draw(one_line_damaged(original, _is_rule_line))[1]
    after = _call(parse_iptables_save, text, "ip")
    assert after is not None
    # at most the damaged rule is not as it was; nothing else is lost, and the damaged one is
    # kept (as read, or as "could not read rule N") or noted
    assert sum((_rule_keys(before) - _rule_keys(after)).values()) <= 1
    assert [t.name for t in after] == [t.name for t in before]
    noted = len(problems_of(Ruleset(tuple(after)))) - len(problems_of(Ruleset(tuple(before))))
    assert _nrules(after) + noted >= _nrules(before)


@FUZZ
@given(damaged_text(IPSETS))
def test_ipset_save_damaged_anywhere(text: str) -> None:
    sets = _call(parse_ipset_save, text)
    assert sets is None or all(len(s.elements) >= 0 for s in sets)


@FUZZ
@given(st.data(), st.sampled_from(IPSETS))
def test_ipset_one_element_damaged_keeps_the_others(data: st.DataObject, original: str) -> None:
    before = {s.name: s for s in parse_ipset_save(original)}
    i, text = data.draw(one_line_damaged(original, lambda ln: ln.startswith("add "), keep_first=True))
    name = original.split("\n")[i].split()[1]
    after = {s.name: s for s in parse_ipset_save(text)}
    assert after.keys() == before.keys()
    for n, s in before.items():
        if n != name:
            assert after[n] == s
    assert len(after[name].elements) >= len(before[name].elements) - 1


@FUZZ
@given(damaged_json(NFT_JSON))
def test_nft_json_damaged_anywhere(doc: Any) -> None:
    tables = _call(parse_nft_json, doc)
    if tables is not None:
        _still_usable(tables)
    _call(iptables_nft_tables, doc)


def _items(doc: dict, kind: str) -> list[int]:
    return [i for i, it in enumerate(doc["nftables"]) if kind in it]


def _by_handle(tables) -> dict[tuple[str, str, str, Any], Any]:
    from dataclasses import replace

    return {(t.family, t.name, c.name, r.handle): replace(r, position=0) for t in tables for c in t.chains
            for r in c.rules}


@FUZZ
@given(st.data(), st.sampled_from(NFT_JSON))
def test_nft_one_rule_damaged_keeps_the_others(data: st.DataObject, original: dict) -> None:
    before = parse_nft_json(original)
    i = data.draw(st.sampled_from(_items(original, "rule")))
    rule = original["nftables"][i]["rule"]
    doc = data.draw(damaged_json([original], ("nftables", i, "rule", "expr")))
    after = parse_nft_json(doc)
    assert _nrules(after) == _nrules(before)  # the damaged rule is kept, read or not
    b, a = _by_handle(before), _by_handle(after)
    damaged = (rule["family"], rule["table"], rule["chain"], rule["handle"])
    assert a.keys() == b.keys()
    assert {k: v for k, v in a.items() if k != damaged} == {k: v for k, v in b.items() if k != damaged}
    _still_usable(after)


@FUZZ
@given(st.data(), st.sampled_from([d for d in NFT_JSON if any("chain" in it for it in d["nftables"])]))
def test_nft_one_chain_or_table_damaged_keeps_the_rules(data: st.DataObject, original: dict) -> None:
    before = parse_nft_json(original)
    i = data.draw(st.sampled_from(_items(original, "chain") + _items(original, "table")))
    kind = "chain" if "chain" in original["nftables"][i] else "table"
    doc = data.draw(damaged_json([original], ("nftables", i, kind)))
    after = parse_nft_json(doc)
    o = original["nftables"][i][kind]
    family, table = o["family"], o.get("table", o["name"])
    # every rule of every other table is read as before; the damaged table's rules are all kept
    assert {k: v for k, v in _by_handle(after).items() if k[:2] != (family, table)} == \
        {k: v for k, v in _by_handle(before).items() if k[:2] != (family, table)}
    assert _nrules(after) == _nrules(before)


@FUZZ
@given(st.data(), st.sampled_from([d for d in NFT_JSON if any("set" in it or "map" in it for it in d["nftables"])]))
def test_nft_one_set_element_damaged_keeps_the_others(data: st.DataObject, original: dict) -> None:
    def sets(tables):
        return {(t.family, t.name, s.name): s for t in tables for s in t.sets}

    before = sets(parse_nft_json(original))
    choices = [(i, k) for k in ("set", "map") for i in _items(original, k) if original["nftables"][i][k].get("elem")]
    i, kind = data.draw(st.sampled_from(choices))
    o = original["nftables"][i][kind]
    e = data.draw(st.integers(0, len(o["elem"]) - 1))
    doc = copy.deepcopy(original)
    holder = doc["nftables"][i][kind]["elem"]
    if _paths(holder[e]) and data.draw(st.booleans()):
        _damage_at(data.draw, doc, ("nftables", i, kind, "elem", e) + data.draw(st.sampled_from(_paths(holder[e]))))
    else:
        holder[e] = copy.deepcopy(data.draw(st.sampled_from(WRONG)))
    after = sets(parse_nft_json(doc))
    key = (o["family"], o["table"], o["name"])
    assert {k: v for k, v in after.items() if k != key} == {k: v for k, v in before.items() if k != key}
    assert len(after[key].elements) >= len(before[key].elements) - 1


@FUZZ
@given(damaged_text(NFT_TEXT))
def test_nft_rule_texts_damaged(text: str) -> None:
    assert all(isinstance(v, str) for v in _call(rule_texts, text).values())
    _call(chain_devices, text)


# --------------------------------------------------------------------------- reverse proxies


def _proxy_ok(cfg: ProxyConfig | None) -> None:
    if cfg is None:
        return
    json.dumps(cfg.to_json())
    assert all(isinstance(p, str) for p in cfg.problems)
    for r in cfg.routes:
        assert all(isinstance(b.port, int) for b in r.binds)
        assert all(u.port is None or isinstance(u.port, int) for u in r.upstreams)


@FUZZ
@given(damaged_text(NGINX))
def test_nginx_dump_damaged_anywhere(text: str) -> None:
    _proxy_ok(_call(nginx.parse_dump, text))


def _server_blocks(cfg: ProxyConfig) -> set[tuple[str, int | None]]:
    return {(r.file, r.line) for r in cfg.routes}


def _simple_directive(line: str) -> bool:
    s = line.strip()  # includes are left alone: without them the included server blocks are gone, rightly
    return s.endswith(";") and not any(c in s for c in "{}#\"'") and " " in s and not s.startswith("include")


@st.composite
def _args_replaced(draw: st.DrawFn, text: str, wanted: Callable[[str], bool], end: str = "") -> str:
    """One line's arguments replaced with junk, its directive name (and its `end`) kept."""
    lines = text.split("\n")
    i = draw(st.sampled_from([i for i, ln in enumerate(lines) if wanted(ln)]))
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    name = lines[i].split()[0]
    args = draw(st.lists(st.sampled_from(SAFE_JUNK), max_size=3))
    lines[i] = indent + " ".join([name, *args]) + end
    return "\n".join(lines)


@FUZZ
@given(st.data(), st.sampled_from(NGINX))
def test_nginx_one_directive_damaged_keeps_the_server_blocks(data: st.DataObject, original: str) -> None:
    before = nginx.parse_dump(original)
    text = data.draw(_args_replaced(original, _simple_directive, ";"))
    after = nginx.parse_dump(text)
    assert _server_blocks(after) == _server_blocks(before)


@FUZZ
@given(damaged_text(HAPROXY))
def test_haproxy_cfg_damaged_anywhere(text: str) -> None:
    _proxy_ok(_call(haproxy.parse, text))


@FUZZ
@given(st.data(), st.sampled_from(HAPROXY))
def test_haproxy_one_line_damaged_keeps_the_other_routes(data: st.DataObject, original: str) -> None:
    before = haproxy.parse(original)

    def inner(line: str) -> bool:
        words = line.split()
        return line[:1].isspace() and len(words) > 1 and words[0] not in haproxy._SECTIONS and "#" not in line

    text = data.draw(_args_replaced(original, inner))
    after = haproxy.parse(text)
    assert [(r.name, r.line) for r in after.routes] == [(r.name, r.line) for r in before.routes]


@FUZZ
@given(damaged_text(CADDYFILES))
def test_caddyfile_damaged_anywhere(text: str) -> None:
    _proxy_ok(_call(caddy.parse_caddyfile, text))


@FUZZ
@given(st.data(), st.sampled_from(CADDYFILES))
def test_caddyfile_one_directive_damaged_keeps_the_sites(data: st.DataObject, original: str) -> None:
    before = caddy.parse_caddyfile(original)

    def inner(line: str) -> bool:
        s = line.strip()
        return line[:1].isspace() and " " in s and not any(c in s for c in "{}#\"`")

    after = caddy.parse_caddyfile(data.draw(_args_replaced(original, inner)))
    assert [(r.name, r.line) for r in after.routes] == [(r.name, r.line) for r in before.routes]


@FUZZ
@given(damaged_json([CADDY_JSON]))
def test_caddy_json_damaged_anywhere(doc: Any) -> None:
    _proxy_ok(_call(caddy.parse_json, doc))


@FUZZ
@given(st.data(), st.sampled_from(sorted(CADDY_JSON["apps"]["http"]["servers"])))
def test_caddy_json_one_server_damaged_keeps_the_others(data: st.DataObject, server: str) -> None:
    before = caddy.parse_json(CADDY_JSON)
    doc = data.draw(damaged_json([CADDY_JSON], ("apps", "http", "servers", server)))
    after = caddy.parse_json(doc)
    assert [r for r in after.routes if r.name != f"server {server}"] == \
        [r for r in before.routes if r.name != f"server {server}"]
    _proxy_ok(after)


# --------------------------------------------------------------------------- /proc, configs, Redis


@FUZZ
@given(damaged_text(PROC_TCP))
def test_proc_net_tcp_damaged_anywhere(text: str) -> None:
    problems: list[str] = []
    assert all(0 <= x.inode for x in _call(procfs.parse_proc_net_tcp, text, problems))


@FUZZ
@given(st.data(), st.sampled_from(PROC_TCP))
def test_proc_net_tcp_one_socket_damaged_keeps_the_others(data: st.DataObject, original: str) -> None:
    before = Counter(procfs.parse_proc_net_tcp(original))
    _, text = data.draw(one_line_damaged(original, lambda ln: " 0A " in ln, JUNK, keep_first=False))
    problems: list[str] = []
    after = Counter(procfs.parse_proc_net_tcp(text, problems))
    assert sum((before - after).values()) <= 1
    assert sum(after.values()) + len(problems) >= sum(before.values()) - 1


@FUZZ
@given(damaged_text(SNMP), damaged_text(LIMITS), damaged_text(CGROUPS), damaged_text(ENVIRON))
def test_proc_tables_damaged_anywhere(snmp: str, limits: str, cgroup: str, environ: str) -> None:
    assert all(isinstance(v, int) for v in _call(procfs.parse_snmp_table, snmp).values())
    _call(procfs.parse_snmp_table, snmp, ["TcpExt"])
    _call(procfs.parse_limits, limits)
    _call(procfs.parse_cgroup, cgroup)
    _call(procfs.parse_environ, _bytes(environ))


@pytest.mark.parametrize("syntax", sorted(CONFIGS))
@FUZZ
@given(data=st.data())
def test_config_files_damaged_anywhere(syntax: str, data: st.DataObject) -> None:
    parse, corpus = CONFIGS[syntax]
    settings_ = _call(lambda t: list(parse(t)), data.draw(damaged_text(corpus)))
    assert settings_ is None or all(isinstance(s.key, str) and isinstance(s.value, str) for s in settings_)


@pytest.mark.parametrize("syntax", ["postgresql", "redis", "directives", "properties"])
@FUZZ
@given(data=st.data())
def test_config_one_line_damaged_keeps_the_other_settings(syntax: str, data: st.DataObject) -> None:
    parse, corpus = CONFIGS[syntax]
    original = data.draw(st.sampled_from([t for t in corpus if list(parse(t))]))
    lines_with_settings = {s.line for s in parse(original)}
    i, text = data.draw(one_line_damaged(original, lambda ln: True, JUNK, keep_first=False))
    before = [s for s in parse(original) if s.line != i + 1]
    assert [s for s in parse(text) if s.line != i + 1] == before
    assert lines_with_settings  # the corpus has something to keep


@FUZZ
@given(damaged_text([RESP], "\r\n"))
def test_redis_reply_damaged_anywhere(wire: str) -> None:
    replies = _call(redisinfo.parse_replies, _bytes(wire), 2)
    if replies is not None:
        assert len(replies) == 2
        redisinfo.facts_from_replies(*replies)


@FUZZ
@given(st.data())
def test_redis_second_reply_damaged_keeps_the_first(data: st.DataObject) -> None:
    wire = RESP.encode("latin-1")
    first, end = redisinfo._read_reply(wire, 0)
    second = data.draw(damaged_text([wire[end:].decode("latin-1")], "\r\n"))
    replies = redisinfo.parse_replies(wire[:end] + _bytes(second), 2)
    assert replies is None or replies[0] == first
    if replies is not None:
        assert redisinfo.facts_from_replies(*replies).config_file.endswith("/redis.conf")


# --------------------------------------------------------------------------- fixed examples
# Crash classes of the collectors' parsers, kept as plain tests so they fail without luck.


def test_proc_net_tcp_line_that_cannot_be_read_is_noted_and_the_others_kept() -> None:
    original = PROC_TCP[0]
    lines = original.split("\n")
    i = next(i for i, ln in enumerate(lines) if " 0A " in ln)
    for bad in ("ZZ00007F", "0100007", "0100007F00"):  # not hex, odd length, not a whole word
        lines_bad = lines.copy()
        lines_bad[i] = lines[i].replace(lines[i].split()[1].split(":")[0], bad, 1)
        problems: list[str] = []
        got = procfs.parse_proc_net_tcp("\n".join(lines_bad), problems)
        assert len(got) == len(procfs.parse_proc_net_tcp(original)) - 1
        assert len(problems) == 1 and problems[0].startswith(f"could not read socket line {i + 1}: ")
    assert procfs.parse_proc_net_tcp("\n".join(lines_bad))  # without a list: left out quietly


def test_redis_reply_that_is_not_resp_keeps_the_one_before() -> None:
    wire = RESP.encode("latin-1")
    _, end = redisinfo._read_reply(wire, 0)
    for bad in (b"?what\r\n", b"$abc\r\n", b"*x\r\n"):
        replies = redisinfo.parse_replies(wire[:end] + bad, 2)
        assert isinstance(replies[1], Exception) and str(replies[1]).startswith("could not read reply 2: ")
        assert redisinfo.facts_from_replies(*replies).config_file.endswith("/redis.conf")
    replies = redisinfo.parse_replies(b"*1\r\n" * 5000, 2)  # nested deeper than Python recurses
    assert [str(r)[:22] for r in replies] == ["could not read reply 1", "could not read reply 2"]


def test_nginx_directive_without_its_semicolon_before_a_closing_brace() -> None:
    text = ("# configuration file /etc/nginx/nginx.conf:\nhttp {\n"
            "  server { listen 8080; location / { proxy_pass http://127.0.0.1:9000 } }\n"
            "  server { listen 8081; proxy_pass http://127.0.0.1:9001; }\n}\n")
    cfg = nginx.parse_dump(text)
    assert [(r.binds[0].port, r.upstreams[0].port) for r in cfg.routes] == [(8080, 9000), (8081, 9001)]
