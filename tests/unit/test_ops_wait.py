"""wait's pieces without a network: readiness judged from probe results, progress pacing, the
loop with a fake observer, the command's trust rule, restart plans, and the command lines'
bad input (one line, exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from portdoctor.host import FileStat, LocalHost
from portdoctor.model import AddressResult, ProbeResult, State, Target
from portdoctor.ops import restart as restarts
from portdoctor.ops.backoff import Backoff
from portdoctor.ops.readiness import Observation, judge
from portdoctor.ops.wait import CommandRefused, WaitRequest, command_path, progress_due, timeout_line, wait_for
from portdoctor.probe import CLOSED_AT_ONCE

T = Target("db:5432", "db", 5432)


def _probe(*addrs: AddressResult, state: State | None = None, dns: str | None = None) -> ProbeResult:
    top = state or (State.OPEN if any(a.state is State.OPEN for a in addrs) else addrs[0].state)
    return ProbeResult(T, top, addrs, 1.0, dns_error=dns)


def test_judge_states() -> None:
    ok = judge(_probe(AddressResult("10.0.0.2", 4, State.OPEN, None, 0.001)))
    assert ok.ready and ok.outcome == "ready"
    refused = judge(_probe(AddressResult("10.0.0.2", 4, State.REFUSED, "ECONNREFUSED", 0.001)))
    assert not refused.ready and refused.outcome == "refused" and "nothing listening" in refused.words
    assert "ECONNREFUSED" in refused.words
    assert judge(_probe(AddressResult("10.0.0.2", 4, State.TIMEOUT, None, 1))).outcome == "timeout"
    assert judge(_probe(AddressResult("10.0.0.2", 4, State.UNREACHABLE, "EHOSTUNREACH", 1))).outcome == "unreachable"
    dns = judge(ProbeResult(T, State.DNS_ERROR, (), 1.0, dns_error="the name does not exist"))
    assert dns.outcome == "dns" and "the name does not exist" in dns.words


def test_accept_then_close_or_reset_is_not_ready() -> None:
    closed = judge(_probe(AddressResult("10.0.0.2", 4, State.OPEN, None, 0.001, detail=CLOSED_AT_ONCE)))
    assert not closed.ready and closed.outcome == "closed"
    reset = judge(_probe(AddressResult("10.0.0.2", 4, State.ERROR, "ECONNRESET", 0.001)))
    assert not reset.ready and reset.outcome == "reset"
    # one family serves, the other closes at once: ready (a client falls back)
    mixed = judge(_probe(AddressResult("::1", 6, State.OPEN, None, 0.001, detail=CLOSED_AT_ONCE),
                         AddressResult("127.0.0.1", 4, State.OPEN, None, 0.001)))
    assert mixed.ready
    # the second connection (`hold`) was reset after a while: not ready either
    late = judge(_probe(AddressResult("10.0.0.2", 4, State.OPEN, None, 0.001)), dropped="reset")
    assert not late.ready and late.outcome == "reset" and "resets the connection" in late.words


def test_http_outcome() -> None:
    from portdoctor.monitor.aprobe import HttpOutcome

    p = _probe(AddressResult("10.0.0.2", 4, State.OPEN, None, 0.001))
    assert judge(p, HttpOutcome(200, None, 0.01)).ready
    bad = judge(p, HttpOutcome(503, "HTTP status 503 (Service Unavailable)", 0.01))
    assert not bad.ready and bad.outcome == "http" and not bad.tcp_failed and "503" in bad.words


def _obs(ready: bool, outcome: str = "refused") -> Observation:
    return Observation(_probe(AddressResult("10.0.0.2", 4, State.OPEN if ready else State.REFUSED, None, 0)),
                       ready, "ready" if ready else outcome, outcome)


def test_progress_pacing() -> None:
    a, b = _obs(False), _obs(False, "timeout")
    assert progress_due(None, a, None, 0)
    assert not progress_due(a, a, 0.0, 1.0)
    assert progress_due(a, a, 0.0, 5.0)
    assert progress_due(a, b, 0.0, 0.5)  # the outcome changed


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_wait_loop_until_ready_and_until_deadline() -> None:
    clock = Clock()
    answers = iter([False, False, False, True])
    waits: list[float] = []

    class Stop(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout or 0)
            clock.t += timeout or 0
            return False

    def observe(_t: Target, _timeout: float, _http: object) -> Observation:
        return _obs(next(answers))

    lines: list[str] = []
    req = WaitRequest((T,), timeout=10, backoff=Backoff(0.1, 2, 1, 0))
    report = wait_for(req, lines.append, observe_fn=observe, stop=Stop(), clock=clock)
    assert report.ready and report.targets[0].tally.attempts == 4
    assert waits == [0.1, 0.2, 0.4]
    assert lines[0].startswith("refused; attempt 1") and "ready after" in lines[-1]
    assert report.targets[0].tally.summary() == "refused: nothing listening 3×"

    clock.t = 0.0
    never = WaitRequest((T,), timeout=2, backoff=Backoff(0.5, 2, 1, 0))
    report = wait_for(never, None, observe_fn=lambda *_: _obs(False), stop=Stop(), clock=clock)
    tw = report.targets[0]
    assert not report.ready and tw.tally.counts["refused"] == tw.tally.attempts == 4  # at 0, .5, 1.5, 2
    assert "was not ready within 2 s (4 attempts); seen the whole time: refused: nothing listening 4×" in timeout_line(tw, 2)
    assert report.to_json()["targets"][0]["seen"] == {"refused": 4}


class _Untrusted(LocalHost):
    def trusted_executable(self, path: str) -> tuple[bool, str]:
        return False, f"{path} is owned by uid 1000, not root"


def test_command_path_rules(tmp_path: Path) -> None:
    assert command_path(["sh", "-c", "true"]) == os.path.abspath(subprocess.check_output(
        ["sh", "-c", "command -v sh"], text=True).strip())
    with pytest.raises(CommandRefused) as exc:
        command_path(["pd-no-such-program-xyz"])
    assert exc.value.exit_code == 127
    with pytest.raises(CommandRefused) as exc:
        command_path([str(tmp_path / "missing")])
    assert exc.value.exit_code == 127
    root = _Untrusted(is_root=True)
    with pytest.raises(CommandRefused, match="not running .* as root: .* uid 1000"):
        command_path(["sh"], host=root)
    assert command_path(["sh"], host=_Untrusted(is_root=False))  # not root: the user's own choice


def test_restart_plans(tmp_path: Path) -> None:
    r = restarts.from_command("sh -c 'exit 3'")
    assert r.kind == "command" and r.argv[1:] == ("-c", "exit 3") and r.argv[0].endswith("/sh")
    assert restarts.from_command("echo a | tee b", shell=True).argv[1:] == ("-c", "echo a | tee b")
    with pytest.raises(Exception, match="not found"):
        restarts.from_command("pd-no-such-program-xyz --now")
    with pytest.raises(Exception, match="not running .* as root"):
        restarts.from_command("sh -c true", host=_Untrusted(is_root=True))
    result = restarts.run_restart(restarts.from_command("sh -c 'echo out; echo token=hunter2secret >&2; exit 4'"), 5)
    assert result.rc == 4 and "out" in result.output and not result.ok
    assert "hunter2secret" not in result.output and "token=<redacted>" in result.output
    secret = restarts.from_command("sh -c true --password hunter2secret")
    assert "hunter2secret" not in secret.describe()
    hung = restarts.run_restart(restarts.from_command("sleep 30"), 0.3)
    assert hung.timed_out and hung.rc is None and hung.seconds < 5


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "portdoctor", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, words", [
    (("wait",), "give at least one TARGET"),
    (("wait", "db:99999"), "port"),
    (("wait", "127.0.0.1:1", "--status", "200"), "--status needs --http"),
    (("wait", "127.0.0.1:1", "--http", "healthz"), "starting with /"),
    (("wait", "-h", "127.0.0.1"), "give both --host and --port"),
    (("wait", "127.0.0.1:1", "-t", "-1"), "timeout"),
    (("guard", "127.0.0.1:1", "--restart", "true", "--unit", "x"), "only one of"),
    (("guard", "127.0.0.1:1", "--shell"), "--shell goes with --restart"),
    (("guard", "127.0.0.1:1", "--restart", "pd-no-such-program-xyz"), "not found"),
    (("guard", "127.0.0.1:1", "--restart", "sh -c 'unterminated"), "--restart"),
])
def test_bad_input_is_one_line_exit_2(args: tuple[str, ...], words: str) -> None:
    cp = _cli(*args)
    assert cp.returncode == 2, cp.stderr
    assert words in cp.stderr and len(cp.stderr.strip().splitlines()) == 1, cp.stderr
    assert "Traceback" not in cp.stderr


def test_double_dash_keeps_the_command_apart(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cp = _cli("wait", "127.0.0.1:1", "-t", "0.2", "-q", "--no-diagnose", "--lax", "--", "sh", "-c",
              f'echo "$@" > {out}', "x", "--flag", "-t", "5")
    assert cp.returncode == 0, cp.stderr  # --lax: the command runs after the timeout
    assert out.read_text().strip() == "--flag -t 5"


def test_untrusted_check_names_the_reason() -> None:
    from portdoctor.host import check_trusted

    st = {"/x/prog": FileStat(1000, 1000, 0o755, "file"), "/x": FileStat(0, 0, 0o755, "dir"),
          "/": FileStat(0, 0, 0o755, "dir")}
    ok, why = check_trusted("/x/prog", lambda p: st[p], lambda p: p)
    assert not ok and "uid 1000" in why


class _FakeTools(LocalHost):
    """Every program is /bin/sh and trusted: detection is judged, nothing is run."""

    def which(self, name: str) -> str | None:
        return "/bin/sh" if name in ("supervisorctl", "podman", "systemctl") else None

    def trusted_executable(self, path: str) -> tuple[bool, str]:
        return True, ""


def test_detect_the_supervisor_from_a_snapshot() -> None:
    from portdoctor.hostfacts import (
        Container, ContainerFacts, PortPublish, SupervisedProgram, SupervisorFacts, Supervisord,
    )
    from portdoctor.model import Listener, Process
    from portdoctor.snapshot import Snapshot

    t = Target(":8080", "127.0.0.1", 8080)
    host = _FakeTools(is_root=True)
    sup = SupervisorFacts(supervisord=(Supervisord(10, config="/etc/supervisor/supervisord.conf",
                                                   socket="/run/supervisor.sock", programs=(
        SupervisedProgram("worker", command="python worker.py --port 9000", state="RUNNING", pid=11),
        SupervisedProgram("web", command="python app.py --port 8080", state="EXITED"),
    )),))
    r = restarts.detect(Snapshot(supervisors=sup), t, host)  # down: the program whose command names the port
    assert r is not None and r.kind == "supervisord" and r.name == "web"
    assert r.argv == ("/bin/sh", "-c", "/etc/supervisor/supervisord.conf", "-s", "unix:///run/supervisor.sock",
                      "restart", "web")
    assert "supervisord pid 10" in r.how_found
    # up: the program whose process owns the socket
    snap = Snapshot(listeners=(Listener("0.0.0.0", 8080, 4, pids=(11,)),),
                    processes={11: Process(11, "python")}, supervisors=sup)
    assert restarts.detect(snap, t, host).name == "worker"
    # a container that publishes the port
    cont = ContainerFacts(engine="podman", containers=(
        Container("abc", "shop", ports=(PortPublish("0.0.0.0", 8080, 80),), here=True, state="exited"),))
    r = restarts.detect(Snapshot(containers=cont), t, host)
    assert r is not None and r.kind == "podman" and r.argv[-3:] == ("restart", "--", "shop")
    assert restarts.detect(Snapshot(), t, host) is None
    assert restarts.for_program("web", Snapshot(supervisors=sup), host).argv[-2:] == ("restart", "web")
