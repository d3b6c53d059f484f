"""guard's decisions as pure functions: threshold, grace, causes a restart cannot fix, backoff,
the cap and its cooldown, the backoff starting over once stable; and the loop with its probe,
diagnosis and restart replaced (no network, no process)."""

from __future__ import annotations

import threading

import pytest

from portdoctor.model import Cause, Diagnosis, ProbeResult, State, Target, Verdict
from portdoctor.ops.backoff import Backoff
from portdoctor.ops.guard import NO_RESTART, Event, GuardState, Policy, after_restart, on_check, on_diagnosis
from portdoctor.ops.guardrun import GuardRequest, guard, line
from portdoctor.ops.readiness import Observation
from portdoctor.ops.restart import Restarter, RestartResult

P = Policy(interval=1, failures=3, grace=10, backoff=Backoff(10, 2, 100, 0), max_restarts=3, window=100,
           cooldown=50, stable=30)


def test_threshold_of_consecutive_failures() -> None:
    s = GuardState()
    d1 = on_check(s, P, 0, False)
    d2 = on_check(d1.state, P, 1, False)
    d3 = on_check(d2.state, P, 2, False)
    assert [d1.event, d2.event, d3.event] == [Event.FAILING, Event.FAILING, Event.DIAGNOSE]
    ok = on_check(d2.state, P, 2, True)  # a success in between resets the count
    assert ok.event is Event.RECOVERED and ok.state.failures == 0
    assert on_check(ok.state, P, 3, False).event is Event.FAILING


@pytest.mark.parametrize("cause", sorted(NO_RESTART, key=lambda c: c.value))
def test_causes_a_restart_cannot_fix_are_skipped_without_spending_budget(cause: Cause) -> None:
    d = on_diagnosis(GuardState(failures=3), P, 5, cause)
    assert d.event is Event.SKIP and d.reason.startswith("not restarting: ")
    assert d.budget_left(P, 5) == 3 and d.cause == cause.value


def test_http_failure_restarts_whatever_the_tcp_diagnosis() -> None:
    assert on_diagnosis(GuardState(failures=3), P, 5, Cause.OK, http_only=True).event is Event.RESTART
    assert on_diagnosis(GuardState(failures=3), P, 5, Cause.OK).event is Event.TRANSIENT


@pytest.mark.parametrize("cause", [Cause.SERVICE_NOT_RUNNING, Cause.RESOURCE_EXHAUSTION, Cause.UNKNOWN])
def test_restartable_causes(cause: Cause) -> None:
    assert on_diagnosis(GuardState(failures=3), P, 5, cause).event is Event.RESTART


def test_grace_backoff_cap_cooldown() -> None:
    s, delay = after_restart(GuardState(failures=3), P, 0)
    assert delay == 10 and s.next_allowed == 10 and s.grace_until == 10 and s.restarting
    assert on_check(s, P, 5, False).event is Event.GRACE  # not counted
    s = on_check(s, P, 5, False).state
    assert s.failures == 0
    # after the grace: three failures, then the backoff (from the restart at 0) has passed at 12
    for t in (10, 11):
        s = on_check(s, P, t, False).state
    d = on_check(s, P, 12, False)
    assert d.event is Event.DIAGNOSE
    assert on_diagnosis(d.state, P, 9, Cause.SERVICE_NOT_RUNNING).event is Event.BACKOFF
    r = on_diagnosis(d.state, P, 12, Cause.SERVICE_NOT_RUNNING)
    assert r.event is Event.RESTART and r.budget_left(P, 12) == 2
    s, delay = after_restart(r.state, P, 12)
    assert delay == 20  # doubled
    s, delay = after_restart(s, P, 40)
    assert delay == 40 and len(s.restarts) == 3
    capped = on_diagnosis(s, P, 90, Cause.SERVICE_NOT_RUNNING)
    assert capped.event is Event.CAPPED and capped.state.capped_until == 140 and capped.next_backoff == 50
    still = on_diagnosis(capped.state, P, 120, Cause.SERVICE_NOT_RUNNING)
    assert still.event is Event.CAPPED and "another 20 s" in still.reason
    resumed = on_diagnosis(capped.state, P, 141, Cause.SERVICE_NOT_RUNNING)
    assert resumed.event is Event.RESTART and resumed.extra["resumed"] is True
    assert resumed.budget_left(P, 141) == 3 and resumed.state.streak == 0


def test_restarts_leave_the_window() -> None:
    s = GuardState(restarts=(0.0, 1.0, 2.0), failures=3)
    assert on_diagnosis(s, P, 99.5, Cause.SERVICE_NOT_RUNNING).event is Event.CAPPED
    d = on_diagnosis(s, P, 100.5, Cause.SERVICE_NOT_RUNNING)  # the restart at 0 left the 100 s window
    assert d.event is Event.RESTART and d.state.restarts == (1.0, 2.0) and d.budget_left(P, 100.5) == 1


