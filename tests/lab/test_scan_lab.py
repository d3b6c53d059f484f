"""`portdoctor scan` and the client's view of a refusal, in real namespaces.

    c (10.1.0.5) --- r (10.1.0.1 | 10.2.0.1, forwards) --- s (10.2.0.2)

The client alone must name who refused: the router's REJECT in FORWARD (ICMP from 10.1.0.1, or a
reset forged one hop early), a tcp-reset REJECT on the server itself, or the server's TCP stack
for a plain closed port; and say what answers nearby. The scan must agree with Debian's nmap.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET

import pytest

from netlab import Host, Lab


@pytest.fixture
def routed(lab: Lab) -> tuple[Host, Host, Host]:
    c, r, s = lab.host("c"), lab.host("r"), lab.host("s")
    lab.link(c, r, "10.1.0.5/24", "10.1.0.1/24")
    lab.link(r, s, "10.2.0.1/24", "10.2.0.2/24")
    c.run(["ip", "route", "add", "default", "via", "10.1.0.1"])
    s.run(["ip", "route", "add", "default", "via", "10.2.0.1"])
    r.sysctl("net.ipv4.ip_forward", 1)
    # the service the client should have used: HTTP on 8081, next to the refused 8080
    s.start(["python3", "-m", "http.server", "8081", "--bind", "10.2.0.2"], ready_port=8081)
    return c, r, s


def _texts(doc: dict) -> str:
    return "\n".join([doc["verdict"]["summary"], *(e for f in doc["findings"] for e in [f["summary"], *f["evidence"]])])


def test_router_reject_is_named_by_its_icmp(routed: tuple[Host, Host, Host]) -> None:
    c, r, _s = routed
    r.iptables("-A", "FORWARD", "-p", "tcp", "--dport", "8080", "-j", "REJECT")
    rc, doc = c.json_of("diagnose", "10.2.0.2:8080")
    refusal = doc["probe"]["refusal"]
    assert (refusal["packet"], refusal["where"], refusal["sender"], refusal["icmp"]) == \
        ("icmp", "path", "10.1.0.1", "port-unreachable"), refusal
    assert rc == 1 and doc["verdict"]["cause"] == "firewall_reject", doc["verdict"]
    assert "Refused by 10.1.0.1" in doc["verdict"]["summary"] and "a hop before the server" in doc["verdict"]["summary"]
    # the ICMP sender comes from the socket's error queue: no privilege needed
    rc, doc = c.json_of("probe", "10.2.0.2:8080", user="nobody")
    assert doc["refusal"]["sender"] == "10.1.0.1" and doc["refusal"]["where"] == "path", doc


def test_router_forged_reset_is_told_from_the_server(routed: tuple[Host, Host, Host]) -> None:
    c, r, _s = routed
    r.iptables("-A", "FORWARD", "-p", "tcp", "--dport", "8080", "-j", "REJECT", "--reject-with", "tcp-reset")
    rc, doc = c.json_of("diagnose", "10.2.0.2:8080")
    refusal = doc["probe"]["refusal"]
    # the reset arrives with TTL 64, the server's own SYN-ACK (8081) with 63: sent one hop early,
    # and a SYN limited to TTL 1 finds that hop's address
    assert (refusal["packet"], refusal["where"], refusal["sender"], refusal["ttl"]) == \
        ("tcp-reset", "path", "10.1.0.1", 64), refusal
    assert "TTL 63" in refusal["reference"], refusal
    assert doc["verdict"]["cause"] == "firewall_reject" and "10.1.0.1" in doc["verdict"]["summary"], doc["verdict"]
    # without root the reset cannot be read: one line says what it would need
    rc, doc = c.json_of("probe", "10.2.0.2:8080", user="nobody")
    assert doc["refusal"]["where"] == "unknown" and "CAP_NET_RAW" in doc["refusal"]["limitation"], doc["refusal"]


def test_server_reset_rule_and_closed_port_are_told_apart(routed: tuple[Host, Host, Host]) -> None:
    c, _r, s = routed
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "REJECT", "--reject-with", "tcp-reset")
    rc, doc = c.json_of("diagnose", "10.2.0.2:8080")
    ruled = doc["probe"]["refusal"]
    assert (ruled["where"], ruled["sender"], ruled["tos"]) == ("target_firewall", "10.2.0.2", 0), ruled
    assert doc["verdict"]["cause"] == "firewall_reject", doc["verdict"]
    assert "firewall rule on 10.2.0.2 itself" in doc["verdict"]["summary"]

    s.iptables("-F", "INPUT")  # now a plain closed port: the server's TCP stack answers
    rc, doc = c.json_of("diagnose", "10.2.0.2:8080")
    closed = doc["probe"]["refusal"]
    assert (closed["where"], closed["sender"], closed["tos"]) == ("target", "10.2.0.2", 0x28), closed
    assert closed["ttl"] == ruled["ttl"] == 63  # same host, same TTL: only the TOS echo tells them apart
    assert doc["verdict"]["cause"] == "wrong_port", doc["verdict"]
    assert "Nothing on 8080, but 8081 answers (HTTP)" in doc["verdict"]["summary"], doc["verdict"]
    near = doc["probe"]["nearby"]
    assert [p["port"] for p in near["open"]] == [8081] and near["seconds"] < 1.0, near


def test_local_target_gets_no_short_scan(pair: tuple[Host, Host]) -> None:
    c, _s = pair
    rc, doc = c.json_of("probe", "10.0.0.1:8080")  # the client's own address
    assert doc["state"] == "refused" and "nearby" not in doc and "refusal" not in doc, doc


FIVE = (22, 80, 5432, 31337, 65000)


def test_scan_finds_five_open_ports_like_nmap(pair: tuple[Host, Host]) -> None:
    assert shutil.which("nmap"), "nmap (Debian package) is needed: scripts/test.sh installs it"
    c, s = pair
    for port in FIVE:
        s.listen(port, "10.0.0.2")
    rc, doc = c.json_of("scan", "10.0.0.2", "-p-")
    assert rc == 0 and doc["scanned"] == 65535, doc["counts"]
    ours = sorted(p["port"] for p in doc["ports"] if p["state"] == "open")
    assert ours == list(FIVE), doc["ports"]
    assert doc["counts"] == {"open": 5, "closed": 65530, "filtered": 0, "unreachable": 0}
    xml = c.run(["nmap", "-sT", "-p-", "-n", "-Pn", "-oX", "-", "10.0.0.2"], timeout=120).stdout
    root = ET.fromstring(xml)
    theirs = sorted(int(p.get("portid")) for p in root.iter("port") if p.find("state").get("state") == "open")
    assert theirs == ours
    hidden = {(e.get("state"), int(e.get("count"))) for e in root.iter("extraports")}
    assert hidden == {("closed", 65530)}, hidden  # and every other port is closed for both
    rc, doc = c.json_of("scan", "10.0.0.2", "-p", "79-81")
    assert [(p["port"], p["state"], p["reason"]) for p in doc["ports"]] == [
        (79, "closed", "conn-refused"), (80, "open", "syn-ack"), (81, "closed", "conn-refused")] or \
        [(p["port"], p["state"]) for p in doc["ports"]] == [(80, "open")], doc


def test_scan_of_a_dropping_host_retries_once_then_says_filtered(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.iptables("-A", "INPUT", "-p", "tcp", "-j", "DROP")
    rc, doc = c.json_of("scan", "10.0.0.2", "--top", "1000")
    assert rc == 1 and doc["counts"]["filtered"] == 1000, doc["counts"]
    assert doc["reasons"] == {"filtered/no-response": 1000}
    assert doc["timing"]["retries"] == 1000  # every port tried twice
    assert doc["seconds"] < 20  # nmap -sT needs ~200 s here; the bench measures the ratio


def test_scan_reports_icmp_unreachable(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "9000", "-j", "REJECT", "--reject-with", "icmp-host-prohibited")
    rc, doc = c.json_of("scan", "10.0.0.2", "-p", "9000")
    assert [(p["port"], p["state"], p["reason"]) for p in doc["ports"]] == [(9000, "unreachable", "host-unreach")], doc


def test_ipv6_reset_rule_and_closed_port_are_told_apart(pair: tuple[Host, Host], lab: Lab) -> None:
    c, s = pair
    lab.wait_ipv6(c, s)
    s.listen(8081, "::")
    s.ip6tables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "REJECT", "--reject-with", "tcp-reset")
    rc, doc = c.json_of("probe", "[fd00::2]:8080")
    assert (doc["refusal"]["where"], doc["refusal"]["tos"]) == ("target_firewall", 0), doc["refusal"]
    s.ip6tables("-F", "INPUT")
    rc, doc = c.json_of("probe", "[fd00::2]:8080")
    assert (doc["refusal"]["where"], doc["refusal"]["tos"]) == ("target", 0x28), doc["refusal"]
    assert "[fd00::2]:8081" in doc["refusal"]["reference"]
    assert [p["port"] for p in doc["nearby"]["open"]] == [8081]


@pytest.mark.parametrize("how", [("--reject-with", "tcp-reset"), ()])
def test_a_reject_in_the_clients_own_output_chain_is_not_blamed_on_the_server(pair: tuple[Host, Host],
                                                                              how: tuple[str, ...]) -> None:
    c, s = pair
    s.listen(8081)
    c.iptables("-A", "OUTPUT", "-p", "tcp", "--dport", "8080", "-j", "REJECT", *how)
    rc, doc = c.json_of("diagnose", "10.0.0.2:8080")
    r = doc["probe"]["refusal"]
    assert r["where"] == "this_host" and "OUTPUT" in r["summary"], r
    assert doc["verdict"]["cause"] == "firewall_reject", doc["verdict"]
    assert not any("10.0.0.2 itself" in f["summary"] for f in doc["findings"]), doc["findings"]
