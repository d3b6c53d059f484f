"""The `guard` loop: check every interval, diagnose at the threshold, decide (ops/guard.py),
restart through the supervisor (ops/restart.py), and log every decision with its reason, the
diagnosis, the counters, the next backoff and the remaining budget.

Stops cleanly when `stop` is set (the command sets it on SIGTERM/SIGINT): a restart under way
finishes (it has its own timeout), the last line says why guard stopped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from portdoctor.model import Diagnosis, Target
from portdoctor.ops.guard import Decision, Event, GuardState, Policy, after_restart, in_window, on_check, on_diagnosis
from portdoctor.ops.readiness import Observation, observe
from portdoctor.ops.restart import Restarter, RestartResult, run_restart

if TYPE_CHECKING:
    from portdoctor.monitor.config import HttpCheck


@dataclass(frozen=True, slots=True)
class GuardRequest:
    """What to guard and how: the target, the policy, the way to restart, an optional HTTP check."""

    target: Target
    policy: Policy
    restarter: Restarter
    http: HttpCheck | None = None
    service: str | None = None  # passed to the diagnosis (which service is expected there)


Log = Callable[[dict[str, Any]], None]


def _stamp(wall: float) -> str:
    return datetime.fromtimestamp(wall, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def record(req: GuardRequest, d: Decision, now: float, wall: float, obs: Observation | None = None,
           diagnosis: Diagnosis | None = None, result: RestartResult | None = None) -> dict[str, Any]:
    """One log record (a JSON object; `line` renders it as text)."""
    p = req.policy
    rec: dict[str, Any] = {
        "ts": _stamp(wall),
        "target": f"{req.target.host}:{req.target.port}",
        "event": d.event.value,
        "reason": d.reason,
        "failures": d.state.failures,
        "threshold": p.failures,
        "restarts_in_window": len(in_window(d.state.restarts, p, now)),
        "max_restarts": p.max_restarts,
        "window": p.window,
        "budget_left": d.budget_left(p, now),
        "total_restarts": d.state.total_restarts,
        "next_backoff": round(d.next_backoff, 3) if d.next_backoff is not None else None,
    }
    if d.state.capped_until is not None and d.state.capped_until > now:
        rec["capped_for"] = round(d.state.capped_until - now, 1)
    if obs is not None:
        rec["seen"] = obs.words
        rec["outcome"] = obs.outcome
    if diagnosis is not None:
        rec["cause"] = diagnosis.verdict.cause.value
        rec["diagnosis"] = diagnosis.verdict.summary
        fixes = [f for finding in diagnosis.findings[:1] for f in finding.fix]
        if fixes:
            rec["fix"] = fixes[0].command or fixes[0].description
    elif d.cause is not None:
        rec["cause"] = d.cause
    if d.event in (Event.RESTART, Event.RESTARTED, Event.RESTART_FAILED, Event.STARTED):
        rec["restart_with"] = req.restarter.describe()
    if result is not None:
        rec["rc"] = result.rc
        rec["restart_seconds"] = round(result.seconds, 3)
        rec["timed_out"] = result.timed_out
        if result.output:
            rec["output"] = result.output
        if result.error:
            rec["error"] = result.error
    rec.update(d.extra)
    return rec


def line(rec: dict[str, Any]) -> str:
    """A log record as one line of text."""
    loud = rec["event"] in ("capped", "restart_failed")
    head = f"{rec['ts']} {'ALERT ' if loud else ''}guard {rec['target']}: {rec['event']}: {rec['reason']}"
    parts = [head]
    if rec.get("seen"):
        parts.append(f"seen: {rec['seen']}")
    if rec.get("diagnosis"):
        parts.append(f"diagnosis: {rec.get('cause')}: {rec['diagnosis']}")
    if rec.get("fix") and rec["event"] in ("skip", "capped"):
        parts.append(f"fix: {rec['fix']}")
    if rec.get("restart_with") and rec["event"] in ("restart", "started"):
        parts.append(f"with {rec['restart_with']}")
    if "rc" in rec:
        words = ("killed at its timeout" if rec.get("timed_out") else
                 f"could not start: {rec['error']}" if rec.get("error") else f"exit {rec['rc']}")
        parts.append(f"restart command: {words} after {rec['restart_seconds']} s")
        if rec.get("output"):
            parts.append("output: " + rec["output"].replace("\n", " / "))
    if rec["event"] not in ("started", "stopped", "healthy"):
        counters = (f"failures {rec['failures']}/{rec['threshold']}, restarts {rec['restarts_in_window']}/"
                    f"{rec['max_restarts']} in {rec['window']:g} s, budget {rec['budget_left']} left")
        if rec.get("next_backoff") is not None:
            counters += f", next backoff {rec['next_backoff']:g} s"
        parts.append(counters)
    return " | ".join(parts)


def guard(req: GuardRequest, log: Log, stop: threading.Event | None = None,
          observe_fn: Callable[[Target, float, HttpCheck | None], Observation] | None = None,
          diagnose_fn: Callable[[Target, Observation], Diagnosis] | None = None,
          restart_fn: Callable[[Restarter, float], RestartResult] | None = None,
          clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> int:
    """Guard the target until `stop` is set; return the exit code (0 stopped by a signal, 1 the
    restart cap was reached with on_cap="exit")."""
    stop = stop or threading.Event()
    check = observe_fn or observe
    restart = restart_fn or run_restart
    p = req.policy

    def diagnose_default(target: Target, obs: Observation) -> Diagnosis:
        from portdoctor.diagnose import diagnose

        # a fresh probe, taken together with the host's facts: a stale probe judged against
        # facts read a second later (a rule removed meanwhile) would name a wrong cause
        return diagnose(target, service=req.service, timeout=p.timeout)

    judge = diagnose_fn or diagnose_default
    state = GuardState()
    log(record(req, Decision(Event.STARTED, f"checking every {p.interval:g} s; restart after {p.failures} "
                                            f"consecutive failures", state), clock(), wall()))
    last_event: Event | None = None
    code = 0
    while not stop.is_set():
        began = clock()
        obs = check(req.target, p.timeout, req.http)
        d = on_check(state, p, clock(), obs.ready)
        state = d.state
        diagnosis: Diagnosis | None = None
        if d.event is Event.DIAGNOSE:
            diagnosis = judge(req.target, obs)
            d = on_diagnosis(state, p, clock(), diagnosis.verdict.cause, http_only=obs.outcome == "http")
            state = d.state
            if d.event is Event.RESTART and check(req.target, p.timeout, req.http).ready:
                # confirm before restarting: the target may have come back while it was diagnosed
                d = Decision(Event.TRANSIENT, "the target accepts again (checked once more before restarting): "
                                              "no restart", state, d.cause)
                state = d.state
        if d.event is not Event.HEALTHY or last_event is not Event.HEALTHY:
            log(record(req, d, clock(), wall(), obs, diagnosis))
        last_event = d.event
        if d.event is Event.RESTART:
            result = restart(req.restarter, p.restart_timeout)
            state, delay = after_restart(state, p, clock())
            event = Event.RESTARTED if result.ok else Event.RESTART_FAILED
            why = (f"{req.restarter.kind} restart done; grace {p.grace:g} s" if result.ok else
                   f"the restart command failed ({result.words()}); it counts against the budget")
            log(record(req, Decision(event, why, state, d.cause, next_backoff=delay), clock(), wall(), result=result))
            last_event = event
        elif d.event is Event.CAPPED and p.on_cap == "exit":
            log(record(req, Decision(Event.STOPPED, "the restart cap was reached and --on-cap is exit", state,
                                     d.cause), clock(), wall()))
            return 1
        stop.wait(max(0.0, p.interval - (clock() - began)))
    log(record(req, Decision(Event.STOPPED, "stopped by a signal", state), clock(), wall()))
    return code
