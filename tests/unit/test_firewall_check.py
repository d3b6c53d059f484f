"""check_firewall and followups on snapshots built from recorded rulesets: causes, weights,
evidence and the exact fix commands."""

from __future__ import annotations

from dataclasses import replace

from pathlib import Path

from portdoctor.checks import Context
from portdoctor.checks.firewall import check_firewall, followups
from portdoctor.collectors.firewall import build_ruleset
from portdoctor.firewall.model import counters_of
from portdoctor.hostfacts import FirewallFacts
from portdoctor.model import (
    AddressResult, Cause, InterfaceAddress, Listener, ProbeResult, RouteLookup, Severity, State, Target,
)
from portdoctor.snapshot import Snapshot

DATA = Path(__file__).resolve().parents[1] / "data" / "firewall"
LISTEN = (Listener("0.0.0.0", 8080, 4, pids=()), Listener("0.0.0.0", 9000, 4), Listener("0.0.0.0", 30080, 4),
          Listener("0.0.0.0", 7000, 4), Listener("0.0.0.0", 22, 4))


def read(name: str) -> str:
    return (DATA / name).read_text()


def snapshot(*saves: tuple[str, str], nft: str | None = None, listeners=LISTEN, bump: dict[str, int] | None = None,
             forwarding: bool = True) -> Snapshot:
    rs, _ = build_ruleset([(read(f), fam, "iptables") for f, fam in saves],
                          read(f"{nft}.nft.json") if nft else None, read(f"{nft}.nft.txt") if nft else "",
                          read("features.ipset"))
    after = counters_of(rs)
    before = dict(after)
    for k, v in (bump or {}).items():
        before[k] = after[k] - v
    fw = FirewallFacts(ruleset=rs, local_addresses={"10.0.0.2": "eth0", "127.0.0.1": "lo"},
                       routes=(("10.0.0.0/24", "eth0", "unicast"), ("172.17.0.0/16", "docker0", "unicast")),
                       forwarding={"4": forwarding, "6": False}, counters_before=before, counters_after=after)
    return Snapshot(listeners=listeners,
                    addresses=(InterfaceAddress("10.0.0.2", 24, 4, "eth0"), InterfaceAddress("127.0.0.1", 8, 4, "lo")),
                    routes=(RouteLookup("10.0.0.2", "local", "lo", None, "10.0.0.2"),
                            RouteLookup("10.0.0.1", "unicast", "eth0", None, "10.0.0.2")),
                    firewall=fw)


def context(port: int, from_addr: str | None = "10.0.0.1", state: State = State.OPEN,
            followups: dict[str, ProbeResult] | None = None) -> Context:
    t = Target(f"10.0.0.2:{port}", "10.0.0.2", port)
    errno = {State.REFUSED: "ECONNREFUSED", State.TIMEOUT: "ETIMEDOUT"}.get(state)
    probe = ProbeResult(t, state, (AddressResult("10.0.0.2", 4, state, errno, 0.001),), 3.0)
    return Context(target=t, probe=probe, from_addr=from_addr, followups=followups or {})


def errors(findings):
    return [f for f in findings if f.severity is Severity.ERROR]


def test_reject_in_jumped_chain_for_from_source() -> None:
    snap = snapshot(("features.iptables-save", "ip"))
    (f,) = errors(check_firewall(snap, context(8080)))
    assert f.cause is Cause.FIREWALL_REJECT and f.weight == 0.9
    assert "rule 1 of chain CUST" in f.summary and "connection refused (ECONNREFUSED)" in f.summary
    assert any("reached through rule 4 of chain INPUT" in e for e in f.evidence)
    assert any(e.startswith("a listener is there") for e in f.evidence)
    cmds = [x.command for x in f.fix]
    assert cmds == ["iptables -I CUST 1 -p tcp -s 10.0.0.1 --dport 8080 -j ACCEPT", "iptables -D CUST 1"]


