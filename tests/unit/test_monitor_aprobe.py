"""The asyncio probe against real loopback sockets: it must agree with portdoctor.probe."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from typing import Callable, Iterator

import pytest

from portdoctor.model import State
from portdoctor.monitor.aprobe import aprobe
from portdoctor.monitor.config import HttpCheck
from portdoctor.probe import probe
from portdoctor.target import parse_target


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server() -> Iterator[Callable[[Callable[[socket.socket], None]], int]]:
    """Start a loopback server whose accepted connections go to `handle`; return its port."""
    socks: list[socket.socket] = []

    def start(handle: Callable[[socket.socket], None]) -> int:
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(16)
        socks.append(ls)

        def loop() -> None:
            while True:
                try:
                    conn, _ = ls.accept()
                except OSError:
                    return
                handle(conn)

        threading.Thread(target=loop, daemon=True).start()
        return ls.getsockname()[1]

    yield start
    for s in socks:
        s.close()


def both(text: str, http: HttpCheck | None = None) -> tuple:
    target = parse_target(text)
    result, outcome = asyncio.run(aprobe(target, 1.0, http))
    return result, outcome, probe(target, timeout=1.0)


def test_refused_agrees_with_probe() -> None:
    result, outcome, sync = both(f"127.0.0.1:{_closed_port()}")
    assert result.state is State.REFUSED is sync.state
    assert [(a.address, a.family, a.state, a.errno) for a in result.addresses] == \
        [(a.address, a.family, a.state, a.errno) for a in sync.addresses]
    assert outcome is None
    assert result.to_json()["schema"] == "portdoctor.probe/1"


def test_open_agrees_with_probe(server: Callable) -> None:
    held: list[socket.socket] = []
    port = server(held.append)
    result, _o, sync = both(f"127.0.0.1:{port}")
    assert result.state is State.OPEN is sync.state
    assert result.addresses[0].detail is None and result.addresses[0].seconds < 0.5


def test_accepted_then_closed_is_noted_like_probe(server: Callable) -> None:
    port = server(lambda c: c.close())
    result, _o, sync = both(f"127.0.0.1:{port}")
    assert result.state is State.OPEN
    assert result.addresses[0].detail == sync.addresses[0].detail == "accepted, then closed by the server at once"


def test_accepted_then_reset_is_an_error_like_probe(server: Callable) -> None:
    def reset(c: socket.socket) -> None:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()

    port = server(reset)
    result, _o, sync = both(f"127.0.0.1:{port}")
    assert result.state is State.ERROR is sync.state
    assert result.addresses[0].errno == sync.addresses[0].errno == "ECONNRESET"


def test_localhost_lists_the_same_addresses_in_the_same_order() -> None:
    port = _closed_port()
    result, _o, sync = both(f"localhost:{port}")
    assert [a.address for a in result.addresses] == [a.address for a in sync.addresses]
    assert result.state is sync.state


def _http_server(server: Callable, answer: bytes) -> int:
    def handle(c: socket.socket) -> None:
        c.recv(4096)
        c.sendall(answer)
        c.close()

    return server(handle)


def test_http_check_passes_and_fails_on_status(server: Callable) -> None:
    port = _http_server(server, b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
    result, outcome, _s = both(f"127.0.0.1:{port}", HttpCheck(path="/health"))
    assert result.state is State.OPEN and outcome is not None and outcome.ok and outcome.status == 204
    port = _http_server(server, b"HTTP/1.1 503 Service Unavailable\r\n\r\n")
    _r, outcome, _s = both(f"127.0.0.1:{port}", HttpCheck())
    assert outcome is not None and outcome.error == "HTTP status 503 (Service Unavailable)"
    _r, outcome, _s = both(f"127.0.0.1:{port}", HttpCheck(expect=(503,)))
    assert outcome is not None and outcome.ok


def test_http_check_names_a_non_http_answer(server: Callable) -> None:
    port = _http_server(server, b"-ERR unknown command\r\n")
    _r, outcome, _s = both(f"127.0.0.1:{port}", HttpCheck())
    assert outcome is not None and outcome.error == "not an HTTP answer: '-ERR unknown command'"


def test_http_check_that_gets_no_answer_times_out(server: Callable) -> None:
    held: list[socket.socket] = []
    port = server(held.append)  # accepts, never answers
    _r, outcome, _s = both(f"127.0.0.1:{port}", HttpCheck())
    assert outcome is not None and outcome.status is None and outcome.error.startswith("no HTTP answer within")
