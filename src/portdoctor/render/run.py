"""Output of `portdoctor run`: the failed connections of a traced program, then each target's
diagnosis. Written to stderr (or a file), so the program's own stdout stays exactly its own."""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console

    from portdoctor.runtrace.report import FailedTarget, ProcessRef, RunReport


def untraced_line(reason: str) -> str:
    """The one line said before a program runs untraced."""
    return f"portdoctor run: not traced: {reason}; running the program without tracing"


def live_line(target: str, errno: str | None, waited: float, pid: int, command: str) -> str:
    """One line for a failure seen while the program runs (--live)."""
    what = errno or f"no answer, given up after {waited:.1f} s"
    return f"portdoctor run: {command} (pid {pid}) could not connect to {target}: {what}"


def _exit_words(r: RunReport) -> str:
    if r.exit_signal is not None:
        import signal

        try:
            name = signal.Signals(r.exit_signal).name
        except ValueError:
            name = f"signal {r.exit_signal}"
        return f"was killed by {name} (exit status {r.status})"
    return f"exited with {r.status}"


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def headline(r: RunReport) -> str:
    """The first line of every form: the command, its exit, how many connections failed."""
    head = f"portdoctor run: {r.command} {_exit_words(r)}"
    if not r.traced:
        return f"{head}; not traced ({r.limitation})"
    n = sum(f.count for f in r.failures)
    seen = f"{_plural(r.processes, 'process', 'processes')} traced, {_plural(r.connected, 'connection')} made"
    names = f"; {_plural(len(r.lookups), 'name')} did not resolve" if r.lookups else ""
    if not n:
        return f"{head}; no failed connections{names} ({seen})"
    return f"{head}; {_plural(n, 'failed connection')} to {_plural(len(r.failures), 'target')}{names} ({seen})"


def notes(r: RunReport) -> list[str]:
    """What limits a traced run's report (a trace not read to its end, lines not understood)."""
    out = [r.limitation] if r.traced and r.limitation else []
    if r.unparsed_lines:
        out.append(f"{_plural(r.unparsed_lines, 'line')} of strace output could not be read")
    return out


def outcome(f: FailedTarget) -> str:
    """errno counts in words: 'ECONNREFUSED ×3', 'no answer (gave up after 1.0 s) ×1'."""
    parts = []
    for errno, n in sorted(f.errnos.items(), key=lambda kv: -kv[1]):
        if errno == "none":
            after = f.gave_up_after
            errno = "no answer" + (f" (gave up after {after:.1f} s)" if after is not None else "")
        parts.append(f"{errno} ×{n}")
    return ", ".join(parts)


def who(f: FailedTarget) -> str:
    """Which processes tried: 'curl -sS ... (pid 12)', with the attempts of each when several."""
    return _who(f.processes)


def _who(processes: tuple[ProcessRef, ...]) -> str:
    procs = [f"{p.shown} (pid {p.pid}{f', child of {p.ppid}' if p.ppid else ''}"
             + (f", {p.count}×)" if len(processes) > 1 else ")") for p in processes[:3]]
    if len(processes) > 3:
        procs.append(f"and {len(processes) - 3} more processes")
    return "; ".join(procs)


def name_words(f: FailedTarget) -> str:
    """Under which name the program found the address, or that the address is all there is."""
    if f.endpoint.kind == "unix":
        return "Unix socket"
    if f.name is None:
        return "no name look-up seen: the address is all that is known"
    if f.name_source == "dns":
        return f"{f.name} (DNS answer the program received)"
    return f"{f.name} ({f.name_source}, which the program read before connecting)"


def when(f: FailedTarget) -> str:
    """First and last attempt, in seconds after the program started."""
    if f.count == 1 or f"{f.first:.3f}" == f"{f.last:.3f}":
        return f"at +{f.first:.3f} s"
    return f"from +{f.first:.3f} s to +{f.last:.3f} s"


def text(r: RunReport, stream: TextIO) -> None:
    """Write the report as text (rich) to `stream`."""
    from rich.console import Console

    out = Console(file=stream, highlight=False, soft_wrap=True)
    out.print(headline(r), markup=False)
    for note in notes(r):
        out.print(f"[yellow]note:[/] {note}")
    for x in r.lookups:
        out.print()
        out.print(f"[bold]{x.name}[/]  [red]did not resolve: {x.rcode} ×{x.count}[/]  at +{x.first:.3f} s  [bold]dns[/]")
        out.print(f"  by: {_who(x.processes)}", markup=False)
        out.print(f"  {x.meaning}", markup=False)
    if not r.traced or not r.failures:
        return
    for f in r.failures:
        out.print()
        out.print(f"[bold]{f.endpoint}[/]  [red]{outcome(f)}[/]  {when(f)}")
        out.print(f"  by: {who(f)}", markup=False)
        out.print(f"  name: {name_words(f)}", markup=False)
        if f.succeeded:
            out.print(f"  {_plural(f.succeeded, 'other connection')} to it worked", markup=False)
    for f in r.failures:
        out.print()
        _target_section(out, f, stream)


def _target_section(out: Console, f: FailedTarget, stream: TextIO) -> None:
    from portdoctor.render import text as text_render

    cause = f.cause or "not diagnosed"
    side = f" (seen from this host; {f.endpoint.address} itself was not inspected)" if f.local is False else ""
    out.print(f"[dim]──[/] [bold]{f.endpoint}[/]: [bold]{cause}[/]{side} [dim]──[/]")
    if f.diagnosis is not None:
        with contextlib.redirect_stdout(stream):
            text_render.diagnosis(f.diagnosis)
        if f.explanation is not None and f.explanation.next:
            out.print(f"next: [bold]{f.explanation.next}[/]")
        return
    if f.explanation is not None:
        out.print(f.explanation.summary, markup=False)
        if f.explanation.next:
            out.print(f"  next: [bold]{f.explanation.next}[/]")
    if f.note:
        out.print(f.note, markup=False)


def markdown(r: RunReport) -> str:
    """The report as Markdown."""
    from portdoctor.render import markdown as md

    lines = [f"## portdoctor run `{r.command}`", "", headline(r), "", *(f"- note: {n}" for n in notes(r))]
    for x in r.lookups:
        lines.append(f"- `{x.name}` did not resolve ({x.rcode} ×{x.count}, by {_cell(_who(x.processes))}): {x.meaning}")
    if r.lookups:
        lines.append("")
    if not r.traced or not r.failures:
        return "\n".join(lines) + "\n"
    lines += ["| target | outcome | when | by | name |", "|---|---|---|---|---|"]
    for f in r.failures:
        lines.append(f"| `{f.endpoint}` | {_cell(outcome(f))} | {when(f)} | {_cell(who(f))} | {_cell(name_words(f))} |")
    lines.append("")
    for f in r.failures:
        lines += [f"### `{f.endpoint}`: {f.cause or 'not diagnosed'}", ""]
        if f.diagnosis is not None:
            lines += [re.sub(r"^#{2,3} ", "#### ", md.diagnosis(f.diagnosis), flags=re.M), ""]
        elif f.explanation is not None:
            lines += [f.explanation.summary, ""]
        if f.explanation is not None and f.explanation.next:
            lines += [f"Next: `{f.explanation.next}`", ""]
        if f.note:
            lines += [f.note, ""]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