def test_without_listener_weight_and_wording() -> None:
    snap = snapshot(("features.iptables-save", "ip"), listeners=(Listener("0.0.0.0", 22, 4),))
    (f,) = errors(check_firewall(snap, context(8080, state=State.REFUSED)))
    assert f.weight == 0.6 and "nothing listens on port 8080 either" in f.summary


def test_counter_that_rose_is_proof() -> None:
    snap = snapshot(("features.iptables-save", "ip"), bump={"iptables/ip/filter/CUST/1": 1})
    (f,) = errors(check_firewall(snap, context(8080)))
    assert f.weight == 0.95 and any("it rose" in e for e in f.evidence)


def test_other_source_is_accepted() -> None:
    snap = snapshot(("features.iptables-save", "ip"))
    assert errors(check_firewall(snap, context(8080, from_addr="10.0.0.3"))) == []


def test_without_from_warns_for_some_sources() -> None:
    snap = snapshot(("features.iptables-save", "ip"))
    found = check_firewall(snap, context(8080, from_addr=None))
    assert not errors(found)
    (w,) = [f for f in found if f.cause is Cause.FIREWALL_REJECT]
    assert w.severity is Severity.WARNING and "for some sources" in w.summary
    assert any("depends on the source address" in e for e in w.evidence)
    assert [x.command for x in w.fix][0] == "iptables -I CUST 1 -p tcp --dport 8080 -j ACCEPT"


def test_drop_is_firewall_drop_with_timeout() -> None:
    snap = snapshot(("features.iptables-save", "ip"))
    (f,) = errors(check_firewall(snap, context(22, from_addr="10.0.0.1")))
    assert f.cause is Cause.FIREWALL_DROP and "timeout" in f.summary


def test_unsupported_match_is_reported() -> None:
    snap = snapshot(("features.iptables-save", "ip"))
    found = check_firewall(snap, context(7000))
    (w,) = [f for f in found if f.summary.startswith("could not evaluate")]
    assert "rule 7 of chain INPUT" in w.summary and w.severity is Severity.WARNING
    assert any("-m recent" in e for e in w.evidence)
    assert not errors(found)


def test_ufw_fix() -> None:
    snap = snapshot(("ufw.iptables-save", "ip"))
    (f,) = errors(check_firewall(snap, context(8080)))
    assert "chains written by ufw" in f.summary
    assert f.fix[0].command == "ufw insert 1 allow from 10.0.0.1 to any port 8080 proto tcp"
    (g,) = errors(check_firewall(snap, context(8080, from_addr="10.0.0.3")))
    assert g.cause is Cause.FIREWALL_DROP and "policy DROP of chain INPUT" in g.summary


def test_kube_proxy_no_endpoints() -> None:
    snap = snapshot(("kube.iptables-save", "ip"))
    (f,) = errors(check_firewall(snap, context(30080)))
    assert f.cause is Cause.FIREWALL_REJECT and "Service default/web has no endpoints" in f.summary
    assert [x.command for x in f.fix] == [
        "kubectl -n default get endpointslices -l kubernetes.io/service-name=web",
        "kubectl -n default describe service web"]


def test_docker_dnat_backend_refuses() -> None:
    snap = snapshot(("docker.iptables-save", "ip"))
    ctx = context(8080, state=State.REFUSED)
    targets = followups(snap, ctx)
    assert [(t.host, t.port) for t in targets] == [("172.17.0.2", 80)]
    backend = ProbeResult(targets[0], State.REFUSED,
                          (AddressResult("172.17.0.2", 4, State.REFUSED, "ECONNREFUSED", 0.001),), 3.0)
    ctx = context(8080, state=State.REFUSED, followups={"172.17.0.2:80": backend})
    (f,) = errors(check_firewall(snap, ctx))
    assert f.cause is Cause.PORT_MAPPING
    assert f.summary.startswith("8080 on 10.0.0.2 is DNATed to 172.17.0.2:80 by chain DOCKER")
    assert "nothing listens there" in f.summary and "docker" in f.summary
    assert "iptables -t nat -D DOCKER 2" in [x.command for x in f.fix]