def test_backoff_starts_over_once_stable() -> None:
    s, _ = after_restart(GuardState(), P, 0)
    s, _ = after_restart(s, P, 20)
    assert s.streak == 2
    s = on_check(s, P, 25, True).state  # healthy since 25
    assert s.streak == 2
    d = on_check(s, P, 56, True)
    assert d.state.streak == 0 and "starts over" in d.reason
    # a failure in between restarts the stable clock
    s2 = on_check(on_check(s, P, 30, False).state, P, 31, True).state
    assert on_check(s2, P, 56, True).state.streak == 2


def test_backoff_delays() -> None:
    b = Backoff(0.1, 2, 1.0, 0.2)
    assert [b.base(n) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert b.base(10_000) == 1.0  # no overflow
    assert b.delay(1, 0.0) == pytest.approx(0.16) and b.delay(1, 0.999999) == pytest.approx(0.24, abs=1e-5)
    assert all(0.8 <= b.delay(9) <= 1.2 for _ in range(200))


# --------------------------------------------------------------------------- the loop, faked


def _obs(ready: bool) -> Observation:
    t = Target("127.0.0.1:9", "127.0.0.1", 9)
    return Observation(ProbeResult(t, State.OPEN if ready else State.REFUSED, (), 1.0), ready,
                       "ready" if ready else "refused", "accepts" if ready else "refused")


def _diag(cause: Cause) -> Diagnosis:
    t = Target("127.0.0.1:9", "127.0.0.1", 9)
    return Diagnosis(t, ProbeResult(t, State.REFUSED, (), 1.0), Verdict(cause, 0.9, f"it is {cause.value}"), ())


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_loop_restarts_confirms_and_logs_every_decision() -> None:
    clock = FakeClock()
    stop = threading.Event()
    seen = iter([True, False, False, False, False, True, True] + [True] * 50)
    restarts: list[Restarter] = []
    logs: list[dict] = []

    def observe(_t: Target, _timeout: float, _http: object) -> Observation:
        clock.t += 1
        try:
            return _obs(next(seen))
        except StopIteration:
            stop.set()
            return _obs(True)

    def restart(r: Restarter, timeout: float) -> RestartResult:
        restarts.append(r)
        return RestartResult(0, 0.1)

    def log(rec: dict) -> None:
        logs.append(rec)
        if len(logs) > 8:
            stop.set()

    policy = Policy(interval=0, failures=3, grace=0, backoff=Backoff(5, 2, 50, 0), max_restarts=2)
    req = GuardRequest(Target("127.0.0.1:9", "127.0.0.1", 9), policy, Restarter("command", ("/bin/true",)))
    code = guard(req, log, stop, observe_fn=observe, diagnose_fn=lambda t, o: _diag(Cause.SERVICE_NOT_RUNNING),
                 restart_fn=restart, clock=clock, wall=lambda: 0.0)
    events = [r["event"] for r in logs]
    # check 4 fails again, but is confirmed before the restart; check 5 fails -> restart
    assert events[:7] == ["started", "healthy", "failing", "failing", "restart", "restarted", "recovered"], events
    assert len(restarts) == 1 and code == 0 and events[-1] == "stopped"
    rec = logs[5]
    assert rec["rc"] == 0 and rec["next_backoff"] == 5 and rec["budget_left"] == 1
    text = line(logs[4])
    assert "restart: the diagnosis is service_not_running" in text and "budget 2 left" in text
    assert "with command: /bin/true" in text


def test_loop_transient_when_the_confirmation_succeeds() -> None:
    clock = FakeClock()
    stop = threading.Event()
    seen = iter([False, False, True])  # the third check is the confirmation before the restart
    logs: list[dict] = []

    def observe(_t: Target, _timeout: float, _http: object) -> Observation:
        clock.t += 1
        try:
            return _obs(next(seen))
        except StopIteration:
            stop.set()
            return _obs(True)

    policy = Policy(interval=0, failures=2)
    req = GuardRequest(Target("x:9", "x", 9), policy, Restarter("command", ("/bin/true",)))
    guard(req, logs.append, stop, observe_fn=observe, diagnose_fn=lambda t, o: _diag(Cause.UNKNOWN),
          restart_fn=lambda r, t: pytest.fail("no restart"), clock=clock, wall=lambda: 0.0)
    assert [r["event"] for r in logs][:3] == ["started", "failing", "transient"]


def test_loop_on_cap_exit_returns_1() -> None:
    clock = FakeClock()

    def observe(_t: Target, _timeout: float, _http: object) -> Observation:
        clock.t += 1
        return _obs(False)

    logs: list[dict] = []
    policy = Policy(interval=0, failures=1, grace=0, backoff=Backoff(0, 2, 0, 0), max_restarts=1, on_cap="exit")
    req = GuardRequest(Target("x:9", "x", 9), policy, Restarter("command", ("/bin/false",)))
    code = guard(req, logs.append, None, observe_fn=observe, diagnose_fn=lambda t, o: _diag(Cause.SERVICE_NOT_RUNNING),
                 restart_fn=lambda r, t: RestartResult(1, 0.0), clock=clock, wall=lambda: 0.0)
    assert code == 1
    assert [r["event"] for r in logs] == ["started", "restart", "restart_failed", "capped", "stopped"]
