"""Which listener accepts which address: the kernel's rules, as the checks model them."""

from __future__ import annotations

import pytest

from portdoctor import addresses
from portdoctor.checks import Context, facts
from portdoctor.checks.bind import check_bind
from portdoctor.checks.listener import intended_ports
from portdoctor.model import (
    AddressResult, InterfaceAddress, Listener, Process, ProbeResult, State, Target,
)
from portdoctor.snapshot import Snapshot


# bound address, its family, IPV6_V6ONLY, destination -> does the socket take the connection?
ACCEPTS = [
    ("0.0.0.0", 4, None, "10.0.0.2", True),
    ("0.0.0.0", 4, None, "::1", False),
    ("0.0.0.0", 4, None, "::ffff:10.0.0.2", True),  # a v4-mapped destination is IPv4
    ("127.0.0.1", 4, None, "127.0.0.1", True),
    ("127.0.0.1", 4, None, "127.0.0.2", False),
    ("127.0.0.1", 4, None, "10.0.0.2", False),
    ("10.0.0.2", 4, None, "10.0.0.2", True),
    ("::", 6, False, "10.0.0.2", True),  # dual-stack socket takes IPv4 as ::ffff:a.b.c.d
    ("::", 6, None, "10.0.0.2", True),  # V6ONLY unknown: Linux's default (bindv6only=0)
    ("::", 6, True, "10.0.0.2", False),  # IPV6_V6ONLY
    ("::", 6, True, "fd00::2", True),
    ("::", 6, None, "::1", True),
    ("0:0:0:0:0:0:0:0", 6, False, "10.0.0.2", True),  # wildcard, spelled out
    ("::1", 6, None, "127.0.0.1", False),
    ("::1", 6, None, "::1", True),
    ("::1", 6, None, "0:0:0:0:0:0:0:1", True),
    ("::ffff:127.0.0.1", 6, False, "127.0.0.1", True),
    ("::ffff:127.0.0.1", 6, False, "::ffff:127.0.0.1", True),
    ("::ffff:127.0.0.1", 6, False, "127.0.0.2", False),
    ("fd00::2", 6, None, "fd00:0:0::2", True),  # zero-compressed forms are one address
    ("fd00:0:0::2", 6, None, "fd00::2", True),
    ("fd00::2", 6, None, "fd00::3", False),
    ("fd00::2", 6, None, "10.0.0.2", False),
    ("fe80::1%veth0", 6, None, "fe80::1", True),  # scoped link-local: the zone is not the address
    ("fe80::1", 6, None, "fe80::1%eth0", True),
    ("127.0.0.1", 4, None, "localhost", False),  # a name is not an address
]


@pytest.mark.parametrize("bound,family,v6only,dest,expected", ACCEPTS)
def test_accepts(bound: str, family: int, v6only: bool | None, dest: str, expected: bool) -> None:
    assert addresses.accepts(bound, family, v6only, dest) is expected
    assert facts.takes(Listener(bound, 8080, family, v6only), dest) is expected


@pytest.mark.parametrize("text,loopback,scope", [
    ("127.0.0.1", True, "loopback"), ("127.5.6.7", True, "loopback"), ("::1", True, "loopback"),
    ("::ffff:127.0.0.1", True, "loopback"), ("0:0:0:0:0:0:0:1", True, "loopback"), ("localhost", True, "loopback"),
    ("[::1]", True, "loopback"), ("10.0.0.2", False, "specific"), ("::ffff:10.0.0.2", False, "specific"),
    ("fe80::1%eth0", False, "specific"), ("0.0.0.0", False, "all"), ("::", False, "all"),
    ("0:0::0", False, "all"), ("fd00::2", False, "specific"),
])
def test_loopback_and_scope(text: str, loopback: bool, scope: str) -> None:
    assert addresses.is_loopback(text) is loopback
    assert addresses.scope(text) == scope
    fam = 6 if ":" in text else 4
    if text != "localhost" and not text.startswith("["):
        assert Listener(text, 80, fam).scope.value == scope


@pytest.mark.parametrize("a,b,same", [
    ("fd00::2", "fd00:0:0::2", True), ("::ffff:10.0.0.1", "10.0.0.1", True), ("fe80::1%eth0", "fe80::1", True),
    ("10.0.0.1", "10.0.0.2", False), ("FD00::2", "fd00::2", True), ("host", "host", True),
])
def test_same_address(a: str, b: str, same: bool) -> None:
    assert addresses.same_address(a, b) is same


@pytest.mark.parametrize("host,port,text", [
    ("10.0.0.2", 80, "10.0.0.2:80"), ("fd00::2", 8080, "[fd00::2]:8080"), ("db.example", 5432, "db.example:5432"),
    ("::ffff:127.0.0.1", 1, "[::ffff:127.0.0.1]:1"),
])
def test_endpoint(host: str, port: int, text: str) -> None:
    assert addresses.endpoint(host, port) == text