def test_docker_user_drop_and_forwarding_off() -> None:
    snap = snapshot(("docker.iptables-save", "ip"))
    (f,) = errors(check_firewall(snap, context(8080, from_addr="10.0.0.66")))
    assert f.cause is Cause.FIREWALL_DROP and "DOCKER-USER" in f.summary and "DNATs it to 172.17.0.2:80" in f.summary
    off = snapshot(("docker.iptables-save", "ip"), forwarding=False)
    (g,) = errors(check_firewall(off, context(8080)))
    assert g.cause is Cause.FIREWALL_DROP and g.fix[0].command == "sysctl -w net.ipv4.ip_forward=1"


def test_nftables_fix_uses_handle() -> None:
    snap = snapshot(("features.iptables-save", "ip"), ("features.ip6tables-save", "ip6"), nft="features")
    (f,) = errors(check_firewall(snap, context(9000)))
    assert f.cause is Cause.FIREWALL_REJECT and "chain x (nft inet pdf table" in f.summary
    assert f.fix[0].command.startswith("nft insert rule inet pdf x position ")
    assert f.fix[0].command.endswith(" ip saddr 10.0.0.1 tcp dport 9000 accept")
    assert f.fix[1].command.startswith("nft delete rule inet pdf x handle ")


def test_firewalld_fix() -> None:
    snap = snapshot(nft="firewalld")
    (f,) = errors(check_firewall(snap, context(8080)))
    assert "firewalld" in f.summary and "no route to host (EHOSTUNREACH)" in f.summary
    assert f.fix[0].command == ("firewall-cmd --zone=public --add-rich-rule='rule family=\"ipv4\" source "
                                "address=\"10.0.0.1\" port port=\"8080\" protocol=\"tcp\" accept'")


def test_snapshot_json_round_trip_and_no_firewall() -> None:
    snap = snapshot(("features.iptables-save", "ip"))
    again = Snapshot.from_json(snap.to_json())
    assert [f.summary for f in check_firewall(again, context(8080))] == \
        [f.summary for f in check_firewall(snap, context(8080))]
    assert check_firewall(Snapshot(), context(8080)) == []
    assert followups(Snapshot(), context(8080)) == []


def test_syn_accepted_but_rest_rejected() -> None:
    """`ct state new accept` then a reject-all, without an established,related accept."""
    text = """# Generated by iptables-save v1.8.9 (nf_tables) on Sat Nov 28 09:50:00 2026
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
[0:0] -A INPUT -p tcp -m conntrack --ctstate NEW -j ACCEPT
[0:0] -A INPUT -p tcp -j REJECT --reject-with tcp-reset
COMMIT
"""
    rs, _ = build_ruleset([(text, "ip", "iptables")])
    base = snapshot(("features.iptables-save", "ip"))
    fw = replace(base.firewall, ruleset=rs, counters_before=None)
    snap = Snapshot(listeners=base.listeners, addresses=base.addresses, routes=base.routes, firewall=fw)
    (f,) = errors(check_firewall(snap, context(8080)))
    assert f.cause is Cause.FIREWALL_REJECT and "reset at once (ECONNRESET)" in f.summary
    assert "packets after the SYN" in f.summary
    assert f.fix[0].command == "iptables -I INPUT 1 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"


def test_exposure_for_ports() -> None:
    from portdoctor.hostview import Exposure, dnat_rules

    ufw = snapshot(("ufw.iptables-save", "ip"))
    assert Exposure(ufw).of("0.0.0.0", 443, None, 4) is True
    assert Exposure(ufw).of("0.0.0.0", 8080, None, 4) is False  # reject or policy drop
    # a statistic/random rule lets some connections through: a client from elsewhere can get in
    assert Exposure(snapshot(("features.iptables-save", "ip"))).of("0.0.0.0", 7002, None, 4) is True
    (d,) = dnat_rules(snapshot(("docker.iptables-save", "ip")))
    assert (d.from_addr, d.from_port, d.to_addr, d.to_port) == ("*", 8080, "172.17.0.2", 80)


