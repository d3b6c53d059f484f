"""`portdoctor fix` as text and Markdown: the cause, the plan (diffs and commands), what was refused
and why, then what was done and how the connection was checked. Renders only what the report says."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from portdoctor.model import Action
    from portdoctor.remedy.plan import Plan
    from portdoctor.remedy.session import FixReport

_STATUS = {
    "fixed": "fixed: the target accepts connections now",
    "nothing_to_fix": "nothing to fix",
    "refused": "nothing was changed: no step can be applied automatically",
    "dry_run": "dry run: nothing was changed",
    "declined": "declined: nothing was changed",
    "needs_root": "nothing was changed: applying this plan needs root (run it with sudo)",
    "rolled_back": "the fix did not work and was rolled back: the host is as it was",
    "failed_rollback": "the fix did not work and the rollback was incomplete: see above",
    "undone": "the last fix was undone",
    "nothing_to_undo": "no applied fix to undo",
}


def _action_lines(a: Action, indent: str) -> list[str]:
    pad = " " * len(indent)
    out = [f"{indent}{a.changes}"]
    if a.exposes:
        out.append(f"{pad}exposes: {a.exposes}")
    if a.refused:
        out.append(f"{pad}not automated: {a.refused}")
    if a.persist:
        out.append(f"{pad}to keep it after a reboot: {a.persist}")
    return out


def plan_lines(plan: Plan, previews: list[str], depth: int = 0) -> list[str]:
    """The plan as lines: cause, steps with their diff or command, refusals, manual steps."""
    pad = "  " * depth
    d = plan.diagnosis
    lines = [f"{pad}{d.target.input}: {d.verdict.cause.value}: {d.verdict.summary}"]
    if plan.note:
        lines.append(f"{pad}{plan.note}")
    if plan.upstream is not None:
        lines += plan_lines(plan.upstream, [], depth + 1)
    if plan.steps:
        lines.append(f"{pad}plan:")
        offset = len(plan.upstream.all_steps) if plan.upstream else 0
        for i, a in enumerate(plan.steps, 1):
            lines += _action_lines(a, f"{pad}  {i}. ")
            text = previews[offset + i - 1] if offset + i - 1 < len(previews) else ""
            lines += [f"{pad}       {ln}" for ln in text.splitlines()]
    if plan.refused:
        lines.append(f"{pad}left to you:")
        for a in plan.refused:
            lines += _action_lines(a, f"{pad}  - ")
    if not plan.steps and plan.manual:
        lines.append(f"{pad}manual steps from the diagnosis:")
        for f in plan.manual:
            lines.append(f"{pad}  - {f.description}")
            if f.command:
                lines += [f"{pad}      {ln}" for ln in f.command.splitlines()]
    return lines


def report_lines(report: FixReport) -> list[str]:
    """The whole report as lines."""
    lines: list[str] = []
    if report.plan is not None:
        lines += plan_lines(report.plan, report.previews())
    return lines + result_lines(report)


def result_lines(report: FixReport) -> list[str]:
    """What was done, how it was checked, and the outcome (the plan left out)."""
    lines: list[str] = []
    if report.result is not None:
        r = report.result
        lines += ["", "what was done:"] + [f"  {x}" for x in r.log]
        if r.log_lines:
            lines += ["the service's last log lines:"] + [f"  | {x}" for x in r.log_lines]
        if r.reason:
            lines.append(f"why: {r.reason}")
        if r.journal:
            lines.append(f"journal: {r.journal}")
    lines.append(_STATUS.get(report.status, report.status))
    if report.status == "fixed":
        lines.append("undo it with: portdoctor fix --undo")
    return lines


def report(rep: FixReport) -> str:
    """Text output."""
    return "\n".join(report_lines(rep)) + "\n"


def report_markdown(rep: FixReport) -> str:
    """Markdown output: the same lines in a code block under a heading."""
    title = rep.target.input if rep.target else "undo"
    return f"# portdoctor fix `{title}`\n\n```\n" + "\n".join(report_lines(rep)) + "\n```\n"
