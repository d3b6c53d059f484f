"""`portdoctor probe --json`, run in the client namespace against faults built in the server's.

Each fault is real: a closed port, firewall rules, a silent drop, a host that is not there,
names served by the lab's own DNS. The expected states and errnos are those LAB-NOTES.md
records for this kernel.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from netlab import Host, Lab, in_netns

pytestmark = pytest.mark.lab

SERVER4 = "10.0.0.2"
SERVER6 = "fd00::2"


def probe(c: Host, *args: str) -> tuple[int, dict[str, Any], float]:
    """Run `portdoctor probe ARGS --json` on c; return exit code, document and wall seconds."""
    start = time.monotonic()
    code, doc = c.json_of("probe", *args)
    return code, doc, time.monotonic() - start


def failed(c: Host, state: str, *args: str) -> tuple[dict[str, Any], float]:
    """Run `portdoctor probe ARGS --json` on c, which exits 1 in state `state`; the document and wall seconds."""
    code, doc, wall = probe(c, *args)
    assert code == 1
    assert doc["state"] == state
    return doc, wall


def only(doc: dict[str, Any]) -> dict[str, Any]:
    """The single address entry of a probe document."""
    assert len(doc["addresses"]) == 1, doc
    return doc["addresses"][0]


def netstat(h: Host, group: str, name: str) -> int:
    """A counter of h's namespace from /proc/net/snmp or /proc/net/netstat (e.g. Tcp PassiveOpens)."""
    text = h.run(["cat", "/proc/net/snmp", "/proc/net/netstat"]).stdout
    lines = [line.split() for line in text.splitlines() if line.startswith(group + ":")]
    return int(dict(zip(lines[0], lines[1]))[name])


def passive_opens(h: Host) -> int:
    """TCP PassiveOpens of h's namespace (connections its listeners took into the queue)."""
    return netstat(h, "Tcp", "PassiveOpens")


def by_address(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["address"]: a for a in doc["addresses"]}


# --------------------------------------------------------------------------- refused


@pytest.mark.parametrize("target, family", [(f"{SERVER4}:8080", 4), (f"[{SERVER6}]:8080", 6)])
def test_closed_port_is_refused(pair: tuple[Host, Host], target: str, family: int) -> None:
    c, s = pair
    s.listen(8081)  # something listens on the host, just not on this port
    doc, _ = failed(c, "refused", target)
    assert doc["schema"] == "portdoctor.probe/1"
    a = only(doc)
    assert a["state"] == "refused" and a["errno"] == "ECONNREFUSED" and a["family"] == family
    assert a["seconds"] < 0.5  # a refusal comes back at once


@pytest.mark.parametrize("reject_with", ["tcp-reset", None], ids=["tcp-reset", "icmp-port-unreachable"])
def test_firewall_reject_is_refused(pair: tuple[Host, Host], reject_with: str | None) -> None:
    c, s = pair
    s.listen(8080)  # the service runs: only the firewall refuses
    assert c.connect_errno(SERVER4, 8080) == 0
    extra = ["--reject-with", reject_with] if reject_with else []
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "REJECT", *extra)
    doc, _ = failed(c, "refused", f"{SERVER4}:8080")
    assert only(doc)["errno"] == "ECONNREFUSED"


def test_ip6tables_default_reject_is_refused(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, "::", v6only=False)
    s.ip6tables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "REJECT")  # icmp6-port-unreachable
    doc, _ = failed(c, "refused", f"[{SERVER6}]:8080")
    assert only(doc)["errno"] == "ECONNREFUSED"
    # over a veth, TCP takes an ICMPv6 error only for the SYN retransmitted after 1 s
    # (the first arrives while connect() still holds the socket); IPv4 takes it at once
    assert only(doc)["seconds"] < 2.5
    code4, doc4, _ = probe(c, f"{SERVER4}:8080")  # IPv4 has no rule
    assert code4 == 0 and doc4["state"] == "open"


# --------------------------------------------------------------------------- neither open nor refused


def test_drop_is_a_timeout_within_the_given_timeout(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "DROP")
    doc, wall = failed(c, "timeout", f"{SERVER4}:8080", "--timeout", "1")
    a = only(doc)
    assert a["state"] == "timeout" and a["errno"] is None
    assert 0.95 <= a["seconds"] <= 1.3
    assert 0.95 <= wall < 2.5, f"--timeout 1 took {wall:.2f} s (the default is 3 s)"


def test_icmp_host_prohibited_is_unreachable(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "REJECT",
               "--reject-with", "icmp-host-prohibited")
    doc, _ = failed(c, "unreachable", f"{SERVER4}:8080")
    assert only(doc)["errno"] == "EHOSTUNREACH"


