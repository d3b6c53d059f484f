"""portdoctor.probe against real sockets on loopback, and its pure helpers on built values."""

from __future__ import annotations

import errno
import socket
import struct
import threading
import time
from typing import Iterator

import pytest

from portdoctor.model import State, Target
from portdoctor.probe import (
    STATE_MEANING,
    Attempt,
    finish_failed,
    gai_text,
    merge_attempts,
    connect_all,
    probe,
    resolve,
)

V4 = socket.AF_INET


def _listener(backlog: int = 16, family: int = socket.AF_INET, addr: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 0))
    s.listen(backlog)
    return s


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(srv: socket.socket, action: str) -> threading.Thread:
    """Accept one connection in a thread and do `action` with it (close, reset, banner)."""

    def body() -> None:
        conn, _ = srv.accept()
        if action == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif action == "banner":
            conn.sendall(b"220 hello\r\n")
            time.sleep(0.5)
        conn.close()

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t


@pytest.fixture
def server() -> Iterator[socket.socket]:
    s = _listener()
    yield s
    s.close()


def _addr(port: int, host: str = "127.0.0.1") -> tuple[int, tuple]:
    return resolve(host, port)[0]


# --------------------------------------------------------------------------- resolve


def test_resolve_literals_keep_family_and_port() -> None:
    assert resolve("127.0.0.1", 80) == [(socket.AF_INET, ("127.0.0.1", 80))]
    (family, sockaddr), = resolve("::1", 8080)
    assert family == socket.AF_INET6 and sockaddr[:2] == ("::1", 8080)


def test_resolve_deduplicates() -> None:
    for family, _sa in resolve("127.0.0.1", 80):
        assert family in (socket.AF_INET, socket.AF_INET6)
    assert len(resolve("127.0.0.1", 80)) == 1  # getaddrinfo gives one per socket type; one kept


# --------------------------------------------------------------------------- connect_all, real sockets


def test_open_port(server: socket.socket) -> None:
    port = server.getsockname()[1]
    (a,) = connect_all([_addr(port)], timeout=2)
    assert a.state is State.OPEN and a.errno is None and a.family == 4 and a.address == "127.0.0.1"
    assert 0 <= a.seconds < 0.5


def test_closed_port_is_refused() -> None:
    (a,) = connect_all([_addr(_closed_port())], timeout=2)
    assert a.state is State.REFUSED
    assert a.errno == "ECONNREFUSED"
    assert a.seconds < 0.5


def test_full_accept_queue_is_a_timeout_within_the_timeout() -> None:
    srv = _listener(backlog=0)
    port = srv.getsockname()[1]
    held = [socket.create_connection(("127.0.0.1", port), timeout=1)]  # fills the queue (backlog 0 + 1)
    try:
        start = time.monotonic()
        (a,) = connect_all([_addr(port)], timeout=0.3)
        took = time.monotonic() - start
        assert a.state is State.TIMEOUT and a.errno is None
        assert a.seconds == pytest.approx(0.3)
        assert 0.28 <= took < 0.8
        assert "0.3" in (a.detail or "")
    finally:
        for h in held:
            h.close()
        srv.close()


def test_accepted_then_closed_is_open_with_a_detail(server: socket.socket) -> None:
    t = _serve(server, "close")
    (a,) = connect_all([_addr(server.getsockname()[1])], timeout=2)
    t.join(2)
    assert a.state is State.OPEN
    assert a.detail == "accepted, then closed by the server at once"


def test_accepted_then_reset_is_an_error(server: socket.socket) -> None:
    t = _serve(server, "reset")
    (a,) = connect_all([_addr(server.getsockname()[1])], timeout=2)
    t.join(2)
    assert a.state is State.ERROR
    assert a.errno == "ECONNRESET"
    assert "reset" in (a.detail or "")


def test_a_banner_keeps_it_open(server: socket.socket) -> None:
    t = _serve(server, "banner")
    (a,) = connect_all([_addr(server.getsockname()[1])], timeout=2)
    t.join(2)
    assert a.state is State.OPEN and a.detail is None


def test_results_keep_the_given_order(server: socket.socket) -> None:
    port = server.getsockname()[1]
    closed = _closed_port()
    results = connect_all([_addr(closed), _addr(port), _addr(closed)], timeout=2)
    assert [r.state for r in results] == [State.REFUSED, State.OPEN, State.REFUSED]


