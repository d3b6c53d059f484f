"""`portdoctor guard` on real namespaces: it restarts a real server the test kills and backs off
between restarts; it stops restarting at the cap and keeps running; it survives a failing and a
hanging restart command (killed at its timeout, with its process group); with a firewall REJECT
it does not restart and says why; it restarts a real supervisord program through supervisorctl
(found by itself); SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from netlab import LISTENER, Host, Lab, python_for
from servers import need, supervisord

FAST = ["--interval", "0.2", "--timeout", "0.5", "--failures", "2", "--grace", "0.5", "--log-json"]


class Guard:
    """A running `portdoctor guard` in a namespace; its JSON log lines collected as they come."""

    def __init__(self, h: Host, *args: str) -> None:
        exe, env = python_for(None)
        self.proc = h.popen([exe, "-m", "portdoctor", "guard", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.records: list[dict[str, Any]] = []
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for ln in self.proc.stdout:
            try:
                self._q.put(json.loads(ln))
            except json.JSONDecodeError:
                self._q.put({"event": "?", "raw": ln})
        self._q.put(None)

    def until(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 20) -> dict[str, Any]:
        """The first record (from now on) that satisfies `pred`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                rec = self._q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                rec = None
                if time.monotonic() < deadline:
                    continue
            if rec is None:
                ended = rec is None and self._q.empty() and self.proc.poll() is not None
                err = self.proc.stderr.read() if ended and self.proc.stderr else ""
                raise AssertionError(f"no such record within {timeout} s; seen: "
                                     f"{[r.get('event') for r in self.records]} {err}")
            self.records.append(rec)
            if pred(rec):
                return rec

    def event(self, name: str, timeout: float = 20) -> dict[str, Any]:
        return self.until(lambda r: r["event"] == name, timeout)

    def stop(self) -> int:
        """SIGTERM; return its exit status once it said it stopped."""
        self.proc.send_signal(signal.SIGTERM)
        self.event("stopped", 15)
        return self.proc.wait(15)


@pytest.fixture
def s(lab: Lab) -> Host:
    need("ip", "iptables")
    return lab.host("s")


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _wait_dead(pid: int, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still alive"
        time.sleep(0.02)


def test_restarts_a_killed_server_and_backs_off(s: Host, tmp_path: Path) -> None:
    exe, _env = python_for(None)
    pidfile = tmp_path / "server.pid"
    # the restart command starts a real server in the background and records its pid
    restart = (f"{exe} {LISTENER} --port 8080 --addr 127.0.0.1 >/dev/null 2>&1 & echo $! > {pidfile}")
    first = s.listen(8080, addr="127.0.0.1")
    g = Guard(s, "127.0.0.1:8080", "--restart", restart, "--shell", *FAST, "--backoff", "4")
    g.event("started")
    g.until(lambda r: r["event"] == "healthy")
    first.kill()
    rec = g.until(lambda r: r["event"] == "restart")
    assert rec["cause"] == "service_not_running" and rec["budget_left"] == 5
    done = g.until(lambda r: r["event"] in ("restarted", "restart_failed"))
    assert done["event"] == "restarted" and done["rc"] == 0
    assert 3.5 <= done["next_backoff"] <= 4.5  # --backoff 4 with 10 % jitter
    t_restart = time.monotonic()
    g.event("recovered")
    s.wait_port(8080, "127.0.0.1", timeout=5)  # a real server again
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    # failures come back quickly (2 checks after the grace), but the backoff holds the restart
    back = g.until(lambda r: r["event"] in ("backoff", "restart"))
    assert back["event"] == "backoff", back
    rec = g.event("restart")
    assert time.monotonic() - t_restart >= 3.4  # not before the backoff (from the first restart)
    assert rec["budget_left"] == 4
    done = g.until(lambda r: r["event"] in ("restarted", "restart_failed"))
    assert done["event"] == "restarted"
    assert 7.1 <= done["next_backoff"] <= 8.9  # doubled
    g.event("recovered")
    assert g.stop() == 0
    os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_failing_and_hanging_restarts_then_the_cap(s: Host, tmp_path: Path) -> None:
    """Nothing ever listens: the restart command fails (exit 3), then hangs (killed at its timeout
    with the process it left); both spend budget; at the cap guard alerts, restarts no more, keeps
    running."""
    count = tmp_path / "count"
    hangpid = tmp_path / "hang.pid"
    script = tmp_path / "restart.sh"
    script.write_text(f"""#!/bin/sh
n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}
if [ "$n" = 1 ]; then echo "cannot start: config error" >&2; exit 3; fi
sleep 300 &
echo $! > {hangpid}
wait
""")
    # /bin/sh runs it: a script under /tmp (writable by all) is not a program root may run itself
    g = Guard(s, "127.0.0.1:8080", "--restart", f"/bin/sh {script}", *FAST, "--backoff", "0.5",
              "--restart-timeout", "1", "--max-restarts", "2", "--window", "120", "--cooldown", "600")
    failed = g.event("restart_failed")
    assert failed["rc"] == 3 and not failed["timed_out"]
    assert "config error" in failed["output"] and failed["budget_left"] == 1
    t0 = time.monotonic()
    hung = g.event("restart_failed")
    assert hung["timed_out"] is True and hung["rc"] is None
    assert 0.9 <= hung["restart_seconds"] < 5
    assert time.monotonic() - t0 < 10
    _wait_dead(int(hangpid.read_text()))  # what the hung command started is gone too
    capped = g.event("capped")
    assert capped["budget_left"] == 0 and capped["cause"] == "service_not_running"
    assert "restart budget spent" in capped["reason"] and capped["next_backoff"] > 500
    # it keeps watching (and alerting), and runs no more restarts
    g.event("capped")
    g.event("capped")
    assert count.read_text().strip() == "2"
    assert g.proc.poll() is None
    assert [r["event"] for r in g.records].count("restart") == 2
    assert g.stop() == 0


def test_cap_with_on_cap_exit_and_a_cooldown_that_resumes(s: Host, tmp_path: Path) -> None:
    g = Guard(s, "127.0.0.1:8080", "--restart", "false", *FAST, "--backoff", "0", "--max-restarts", "1",
              "--window", "60", "--cooldown", "1")
    g.event("restart_failed")
    g.event("capped")
    rec = g.event("restart", 15)  # the cooldown of 1 s ended: a fresh budget
    assert "cooldown after the cap ended" in rec["reason"] and rec["resumed"] is True
    assert g.stop() == 0
    g = Guard(s, "127.0.0.1:8080", "--restart", "false", *FAST, "--backoff", "0", "--max-restarts", "1",
              "--on-cap", "exit")
    g.event("capped")
    g.event("stopped")
    assert g.proc.wait(10) == 1


def test_firewall_reject_is_not_restarted(s: Host, tmp_path: Path) -> None:
    marker = tmp_path / "restarted"
    s.listen(8080, addr="127.0.0.1")
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "REJECT", "--reject-with", "tcp-reset")
    g = Guard(s, "127.0.0.1:8080", "--restart", f"touch {marker}", *FAST)
    rec = g.until(lambda r: r["event"] in ("skip", "restart"))
    assert rec["event"] == "skip", rec
    assert rec["cause"] == "firewall_reject"
    assert "firewall" in rec["reason"] and "changes no rule" in rec["reason"]
    assert "INPUT" in rec["diagnosis"]  # the rule that rejects, from the diagnosis
    assert rec["budget_left"] == 5  # a skipped restart spends nothing
    g.event("skip")
    assert not marker.exists()
    s.iptables("-D", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "REJECT", "--reject-with", "tcp-reset")
    g.event("recovered")
    assert g.stop() == 0
    assert not marker.exists()


