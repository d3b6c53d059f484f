"""Markdown output: a document a team can paste into a ticket or commit next to the service."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portdoctor.model import Diagnosis, ProbeResult


def _cell(text: object) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def probe_rows(result: ProbeResult) -> list[str]:
    """The probe as a Markdown table (lines)."""
    if not result.addresses:
        return [f"`{result.target.host}` did not resolve: {result.dns_error}", ""]
    lines = ["| address | family | state | errno | seconds | detail |", "|---|---|---|---|---|---|"]
    for a in result.addresses:
        detail = a.detail or ""
        if a.attempts:
            detail = (", ".join(f"{k}: {v}" for k, v in sorted(a.attempts.items())) + "; " + detail).strip("; ")
        lines.append(f"| `{a.address}` | IPv{a.family} | **{a.state.value}** | {_cell(a.errno)} "
                     f"| {a.seconds:.4f} | {_cell(detail)} |")
    if result.refusal is not None:  # a refused remote target (clientview.py)
        lines += ["", f"Who refused: {result.refusal.summary}"]
    if result.nearby is not None and result.nearby.open:
        lines += ["", "Ports nearby that answer: " + ", ".join(
            f"{p.port} ({p.speaks or p.service or 'open'})" for p in result.nearby.open)]
    return lines + [""]


def probe(result: ProbeResult) -> str:
    """A probe result as Markdown."""
    t = result.target
    return "\n".join([f"## probe `{t.input}`: {result.state.value}", "", *probe_rows(result)])


def explain(result: Any) -> str:
    """An explained error message as Markdown."""
    lines = [f"## explain: {result.source} error", ""]
    lines.append(f"- errno: **{result.errno_name or 'none'}**"
                 + (f" ({result.errno_number}, {result.platform})" if result.errno_number is not None else ""))
    if result.meaning:
        lines.append(f"- meaning: {result.meaning}")
    for note in result.notes:
        lines.append(f"- note: {note}")
    if result.target is not None:
        t = result.target
        lines.append(f"- target: `{f'[{t.host}]' if ':' in t.host else t.host}:{t.port}`")
    lines.append("")
    if result.probe is not None:
        lines += ["### probe from this host", "", *probe_rows(result.probe)]
    return "\n".join(lines)


def diagnosis(result: Diagnosis) -> str:
    """A diagnosis as Markdown: verdict, findings with evidence and fixes, limitations."""
    v = result.verdict
    lines = [f"## portdoctor diagnose `{result.target.input}`", "",
             f"**{v.cause.value}** (confidence {v.confidence:.0%}): {v.summary}", "",
             "### probe", "", *probe_rows(result.probe)]
    for f in result.findings:
        lines += [f"### {f.severity.value}: {f.cause.value} ({f.check})", "", f.summary, ""]
        for e in f.evidence:
            lines.append(f"- evidence: {e}")
        for fx in f.fix:
            lines.append(f"- fix: {fx.description}")
            if fx.command:
                lines += ["", "  ```sh", *("  " + ln for ln in fx.command.splitlines()), "  ```", ""]
        lines.append("")
    if result.limitations:
        lines += ["### could not see", ""] + [f"- {_cell(x)}" for x in result.limitations] + [""]
    return "\n".join(lines)
