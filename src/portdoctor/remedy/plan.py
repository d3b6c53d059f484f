"""A fix plan from a diagnosis: the automatic steps in order, and what is left to a person.

The steps come from the actions on the fixes of the findings that carry the verdict's cause
(remedy/actions.py puts them there). An action that is manual, refused or has no known undo is
not a step; a config edit whose restart cannot be automated is not one either (the edit alone
would change nothing now and surprise at the next restart). A proxy whose upstream refuses is
fixed at the upstream: the upstream is diagnosed on its own and its plan becomes this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from portdoctor.model import Action, ActionKind, Cause, Diagnosis, Fix, Severity, State, Target

MAX_DEPTH = 2


@dataclass
class Plan:
    """What `portdoctor fix` would do for one diagnosis."""

    diagnosis: Diagnosis
    steps: list[Action] = field(default_factory=list)
    refused: list[Action] = field(default_factory=list)
    manual: list[Fix] = field(default_factory=list)
    upstream: Plan | None = None  # proxy_upstream: the plan of the upstream that refuses
    note: str = ""
    acted: Cause | None = None  # the cause the steps fix (the verdict's, or another error finding's)

    @property
    def cause(self) -> Cause:
        return self.diagnosis.verdict.cause

    @property
    def all_steps(self) -> list[Action]:
        """The steps to apply, the upstream's first."""
        return (self.upstream.all_steps if self.upstream else []) + self.steps

    @property
    def verify_target(self) -> Target:
        """The endpoint that must accept afterwards (the upstream's, for a proxy)."""
        return self.upstream.verify_target if self.upstream else self.diagnosis.target

    def to_json(self) -> dict[str, Any]:
        """The `plan` object of `fix --json` (docs/fix.md)."""
        out: dict[str, Any] = {
            "cause": self.cause.value,
            "summary": self.diagnosis.verdict.summary,
            "steps": [a.to_json() for a in self.steps],
            "refused": [a.to_json() for a in self.refused],
            "manual": [f.to_json() for f in self.manual],
        }
        if self.note:
            out["note"] = self.note
        if self.upstream is not None:
            out["upstream"] = {"target": self.upstream.diagnosis.target.to_json(), **self.upstream.to_json()}
        return out


def _key(a: Action) -> tuple:
    return (a.kind, a.argv, a.path, a.line, a.key, a.new, a.tool, a.service, a.pid)


def build_plan(diag: Diagnosis, depth: int = 0, timeout: float = 3.0) -> Plan:
    """The plan for `diag`; a proxy_upstream verdict is planned at its upstream (diagnosed here)."""
    plan = Plan(diag)
    cause = diag.verdict.cause
    if cause is Cause.OK:
        plan.note = "the target accepts connections: nothing to fix"
        return plan
    if cause is Cause.PROXY_UPSTREAM:
        return _proxy_plan(plan, depth, timeout)
    _collect(plan, cause)
    plan.acted = cause
    if not plan.steps:
        # the verdict has no automatic fix; another error finding may (a supervisor that says the
        # program is stopped, beside a listener in some other namespace that won the ranking)
        for other in dict.fromkeys(f.cause for f in diag.findings if f.severity is Severity.ERROR):
            if other is cause or other in (Cause.OK, Cause.UNKNOWN):
                continue
            trial = Plan(diag)
            _collect(trial, other)
            if trial.steps:
                plan.steps, plan.refused, plan.acted = trial.steps, plan.refused + trial.refused, other
                plan.note = (f"the verdict ({cause.value}) has no automatic fix; the {other.value} finding "
                             f"has one")
                return plan
    if not any(f.cause is cause for f in diag.findings):
        plan.note = f"no finding of cause {cause.value} to act on"
    elif not plan.steps:
        plan.note = "nothing here can be changed automatically; the steps below are yours"
    return plan


def _collect(plan: Plan, cause: Cause) -> None:
    """Put the actions of the findings of `cause` into the plan: steps, or refused."""
    diag = plan.diagnosis
    mine = [f for f in diag.findings if f.cause is cause and f.severity is Severity.ERROR] or \
        [f for f in diag.findings if f.cause is cause]
    seen: set[tuple] = set()
    for f in mine:
        acts = [x.action for x in f.fix if x.action is not None]
        blocked_restart = any(a.kind is ActionKind.RESTART and not a.automatic for a in acts)
        for a in acts:
            if _key(a) in seen:
                continue
            seen.add(_key(a))
            if a.kind in (ActionKind.EDIT_SETTING, ActionKind.SYSCTL) and blocked_restart and a.automatic:
                # the change takes effect only with the restart: alone it would surprise at the next one
                a = replace(a, refused="the restart that applies it cannot be automated (see below)")
            (plan.steps if a.automatic else plan.refused).append(a)
        plan.manual.extend(x for x in f.fix if x.action is None)


def _proxy_plan(plan: Plan, depth: int, timeout: float) -> Plan:
    """Fix a proxy's upstream: diagnose each upstream endpoint of this host that refuses."""
    from portdoctor.addresses import is_loopback
    from portdoctor.diagnose import diagnose
    from portdoctor.hostview import is_local

    diag = plan.diagnosis
    snap = diag.snapshot
    if snap is not None:
        from portdoctor.checks import Context
        from portdoctor.remedy.actions import proxy_address_actions

        ctx = Context(target=diag.target, probe=diag.probe, followups=diag.followups)
        acts = proxy_address_actions(snap, ctx)
        if acts and all(a.automatic for a in acts):
            plan.steps = acts
            plan.note = "the proxy names an address its upstream does not listen on: pointing it there"
            return plan
        plan.refused.extend(a for a in acts if not a.automatic)
    dead = [(k, r) for k, r in diag.followups.items() if r.state is not State.OPEN]
    for _key_, probe in dead:
        host = probe.target.host
        if snap is not None and not (is_loopback(host) or is_local(snap, host)):
            continue
        if depth >= MAX_DEPTH:
            break
        sub = diagnose(probe.target, timeout=timeout)
        plan.upstream = build_plan(sub, depth + 1, timeout)
        plan.note = (f"the proxy's upstream {probe.target.input} refuses ({sub.verdict.cause.value}): "
                     f"fixing the upstream")
        return plan
    for f in diag.findings:
        if f.cause is Cause.PROXY_UPSTREAM:
            plan.manual.extend(f.fix)
    plan.refused.append(Action(ActionKind.MANUAL, "fix the proxy's upstream or the proxy's upstream address",
                               refused="the upstream is not on this host (run portdoctor fix there), or the "
                                       "proxy's own configuration names the wrong address: which one is meant is "
                                       "your choice"))
    plan.note = "the upstream cannot be fixed from here"
    return plan
