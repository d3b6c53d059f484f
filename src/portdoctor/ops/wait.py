"""`portdoctor wait`: block until every target is ready, then hand over to a command.

Each target is checked on its own schedule (exponential backoff with jitter, so a fleet of
containers started together does not knock in step) until it is ready or the deadline
passes. What each check saw is tallied, so a timeout says what happened the whole time
("refused: nothing listening 23×") and carries the library's diagnosis of the last failure,
not just "timed out".

>>> from portdoctor.target import parse_target
>>> req = WaitRequest((parse_target("127.0.0.1:5432"),), timeout=15)
>>> report = wait_for(req)                        # doctest: +SKIP
>>> report.ready, report.targets[0].tally.summary()  # doctest: +SKIP
(False, 'refused: nothing listening 9×')
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from portdoctor.errors import BadInput, PortdoctorError
from portdoctor.model import Diagnosis, Target
from portdoctor.ops.backoff import Backoff
from portdoctor.ops.readiness import Observation, Tally, observe

if TYPE_CHECKING:
    from portdoctor.host import Host
    from portdoctor.monitor.config import HttpCheck

DEFAULT_TIMEOUT = 15.0  # wait-for-it's default
ATTEMPT_TIMEOUT = 2.0  # one connect may wait this long for an answer (a silent drop)
PROGRESS_EVERY = 5.0  # an unchanged failure is said again after this many seconds
WAIT_BACKOFF = Backoff(initial=0.05, factor=1.6, maximum=1.0, jitter=0.25)

Observe = Callable[[Target, float, "HttpCheck | None"], Observation]


@dataclass(frozen=True, slots=True)
class WaitRequest:
    """What to wait for: targets, the overall deadline (0: none), the per-connect timeout."""

    targets: tuple[Target, ...]
    timeout: float = DEFAULT_TIMEOUT
    attempt_timeout: float = ATTEMPT_TIMEOUT
    backoff: Backoff = WAIT_BACKOFF
    http: HttpCheck | None = None


@dataclass(slots=True)
class TargetWait:
    """How the wait for one target went."""

    target: Target
    ready: bool = False
    seconds: float = 0.0
    tally: Tally = field(default_factory=Tally)
    last: Observation | None = None
    diagnosis: Diagnosis | None = None

    def to_json(self) -> dict[str, Any]:
        """This target's part of the `portdoctor.wait/1` document."""
        return {
            "target": self.target.to_json(),
            "ready": self.ready,
            "seconds": round(self.seconds, 3),
            "attempts": self.tally.attempts,
            "seen": dict(self.tally.counts),
            "last": self.last.to_json() if self.last is not None else None,
            "last_failure": self.tally.last_failure.words if self.tally.last_failure is not None else None,
            "diagnosis": self.diagnosis.to_json() if self.diagnosis is not None else None,
        }


@dataclass(slots=True)
class WaitReport:
    """The outcome of a wait: one entry per target, the time it took, the deadline."""

    targets: list[TargetWait]
    seconds: float
    timeout: float
    interrupted: bool = False

    @property
    def ready(self) -> bool:
        """True when every target became ready."""
        return all(t.ready for t in self.targets) and not self.interrupted

    def to_json(self, command: Sequence[str] | None = None, runs: bool = False) -> dict[str, Any]:
        """The `portdoctor.wait/1` document (docs/wait.md)."""
        return {
            "schema": "portdoctor.wait/1",
            "ready": self.ready,
            "seconds": round(self.seconds, 3),
            "timeout": self.timeout,
            "targets": [t.to_json() for t in self.targets],
            "command": list(command) if command else None,
            "runs_command": runs,
        }


def progress_due(prev: Observation | None, obs: Observation, last_said: float | None, now: float,
                 every: float = PROGRESS_EVERY) -> bool:
    """Should a progress line be printed for `obs`? On the first check, when the outcome changes,
    and otherwise at most every `every` seconds."""
    if prev is None or last_said is None or prev.outcome != obs.outcome or obs.ready:
        return True
    return now - last_said >= every


def progress_line(tw: TargetWait, obs: Observation, elapsed: float, timeout: float, next_delay: float | None) -> str:
    """One line about one check: what was seen, how long so far, when the next try is."""
    if obs.ready:
        return f"{obs.words}, ready after {elapsed:.1f} s ({tw.tally.attempts} attempts)"
    budget = f"{elapsed:.1f} s of {timeout:g} s" if timeout else f"{elapsed:.1f} s"
    nxt = f", next try in {next_delay:.2f} s" if next_delay is not None else ""
    return f"{obs.words}; attempt {tw.tally.attempts}, {budget}{nxt}"