def test_is_local_compares_addresses() -> None:
    snap = Snapshot(addresses=(InterfaceAddress("fd00::2", 64, 6, "eth0"), InterfaceAddress("10.0.0.2", 24, 4, "eth0")))
    assert facts.is_local(snap, "fd00:0:0::2") and facts.is_local(snap, "::ffff:10.0.0.2")
    assert facts.is_local(snap, "::ffff:127.0.0.1") and not facts.is_local(snap, "fd00::3")


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


def test_a_port_named_on_the_command_line_is_the_evidence() -> None:
    """`app --port 8081` while clients dial 8080: its own argument, not the usual-ports table."""
    from portdoctor.checks.listener import check_listener

    proc = Process(70, "python3", ("python3", "app.py", "--port", "8081"))
    snap = Snapshot(listeners=(Listener("0.0.0.0", 8081, 4, pids=(70,), inode=5),), processes={70: proc},
                    addresses=(InterfaceAddress("127.0.0.1", 8, 4, "lo"),))
    target = Target(":8080", "localhost", 8080)
    probe = ProbeResult(target, State.REFUSED, (AddressResult("127.0.0.1", 4, State.REFUSED, "ECONNREFUSED", 0.001),),
                        1.0)
    (f,) = check_listener(snap, Context(target=target, probe=probe))
    assert f.cause.value == "wrong_port" and f.weight >= 0.85
    assert "`--port 8081` on its command line" in f.summary and "usual port" not in f.summary


def _nginx_case(listener: Listener, value: str, text: str, dest: str = "10.0.0.2"):
    from portdoctor.model import ServiceConfig

    proc = Process(80, "nginx", ("nginx: master process /usr/sbin/nginx",), user="root")
    snap = Snapshot(listeners=(listener,), processes={80: proc},
                    addresses=(InterfaceAddress("10.0.0.2", 24, 4, "eth0"), InterfaceAddress("127.0.0.1", 8, 4, "lo")),
                    configs=(ServiceConfig("nginx", "/etc/nginx/sites-enabled/app", 3, "listen", value, text),))
    target = Target(f"{dest}:8080", dest, 8080)
    probe = ProbeResult(target, State.REFUSED, (AddressResult(dest, 4, State.REFUSED, "ECONNREFUSED", 0.001),), 1.0)
    (f,) = check_bind(snap, Context(target=target, probe=probe))
    return f


def test_nginx_loopback_listen_fix_keeps_the_port() -> None:
    f = _nginx_case(Listener("127.0.0.1", 8080, 4, pids=(80,)), "127.0.0.1:8080", "listen 127.0.0.1:8080;")
    cmd = f.fix[0].command
    assert "listen 8080;" in cmd and "listen 0.0.0.0;" not in cmd, cmd


def test_v6only_wildcard_fix_adds_an_ipv4_listen_instead_of_another_v6_one() -> None:
    f = _nginx_case(Listener("::", 8080, 6, v6only=True, pids=(80,)), "[::]:8080 ipv6only=on",
                    "listen [::]:8080 ipv6only=on;")
    assert "IPV6_V6ONLY" in f.summary
    cmd = f.fix[0].command
    assert "keep line 3" in cmd and "listen 8080;" in cmd, cmd


def test_widened_values() -> None:
    from portdoctor.checks.bind import _widened

    assert _widened("haproxy", "127.0.0.1:8080", "0.0.0.0", None, False) == "0.0.0.0:8080"
    assert _widened("haproxy", "[::1]:8080", "::", "::", False) == "[::]:8080"
    assert _widened("haproxy", "[::1]:8080", "::", "::", True) == "0.0.0.0:8080"  # bindv6only=1
    assert _widened("redis", "127.0.0.1 -::1", "* -::*", None, False) == "* -::*"  # no port in it
    assert _widened("nginx", "127.0.0.1:8080 default_server", "0.0.0.0", None, False) == "8080 default_server"


def test_portdoctor_itself_is_never_the_suspect() -> None:
    """A `watch` listens on its dashboard port: when it diagnoses 8080, it must not blame itself."""
    from portdoctor.checks.listener import check_listener

    me = Process(4242, "python3", ("python3", "-m", "portdoctor", "watch", "w.yml"))
    snap = Snapshot(listeners=(Listener("127.0.0.1", 8000, 4, pids=(4242,), inode=9),), processes={4242: me},
                    observer_pid=4242, addresses=(InterfaceAddress("127.0.0.1", 8, 4, "lo"),))
    target = Target(":8080", "localhost", 8080)
    probe = ProbeResult(target, State.REFUSED, (AddressResult("127.0.0.1", 4, State.REFUSED, "ECONNREFUSED", 0.001),),
                        1.0)
    causes = [f.cause.value for f in check_listener(snap, Context(target=target, probe=probe))]
    assert "wrong_port" not in causes and causes[-1] == "service_not_running", causes