def test_redirected_for_other_checks() -> None:
    from portdoctor.checks.firewall import redirected

    found = redirected(snapshot(("docker.iptables-save", "ip")), context(8080))
    assert [(r["from"], r["to"], r["flow"], r["definite"]) for r in found] == [
        ("10.0.0.2:8080", "172.17.0.2:80", "probe", True), ("10.0.0.2:8080", "172.17.0.2:80", "from", True)]
    assert "DNAT --to-destination 172.17.0.2:80" in found[0]["rule"]


def test_real_ufw_rules() -> None:
    """Rules written by the real ufw 0.36 (see capture.py): deny, reject, allow, an app profile."""
    snap = snapshot(("ufw-real.iptables-save", "ip"), ("ufw-real.ip6tables-save", "ip6"))
    (f,) = errors(check_firewall(snap, context(8080)))
    assert f.cause is Cause.FIREWALL_DROP and "rule 2 of chain ufw-user-input" in f.summary
    assert "chains written by ufw" in f.summary
    assert f.fix[0].command == "ufw insert 1 allow from 10.0.0.1 to any port 8080 proto tcp"
    (g,) = errors(check_firewall(snap, context(8080, from_addr="10.0.0.3")))
    assert g.cause is Cause.FIREWALL_REJECT and "tcp-reset" in g.summary
    assert not errors(check_firewall(snap, context(8080, from_addr="10.0.0.9")))
    (h,) = errors(check_firewall(snap, context(9999, from_addr="10.0.0.9")))
    assert h.cause is Cause.FIREWALL_DROP and "policy DROP of chain INPUT" in h.summary
    assert h.fix[0].command == "ufw insert 1 allow from 10.0.0.9 to any port 9999 proto tcp"
    assert not errors(check_firewall(snap, context(443, from_addr="10.0.0.9")))


def test_kube_proxy_nftables_mode() -> None:
    """kube-proxy's nftables mode names the Service in the no-endpoint map element's comment."""
    snap = snapshot(nft="kube-nft")
    (f,) = errors(check_firewall(snap, context(30080)))
    assert "Service default/web has no endpoints" in f.summary and "reject-chain" in f.summary
    assert f.fix[0].command == "kubectl -n default get endpointslices -l kubernetes.io/service-name=web"
    ctx = context(30081, state=State.REFUSED)
    (t,) = followups(snap, ctx)
    assert (t.host, t.port) == ("10.0.1.2", 8080)
    backend = ProbeResult(t, State.REFUSED, (AddressResult("10.0.1.2", 4, State.REFUSED, "ECONNREFUSED", 0.001),), 3.0)
    (m,) = errors(check_firewall(snap, context(30081, state=State.REFUSED, followups={"10.0.1.2:8080": backend})))
    assert m.cause is Cause.PORT_MAPPING and "endpoint-EFGH5678-default/api/tcp/http__10.0.1.2/8080" in m.summary
    assert "kube-proxy" in m.summary


def _snap_with_rules(text: str, listeners=LISTEN, extra_addresses: dict[str, str] | None = None) -> Snapshot:
    rs, _ = build_ruleset([(text, "ip", "iptables")])
    base = snapshot(("features.iptables-save", "ip"))
    local = dict(base.firewall.local_addresses, **(extra_addresses or {}))
    fw = replace(base.firewall, ruleset=rs, counters_before=None, local_addresses=local)
    addrs = base.addresses + tuple(InterfaceAddress(a, 24, 4, dev) for a, dev in (extra_addresses or {}).items())
    return Snapshot(listeners=listeners, addresses=addrs, routes=base.routes, firewall=fw)


IFACE_REJECT = """# Generated by iptables-save v1.8.9 (nf_tables) on Sat Nov 28 10:30:00 2026
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
[0:0] -A INPUT -i {iface} -p tcp -m tcp --dport 8080 {src}-j {target}
COMMIT
"""


