"""The evaluator on the recorded rulesets: which rule decides each flow, through jumps, gotos,
NAT, sets and verdict maps; "cannot tell" matches fork instead of guessing."""

from __future__ import annotations

from pathlib import Path

import pytest

from portdoctor.collectors.firewall import build_ruleset
from portdoctor.firewall.evaluate import Evaluator, Flow, HostInfo

DATA = Path(__file__).resolve().parents[1] / "data" / "firewall"
HOST = HostInfo(local_addresses={"10.0.0.2": "eth0", "fd00::2": "eth0", "172.17.0.1": "docker0"},
                routes=[("10.0.0.0/24", "eth0", "unicast"), ("172.17.0.0/16", "docker0", "unicast"),
                        ("10.0.1.0/24", "veth9", "unicast"), ("fd00::/64", "eth0", "unicast")],
                forwarding={4: True, 6: True})


def read(name: str) -> str:
    return (DATA / name).read_text()


def ev_of(*saves: tuple[str, str], nft: str | None = None, host: HostInfo = HOST) -> Evaluator:
    rs, _ = build_ruleset([(read(f), fam, "iptables") for f, fam in saves],
                          read(f"{nft}.nft.json") if nft else None, read(f"{nft}.nft.txt") if nft else "",
                          read("features.ipset"))
    return Evaluator(rs, host)


def remote(src: str | None, port: int, dst: str = "10.0.0.2", iif: str = "eth0") -> Flow:
    return Flow(dst=dst, dport=port, src=src, iif=iif, not_lo=True)


@pytest.fixture(scope="module")
def features() -> Evaluator:
    return ev_of(("features.iptables-save", "ip"), ("features.ip6tables-save", "ip6"))


def only(ev: Evaluator, flow: Flow):
    e = ev.evaluate(flow)
    assert len(e.outcomes) == 1, [(o.verdict, o.step and o.step.where, o.assumptions) for o in e.outcomes]
    return e.outcomes[0]


def test_reject_inside_jumped_chain_for_one_source(features: Evaluator) -> None:
    o = only(features, remote("10.0.0.1", 8080))
    assert (o.verdict, o.reject_with, o.step.chain, o.step.rule.position) == ("reject", "tcp-reset", "CUST", 1)
    assert [s.chain for s in o.path] == ["INPUT"] and o.path[0].rule.position == 4
    assert o.definite
    o = only(features, remote("10.0.0.3", 8080))
    assert o.verdict == "accept" and o.step.rule is None  # INPUT policy ACCEPT


def test_negated_source(features: Evaluator) -> None:
    assert only(features, remote("10.1.2.3", 22)).verdict == "accept"
    o = only(features, remote("10.2.0.1", 22))
    assert o.verdict == "drop" and o.step.rule.position == 5


def test_any_source_forks_on_source_dependent_rules(features: Evaluator) -> None:
    e = features.evaluate(remote(None, 8080))
    bad = [o for o in e.outcomes if o.verdict == "reject"]
    good = [o for o in e.outcomes if o.verdict == "accept"]
    assert bad and good
    assert bad[0].assumptions[0].reason == "source address" and bad[0].assumptions[0].matched


def test_iprange_and_host_prohibited(features: Evaluator) -> None:
    assert only(features, remote("10.0.0.5", 7001)).verdict == "accept"
    o = only(features, remote("10.0.0.20", 7001))
    assert (o.verdict, o.reject_with) == ("reject", "icmp-host-prohibited")


def test_unsupported_match_is_never_guessed(features: Evaluator) -> None:
    e = features.evaluate(remote("10.0.0.1", 7000))
    assert sorted(o.verdict for o in e.outcomes) == ["accept", "drop"]
    drop = [o for o in e.outcomes if o.verdict == "drop"][0]
    assert drop.assumptions[0].reason.startswith("could not evaluate: -m recent")


def test_random_match(features: Evaluator) -> None:
    e = features.evaluate(remote("10.0.0.1", 7002))
    assert sorted(o.verdict for o in e.outcomes) == ["accept", "drop"]
    assert "random choice" in e.outcomes[0].assumptions[0].reason


def test_ipset_matches(features: Evaluator) -> None:
    assert only(features, remote("10.0.0.3", 7003)).verdict == "accept"
    assert only(features, remote("10.0.0.9", 7003)).verdict == "drop"
    assert only(features, remote("10.0.0.1", 7004)).verdict == "reject"
    assert only(features, remote("10.0.0.3", 7004)).verdict == "accept"


def test_tcp_flags_queue_and_goto(features: Evaluator) -> None:
    o = only(features, remote("10.0.0.1", 7005))
    assert (o.verdict, o.reject_with) == ("reject", "icmp-admin-prohibited")
    assert only(features, remote("10.0.0.1", 7006)).verdict == "unknown"
    o = only(features, remote("10.0.0.1", 7007))
    assert o.step.chain == "CUST" and [s.rule.position for s in o.path] == [16]


