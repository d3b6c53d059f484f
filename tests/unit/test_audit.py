"""audit on recorded snapshots (lab recordings): exposure per port and address from the firewall
walk, and the comparison with a baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portdoctor.audit import PortExposure, Reach, compare, read_baseline, take
from portdoctor.errors import BadInput
from portdoctor.render.audit import markdown, text
from portdoctor.snapshot import Snapshot

RECORDINGS = Path(__file__).resolve().parents[1] / "data" / "recordings"


def recorded(name: str) -> Snapshot:
    return Snapshot.from_json(json.loads((RECORDINGS / f"{name}.json").read_text())["snapshot"])


def test_exposure_of_a_dropped_a_partly_rejected_and_a_loopback_port() -> None:
    dropped = take(recorded("firewall_lab--test_drop_is_a_timeout")).ports
    assert [(p.key, p.exposed, [(r.address, r.state) for r in p.reach]) for p in dropped] == [
        ("8080/IPv4", False, [("10.0.0.2", "closed")])]
    assert "--dport 8080 -j DROP" in dropped[0].reach[0].rules[0]
    partial = take(recorded("firewall_lab--test_ipset_blocklist")).ports
    assert [(p.key, p.exposed, [r.state for r in p.reach]) for p in partial] == [("8080/IPv4", True, ["partial"])]
    assert "--match-set blocked src" in partial[0].reach[0].rules[0]
    loop = take(recorded("diagnose_lab--test_redis_bound_to_loopback")).ports
    assert [(p.key, p.scope, p.owners, p.exposed, p.reach) for p in loop] == [
        ("6379/IPv4", "loopback", ("redis-server",), False, ()), ("6379/IPv6", "loopback", ("redis-server",), False, ())]


def test_baseline_round_trip_and_comparison(tmp_path: Path) -> None:
    before = take(recorded("firewall_lab--test_ipset_blocklist"))
    base = tmp_path / "base.json"
    base.write_text(json.dumps(before.to_json()))
    ports, taken_at = read_baseline(str(base))
    assert ports == list(before.ports) and taken_at == before.taken_at
    assert compare(ports, list(before.ports)) == []
    after = take(recorded("firewall_lab--test_drop_is_a_timeout"))
    diffs = compare(ports, list(after.ports))
    assert [(d.kind, d.key) for d in diffs] == [("newly_blocked", "8080/IPv4")]
    assert "partial -> closed" in diffs[0].summary and "DROP" in diffs[0].summary
    back = compare(list(after.ports), ports)
    assert [(d.kind, d.key) for d in back] == [("newly_exposed", "8080/IPv4")]


def port(p: int, bound: tuple[str, ...], owners: tuple[str, ...], state: str | None,
         rules: tuple[str, ...] = ()) -> PortExposure:
    reach = (Reach("10.0.0.2", "eth0", state, rules),) if state else ()
    scope = "loopback" if bound[0].startswith("127.") else "all"
    return PortExposure(p, 4, bound, scope, owners, state in ("open", "partial") if state else False, reach)


def test_every_kind_of_difference() -> None:
    before = [port(22, ("0.0.0.0",), ("sshd",), "open"), port(80, ("0.0.0.0",), ("nginx",), "open"),
              port(5432, ("0.0.0.0",), ("postgres",), "partial", ("reject by rule 2",)),
              port(6000, ("127.0.0.1",), ("worker",), None), port(7000, ("0.0.0.0",), ("api",), "open")]
    after = [port(22, ("0.0.0.0",), ("sshd",), "open"),
             port(80, ("0.0.0.0",), ("nginx",), "closed", ("reject by rule 1",)),
             port(5432, ("0.0.0.0",), ("postgres",), "partial", ()),
             port(6000, ("127.0.0.1",), ("intruder",), None),
             port(7000, ("127.0.0.1",), ("api",), None),
             port(9090, ("0.0.0.0",), ("debug",), "open"), port(9091, ("127.0.0.1",), ("local",), None)]
    got = sorted((d.kind, d.key) for d in compare(before, after))
    assert got == sorted([
        ("newly_blocked", "80/IPv4"), ("newly_exposed", "5432/IPv4"), ("changed_owner", "6000/IPv4"),
        ("changed_bind_scope", "7000/IPv4"), ("newly_blocked", "7000/IPv4"), ("newly_exposed", "9090/IPv4"),
        ("new_listener", "9091/IPv4")])
    assert [(d.kind, d.key) for d in compare(before[:1], [])] == [("closed", "22/IPv4")]


def test_renderers_and_a_baseline_that_is_not_one(tmp_path: Path) -> None:
    a = take(recorded("firewall_lab--test_ipset_blocklist"))
    assert "8080/IPv4" in text(a) and "partial" in text(a)
    assert "| 8080/IPv4 | `0.0.0.0` | python3 | yes |" in markdown(a)
    bad = tmp_path / "bad.json"
    for content in ("not json", json.dumps({"schema": "portdoctor.ports/1"}),
                    json.dumps({"schema": "portdoctor.audit/1", "ports": [{"family": 4}]})):
        bad.write_text(content)
        with pytest.raises(BadInput):
            read_baseline(str(bad))


def test_an_unreadable_listener_table_is_exit_3_not_every_port_closed() -> None:
    from portdoctor.errors import Incomplete
    from portdoctor.model import Limitation

    snap = Snapshot(limitations=(Limitation("/proc/net/tcp is not readable: listening sockets are unknown"),))
    with pytest.raises(Incomplete) as info:
        take(snap)
    assert info.value.exit_code == 3 and "could not be read" in str(info.value)


def test_a_published_port_without_a_host_socket_is_audited_by_its_host_port() -> None:
    from portdoctor.hostfacts import Container, ContainerFacts, FirewallFacts, NetnsListener, PortPublish
    from portdoctor.model import InterfaceAddress

    web = Container("abc123", "web", state="running", pid=4242, cmd=("/bin/httpd",), here=True,
                    ports=(PortPublish("0.0.0.0", 18080, 8080),), addresses=("10.88.0.5",),
                    listeners=(NetnsListener("0.0.0.0", 8080),))
    snap = Snapshot(addresses=(InterfaceAddress("127.0.0.1", 8, 4, "lo"), InterfaceAddress("10.0.0.2", 24, 4, "eth0")),
                    firewall=FirewallFacts(), containers=ContainerFacts(engine="docker", containers=(web,)))
    ports = take(snap).ports
    assert [(p.key, p.bound, p.owners, p.via, [(r.address, r.state) for r in p.reach]) for p in ports] == [
        ("18080/IPv4", ("0.0.0.0",), ("web",), ("publish 0.0.0.0:18080",), [("10.0.0.2", "open")])]


def test_unread_rules_make_reach_unknown_not_open() -> None:
    from portdoctor.hostfacts import FirewallFacts, FirewallTool
    from portdoctor.model import InterfaceAddress, Limitation, Listener

    snap = Snapshot(listeners=(Listener("0.0.0.0", 8080, 4),),
                    addresses=(InterfaceAddress("10.0.0.2", 24, 4, "eth0"),),
                    firewall=FirewallFacts(tools=(FirewallTool("iptables-nft-save -c", False),)),
                    limitations=(Limitation("iptables rules not read: iptables-nft-save needs root"),))
    (p,) = take(snap).ports
    assert (p.exposed, [(r.state, r.rules) for r in p.reach]) == (
        None, [("unknown", ("iptables rules not read: iptables-nft-save needs root",))])