def test_ip6tables_adm_prohibited_is_unreachable(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, "::")
    s.ip6tables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "REJECT", "--reject-with", "adm-prohibited")
    # not "error": a firewall answered, as icmp-host-prohibited on IPv4
    doc, _ = failed(c, "unreachable", f"[{SERVER6}]:8080")
    a = only(doc)
    assert a["errno"] == "EACCES"
    assert "prohibited" in a["detail"] and "firewall" in a["detail"]


def test_absent_host_on_the_link_is_unreachable_after_arp(pair: tuple[Host, Host]) -> None:
    c, _s = pair
    doc, wall = failed(c, "unreachable", "10.0.0.99:8080", "--timeout", "5")
    a = only(doc)
    assert a["errno"] == "EHOSTUNREACH"
    # the kernel gives up after its ARP solicitations (3 x 1 s), well before --timeout 5
    assert 2.0 <= a["seconds"] <= 4.5
    assert wall < 5.0


def test_no_route_is_unreachable_at_once(pair: tuple[Host, Host]) -> None:
    c, _s = pair
    doc, _ = failed(c, "unreachable", "10.77.0.1:80")
    assert only(doc)["errno"] == "ENETUNREACH"
    assert only(doc)["seconds"] < 0.5


def test_full_accept_queue_is_a_timeout(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, backlog=1, accept=False)  # never accepts: two connections fill the queue
    held = [in_netns(c.ns, lambda: socket.create_connection((SERVER4, 8080), timeout=2)) for _ in range(2)]
    try:
        before = netstat(s, "TcpExt", "ListenDrops")
        # the server drops the SYN: it looks like a firewall drop
        failed(c, "timeout", f"{SERVER4}:8080", "--timeout", "1")
        assert netstat(s, "TcpExt", "ListenDrops") > before
    finally:
        for conn in held:
            conn.close()


def test_server_at_its_fd_limit_still_looks_open(pair: tuple[Host, Host]) -> None:
    """The kernel completes the handshake into the queue; only the server cannot accept it.
    A client-side probe cannot see this (diagnose must look at the server)."""
    c, s = pair
    s.listen(8080, nofile=32, fill_fds=True)
    code, doc, _ = probe(c, f"{SERVER4}:8080")
    assert code == 0 and doc["state"] == "open"
    queued = s.run(["ss", "-Hltn", "sport", "= :8080"]).stdout.split()
    assert int(queued[1]) >= 1  # Recv-Q: the connection waits in the accept queue


# --------------------------------------------------------------------------- names


def test_unresolvable_name_is_a_dns_error(pair: tuple[Host, Host]) -> None:
    c, s = pair
    c.dns({"server.lab": SERVER4})
    s.listen(8080)
    doc, _ = failed(c, "dns_error", "nosuch.lab:8080")
    assert doc["addresses"] == []
    assert doc["target"] == {"input": "nosuch.lab:8080", "host": "nosuch.lab", "port": 8080}
    assert "does not exist" in doc["dns_error"]


def test_name_without_any_resolver_is_a_dns_error(pair: tuple[Host, Host]) -> None:
    c, _s = pair  # resolv.conf points at 127.0.0.1, where nothing answers
    doc, _ = failed(c, "dns_error", "server.lab:8080")
    assert doc["addresses"] == []
    assert "did not answer" in doc["dns_error"]  # EAI_AGAIN, told apart from NXDOMAIN


SILENT_RESOLVER = """
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
print("ready", flush=True)
while True:
    s.recvfrom(4096)  # read every query, answer none
"""


def test_resolver_that_never_answers_is_bounded_by_the_timeout(pair: tuple[Host, Host]) -> None:
    import subprocess
    import sys

    c, _s = pair
    silent = c.popen([sys.executable, "-c", SILENT_RESOLVER], stdout=subprocess.PIPE, text=True)
    assert silent.stdout is not None and silent.stdout.readline().strip() == "ready"
    start = time.monotonic()
    code, doc, _ = probe(c, "server.lab:8080", "--timeout", "1")
    took = time.monotonic() - start
    assert code == 1 and doc["state"] == "dns_error"
    assert "did not answer within 2 s" in doc["dns_error"]
    assert took < 4.5, f"a silent resolver held the probe {took:.1f} s"


def test_resolved_name_is_open(pair: tuple[Host, Host]) -> None:
    c, s = pair
    c.dns({"server.lab": SERVER4})
    s.listen(8080)
    code, doc, _ = probe(c, "server.lab:8080")
    assert code == 0
    assert doc["state"] == "open"
    assert doc["target"]["host"] == "server.lab"
    a = only(doc)
    assert a["address"] == SERVER4 and a["state"] == "open" and a["errno"] is None