def test_local_probe_goes_through_lo(features: Evaluator) -> None:
    o = only(features, Flow(dst="10.0.0.2", dport=1, src="10.0.0.2", local_src=True))
    assert o.verdict == "accept" and o.step.rule.position == 1 and o.flow.iif == "lo"
    # the source-restricted rule does not apply to this host's own connection
    assert only(features, Flow(dst="10.0.0.2", dport=8080, src="10.0.0.2", local_src=True)).verdict == "accept"


def test_ip6tables(features: Evaluator) -> None:
    o = only(features, remote("fd00::1", 8080, dst="fd00::2"))
    assert (o.verdict, o.reject_with, o.step.table.family) == ("reject", "icmp6-port-unreachable", "ip6")
    assert only(features, remote("fd00::5", 8080, dst="fd00::2")).verdict == "accept"


def test_docker_publish_dnat_and_forward() -> None:
    ev = ev_of(("docker.iptables-save", "ip"))
    o = only(ev, remote("10.0.0.1", 8080))
    assert o.verdict == "accept" and o.hook == "postrouting"
    assert (o.flow.dst, o.flow.dport, o.original.dport) == ("172.17.0.2", 80, 8080)
    assert o.nat.chain == "DOCKER" and o.step.chain == "DOCKER"  # accepted by the DOCKER filter rule
    o = only(ev, remote("10.0.0.66", 8080))
    assert o.verdict == "drop" and o.step.chain == "DOCKER-USER" and o.nat.chain == "DOCKER"
    # from this host: nat OUTPUT
    o = only(ev, Flow(dst="10.0.0.2", dport=8080, src="10.0.0.2", local_src=True))
    assert o.flow.dst == "172.17.0.2" and o.nat.chain == "DOCKER"
    # without forwarding the DNATed packet goes nowhere
    off = ev_of(("docker.iptables-save", "ip"), host=HostInfo(HOST.local_addresses, HOST.routes, {4: False}))
    o = only(off, remote("10.0.0.1", 8080))
    assert o.verdict == "drop" and "ip_forward" in o.note


def test_kube_proxy() -> None:
    ev = ev_of(("kube.iptables-save", "ip"))
    o = only(ev, remote("10.0.0.1", 30080))
    assert o.verdict == "reject" and o.step.rule.comment == "default/web:http has no endpoints"
    e = ev.evaluate(remote("10.0.0.1", 30081))
    assert sorted(o.flow.dst for o in e.outcomes) == ["10.0.1.2", "10.0.1.3"]
    assert all(o.verdict == "accept" and o.nat.chain.startswith("KUBE-SEP") for o in e.outcomes)
    o = only(ev, Flow(dst="10.96.0.50", dport=80, src="10.0.0.2", local_src=True))
    assert o.verdict == "reject" and o.hook == "output"


def test_ufw() -> None:
    ev = ev_of(("ufw.iptables-save", "ip"))
    o = only(ev, remote("10.0.0.1", 8080))
    assert o.verdict == "reject" and o.step.chain == "ufw-user-input"
    assert [s.chain for s in o.path] == ["INPUT", "ufw-before-input"]
    o = only(ev, remote("10.0.0.3", 8080))
    assert o.verdict == "drop" and o.step.rule is None and o.step.chain == "INPUT"
    assert only(ev, remote("10.0.0.3", 443)).verdict == "accept"


def test_nftables_native() -> None:
    ev = ev_of(("features.iptables-save", "ip"), ("features.ip6tables-save", "ip6"), nft="features")
    o = only(ev, remote("10.0.0.50", 9000))  # vmap @svc -> jump x -> reject
    assert (o.verdict, o.reject_with, o.step.chain) == ("reject", "tcp-reset", "x")
    assert o.step.rule.handle is not None
    o = only(ev, remote("10.0.0.50", 7001))
    assert o.verdict == "reject" and o.step.table.source == "iptables"
    e = ev.evaluate(remote("10.0.0.50", 8081))
    assert {(o.flow.dst, o.flow.dport) for o in e.outcomes} == {("10.0.0.3", 80)}
    o = only(ev, remote("fd00::1", 5005, dst="fd00::2"))
    assert (o.verdict, o.reject_with) == ("reject", "icmpx-admin-prohibited")
    o = only(ev, remote("10.0.0.1", 8080))  # nft set of pairs: saddr . dport, after iptables CUST rejects
    assert o.step.table.source == "iptables"
    o = only(ev, remote("10.0.0.7", 22))  # nft @allowed @ports accepts; iptables drops ! 10.1/16 first? same prio
    assert o.verdict == "drop"


def test_firewalld() -> None:
    ev = ev_of(nft="firewalld")
    o = only(ev, remote("10.0.0.1", 8080, iif="veth1"))
    assert (o.verdict, o.reject_with, o.step.chain) == ("reject", "icmpx-admin-prohibited", "filter_INPUT")
    assert only(ev, remote("10.0.0.1", 22, iif="veth1")).verdict == "accept"


def test_netdev_ingress_bound_to_its_device() -> None:
    rs, _ = build_ruleset([], read("netdev.nft.json"), read("netdev.nft.txt"))
    assert rs.tables[0].chain("ingress").device == "vx"
    ev = Evaluator(rs, HostInfo({"10.0.0.2": "vx"}))
    o = only(ev, Flow("10.0.0.2", 8080, "10.0.0.1", iif="vx", not_lo=True))
    assert o.verdict == "drop" and o.hook == "ingress"
    assert only(ev, Flow("10.0.0.2", 8080, "10.0.0.1", iif="vy", not_lo=True)).verdict == "accept"


