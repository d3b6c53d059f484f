"""`portdoctor guard`: the decisions of a health check with automatic restart, as pure functions.

The loop (guardrun.py) checks the target every interval and asks two questions here:

- `on_check(state, policy, now, ready)`: what does this check mean? healthy, recovered,
  failing (below the threshold), in the grace period after a restart, or `diagnose` (the
  threshold of consecutive failures is reached: the cause decides what to do);
- `on_diagnosis(state, policy, now, cause, http_only)`: restart now, skip (a restart cannot
  help this cause), back off (too soon after the last restart), or capped (the restart
  budget of the window is spent; no restart until the cooldown ends, then a fresh budget).

`after_restart` books a restart: its time in the window, the grace period, the next backoff.
Nothing here reads a clock, sleeps or draws a random number: tests pass them in.

Compared with the anchors: monit's "if 3 restarts within 5 cycles then unmonitor" never
comes back by itself, systemd's StartLimitBurst ends in a silent "start request repeated too
quickly", Kubernetes restarts a pod whose probe fails for any reason. Here every decision
carries its reason, a cause a restart cannot fix is not restarted, and the cap lifts after a
cooldown.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

from portdoctor.model import Cause
from portdoctor.ops.backoff import Backoff

# Causes a restart of the service cannot fix, with the reason given in the log.
NO_RESTART: dict[Cause, str] = {
    Cause.FIREWALL_REJECT: "a firewall rejects the connection; restarting the service changes no rule",
    Cause.FIREWALL_DROP: "a firewall drops the connection; restarting the service changes no rule",
    Cause.WRONG_INTERFACE: "the service listens, but on another address or family; a restart binds the same "
                           "way again (change its bind address)",
    Cause.WRONG_PORT: "the service listens on another port; a restart listens there again (change its port "
                      "or the client's)",
    Cause.DNS: "the name does not resolve; restarting the service does not fix DNS",
    Cause.HOST_UNREACHABLE: "the host cannot be reached (routing, ARP, or the host is down); restarting a "
                            "service does not fix the path",
    Cause.PROXY_UPSTREAM: "the proxy is up but its upstream refuses; restart or fix the upstream, not the proxy",
    Cause.PORT_MAPPING: "the port mapping (NAT or a published container port) leads nowhere; a restart "
                        "keeps the same mapping",
}


class Event(str, enum.Enum):
    """What guard decided after one check; every one is logged."""

    STARTED = "started"  # the guard began watching
    HEALTHY = "healthy"  # ready, nothing to do
    RECOVERED = "recovered"  # ready again after failures or a restart
    FAILING = "failing"  # not ready, fewer consecutive failures than the threshold
    GRACE = "grace"  # not ready, but within the grace period after a restart: not counted
    DIAGNOSE = "diagnose"  # the threshold is reached: the cause decides (internal, never logged alone)
    TRANSIENT = "transient"  # the diagnosis found the target accepting again: no restart
    RESTART = "restart"  # restart the service now
    RESTARTED = "restarted"  # the restart command succeeded
    RESTART_FAILED = "restart_failed"  # the restart command failed or hung (killed at its timeout)
    SKIP = "skip"  # a restart cannot help this cause
    BACKOFF = "backoff"  # a restart would be due, but the backoff since the last one has not passed
    CAPPED = "capped"  # the restart budget of the window is spent; alerting, not restarting
    RESUMED = "resumed"  # the cooldown after the cap ended: a fresh budget
    STOPPED = "stopped"  # SIGTERM/SIGINT, or the cap with --on-cap exit


@dataclass(frozen=True, slots=True)
class Policy:
    """How guard checks and restarts (docs/guard.md lists the defaults and their reasons)."""

    interval: float = 5.0  # seconds between checks
    timeout: float = 2.0  # seconds one check may wait for an answer
    failures: int = 3  # consecutive failed checks before acting
    grace: float = 10.0  # seconds after a restart in which failures are not counted
    backoff: Backoff = Backoff(initial=10.0, factor=2.0, maximum=300.0, jitter=0.1)
    max_restarts: int = 5  # restarts allowed within `window` seconds ...
    window: float = 600.0
    cooldown: float = 600.0  # ... after which none for this long, then a fresh budget
    restart_timeout: float = 30.0  # a restart command running longer is killed
    stable: float = 60.0  # healthy this long: the backoff starts again from its first step
    on_cap: str = "alert"  # "alert": keep watching and alert; "exit": stop with exit 1


@dataclass(frozen=True, slots=True)
class GuardState:
    """What guard remembers between checks."""

    failures: int = 0  # consecutive failed checks outside the grace period
    restarts: tuple[float, ...] = ()  # times of the restarts within the window
    streak: int = 0  # restarts since the service was last stable (the backoff step)
    next_allowed: float = 0.0  # no restart before this time
    grace_until: float = 0.0
    capped_until: float | None = None
    healthy_since: float | None = None
    total_restarts: int = 0
    restarting: bool = False  # a restart happened and the target has not been ready since


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision: the event, its reason, and the state after it."""

    event: Event
    reason: str
    state: GuardState
    cause: str | None = None
    next_backoff: float | None = None  # seconds until a restart is allowed again
    extra: dict[str, Any] = field(default_factory=dict)

    def budget_left(self, policy: Policy, now: float) -> int:
        """Restarts still allowed in the current window."""
        return max(0, policy.max_restarts - len(in_window(self.state.restarts, policy, now)))