def test_name_with_two_families_reports_each_address(pair: tuple[Host, Host]) -> None:
    c, s = pair
    c.dns({"dual.lab": f"{SERVER4},{SERVER6}"})
    s.listen(8080, SERVER4)  # IPv4 only: the IPv6 address is refused
    code, doc, _ = probe(c, "dual.lab:8080")
    assert code == 0 and doc["state"] == "open"
    seen = by_address(doc)
    assert set(seen) == {SERVER4, SERVER6}
    assert seen[SERVER4]["state"] == "open" and seen[SERVER4]["family"] == 4
    assert seen[SERVER6]["state"] == "refused" and seen[SERVER6]["family"] == 6
    assert seen[SERVER6]["errno"] == "ECONNREFUSED"


# --------------------------------------------------------------------------- open


@pytest.mark.parametrize("target", [f"{SERVER4}:8080", f"[{SERVER6}]:8080", f"http://{SERVER4}:8080/"])
def test_open_port(pair: tuple[Host, Host], target: str) -> None:
    c, s = pair
    s.listen(8080, "::", v6only=False)
    code, doc, _ = probe(c, target)
    assert code == 0
    assert doc["state"] == "open"
    a = only(doc)
    assert a["state"] == "open" and a["errno"] is None and a["seconds"] < 0.5
    assert doc["target"]["port"] == 8080


def test_text_output_names_the_state(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    out = c.portdoctor("probe", f"{SERVER4}:8081")
    assert out.returncode == 1
    assert "refused" in out.stdout and SERVER4 in out.stdout
    assert out.stderr == ""


# --------------------------------------------------------------------------- localhost, two families


LOCALHOST_BOTH = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n"


@pytest.fixture
def local(lab: Lab) -> Host:
    """A host whose /etc/hosts maps localhost to both 127.0.0.1 and ::1."""
    h = lab.host("l")
    h.hosts(LOCALHOST_BOTH)
    assert set(h.run(["getent", "ahosts", "localhost"]).stdout.split()) >= {"127.0.0.1", "::1"}
    return h


def test_localhost_only_ipv6_listens(local: Host) -> None:
    local.listen(3000, "::1")
    code, doc, _ = probe(local, "localhost:3000")
    assert code == 0
    assert doc["state"] == "open"  # a client trying every address gets through
    seen = by_address(doc)
    assert set(seen) == {"::1", "127.0.0.1"}
    assert seen["::1"] == {**seen["::1"], "state": "open", "family": 6, "errno": None}
    assert seen["127.0.0.1"]["state"] == "refused" and seen["127.0.0.1"]["errno"] == "ECONNREFUSED"
    assert seen["127.0.0.1"]["family"] == 4


def test_localhost_only_ipv4_listens(local: Host) -> None:
    local.listen(3000, "127.0.0.1")
    code, doc, _ = probe(local, "localhost:3000")
    assert code == 0 and doc["state"] == "open"
    seen = by_address(doc)
    assert seen["127.0.0.1"]["state"] == "open"
    assert seen["::1"]["state"] == "refused" and seen["::1"]["errno"] == "ECONNREFUSED"


def test_localhost_nothing_listens_reports_the_first_address(local: Host) -> None:
    doc, _ = failed(local, "refused", ":3000")
    assert doc["target"]["host"] == "localhost"
    assert [a["state"] for a in doc["addresses"]] == ["refused", "refused"]
    order = local.run(["python3", "-c", "import socket; print(' '.join(dict.fromkeys("
                       "i[4][0] for i in socket.getaddrinfo('localhost', 3000, type=socket.SOCK_STREAM))))"]
                      ).stdout.split()
    assert [a["address"] for a in doc["addresses"]] == order  # the order a client tries them


# --------------------------------------------------------------------------- attempts


def test_attempts_counts_every_outcome(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    # reset every second SYN: a flapping firewall, so five attempts see two different outcomes
    s.iptables("-A", "INPUT", "-p", "tcp", "--syn", "--dport", "8080", "-m", "statistic", "--mode", "nth",
               "--every", "2", "--packet", "0", "-j", "REJECT", "--reject-with", "tcp-reset")
    code, doc, _ = probe(c, f"{SERVER4}:8080", "--attempts", "5")
    a = only(doc)
    assert a["attempts"] == {"refused": 3, "open": 2}
    assert sum(a["attempts"].values()) == 5
    assert code in (0, 1) and doc["state"] in ("open", "refused")


@pytest.mark.parametrize("listening, expected", [(True, {"open": 5}), (False, {"refused": 5})])
def test_attempts_on_a_steady_port(pair: tuple[Host, Host], listening: bool, expected: dict[str, int]) -> None:
    c, s = pair
    if listening:
        s.listen(8080)
    code, doc, _ = probe(c, f"{SERVER4}:8080", "-n", "5")
    assert only(doc)["attempts"] == expected
    assert code == (0 if listening else 1)
    assert passive_opens(s) == (5 if listening else 0)  # the server saw exactly five connections