def test_indexes_change_nothing() -> None:
    """The indexed walk and the plain walk agree on every flow, with and without a known source."""
    import gzip
    import random

    from portdoctor.firewall.iptables import parse_iptables_save
    from portdoctor.firewall.model import Ruleset

    with gzip.open(DATA / "large.iptables-save.gz", "rt") as f:
        rs = Ruleset(tuple(parse_iptables_save(f.read(), "ip")))
    fast, slow = Evaluator(rs, HOST), Evaluator(rs, HOST, index=False)
    rnd = random.Random(3)

    def key(e):
        return sorted((o.verdict, o.reject_with, o.step.where if o.step else "", o.hook,
                       tuple((a.step.where, a.matched) for a in o.assumptions)) for o in e.outcomes)

    # sources and ports the rules name, so that flows hit them, plus random ones
    named = [(m.values[0].split("/")[0], int(d.values[0].split("-")[0]))
             for t in rs.tables for c in t.chains for r in c.rules
             for m in r.matches if m.kind == "saddr" for d in r.matches if d.kind == "dport"]
    hits = 0
    for i in range(200):
        if i % 2:
            src, port = rnd.choice(named)
        else:
            src = f"10.{rnd.randrange(0, 40)}.{rnd.randrange(0, 250)}.{rnd.randrange(1, 250)}"
            port = rnd.randrange(990, 6100)
        f = Flow(dst="10.0.0.2", dport=port, src=None if i % 25 == 0 else src, iif="eth0", not_lo=True)
        got = key(fast.evaluate(f))
        assert got == key(slow.evaluate(f)), f
        hits += any(o[2] and "policy" not in o[2] and "rule 10001 of" not in o[2] for o in got)
    assert hits > 50


def test_native_nft_tables_named_like_iptables() -> None:
    """nft `table ip filter` (named set of ports, reject) and `table ip nat` (DNAT) are evaluated,
    although iptables-nft-save prints *filter and *nat for them."""
    ev = ev_of(("nftnames.iptables-save", "ip"), ("nftnames.ip6tables-save", "ip6"), nft="nftnames")
    o = only(ev, remote("10.0.0.1", 23))
    assert (o.verdict, o.reject_with, o.step.table.source, o.step.chain) == ("reject", "tcp-reset", "nft", "input")
    assert "@blocked_ports" in o.step.rule.text
    o = only(ev, remote("10.0.0.1", 8080, iif="veth1"))
    assert (o.flow.dst, o.flow.dport) == ("10.0.1.2", 80) and o.nat.table.name == "nat"
    assert only(ev, remote("10.0.0.1", 8080)).verdict == "reject"  # not DNATed on eth0: @blocked_ports
    o = only(ev, remote("fd00::1", 8080, dst="fd00::2"))
    assert (o.verdict, o.step.table.family, o.step.chain) == ("reject", "ip6", "INPUT")
    o = only(ev, remote("10.0.0.1", 7777))  # mangle INPUT at priority 10: iptables-save cannot show it
    assert (o.verdict, o.step.table.source, o.step.table.name) == ("drop", "nft", "mangle")


def test_native_chain_beside_iptables_chains_in_one_table() -> None:
    ev = ev_of(("mixed.iptables-save", "ip"), nft="mixed")
    o = only(ev, remote("10.0.0.1", 8080))
    assert (o.verdict, o.step.table.source, o.step.chain) == ("drop", "nft", "extra")
    o = only(ev, remote("10.0.0.1", 7000))  # iptables INPUT -> APP
    assert (o.verdict, o.step.table.source, o.step.chain) == ("reject", "iptables", "APP")
    o = only(ev, remote("10.0.0.1", 7001))  # nft chain extra jumps to iptables-nft's APP
    assert (o.verdict, o.step.chain, [s.chain for s in o.path]) == ("reject", "APP", ["extra"])
    assert only(ev, remote("10.0.0.3", 7001)).verdict == "accept"


def test_a_match_with_values_it_cannot_read_is_reported_not_fatal() -> None:
    """A port the evaluator cannot parse neither crashes compiling nor evaluating: both branches
    are followed and each names the match it could not evaluate."""
    save = ("*filter\n:INPUT ACCEPT [0:0]\n"
            "-A INPUT -p tcp -m multiport --dports 80:zz -j REJECT --reject-with tcp-reset\nCOMMIT\n")
    rs, _ = build_ruleset([(save, "ip", "iptables")], None, "", "")
    ev = Evaluator(rs, HostInfo({"10.0.0.2": "eth0"}, [], {4: True, 6: True}))
    e = ev.evaluate(remote("10.0.0.1", 80))
    assert sorted(o.verdict for o in e.outcomes) == ["accept", "reject"]
    for o in e.outcomes:
        assert o.assumptions[0].reason.startswith("could not evaluate: dport 80-zz")
