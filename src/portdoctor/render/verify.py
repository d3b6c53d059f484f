"""A verify report (`portdoctor verify`) as plain text or Markdown; JSON is `Report.to_json`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from portdoctor.verify.run import Report, Result

_MARK = {"pass": "PASS", "fail": "FAIL", "unknown": "????"}


def _headline(report: Report) -> str:
    c = {s: report.count(s) for s in type(report.results[0].status)} if report.results else {}
    n = len(report.results)
    counts = ", ".join(f"{v} {k.value}" for k, v in c.items() if v)
    verdict = {"pass": "every check passed", "fail": "FAILED", "unknown": "could not observe everything"}[
        report.status.value]
    return f"portdoctor verify {report.spec} on {report.host}: {verdict} ({n} checks: {counts}; {report.seconds:.1f} s)"


def text(report: Report, verbose: bool = False) -> str:
    """One line per expectation; failures and unknowns with why, evidence and the fix."""
    out = [_headline(report)]
    for entry, rs in report.entries:
        out.append("")
        out.append(f"{entry.name}  ({entry.subject}, {report.spec}:{entry.line})")
        for r in rs:
            out.append(f"  {_MARK[r.status.value]}  {r.check}: expected {r.expected}; {r.observed}")
            if r.status.value == "pass" and not verbose:
                continue
            out += _explained(r, "        ")
    if report.limitations:
        out.append("")
        out += [f"could not see: {x}" for x in report.limitations]
    return "\n".join(out) + "\n"


def _explained(r: Result, pad: str) -> list[str]:
    out = []
    if r.cause or r.summary:
        out.append(f"{pad}{'cause: ' + r.cause + ': ' if r.cause else 'why: '}{r.summary or ''}")
    for e in r.evidence[:8]:
        out.append(f"{pad}  {e}")
    for i, f in enumerate(r.fix, 1):
        out.append(f"{pad}fix {i}: {f.description}")
        if f.command:
            out.append(f"{pad}    {f.command}")
    return out


def markdown(report: Report) -> str:
    """A Markdown document: a table of every expectation, then each failure explained."""
    out = [f"# Verify `{report.spec}` on `{report.host}`", "", _headline(report), "",
           "| check | expectation | status | expected | observed | cause |", "| --- | --- | --- | --- | --- | --- |"]
    for entry, rs in report.entries:
        for r in rs:
            out.append(f"| {entry.name} | {r.check} | {r.status.value} | {r.expected} | "
                       f"{r.observed.replace('|', '/')} | {r.cause or ''} |")
    bad = [(e, r) for e, rs in report.entries for r in rs if r.status.value != "pass"]
    for entry, r in bad:
        out += ["", f"## {entry.name}: {r.check} ({r.status.value})", ""]
        if r.summary:
            out += [r.summary, ""]
        out += [f"- {e}" for e in r.evidence]
        for f in r.fix:
            out.append(f"- fix: {f.description}" + (f"  \n  `{f.command}`" if f.command else ""))
    if report.limitations:
        out += ["", "## Could not see", ""] + [f"- {x}" for x in report.limitations]
    return "\n".join(out) + "\n"
