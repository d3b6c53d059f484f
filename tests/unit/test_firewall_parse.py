"""Parsers on real iptables-save -c, ip6tables-save -c, nft -j / nft -a and ipset save outputs
captured from namespaces (tests/data/firewall/capture.py re-captures them)."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

from portdoctor.collectors.firewall import build_ruleset
from portdoctor.firewall.iptables import parse_ipset_save, parse_iptables_save, parse_rule, split_hostport
from portdoctor.firewall.model import Ruleset, counters_of, ruleset_from_plain, ruleset_to_plain
from portdoctor.firewall.nftables import parse_nft_json, rule_texts

DATA = Path(__file__).resolve().parents[1] / "data" / "firewall"


def read(name: str) -> str:
    return (DATA / name).read_text()


def rules_of(tables, table: str, chain: str, family: str = "ip"):
    for t in tables:
        if t.name == table and t.family == family:
            return t.chain(chain).rules
    raise KeyError(table)


def test_docker_iptables_save() -> None:
    tables = parse_iptables_save(read("docker.iptables-save"), "ip")
    assert {t.name for t in tables} == {"nat", "filter"}
    nat = [t for t in tables if t.name == "nat"][0]
    pre = nat.chain("PREROUTING")
    assert pre.hook == "prerouting" and pre.priority == -100 and pre.type == "nat"
    assert pre.rules[0].action.kind == "jump" and pre.rules[0].action.arg == "DOCKER"
    assert pre.rules[0].matches[0].kind == "addrtype" and pre.rules[0].matches[0].values == ("local",)
    dnat = nat.chain("DOCKER").rules[1]
    assert (dnat.action.kind, dnat.action.addr, dnat.action.port) == ("dnat", "172.17.0.2", "80")
    iif = [m for m in dnat.matches if m.kind == "iif"][0]
    assert iif.neg and iif.values == ("docker0",)
    assert dnat.text.startswith("iptables -t nat -A DOCKER ! -i docker0")
    filt = [t for t in tables if t.name == "filter"][0]
    assert filt.chain("FORWARD").policy == "DROP"
    assert filt.chain("DOCKER-USER").hook is None
    # counters are parsed: every rule carries them with -c
    assert all(r.packets is not None for c in filt.chains for r in c.rules)


def test_kube_proxy_rules() -> None:
    tables = parse_iptables_save(read("kube.iptables-save"), "ip")
    ext = rules_of(tables, "filter", "KUBE-EXTERNAL-SERVICES")[0]
    assert ext.comment == "default/web:http has no endpoints"
    assert ext.action.kind == "reject" and ext.action.arg == "icmp-port-unreachable"
    svc = rules_of(tables, "nat", "KUBE-SVC-API")
    assert svc[0].matches[-1].kind == "random" and svc[0].matches[-1].values == (0.5,)
    fwd = rules_of(tables, "filter", "KUBE-FORWARD")[1]
    assert [m for m in fwd.matches if m.kind == "mark"][0].values == (0x4000, 0x4000)
    masq = rules_of(tables, "nat", "KUBE-MARK-MASQ")[0]
    assert (masq.action.kind, masq.action.arg, masq.action.addr, masq.action.port) == ("mark", "xset", "16384", "16384")


def test_ufw_chains_and_quoted_comment() -> None:
    tables = parse_iptables_save(read("ufw.iptables-save"), "ip")
    user = rules_of(tables, "filter", "ufw-user-input")
    assert user[2].comment == "'dapp_WWW%20Full'"
    assert user[1].action.arg == "tcp-reset"
    assert [r.action.arg for r in rules_of(tables, "filter", "INPUT")] == [
        "ufw-before-input", "ufw-after-input", "ufw-reject-input"]


def test_features_matches() -> None:
    rules = rules_of(parse_iptables_save(read("features.iptables-save"), "ip"), "filter", "INPUT")
    by_port = {}
    for r in rules:
        for m in r.matches:
            if m.kind == "dport":
                by_port.setdefault(m.values, r)
    web = by_port[("80", "443", "9000-9010")]
    assert web.comment == 'web "ports"' and web.action.kind == "accept"
    ssh = by_port[("22",)]
    assert ssh.matches[0].kind == "saddr" and ssh.matches[0].neg
    recent = by_port[("7000",)]
    assert [(m.set, m.values, m.text) for m in recent.matches if m.kind == "recent"] == [
        ("ssh", ("mode=rcheck", "seconds=60", "name=ssh", "mask=255.255.255.255", "rsource"),
         "-m recent --rcheck --seconds 60 --name ssh --mask 255.255.255.255 --rsource")]
    assert [m for m in rules[7].matches if m.kind == "saddr"][0].values == ("10.0.0.1-10.0.0.9",)
    s = [m for m in by_port[("7004",)].matches if m.kind == "set"][0]
    assert s.set == "pairs" and s.fields == ("saddr", "daddr", "daddr")
    flags = [m for m in by_port[("7005",)].matches if m.kind == "tcpflags"][0]
    assert flags.field == "syn,rst,ack" and flags.values == ("syn",)
    assert by_port[("7006",)].action.kind == "queue"
    goto = by_port[("7007",)]
    assert goto.action.kind == "goto" and goto.action.arg == "CUST"
    assert rules[2].packets == 1 and rules[2].bytes == 60


def test_ip6tables_reject_types() -> None:
    tables = parse_iptables_save(read("features.ip6tables-save"), "ip6")
    rules = tables[0].chain("INPUT").rules
    assert tables[0].family == "ip6"
    assert [r.action.arg for r in rules] == ["icmp6-port-unreachable", "icmp6-adm-prohibited", "tcp-reset"]
    assert rules[0].text.startswith("ip6tables -A INPUT -s fd00::1/128")


def test_legacy_variant_detected() -> None:
    rs, _ = build_ruleset([(read("legacy.iptables-save"), "ip", "iptables")])
    assert {t.source for t in rs.tables} == {"iptables-legacy"}
    rs, _ = build_ruleset([(read("features.iptables-save"), "ip", "iptables")])
    assert {t.source for t in rs.tables} == {"iptables"}


def test_ipset_save() -> None:
    sets = {s.name: s for s in parse_ipset_save(read("features.ipset"))}
    assert sets["allowed"].fields == ("addr",) and sets["allowed"].elements == ("10.0.0.0/29", "192.168.7.7")
    assert sets["pairs"].fields == ("addr", "port", "addr")
    assert sets["pairs"].elements == (["10.0.0.1", "7004", "10.0.0.2"],)


def test_nft_json_native_table() -> None:
    texts = rule_texts(read("features.nft.txt"))
    tables = parse_nft_json(read("features.nft.json"), texts, skip={("ip", "filter"), ("ip6", "filter")})
    assert [(t.family, t.name) for t in tables] == [("inet", "pdf")]
    t = tables[0]
    assert {s.name for s in t.sets} == {"allowed", "ports", "pairs", "svc"}
    svc = [s for s in t.sets if s.name == "svc"][0]
    assert svc.elements == (9000, 9001) and [v.kind for v in svc.verdicts] == ["jump", "drop"]
    inp = t.chain("input")
    assert inp.hook == "input" and inp.policy == "ACCEPT" and inp.priority == 0
    r = inp.rules[3]
    assert r.text == "ip saddr . tcp dport @pairs counter reject with icmp port-unreachable"
    assert r.handle is not None and r.packets == 0
    assert r.action.kind == "reject" and r.action.arg == "icmp-port-unreachable"
    x = t.chain("x").rules[0]
    assert x.comment == "hello" and x.action.arg == "tcp-reset"
    pre = t.chain("pre")
    assert pre.type == "nat" and pre.priority == -100
    assert (pre.rules[0].action.addr, pre.rules[0].action.port) == ("10.0.0.3", "80")
    assert pre.rules[2].action.kind == "vmap" and pre.rules[2].action.fields == ("random",)
    assert pre.rules[4].action.kind == "vmap" and pre.rules[4].action.entries[1].action.addr == "10.0.0.5"


def test_nft_json_iptables_nft_tables_are_not_read_twice() -> None:
    rs, limits = build_ruleset([(read("features.iptables-save"), "ip", "iptables"),
                                (read("features.ip6tables-save"), "ip6", "iptables")],
                               read("features.nft.json"), read("features.nft.txt"), read("features.ipset"))
    assert not limits
    assert sorted((t.source, t.family, t.name) for t in rs.tables) == [
        ("iptables", "ip", "filter"), ("iptables", "ip6", "filter"), ("nft", "inet", "pdf")]
    # the same tables, read from nft alone, show iptables-nft's xt matches as unsupported
    alone = parse_nft_json(read("features.nft.json"))
    ipf = [t for t in alone if (t.family, t.name) == ("ip", "filter")][0]
    assert any(m.kind == "unsupported" and "xt match" in m.text for r in ipf.chain("INPUT").rules for m in r.matches)


def test_firewalld_nft() -> None:
    tables = parse_nft_json(read("firewalld.nft.json"), rule_texts(read("firewalld.nft.txt")))
    fw = tables[0]
    assert fw.name == "firewalld"
    inp = fw.chain("filter_INPUT")
    assert inp.priority == 10
    assert inp.rules[-1].action.arg == "icmpx-admin-prohibited"
    assert inp.rules[1].matches[0].kind == "ctstate" and inp.rules[1].matches[0].values == ("dnat",)
    zones = fw.chain("filter_INPUT_ZONES").rules
    assert zones[0].matches[0].values == ("veth*",) and zones[0].action.kind == "goto"


def test_round_trip_through_json() -> None:
    rs, _ = build_ruleset([(read("kube.iptables-save"), "ip", "iptables")], read("features.nft.json"),
                          read("features.nft.txt"), read("features.ipset"))
    again = ruleset_from_plain(json.loads(json.dumps(ruleset_to_plain(rs))))
    assert again == rs


def test_large_generated_ruleset() -> None:
    with gzip.open(DATA / "large.iptables-save.gz", "rt") as f:
        text = f.read()
    start = time.perf_counter()
    rs = Ruleset(tuple(parse_iptables_save(text, "ip")))
    seconds = time.perf_counter() - start
    n = sum(len(c.rules) for t in rs.tables for c in t.chains)
    assert n == 10001
    assert len(counters_of(rs)) == n
    assert seconds < 5, seconds


def test_small_helpers() -> None:
    assert split_hostport("[fd00::3]:80") == ("fd00::3", "80")
    assert split_hostport("10.0.0.3") == ("10.0.0.3", "")
    assert split_hostport("10.0.0.3:80-90") == ("10.0.0.3", "80-90")
    chain, matches, action, _ = parse_rule("-A INPUT -p tcp -m foo --bar 1 ! --baz -s 10.0.0.1 -j DROP")
    assert chain == "INPUT" and action.kind == "drop"
    assert [m.kind for m in matches] == ["proto", "unsupported", "saddr"]
    assert matches[1].text == "-m foo --bar 1 ! --baz"


def test_fast_counter_sampling_matches_full_parse() -> None:
    from portdoctor.collectors.firewall import iptables_counters, nft_counters

    saves = [(read("features.iptables-save"), "ip", "iptables"), (read("features.ip6tables-save"), "ip6", "iptables")]
    rs, _ = build_ruleset(saves, read("features.nft.json"), read("features.nft.txt"))
    owned: set[tuple[str, str]] = set()
    fast: dict[str, int] = {}
    for text, fam, src in saves:
        fast.update(iptables_counters(text, fam, src, owned))
    fast.update(nft_counters(read("features.nft.json"), owned))
    assert fast == counters_of(rs)
    with gzip.open(DATA / "large.iptables-save.gz", "rt") as f:
        text = f.read()
    assert iptables_counters(text, "ip", "iptables") == counters_of(Ruleset(tuple(parse_iptables_save(text, "ip"))))


def test_routes_and_local_addresses_from_ip_json() -> None:
    from portdoctor.collectors.firewall import _routes

    host: dict = {"local_addresses": {}, "routes": []}
    _routes(read("routes4.json"), host)
    _routes(read("routes6.json"), host, v6=True)
    assert host["local_addresses"]["10.0.0.2"] == "veth1"
    assert host["local_addresses"]["fd00::2"] == "veth1"
    assert ["0.0.0.0/0", "veth1", "unicast"] in host["routes"]
    assert ["10.0.0.0/24", "veth1", "unicast"] in host["routes"]
    assert ["fd00::/64", "veth1", "unicast"] in host["routes"]
    assert ["127.0.0.0/8", "lo", "local"] in host["routes"]


def test_native_nft_tables_named_like_iptables_are_read_from_nft() -> None:
    """`table ip filter` / `table ip nat` written with nft (the nftables wiki's names):
    iptables-nft-save prints them as empty *filter / *nat under an "incompatible" note."""
    from portdoctor.collectors.firewall import incompatible_tables, iptables_counters, nft_counters

    v4, v6 = read("nftnames.iptables-save"), read("nftnames.ip6tables-save")
    assert incompatible_tables(v4) == {"filter": "partial", "mangle": "partial", "nat": "partial"}
    assert incompatible_tables(v6) == {"filter": "whole"}
    rs, limits = build_ruleset([(v4, "ip", "iptables"), (v6, "ip6", "iptables")],
                               read("nftnames.nft.json"), read("nftnames.nft.txt"))
    assert not limits
    assert sorted((t.source, t.family, t.name, c.name) for t in rs.tables for c in t.chains) == [
        ("iptables", "ip", "mangle", "OUTPUT"), ("nft", "ip", "filter", "input"), ("nft", "ip", "mangle", "INPUT"),
        ("nft", "ip", "nat", "output"), ("nft", "ip", "nat", "prerouting"), ("nft", "ip6", "filter", "INPUT")]
    # iptables-save printed an empty INPUT in place of the one it cannot show; nft's has the rule
    assert [t for t in rs.tables if t.source == "nft" and t.name == "mangle"][0].chain("INPUT").rules
    ipf = [t for t in rs.tables if (t.family, t.name) == ("ip", "filter")][0]
    assert [c.name for c in ipf.chains] == ["input"] and {s.name for s in ipf.sets} == {"blocked_ports"}
    nat = [t for t in rs.tables if (t.family, t.name) == ("ip", "nat")][0]
    assert nat.chain("prerouting").rules[0].action.addr == "10.0.1.2"
    # without nft, what iptables-save cannot show is said, not silently dropped
    rs, limits = build_ruleset([(v4, "ip", "iptables")])
    assert [(t.name, c.name) for t in rs.tables for c in t.chains if c.rules] == [("mangle", "OUTPUT")]
    assert limits and "filter, mangle, nat" in limits[0].what, limits
    owned: set[tuple[str, ...]] = set()
    fast = iptables_counters(v4, "ip", "iptables", owned)
    fast.update(iptables_counters(v6, "ip6", "iptables", owned))
    fast.update(nft_counters(read("nftnames.nft.json"), owned))
    rs, _ = build_ruleset([(v4, "ip", "iptables"), (v6, "ip6", "iptables")],
                          read("nftnames.nft.json"), read("nftnames.nft.txt"))
    assert fast == counters_of(rs)
    assert fast["nft/ip/mangle/INPUT/h3"] == 1 and fast["iptables/ip/mangle/OUTPUT/1"] == 0


def test_table_with_iptables_rules_and_a_native_chain_is_read_once() -> None:
    """iptables-nft rules plus a base chain added with nft to the same `table ip filter`: the
    chains iptables-save shows come from it, the chain it cannot show from nft, none twice."""
    saves = [(read("mixed.iptables-save"), "ip", "iptables")]
    rs, limits = build_ruleset(saves, read("mixed.nft.json"), read("mixed.nft.txt"))
    assert not limits
    got = sorted((t.source, t.family, t.name, c.name) for t in rs.tables for c in t.chains)
    # chains iptables-save printed rules for are its; the empty ones it prints anyway come from nft
    # (they may stand for a chain it cannot show), with the chain it did not print
    assert got == [("iptables", "ip", "filter", "APP"), ("iptables", "ip", "filter", "INPUT"),
                   ("iptables", "ip", "nat", "INPUT"), ("iptables", "ip", "nat", "OUTPUT"),
                   ("iptables", "ip", "nat", "POSTROUTING"), ("iptables", "ip", "nat", "PREROUTING"),
                   ("nft", "ip", "filter", "FORWARD"), ("nft", "ip", "filter", "OUTPUT"),
                   ("nft", "ip", "filter", "extra")]
    assert rs.tables[0].chain("INPUT").rules[0].comment == "ssh"  # iptables' view keeps the xt details
    from portdoctor.collectors.firewall import iptables_counters, nft_counters

    owned: set[tuple[str, ...]] = set()
    fast = iptables_counters(saves[0][0], "ip", "iptables", owned)
    fast.update(nft_counters(read("mixed.nft.json"), owned))
    assert fast == counters_of(rs)
    assert fast["nft/ip/filter/extra/h9"] == 1


# --------------------------------------------------------------------------- what cannot be read
# Each crash class a mutation fuzzer found (tests/unit/test_parsers_fuzz.py), as a fixed example:
# the element that cannot be read is recorded and everything else is kept.

_SMALL_SAVE = """*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 8080 -j DROP
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.3:8080
COMMIT
"""


def _eval_port(tables, port: int) -> set[str]:
    from portdoctor.firewall.evaluate import Evaluator, Flow, HostInfo

    ev = Evaluator(Ruleset(tuple(tables)), HostInfo({"10.0.0.2": "eth0"}, [("10.0.0.0/8", "eth0", "unicast")]))
    return ev.evaluate(Flow(dst="10.0.0.2", dport=port, src="10.0.0.1", iif="eth0", not_lo=True)).verdicts


def test_iptables_chain_line_without_a_name_is_noted_and_the_table_kept() -> None:
    tables = parse_iptables_save(_SMALL_SAVE.replace(":INPUT ACCEPT [0:0]", ":INPUT ACCEPT [0:0]\n:"), "ip")
    filt = tables[0]
    assert [r.position for r in filt.chain("INPUT").rules] == [1, 2]
    assert filt.problems == ("could not read line 3: : (a chain without a name)",)
    assert tables[1].chain("PREROUTING").rules[0].action.kind == "dnat"


def test_iptables_lines_outside_a_table_are_noted_on_the_next_table() -> None:
    text = ":INPUT ACCEPT [0:0]\n-A INPUT -j DROP\n" + _SMALL_SAVE.split("\n", 1)[1].replace(
        "COMMIT\n*nat", "COMMIT\n-A PREROUTING -j DROP\n*nat", 1)
    tables = parse_iptables_save(text, "ip")
    # the filter header is gone: its lines are noted, not read into some other table
    assert [t.name for t in tables] == ["nat"]
    assert tables[0].problems[0] == ("could not read line 1: :INPUT ACCEPT [0:0] "
                                     "(outside a table: no *table line before it)")
    assert len(tables[0].problems) == 6  # the lost filter table's 5 lines and the one after its COMMIT
    assert tables[0].chain("PREROUTING").rules[0].action.kind == "dnat"


def test_iptables_rule_that_cannot_be_read_keeps_its_position_and_stays_undecided() -> None:
    bad = "-A INPUT -m statistic --mode nth --every 1" + "0" * 400 + " -j ACCEPT"  # OverflowError
    text = _SMALL_SAVE.replace("-A INPUT -p tcp -m tcp --dport 22", bad + "\n-A INPUT -p tcp -m tcp --dport 22")
    rules = parse_iptables_save(text, "ip")[0].chain("INPUT").rules
    assert [r.position for r in rules] == [1, 2, 3]
    assert rules[0].action.kind == "unsupported" and rules[0].matches[0].kind == "unsupported"
    assert rules[0].action.text.startswith("could not read rule 1: iptables -A INPUT -m statistic")
    assert "OverflowError" in rules[0].action.text
    assert rules[2].action.kind == "drop"
    # the walk does not guess: either the unreadable rule matched (unknown) or the DROP decides
    assert _eval_port([parse_iptables_save(text, "ip")[0]], 8080) == {"unknown", "drop"}


def test_iptables_table_cut_short_keeps_the_rules_read() -> None:
    cut = _SMALL_SAVE[:_SMALL_SAVE.index("-A INPUT -p tcp -m tcp --dport 8080")]
    tables = parse_iptables_save(cut, "ip")
    assert [len(t.chain("INPUT").rules) for t in tables] == [1]
    assert tables[0].problems == ("no COMMIT at the end: the output may be cut short",)
    no_commit = _SMALL_SAVE.replace("COMMIT\n*nat", "*nat", 1)
    tables = parse_iptables_save(no_commit, "ip")
    assert [t.name for t in tables] == ["filter", "nat"]
    assert tables[0].problems == ("no COMMIT before line 5 (*nat): the table may be cut short",)
    assert len(tables[0].chain("INPUT").rules) == 2


def test_iptables_stray_line_inside_a_table_is_noted() -> None:
    tables = parse_iptables_save(_SMALL_SAVE.replace("COMMIT", "-X\nCOMMIT", 1), "ip")
    assert tables[0].problems == ("could not read line 5: -X (neither a chain nor a rule)",)
    assert len(tables[0].chain("INPUT").rules) == 2


def _nft_doc() -> dict:
    return json.loads(read("features.nft.json"))


def _nft_items(doc: dict, kind: str, **where: str) -> list[dict]:
    return [it[kind] for it in doc["nftables"] if kind in it and all(it[kind].get(k) == v for k, v in where.items())]


def _nft_count(tables) -> tuple[int, int, int]:
    return (len(tables), sum(len(c.rules) for t in tables for c in t.chains),
            sum(len(s.elements) for t in tables for s in t.sets))


def test_nft_rule_with_a_string_where_an_object_belongs_is_kept_unreadable() -> None:
    before = parse_nft_json(_nft_doc())
    doc = _nft_doc()
    rule = _nft_items(doc, "rule", family="ip", chain="INPUT")[1]
    rule["expr"][-1] = {"jump": "CUST"}  # nft writes {"jump": {"target": "CUST"}}
    tables = parse_nft_json(doc)
    assert _nft_count(tables) == _nft_count(before)
    got = tables[0].chain("INPUT").rules[1]
    assert got.position == 2 and got.handle == rule["handle"] and got.action.kind == "unsupported"
    assert got.action.text.startswith("could not read rule 2: ") and "TypeError" in got.action.text
    assert tables[0].chain("INPUT").rules[2] == before[0].chain("INPUT").rules[2]


def test_nft_rule_missing_keys_or_with_expr_of_the_wrong_type() -> None:
    before = parse_nft_json(_nft_doc())
    for damage in ({"del": "right"}, {"expr": "accept"}, {"expr": [5]}, {"target": ["x"]}):
        doc = _nft_doc()
        rule = _nft_items(doc, "rule", family="ip", chain="INPUT")[0]
        if "del" in damage:
            del rule["expr"][0]["match"]["right"]
        elif "target" in damage:
            rule["expr"].append({"goto": {"target": damage["target"]}})
        else:
            rule["expr"] = damage["expr"]
        tables = parse_nft_json(doc)
        assert _nft_count(tables) == _nft_count(before), damage
        first = tables[0].chain("INPUT").rules[0]
        assert first.action.kind == "unsupported" and "could not read rule 1" in first.action.text, damage
        assert tables[0].chain("INPUT").rules[1:] == before[0].chain("INPUT").rules[1:]


def test_nft_items_that_name_no_table_or_are_not_objects() -> None:
    before = parse_nft_json(_nft_doc())
    doc = _nft_doc()
    doc["nftables"].insert(3, "chain")
    doc["nftables"].insert(4, {"rule": {"family": "ip", "chain": "INPUT", "expr": []}})
    tables = parse_nft_json(doc)
    assert _nft_count(tables) == _nft_count(before)
    assert tables[0].problems == ('could not read item 4: "chain" (not an object)',
                                  'could not read item 5 (rule): {"family":"ip","chain":"INPUT","expr":[]} '
                                  "(no table named)")


def test_nft_table_item_lost_keeps_its_chains_and_rules() -> None:
    before = parse_nft_json(_nft_doc())
    doc = _nft_doc()
    del _nft_items(doc, "table", family="ip6")[0]["name"]
    tables = parse_nft_json(doc)
    assert _nft_count(tables) == _nft_count(before)
    ip6 = [t for t in tables if t.family == "ip6"][0]
    assert ip6.handle is None and ip6.problems[0].startswith("no table item for table ip6 filter")
    assert ip6.chains == [t for t in before if t.family == "ip6"][0].chains
    assert any("could not read item" in p and "(table)" in p for p in tables[0].problems)


def test_nft_chain_attributes_of_the_wrong_type() -> None:
    doc = _nft_doc()
    chain = _nft_items(doc, "chain", family="ip", name="INPUT")[0]
    chain["prio"], chain["policy"] = ["filter"], 0
    del _nft_items(doc, "chain", family="ip", name="FORWARD")[0]["name"]
    tables = parse_nft_json(doc)
    inp = tables[0].chain("INPUT")
    assert inp.hook == "input" and inp.priority == 0 and inp.policy == "ACCEPT" and len(inp.rules) == 16
    assert tables[0].chain("FORWARD") is None and tables[0].chain("OUTPUT") is not None
    assert tables[0].problems == ("could not read the policy of chain INPUT: 0",
                                  'could not read the priority of chain INPUT: ["filter"] (taken as 0)',
                                  'could not read chain item 4: {"family":"ip","table":"filter","handle":2,'
                                  '"type":"filter","hook":"forward","prio":0,"policy":"accept"} (no name)')


def test_nft_set_elements_and_sets_that_cannot_be_read() -> None:
    before = {s.name: s for s in [t for t in parse_nft_json(_nft_doc()) if t.name == "pdf"][0].sets}
    doc = _nft_doc()
    _nft_items(doc, "set", name="allowed")[0]["elem"].insert(1, {"prefix": "10.0.0.0/8"})
    _nft_items(doc, "map", name="svc")[0]["elem"].insert(0, [9002])
    del _nft_items(doc, "set", name="ports")[0]["name"]
    pdf = [t for t in parse_nft_json(doc) if t.name == "pdf"][0]
    sets = {s.name: s for s in pdf.sets}
    assert sets["allowed"] == before["allowed"] and sets["svc"] == before["svc"]
    assert "ports" not in sets and sets["pairs"] == before["pairs"]
    assert len(pdf.problems) == 3
    assert pdf.problems[0] == 'could not read element 2 of set allowed: {"prefix":"10.0.0.0/8"} (TypeError: ' \
                              "string indices must be integers, not 'str')"
    assert pdf.problems[1].startswith("could not read set item ") and "(no key 'name')" in pdf.problems[1]
    assert pdf.problems[2].startswith("could not read element 1 of set svc: [9002] (ValueError")


def test_problems_survive_the_snapshot_round_trip() -> None:
    from portdoctor.firewall.model import problems_of

    tables = parse_iptables_save(_SMALL_SAVE.replace("COMMIT\n*nat", "*nat", 1), "ip")
    rs = Ruleset(tuple(tables))
    back = ruleset_from_plain(json.loads(json.dumps(ruleset_to_plain(rs))))
    assert back == rs
    assert problems_of(back) == ["iptables ip filter: no COMMIT before line 5 (*nat): the table may be cut short"]
    # a table without problems writes no key for them: recorded snapshots read the same
    assert "problems" not in ruleset_to_plain(rs)["tables"][1]


def test_what_a_parser_could_not_read_becomes_a_limitation() -> None:
    from portdoctor.collectors.firewall import build_ruleset, nft_counters

    save = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\n"  # no COMMIT: cut off
    rs, limits = build_ruleset([(save, "ip", "iptables")])
    assert rs.tables and any("not fully read" in x.what for x in limits), limits
    # nft counters of odd items are skipped, not a crash
    assert nft_counters('{"nftables": [{"rule": {"family": 4}}, "x", {"rule": {"family": "ip", "table": "t", '
                        '"chain": "c", "handle": 3, "expr": [{"counter": {"packets": "7"}}]}}]}', set()) == {}
