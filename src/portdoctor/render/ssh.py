"""Output of `diagnose --ssh`: one host's diagnosis with where its facts came from, or the table
of several hosts ("which of my hosts refuses on 5432, and why"). Renders only what
`remote.RemoteResult` already says."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Sequence

from portdoctor.addresses import endpoint
from portdoctor.render.term import colour_on, columns, paint

if TYPE_CHECKING:
    from portdoctor.remote import RemoteResult

_HEADER = ("ssh host", "target", "client sees", "cause", "why")


def json_text(results: Sequence[RemoteResult], as_list: bool) -> str:
    """A list of diagnoses (several hosts), or the one diagnosis object."""
    doc = [r.to_json() for r in results] if as_list else results[0].to_json()
    return json.dumps(doc, indent=2) + "\n"


def origin_line(result: RemoteResult) -> str:
    """Where the server's facts came from and which client address they were judged for."""
    if result.error is not None:
        return f"server side not seen: {result.error}"
    return (f"server side seen over SSH on {result.ssh} ({result.via}); this client is "
            f"{result.from_addr or 'unknown'} there; {result.seconds:.1f} s")


def _row(r: RemoteResult) -> list[str]:
    where = endpoint(r.target.host, r.target.port)
    if r.diagnosis is None:
        return [str(r.ssh), where, "-", "not inspected", (r.error or "").removeprefix(f"{r.ssh}: ")]
    d = r.diagnosis
    return [str(r.ssh), where, d.probe.state.value, d.verdict.cause.value, d.verdict.summary]


def text(results: Sequence[RemoteResult], as_table: bool) -> str:
    """The table of hosts (several), or one host's origin line plus its full diagnosis (printed)."""
    if not as_table:
        r = results[0]
        sys.stdout.write(origin_line(r) + "\n\n")
        sys.stdout.flush()
        if r.diagnosis is not None:
            from portdoctor.render import text as render_text

            render_text.diagnosis(r.diagnosis)
        return ""
    on = colour_on(sys.stdout)
    raw = [_row(r) for r in results]
    shown = []
    for r, cells in zip(results, raw):
        cause = cells[3]
        colour = "green" if cause == "ok" else ("yellow" if r.diagnosis is None else "red")
        shown.append([*cells[:3], paint(cause, colour, on=on), cells[4]])
    lines = columns(_HEADER, shown, widths_of=raw)
    counts = {"ok": 0, "problem": 0, "not inspected": 0}
    for r in results:
        counts["not inspected" if r.diagnosis is None else "ok" if r.exit_code == 0 else "problem"] += 1
    lines += ["", f"{len(results)} hosts: {counts['ok']} ok, {counts['problem']} with a problem, "
                  f"{counts['not inspected']} not inspected"]
    return "\n".join(lines) + "\n"


def markdown(results: Sequence[RemoteResult], as_table: bool) -> str:
    """The hosts as a Markdown table, or one host's diagnosis under its origin line."""
    if not as_table:
        r = results[0]
        out = f"_{origin_line(r)}_\n\n"
        if r.diagnosis is not None:
            from portdoctor.render import markdown as render_md

            out += render_md.diagnosis(r.diagnosis)
        return out
    lines = ["| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    for cells in (_row(r) for r in results):
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines) + "\n"
