"""One `portdoctor fix` run: diagnose, plan, ask, apply (or not), and what happened, as one value.

`fix_target` is what the command line calls; consent comes in as a function, so a script (or a
test) answers it without a terminal. Without root nothing is applied: the plan is returned with
`sudo` where a step needs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from portdoctor.model import Target
from portdoctor.remedy.apply import Result, Say, apply_plan, preview, undo_last
from portdoctor.remedy.plan import Plan, build_plan

SCHEMA = "portdoctor.fix/1"


@dataclass
class FixReport:
    """What `portdoctor fix` saw, planned and did."""

    target: Target | None
    plan: Plan | None
    status: str  # nothing_to_fix, refused, dry_run, declined, needs_root, fixed, rolled_back, undone, ...
    result: Result | None = None
    as_root: bool = True
    from_addr: str | None = None
    shown: list[str] | None = None  # the previews as they were before anything was applied

    @property
    def ok(self) -> bool:
        """True when the target works now (fixed, nothing to fix) or an undo succeeded."""
        return self.status in ("fixed", "nothing_to_fix", "undone")

    def previews(self) -> list[str]:
        """The diff or exact command of each step, `sudo` added when not running as root (as
        they were before anything was applied, once it has been)."""
        if self.shown is not None:
            return self.shown
        out = []
        for a in self.plan.all_steps if self.plan else []:
            text = preview(a)
            if not self.as_root and a.needs_root and "\n---" not in text and not text.startswith("---"):
                text = "\n".join(f"sudo {ln}" if ln and not ln.startswith("(") else ln for ln in text.splitlines())
            out.append(text)
        return out

    def to_json(self) -> dict[str, Any]:
        """The `portdoctor.fix/1` document (docs/fix.md)."""
        out: dict[str, Any] = {"schema": SCHEMA, "status": self.status,
                               "target": self.target.to_json() if self.target else None}
        if self.plan is not None:
            d = self.plan.diagnosis
            out["verdict"] = d.verdict.to_json()
            out["plan"] = self.plan.to_json()
            out["preview"] = self.previews()
        if self.result is not None:
            out["result"] = self.result.to_json()
        return out


def fix_target(target: Target, from_addr: str | None = None, service: str | None = None, *,
               yes: bool = False, dry_run: bool = False, confirm: Callable[[Plan, list[str]], bool] | None = None,
               say: Say = lambda _m: None, timeout: float = 3.0) -> FixReport:
    """Diagnose `target`, plan its fix, and apply it when allowed (see the module docstring)."""
    from portdoctor.diagnose import diagnose

    as_root = os.geteuid() == 0
    diag = diagnose(target, from_addr=from_addr, service=service, timeout=timeout)
    plan = build_plan(diag, timeout=timeout)
    report = FixReport(target, plan, "dry_run", as_root=as_root, from_addr=from_addr)
    steps = plan.all_steps
    if not steps:
        report.status = "nothing_to_fix" if plan.note.startswith("the target accepts") else "refused"
        return report
    if dry_run:
        return report
    if not as_root and any(a.needs_root for a in steps):
        report.status = "needs_root"
        return report
    report.shown = report.previews()
    if not yes and (confirm is None or not confirm(plan, report.shown)):
        report.status = "declined"
        return report
    report.result = apply_plan(plan, from_addr, say)
    report.status = report.result.status
    return report


def undo(say: Say = lambda _m: None) -> FixReport:
    """Undo the last applied fix (`portdoctor fix --undo`)."""
    result = undo_last(say)
    return FixReport(None, None, result.status if result.status != "nothing" else "nothing_to_undo", result)