def in_window(restarts: tuple[float, ...], policy: Policy, now: float) -> tuple[float, ...]:
    """The restart times that still count against the budget at `now`."""
    return tuple(t for t in restarts if now - t < policy.window)


def on_check(state: GuardState, policy: Policy, now: float, ready: bool) -> Decision:
    """Judge one check: HEALTHY, RECOVERED, GRACE, FAILING, or DIAGNOSE at the threshold."""
    if ready:
        since = state.healthy_since if state.healthy_since is not None else now
        streak = 0 if now - since >= policy.stable else state.streak
        recovered = state.failures > 0 or state.restarting
        new = replace(state, failures=0, healthy_since=since, streak=streak, grace_until=0.0, restarting=False)
        if recovered:
            what = "after a restart" if state.restarting else f"after {state.failures} failed checks"
            return Decision(Event.RECOVERED, f"the target is ready again {what}", new)
        why = "ready" if streak == state.streak else "ready, and stable: the restart backoff starts over"
        return Decision(Event.HEALTHY, why, new)
    state = replace(state, healthy_since=None)
    if now < state.grace_until:
        return Decision(Event.GRACE, f"within the grace period after a restart ({state.grace_until - now:.1f} s "
                                     "left): not counted", state)
    failures = state.failures + 1
    state = replace(state, failures=failures)
    if failures < policy.failures:
        return Decision(Event.FAILING, f"failed check {failures} of {policy.failures}", state)
    return Decision(Event.DIAGNOSE, f"{failures} consecutive failed checks", state)


def on_diagnosis(state: GuardState, policy: Policy, now: float, cause: Cause, http_only: bool = False) -> Decision:
    """Decide what to do about a failure at the threshold, given the diagnosed cause.

    `http_only`: the port accepts and only the HTTP check failed (a hung or erroring app: a
    restart may help, whatever the TCP diagnosis says).
    """
    c = cause.value
    if not http_only:
        if cause is Cause.OK:
            # the failure count stays: the next good check is logged as `recovered`
            return Decision(Event.TRANSIENT, "the target accepted again while it was diagnosed: a transient "
                                             "failure, no restart", state, c)
        if cause in NO_RESTART:
            return Decision(Event.SKIP, "not restarting: " + NO_RESTART[cause], state, c)
    resumed = False
    if state.capped_until is not None:
        if now < state.capped_until:
            return Decision(Event.CAPPED, f"restart budget spent ({policy.max_restarts} in {policy.window:g} s); "
                                          f"no restart for another {state.capped_until - now:.0f} s",
                            state, c, next_backoff=state.capped_until - now)
        state = replace(state, capped_until=None, restarts=(), streak=0, next_allowed=0.0)
        resumed = True
    recent = in_window(state.restarts, policy, now)
    state = replace(state, restarts=recent)
    if len(recent) >= policy.max_restarts:
        until = now + policy.cooldown
        what = "exiting" if policy.on_cap == "exit" else f"alerting, and no restart for {policy.cooldown:g} s"
        return Decision(Event.CAPPED, f"restart budget spent: {len(recent)} restarts within {policy.window:g} s "
                                      f"did not keep the service up; {what}",
                        replace(state, capped_until=until), c, next_backoff=policy.cooldown)
    if now < state.next_allowed:
        return Decision(Event.BACKOFF, f"backing off: the next restart is allowed in {state.next_allowed - now:.1f} s",
                        state, c, next_backoff=state.next_allowed - now)
    why = "the port accepts but the HTTP check fails" if http_only else f"the diagnosis is {c}, which a restart may fix"
    if resumed:
        why = "the cooldown after the cap ended (fresh budget); " + why
    return Decision(Event.RESTART, why, state, c, extra={"resumed": resumed})


def after_restart(state: GuardState, policy: Policy, now: float, draw: float | None = None) -> tuple[GuardState, float]:
    """Book a restart made at `now` (whether its command succeeded or not: a failing restart
    spends budget too, or a broken restart command would run in a tight loop). Returns the new
    state and the backoff until the next restart may run."""
    delay = policy.backoff.delay(state.streak, draw)
    new = replace(state, restarts=(*in_window(state.restarts, policy, now), now), streak=state.streak + 1,
                  next_allowed=now + delay, grace_until=now + policy.grace, failures=0,
                  total_restarts=state.total_restarts + 1, restarting=True, healthy_since=None)
    return new, delay