def timeout_line(tw: TargetWait, timeout: float) -> str:
    """What a target did the whole time it was waited for, when it never became ready."""
    t = tw.target
    return (f"{t.host}:{t.port} was not ready within {timeout:g} s ({tw.tally.attempts} attempts); "
            f"seen the whole time: {tw.tally.summary()}")


def wait_for(req: WaitRequest, on_progress: Callable[[str], None] | None = None,
             observe_fn: Observe | None = None, stop: threading.Event | None = None,
             clock: Callable[[], float] = time.monotonic) -> WaitReport:
    """Check every target of `req` until all are ready or the deadline passes (targets are
    waited for at the same time, each with its own backoff). `on_progress` receives one line per
    noteworthy check; `stop` ends the wait early (a signal)."""
    if not req.targets:
        raise BadInput("wait: give at least one target (host:port)")
    check = observe_fn or observe
    stop = stop or threading.Event()
    lock = threading.Lock()
    start = clock()
    deadline = start + req.timeout if req.timeout else None

    def say(line: str) -> None:
        if on_progress is not None:
            with lock:
                on_progress(line)

    def one(target: Target) -> TargetWait:
        tw = TargetWait(target)
        prev: Observation | None = None
        said: float | None = None
        n = 0
        while not stop.is_set():
            now = clock()
            budget = req.attempt_timeout if deadline is None else min(req.attempt_timeout, deadline - now)
            obs = check(target, max(0.05, budget), req.http)
            tw.tally.add(obs)
            tw.last = obs
            now = clock()
            tw.seconds = now - start
            if obs.ready:
                tw.ready = True
                say(progress_line(tw, obs, tw.seconds, req.timeout, None))
                return tw
            delay = req.backoff.delay(n)
            n += 1
            if deadline is not None:
                if now >= deadline:
                    return tw
                delay = min(delay, deadline - now)
            if progress_due(prev, obs, said, now):
                say(progress_line(tw, obs, tw.seconds, req.timeout, delay))
                said = now
            prev = obs
            stop.wait(delay)
        return tw

    pool = ThreadPoolExecutor(max_workers=len(req.targets), thread_name_prefix="portdoctor-wait") \
        if len(req.targets) > 1 else None
    try:
        results = list(pool.map(one, req.targets)) if pool is not None else [one(req.targets[0])]
    except BaseException:  # Ctrl-C in the main thread: the other targets' loops end too
        stop.set()
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return WaitReport(results, clock() - start, req.timeout, interrupted=stop.is_set())


def diagnose_failures(report: WaitReport, timeout: float = 3.0) -> WaitReport:
    """Attach the library's diagnosis of the last failure to every target that was not ready
    (the last probe is judged as it was seen; the host's facts are read now)."""
    from portdoctor.diagnose import diagnose

    for tw in report.targets:
        failure = tw.tally.last_failure
        if tw.ready or failure is None:
            continue
        tw.diagnosis = diagnose(tw.target, timeout=timeout, probe=failure.probe)
    return report


# --------------------------------------------------------------------------- the command after


class CommandRefused(PortdoctorError):
    """The command after `--` cannot be run (missing, or not trusted when running as root)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[assignment]


def command_path(argv: Sequence[str], host: Host | None = None) -> str:
    """The program `argv` runs: looked up in the caller's PATH (wait-for-it runs commands so,
    and so does exec), and, when portdoctor runs as root, only if it is trusted (owned by root
    up to /, writable by root only): a program another user could have put there is refused."""
    from portdoctor.host import LocalHost

    if not argv:
        raise BadInput("wait: nothing to run after --")
    host = host or LocalHost()
    name = argv[0]
    if "/" in name:
        path = os.path.abspath(name)
        if not os.path.exists(path):
            raise CommandRefused(f"wait: {name}: no such file", 127)
        if not os.access(path, os.X_OK) or os.path.isdir(path):
            raise CommandRefused(f"wait: {name}: not an executable file", 126)
    else:
        import shutil

        found = shutil.which(name, path=os.environ.get("PATH", os.defpath))
        if found is None:
            raise CommandRefused(f"wait: {name}: command not found in PATH", 127)
        path = os.path.abspath(found)
    if host.is_root:
        ok, why = host.trusted_executable(path)
        if not ok:
            raise CommandRefused(f"wait: not running {path} as root: {why}", 126)
    return path


def exec_command(path: str, argv: Sequence[str]) -> NoReturn:
    """Replace this process with the command: same arguments (argv[0] as typed), same environment."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(path, list(argv))
    except OSError as exc:
        raise CommandRefused(f"wait: cannot run {argv[0]}: {exc.strerror or exc}", 126) from None