def test_ipv6_loopback_refused() -> None:
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    (a,) = connect_all([_addr(port, "::1")], timeout=2)
    assert a.family == 6 and a.address == "::1" and a.state is State.REFUSED


# --------------------------------------------------------------------------- probe


def test_probe_open(server: socket.socket) -> None:
    port = server.getsockname()[1]
    r = probe(Target(f"127.0.0.1:{port}", "127.0.0.1", port), timeout=2)
    assert r.state is State.OPEN
    doc = r.to_json()
    assert doc["schema"] == "portdoctor.probe/1"
    assert set(doc) == {"schema", "target", "state", "addresses"}
    assert set(doc["addresses"][0]) == {"address", "family", "state", "errno", "seconds"}


def test_probe_refused_with_attempts_counts() -> None:
    port = _closed_port()
    r = probe(Target(f"127.0.0.1:{port}", "127.0.0.1", port), timeout=2, attempts=4)
    assert r.state is State.REFUSED
    (a,) = r.addresses
    assert a.attempts == {"refused": 4}
    assert a.to_json()["attempts"] == {"refused": 4}


def test_probe_single_attempt_has_no_counts(server: socket.socket) -> None:
    port = server.getsockname()[1]
    (a,) = probe(Target("x", "127.0.0.1", port), timeout=2).addresses
    assert a.attempts == {} and "attempts" not in a.to_json()


def test_probe_sees_each_family_separately() -> None:
    srv = _listener(family=socket.AF_INET6, addr="::1")
    port = srv.getsockname()[1]
    try:
        r4 = probe(Target("x", "127.0.0.1", port), timeout=2)
        r6 = probe(Target("x", "::1", port), timeout=2)
        assert r4.state is State.REFUSED and r6.state is State.OPEN
    finally:
        srv.close()


# --------------------------------------------------------------------------- helpers on values


def _att(state: State, seconds: float, err: str | None = None) -> Attempt:
    return Attempt("10.0.0.2", 4, state, err, seconds)


def test_merge_counts_and_picks_the_most_common_failure() -> None:
    tries = [_att(State.OPEN, 0.001), _att(State.REFUSED, 0.002, "ECONNREFUSED"),
             _att(State.TIMEOUT, 1.0), _att(State.REFUSED, 0.003, "ECONNREFUSED"), _att(State.OPEN, 0.004)]
    m = merge_attempts(tries)
    assert m.attempts == {"open": 2, "refused": 2, "timeout": 1}
    assert m.state is State.REFUSED and m.errno == "ECONNREFUSED"
    assert m.seconds == 0.003  # the median


def test_merge_all_open() -> None:
    m = merge_attempts([_att(State.OPEN, 0.1), _att(State.OPEN, 0.3), _att(State.OPEN, 0.2)])
    assert m.state is State.OPEN and m.attempts == {"open": 3} and m.seconds == 0.2


def test_merge_single_attempt_has_no_counts() -> None:
    assert merge_attempts([_att(State.OPEN, 0.1)]).attempts == {}


@pytest.mark.parametrize(
    "code, state",
    [
        (errno.ECONNREFUSED, State.REFUSED),
        (errno.ETIMEDOUT, State.TIMEOUT),
        (errno.EHOSTUNREACH, State.UNREACHABLE),
        (errno.ENETUNREACH, State.UNREACHABLE),
        (errno.EACCES, State.UNREACHABLE),  # ICMPv6 administratively prohibited
        (errno.EADDRNOTAVAIL, State.ERROR),
        (errno.ECONNRESET, State.ERROR),
        (errno.EPERM, State.ERROR),
    ],
)
def test_errno_classification(code: int, state: State) -> None:
    a = finish_failed("10.0.0.2", 4, code, 0.5)
    assert a.state is state
    assert a.errno == errno.errorcode[code]
    assert a.seconds == 0.5


def test_gai_text_names_the_resolver_outcome() -> None:
    assert "does not exist" in gai_text(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    assert "did not answer" in gai_text(socket.gaierror(socket.EAI_AGAIN, "Temporary failure"))
    assert gai_text(socket.gaierror(-999, "odd")) == "odd"


def test_every_state_has_a_meaning() -> None:
    assert set(STATE_MEANING) == set(State)
    for state, text in STATE_MEANING.items():
        assert text.startswith(state.value + ":")