def test_reject_on_the_interface_of_the_target_without_from() -> None:
    """Diagnosed on the server without --from: the probe comes in on lo and connects, but every
    client from elsewhere comes in on eth0 (the interface of 10.0.0.2) and is rejected."""
    snap = _snap_with_rules(IFACE_REJECT.format(iface="eth0", src="", target="REJECT"))
    (f,) = errors(check_firewall(snap, context(8080, from_addr=None)))
    assert f.cause is Cause.FIREWALL_REJECT and f.weight == 0.8
    assert "every client from other hosts to 10.0.0.2:8080" in f.summary and "eth0" in f.summary
    assert "from this host get through" in f.summary
    assert f.fix[0].command == "iptables -I INPUT 1 -p tcp --dport 8080 -j ACCEPT"
    snap = _snap_with_rules(IFACE_REJECT.format(iface="eth0", src="", target="DROP"))
    (f,) = errors(check_firewall(snap, context(8080, from_addr=None)))
    assert f.cause is Cause.FIREWALL_DROP and "timeout" in f.summary


def test_reject_on_the_interface_for_some_sources_stays_a_warning() -> None:
    snap = _snap_with_rules(IFACE_REJECT.format(iface="eth0", src="-s 10.0.0.1/32 ", target="REJECT"))
    found = check_firewall(snap, context(8080, from_addr=None))
    assert not errors(found)
    (w,) = [f for f in found if f.cause is Cause.FIREWALL_REJECT]
    assert w.severity is Severity.WARNING and "for some sources" in w.summary


def test_reject_on_another_interface_than_the_targets_stays_a_warning() -> None:
    """Clients of 10.0.0.2 come in on eth0; a reject on eth1 (another address's) is a side note."""
    snap = _snap_with_rules(IFACE_REJECT.format(iface="eth1", src="", target="REJECT"),
                            extra_addresses={"192.168.5.2": "eth1"})
    found = check_firewall(snap, context(8080, from_addr=None))
    assert not errors(found)
    (w,) = [f for f in found if f.cause is Cause.FIREWALL_REJECT]
    assert w.severity is Severity.WARNING and "eth1" in w.summary


def test_dnat_backend_elsewhere_refuses_names_what_was_seen() -> None:
    """A backend in another host or namespace: portdoctor saw a refusal, not its listeners."""
    snap = snapshot(("docker.iptables-save", "ip"))
    backend = ProbeResult(Target("172.17.0.2:80", "172.17.0.2", 80), State.REFUSED,
                          (AddressResult("172.17.0.2", 4, State.REFUSED, "ECONNREFUSED", 0.001),), 3.0)
    ctx = context(8080, state=State.REFUSED, followups={"172.17.0.2:80": backend})
    (f,) = errors(check_firewall(snap, ctx))
    assert "a connection from this host to 172.17.0.2:80 was refused" in f.summary
    assert "its own loopback (127.0.0.1) only" in f.summary
    assert any("not visible from this host" in e for e in f.evidence)


def test_local_dnat_backend_refuses_says_what_listens() -> None:
    text = """# Generated by iptables-save v1.8.9 (nf_tables) on Sat Nov 28 10:30:00 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
[0:0] -A PREROUTING -d 10.0.0.2/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.2:9001
COMMIT
"""
    refused = ProbeResult(Target("10.0.0.2:9001", "10.0.0.2", 9001), State.REFUSED,
                          (AddressResult("10.0.0.2", 4, State.REFUSED, "ECONNREFUSED", 0.001),), 3.0)
    ctx = context(8080, state=State.REFUSED, followups={"10.0.0.2:9001": refused})
    snap = _snap_with_rules(text, listeners=(Listener("127.0.0.1", 9001, 4),))
    (f,) = [x for x in check_firewall(snap, ctx) if x.cause is Cause.PORT_MAPPING]
    assert "port 9001 on this host listens on 127.0.0.1:9001 only" in f.summary
    assert any(e.startswith("LISTEN 127.0.0.1:9001") for e in f.evidence)
    snap = _snap_with_rules(text, listeners=())
    (f,) = [x for x in check_firewall(snap, ctx) if x.cause is Cause.PORT_MAPPING]
    assert "nothing listens on port 9001 on this host" in f.summary
