"""The pure parts of `scan` and of "who sent the refusal": port lists, the timing engine, the
window, judging a captured answer; and the scan command's bad input (exit 2) on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from portdoctor.clientview import _banner, nearby_ports
from portdoctor.errors import BadInput
from portdoctor.refusal import Answer, initial_ttl, judge, routers_before
from portdoctor.scan import (
    COMMON_PORTS,
    Timing,
    Window,
    _nmap_ranking,
    parse_ports,
    scan,
    top_ports,
)

# --------------------------------------------------------------------------- port lists


@pytest.mark.parametrize("text,expected", [
    ("22", (22,)),
    ("80,443", (80, 443)),
    ("8000-8003", (8000, 8001, 8002, 8003)),
    ("-3", (1, 2, 3)),
    ("65534-", (65534, 65535)),
    ("22,22,21-23", (22, 21, 23)),
    (" 5 , 6 ", (5, 6)),
])
def test_parse_ports(text: str, expected: tuple[int, ...]) -> None:
    assert parse_ports(text) == expected


def test_all_ports() -> None:
    ports = parse_ports("-")
    assert ports[0] == 1 and ports[-1] == 65535 and len(ports) == 65535
    assert parse_ports("1-65535") == ports


@pytest.mark.parametrize("text,words", [
    ("0", "1 to 65535"), ("65536", "1 to 65535"), ("9-3", "backwards"), ("", "needs ports"),
    ("80,,81", "empty item"), ("8a", "neither a port"), ("1-x", "not a port number"), ("--", "not a port"),
])
def test_bad_port_lists(text: str, words: str) -> None:
    with pytest.raises(BadInput, match=words):
        parse_ports(text)


def test_top_ports_without_nmap_table() -> None:
    top = top_ports(1000, table=None)
    assert len(top) == 1000 == len(set(top))
    assert top[:3] == COMMON_PORTS[:3]
    assert set(COMMON_PORTS) <= set(top)
    assert top_ports(5, table=None) == COMMON_PORTS[:5]
    with pytest.raises(BadInput):
        top_ports(0)


def test_nmap_ranking_orders_by_frequency_and_refuses_a_writable_file(tmp_path: Path) -> None:
    f = tmp_path / "nmap-services"
    f.write_text("# comment\nhttp\t80/tcp\t0.48\nssh\t22/tcp\t0.18\ndomain\t53/udp\t0.2\n"
                 "telnet\t23/tcp\t0.22\nbad\tx/tcp\t1\n")
    os.chmod(f, 0o644)
    if os.geteuid() == 0:
        os.chown(f, 0, 0)
        assert _nmap_ranking(str(f)) == [80, 23, 22]
        assert top_ports(4, table=str(f)) == (80, 23, 22, 1)
    os.chmod(f, 0o666)  # anyone could plant ports in it: ignored
    assert _nmap_ranking(str(f)) == []


# --------------------------------------------------------------------------- timing engine


def test_timing_before_any_answer_is_nmaps_initial() -> None:
    assert Timing().timeout == 1.0


def test_timing_learns_from_answers() -> None:
    t = Timing()
    t.observe(0.2)
    assert t.srtt == 0.2 and t.rttvar == 0.2 and t.timeout == pytest.approx(1.0)
    for _ in range(50):
        t.observe(0.2)
    assert t.timeout == pytest.approx(0.2 + 4 * t.rttvar) and t.timeout < 0.3


def test_timing_stays_within_bounds() -> None:
    fast = Timing()
    for _ in range(20):
        fast.observe(0.00001)
    assert fast.timeout == 0.1  # never below nmap's 100 ms floor
    slow = Timing()
    slow.observe(30.0)
    assert slow.timeout == 10.0


def test_timing_variation_widens_the_timeout() -> None:
    t = Timing()
    for rtt in (0.01, 0.01, 0.01, 0.01):
        t.observe(rtt)
    before = t.timeout
    t.observe(0.5)
    assert t.timeout > before


def test_window_halves_on_answered_retries_and_regrows() -> None:
    w = Window(100)
    assert w.allowed == 100
    w.answered(was_retry=True)
    assert w.allowed == 50
    for _ in range(10):
        w.answered(was_retry=False)
    assert w.allowed == 60
    for _ in range(10):
        w.answered(was_retry=True)
    assert w.allowed == 8  # floor


# --------------------------------------------------------------------------- the sweep on loopback


def test_sweep_on_loopback() -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        port = srv.getsockname()[1]
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            closed = other.getsockname()[1]
        result = scan("127.0.0.1", (port, closed))
    states = {p.port: (p.state, p.reason) for p in result.ports}
    assert states == {port: ("open", "syn-ack"), closed: ("closed", "conn-refused")}
    doc = result.to_json()
    assert doc["schema"] == "portdoctor.scan/1" and doc["counts"]["open"] == 1


# --------------------------------------------------------------------------- who refused


T = "10.2.0.2"


def test_icmp_from_a_router_names_it() -> None:
    r = judge(T, 8080, Answer("icmp", "ECONNREFUSED", "10.1.0.1", 64, icmp="port-unreachable"))
    assert (r.where, r.sender, r.hops) == ("path", "10.1.0.1", 0)
    assert r.summary.startswith("refused by 10.1.0.1")


def test_icmp_from_the_target_is_its_firewall() -> None:
    r = judge(T, 8080, Answer("icmp", "ECONNREFUSED", T, 63, icmp="port-unreachable"))
    assert r.where == "target_firewall" and r.hops == 1


def test_reset_echoing_the_mark_is_the_targets_stack() -> None:
    syn_ack = (22, Answer("syn-ack", None, T, 63, 0, 0, captured=True))
    r = judge(T, 8080, Answer("tcp-reset", "ECONNREFUSED", T, 63, 0, 0x28, captured=True), syn_ack)
    assert r.where == "target" and "nothing listens" in r.summary


def test_reset_without_the_mark_at_the_targets_ttl_is_a_rule_on_it() -> None:
    syn_ack = (22, Answer("syn-ack", None, T, 63, 0, 0, captured=True))
    r = judge(T, 8080, Answer("tcp-reset", "ECONNREFUSED", T, 63, 0, 0, captured=True), syn_ack)
    assert r.where == "target_firewall"


def test_reset_one_hop_early_is_forged_in_the_path() -> None:
    syn_ack = (22, Answer("syn-ack", None, T, 62, 0, 0, captured=True))
    r = judge(T, 8080, Answer("tcp-reset", "ECONNREFUSED", T, 63, 0, 0, captured=True), syn_ack,
              hops={1: "10.1.0.1", 2: "10.3.0.1"})
    assert (r.where, r.sender, r.hops) == ("path", "10.3.0.1", 1)


def test_reset_from_beyond_the_target() -> None:
    syn_ack = (22, Answer("syn-ack", None, T, 64, 0, 0, captured=True))
    r = judge(T, 8080, Answer("tcp-reset", "ECONNREFUSED", T, 62, 0, 0x28, captured=True), syn_ack)
    assert r.where == "unknown" and "beyond" in r.summary


def test_unmarked_reset_without_reference_behind_a_router_is_undecided() -> None:
    r = judge(T, 8080, Answer("tcp-reset", "ECONNREFUSED", T, 63, 0, 0, captured=True))
    assert r.where == "unknown" and r.hops == 1


def test_reset_not_captured_says_what_it_needs() -> None:
    r = judge(T, 8080, Answer("tcp-reset", "ECONNREFUSED", T), raw_allowed=False)
    assert r.where == "unknown" and "CAP_NET_RAW" in (r.limitation or "")


def test_ttl_arithmetic() -> None:
    assert [initial_ttl(x) for x in (30, 63, 64, 100, 250)] == [32, 64, 64, 128, 255]
    assert routers_before(61) == 3


# --------------------------------------------------------------------------- nearby ports


def test_nearby_ports() -> None:
    near = nearby_ports(8080)
    assert near[:2] == (8079, 8081) and 80 in near and 8080 not in near and len(near) <= 32
    assert 5432 in nearby_ports(5433, "postgres")
    assert nearby_ports(1)[:3] == (2, 3, 4)


@pytest.mark.parametrize("data,name", [
    (b"HTTP/1.0 200 OK\r\n", "HTTP"), (b"SSH-2.0-OpenSSH_9.2\r\n", "SSH"), (b"-ERR unknown command", "Redis"),
    (b"220 mail ESMTP\r\n", "SMTP"), (b"220 ProFTPD FTP\r\n", "FTP"), (b"\x15\x03\x03", "TLS"), (b"zzz", None),
])
def test_banner(data: bytes, name: str | None) -> None:
    assert _banner(data) == name


# --------------------------------------------------------------------------- the command


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return subprocess.run([sys.executable, "-m", "portdoctor", *args], capture_output=True, text=True, timeout=60,
                          env=env)


@pytest.mark.parametrize("args", [
    ("scan", "127.0.0.1", "-p", "0"), ("scan", "127.0.0.1", "-p", "80-1"), ("scan", "127.0.0.1", "--top", "0"),
    ("scan", "127.0.0.1", "-p", "1", "--top", "5"), ("scan", "127.0.0.1", "-p", "1", "--max-seconds", "0"),
    ("scan",),
])
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    cp = _run(*args)
    assert cp.returncode == 2, cp
    assert "Traceback" not in cp.stderr and len(cp.stderr.strip().splitlines()) >= 1 and cp.stdout == ""


def test_an_answer_made_on_this_host_is_its_own_output_chain() -> None:
    icmp = judge(T, 8080, Answer("icmp", "ECONNREFUSED", "10.1.0.5", 64, icmp="port-unreachable", looped=True))
    reset = judge(T, 8080, Answer("tcp-reset", "ECONNREFUSED", T, 64, 0, 0, captured=True, looped=True))
    assert icmp.where == reset.where == "this_host"
    assert "OUTPUT" in reset.summary and reset.sender is None


from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(st.text(alphabet="0123456789-, abc", max_size=20))
def test_parse_ports_either_parses_or_says_bad_input(text: str) -> None:
    try:
        ports = parse_ports(text)
    except BadInput:
        return
    assert ports and all(1 <= p <= 65535 for p in ports) and len(ports) == len(set(ports))
