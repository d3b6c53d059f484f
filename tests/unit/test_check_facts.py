"""Which listener accepts which address: the kernel's rules, as the checks model them."""

from __future__ import annotations

import pytest

from portdoctor.checks import Context, facts
from portdoctor.checks.bind import check_bind
from portdoctor.checks.listener import intended_ports
from portdoctor.model import (AddressResult, InterfaceAddress, Listener, Process, ProbeResult, Snapshot,
                              State, Target)


@pytest.mark.parametrize(
    "bound,family,v6only,dest,expected",
    [
        ("0.0.0.0", 4, None, "10.0.0.2", True),
        ("0.0.0.0", 4, None, "::1", False),
        ("127.0.0.1", 4, None, "127.0.0.1", True),
        ("127.0.0.1", 4, None, "127.0.0.2", False),
        ("127.0.0.1", 4, None, "10.0.0.2", False),
        ("::", 6, False, "10.0.0.2", True),  # dual-stack socket takes IPv4 as ::ffff:a.b.c.d
        ("::", 6, True, "10.0.0.2", False),  # IPV6_V6ONLY
        ("::", 6, None, "::1", True),
        ("::1", 6, None, "127.0.0.1", False),
        ("::1", 6, None, "::1", True),
        ("::ffff:127.0.0.1", 6, False, "127.0.0.1", True),
        ("fd00::2", 6, None, "fd00:0:0::2", True),
    ],
)
def test_accepts(bound: str, family: int, v6only: bool | None, dest: str, expected: bool) -> None:
    assert facts.accepts(Listener(bound, 8080, family, v6only), dest) is expected


def test_intended_ports_from_env_and_argv() -> None:
    p = Process(1, "node", ("node", "server.js", "--port", "3001"), env={"PORT": "8080", "DB_HOST": "db"})
    assert set(intended_ports(p)) == {8080, 3001}
    q = Process(2, "gunicorn", ("gunicorn", "--bind=127.0.0.1:8000", "app:app"))
    assert set(intended_ports(q)) == {8000}


def _probe(target: Target, *results: tuple[str, int, State]) -> ProbeResult:
    return ProbeResult(target, State.OPEN if any(r[2] is State.OPEN for r in results) else results[0][2],
                       tuple(AddressResult(a, f, s, "ECONNREFUSED" if s is State.REFUSED else None, 0.001)
                             for a, f, s in results), 3.0)


def test_localhost_resolving_to_ipv6_first_while_server_is_ipv4_only() -> None:
    t = Target("localhost:3000", "localhost", 3000)
    snap = Snapshot(listeners=(Listener("127.0.0.1", 3000, 4, None, pids=(7,)),),
                    processes={7: Process(7, "node", ("node", "app.js"))},
                    addresses=(InterfaceAddress("127.0.0.1", 8, 4, "lo"), InterfaceAddress("::1", 128, 6, "lo")))
    probe = _probe(t, ("::1", 6, State.REFUSED), ("127.0.0.1", 4, State.OPEN))
    (finding,) = check_bind(snap, Context(t, probe))
    assert finding.cause.value == "wrong_interface"
    assert "::1" in finding.summary and "IPv4 only" in finding.summary
    assert finding.severity.value == "error"  # the first address a client tries fails


def test_remote_clients_of_a_loopback_service_are_judged_by_from() -> None:
    t = Target(":8080", "localhost", 8080)
    snap = Snapshot(listeners=(Listener("127.0.0.1", 8080, 4),),
                    addresses=(InterfaceAddress("127.0.0.1", 8, 4, "lo"), InterfaceAddress("10.0.0.2", 24, 4, "eth0")),
                    routes=())
    probe = _probe(t, ("127.0.0.1", 4, State.OPEN))
    assert check_bind(snap, Context(t, probe)) == []  # no --from: the local client works
    from portdoctor.model import RouteLookup

    snap2 = Snapshot(listeners=snap.listeners, addresses=snap.addresses,
                     routes=(RouteLookup("10.0.0.1", "unicast", "eth0", None, "10.0.0.2"),))
    (finding,) = check_bind(snap2, Context(t, probe, from_addr="10.0.0.1"))
    assert "10.0.0.2" in finding.summary and "loopback" in finding.summary