def test_text_log_says_why(s: Host) -> None:
    s.listen(8080, addr="127.0.0.1")
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "REJECT")
    exe, env = python_for(None)
    proc = s.popen([exe, "-m", "portdoctor", "guard", "127.0.0.1:8080", "--restart", "true", *FAST[:-1]],
                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ln = proc.stdout.readline()
        lines.append(ln)
        if ": skip: " in ln:
            break
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    skip = next(ln for ln in lines if ": skip: " in ln)
    assert "not restarting: a firewall rejects the connection" in skip
    assert "diagnosis: firewall_reject" in skip and "budget 5 left" in skip
    assert ": stopped: stopped by a signal" in rest
    assert "Traceback" not in err


def test_restarts_a_supervisord_program_it_finds_itself(s: Host, tmp_path: Path) -> None:
    need("supervisord", "supervisorctl")
    os.chmod(tmp_path, 0o755)
    exe, _env = python_for(None)
    conf = supervisord(s, tmp_path, f"""
[program:web]
command={exe} {LISTENER} --port 8080 --addr 127.0.0.1
autorestart=false
startsecs=0
""", "RUNNING")
    s.wait_port(8080, "127.0.0.1", timeout=10)
    ctl = ["supervisorctl", "-c", str(conf)]
    g = Guard(s, "127.0.0.1:8080", *FAST)  # no --program: found from the host's facts
    started = g.event("started", 30)
    assert "supervisorctl" in started["restart_with"] and "restart web" in started["restart_with"]
    pid = int(s.run([*ctl, "pid", "web"]).stdout.strip())
    os.kill(pid, signal.SIGKILL)
    _wait_dead(pid)
    rec = g.event("restart", 30)
    assert rec["cause"] == "service_not_running"
    done = g.until(lambda r: r["event"] in ("restarted", "restart_failed"), 30)
    assert done["event"] == "restarted", done
    g.event("recovered")
    status = s.run([*ctl, "status", "web"], check=False).stdout
    assert "RUNNING" in status
    assert int(s.run([*ctl, "pid", "web"]).stdout.strip()) != pid
    assert g.stop() == 0


def test_http_check_failing_on_an_open_port_restarts(s: Host, tmp_path: Path) -> None:
    exe, _env = python_for(None)
    site = tmp_path / "site"
    site.mkdir()
    s.start([exe, "-m", "http.server", "8080", "--bind", "127.0.0.1", "--directory", str(site)],
            ready_port=8080, ready_address="127.0.0.1")
    marker = tmp_path / "restarted"
    # the "restart" makes the health page appear: the next check passes
    g = Guard(s, "127.0.0.1:8080", "--http", "/health", "--restart", f"touch {site / 'health'} {marker}", *FAST)
    rec = g.event("restart")
    assert rec["outcome"] == "http" and "HTTP status 404" in rec["seen"]
    assert rec["reason"] == "the port accepts but the HTTP check fails" and rec["cause"] == "ok"
    assert g.event("restarted")["rc"] == 0 and marker.exists()
    g.event("recovered")
    assert g.stop() == 0
