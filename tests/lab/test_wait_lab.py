"""`portdoctor wait` on real namespaces: it returns as soon as a listener started later accepts and
runs the command (exec, same arguments and environment); it times out with what it saw the whole
time and the diagnosis; wait-for-it's flags work; a port that accepts and at once closes is not
ready."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from netlab import Host, Lab, python_for
from servers import need


@pytest.fixture
def s(lab: Lab) -> Host:
    need("ip")
    return lab.host("s")


def _wait_proc(h: Host, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    exe, py_env = python_for(None)
    return h.popen([exe, "-m", "portdoctor", "wait", *args], env={**py_env, **(env or {})},
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_returns_once_a_later_listener_accepts_and_execs_the_command(s: Host, tmp_path: Path) -> None:
    out = tmp_path / "ran"
    proc = _wait_proc(s, "127.0.0.1:8080", "-t", "30", "--",
                      "sh", "-c", 'echo "$0 $1 $PD_WAIT_VAR" > "$2"', "argzero", "--flag", str(out),
                      env={"PD_WAIT_VAR": "from-env"})
    time.sleep(1.5)
    assert proc.poll() is None, proc.communicate()
    s.listen(8080)
    started = time.monotonic()
    _stdout, err = proc.communicate(timeout=20)
    took = time.monotonic() - started
    assert proc.returncode == 0, err
    # the backoff tops out at 1 s (+25 % jitter): it notices the listener within that
    assert took < 2.5, (took, err)
    assert out.read_text().strip() == "argzero --flag from-env"  # same arguments, same environment
    assert "refused: nothing listening" in err  # progress before the listener came up
    assert "127.0.0.1:8080 accepts" in err and "ready after" in err


def test_timeout_says_what_it_saw_and_diagnoses(s: Host) -> None:
    t0 = time.monotonic()
    cp = s.portdoctor("wait", "127.0.0.1:8080", "-t", "2")
    assert cp.returncode == 1
    assert time.monotonic() - t0 < 15
    err = cp.stderr
    assert "was not ready within 2 s" in err
    assert "seen the whole time: refused: nothing listening" in err
    assert "service_not_running" in err  # the diagnosis of the last failure
    assert "Traceback" not in err
    code, doc = s.json_of("wait", "127.0.0.1:8080", "-t", "1", "-q")
    assert code == 1 and doc["schema"] == "portdoctor.wait/1" and doc["ready"] is False
    t = doc["targets"][0]
    assert t["seen"]["refused"] == t["attempts"] >= 2
    assert t["diagnosis"]["verdict"]["cause"] == "service_not_running"


def test_timeout_of_a_silent_drop_or_unreachable_says_which(lab: Lab) -> None:
    need("ip", "iptables")
    c, s = lab.pair()
    s.listen(8080)
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "DROP")
    code, doc = c.json_of("wait", "10.0.0.2:8080", "-t", "2", "--connect-timeout", "0.5", "-q", "--no-diagnose")
    assert code == 1
    t = doc["targets"][0]
    assert set(t["seen"]) == {"timeout"}, t
    assert "no answer" in t["last_failure"]
    s.sysctl("net.ipv4.icmp_ratelimit", 0)  # else the kernel sends one ICMP error per second, the rest time out
    s.iptables("-R", "INPUT", "1", "-p", "tcp", "--dport", "8080", "-j", "REJECT",
               "--reject-with", "icmp-host-prohibited")
    code, doc = c.json_of("wait", "10.0.0.2:8080", "-t", "1", "-q", "--no-diagnose")
    t = doc["targets"][0]
    assert code == 1 and set(t["seen"]) == {"unreachable"}, t
    assert "EHOSTUNREACH" in t["last_failure"]


def test_wait_for_it_flags(s: Host, tmp_path: Path) -> None:
    strict = tmp_path / "strict"
    cp = s.portdoctor("wait", "-h", "127.0.0.1", "-p", "8080", "-t", "1", "-s", "-q", "--no-diagnose",
                      "--", "touch", str(strict))
    assert cp.returncode == 1 and not strict.exists()
    assert "not running touch: not every target became ready" in cp.stderr
    assert "next try in" not in cp.stderr and "attempt 1," not in cp.stderr  # -q: no progress lines
    # without -s the command does not run either (wait-for-it would run it): exit 1
    loose = tmp_path / "loose"
    cp = s.portdoctor("wait", "127.0.0.1:8080", "--timeout=1", "--quiet", "--no-diagnose", "--",
                      "sh", "-c", f"touch {loose}; exit 7")
    assert cp.returncode == 1 and not loose.exists()
    # --lax is wait-for-it's way: the command runs after the timeout; its status is the exit status
    cp = s.portdoctor("wait", "127.0.0.1:8080", "--timeout=1", "--quiet", "--no-diagnose", "--lax", "--",
                      "sh", "-c", f"touch {loose}; exit 7")
    assert cp.returncode == 7 and loose.exists()
    assert "was not ready within 1 s" in cp.stderr
    s.listen(8080)
    s.listen(8081)
    cp = s.portdoctor("wait", "127.0.0.1:8080", "127.0.0.1:8081", "-t", "5", "--strict", "--", "true")
    assert cp.returncode == 0, cp.stderr
    cp = s.portdoctor("wait", "127.0.0.1:8080", "-t", "5", "--json")
    doc = json.loads(cp.stdout)
    assert cp.returncode == 0 and doc["ready"] and doc["targets"][0]["attempts"] == 1


def test_accept_then_close_is_not_ready(s: Host) -> None:
    s.listen(8080, close=True)  # accepts every connection and closes it at once
    assert s.connect_errno("127.0.0.1", 8080) == 0  # a bare connect succeeds
    code, doc = s.json_of("wait", "127.0.0.1:8080", "-t", "1.5", "-q", "--no-diagnose")
    assert code == 1 and doc["ready"] is False
    t = doc["targets"][0]
    assert set(t["seen"]) == {"closed"}, t
    assert "closes the connection at once" in t["last_failure"]


def test_http_status_check(s: Host, tmp_path: Path) -> None:
    (tmp_path / "health").write_text("ok\n")
    exe, _env = python_for(None)
    s.start([exe, "-m", "http.server", "8080", "--bind", "127.0.0.1", "--directory", str(tmp_path)],
            ready_port=8080, ready_address="127.0.0.1")
    code, doc = s.json_of("wait", "127.0.0.1:8080", "--http", "/missing", "-t", "1", "-q", "--no-diagnose")
    assert code == 1 and set(doc["targets"][0]["seen"]) == {"http"}
    assert "HTTP status 404" in doc["targets"][0]["last_failure"]
    code, doc = s.json_of("wait", "http://127.0.0.1:8080", "--http", "/missing", "--status", "404", "-t", "3")
    assert code == 0 and doc["ready"]
    code, doc = s.json_of("wait", "127.0.0.1:8080", "--http", "/health", "-t", "3")
    assert code == 0 and doc["targets"][0]["last"]["http"]["status"] == 200


# accepts, waits 80 ms (longer than the probe's own watch on loopback), then resets (SO_LINGER 0)
SLOW_RESET = """
import socket, struct, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8080)); s.listen(64); print("ready", flush=True)
while True:
    c, _ = s.accept(); time.sleep(0.08)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); c.close()
"""


def test_accept_then_reset_after_a_moment_is_not_ready(s: Host) -> None:
    exe, _env = python_for(None)
    s.start([exe, "-c", SLOW_RESET], ready_port=8080, ready_address="127.0.0.1")
    code, doc = s.json_of("wait", "127.0.0.1:8080", "-t", "1.5", "-q", "--no-diagnose")
    assert code == 1 and doc["ready"] is False
    t = doc["targets"][0]
    assert set(t["seen"]) == {"reset"}, t
    assert "resets the connection at once" in t["last_failure"]
