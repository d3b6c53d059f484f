"""Terminal output, written with rich. Renderers only arrange what the result already says."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from portdoctor.addresses import endpoint
from portdoctor.model import State
from portdoctor.render.term import colour_on, columns, paint

if TYPE_CHECKING:
    from rich.console import Console

    from portdoctor.model import Diagnosis, ProbeResult

_STATE_STYLE = {
    State.OPEN: "green",
    State.REFUSED: "red",
    State.TIMEOUT: "yellow",
    State.UNREACHABLE: "red",
    State.DNS_ERROR: "red",
    State.ERROR: "red",
}
_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def console() -> Console:
    """A console on stdout that never wraps long lines (commands must stay copyable)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _endpoint(host: str, port: int) -> str:
    return endpoint(host, port)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


_STATE_COLOUR = {State.OPEN: "green", State.TIMEOUT: "yellow"}  # every other state: red


def probe_lines(result: ProbeResult, on: bool) -> list[str]:
    """The per-address table of a probe, with the meaning of each state seen (colour when `on`)."""
    from portdoctor.probe import STATE_MEANING, probe_notes

    t = result.target
    if result.state is State.DNS_ERROR:
        return [f"{paint(t.host, 'bold', on=on)} did not resolve: {result.dns_error}", STATE_MEANING[State.DNS_ERROR]]
    rows, raw = [], []
    for a in result.addresses:
        attempts = " ".join(f"{k}×{v}" for k, v in sorted(a.attempts.items())) if a.attempts else ""
        note = "; ".join(x for x in (attempts, a.detail or "") if x)
        num = f" ({a.errno_number})" if a.errno and a.errno_number is not None else ""
        cells = [a.address, f"IPv{a.family}", a.state.value, (a.errno or "") + num, _ms(a.seconds), note]
        raw.append(cells)
        rows.append([*cells[:2], paint(a.state.value, _STATE_COLOUR.get(a.state, "red"), on=on), *cells[3:]])
    lines = columns(("address", "family", "state", "errno", "time", ""), rows, widths_of=raw) if rows else []
    if lines:
        lines[0] = paint(lines[0], "bold", on=on)
    seen: list[State] = []
    for a in result.addresses:
        if a.state not in seen:
            seen.append(a.state)
    for st in seen:
        meaning = STATE_MEANING[st]
        if st is State.TIMEOUT and result.timeout < 3:
            meaning += f"; only {result.timeout:g} s were waited, so this alone does not prove a DROP"
        lines.append(f"  {meaning}")
    lines += [f"{paint('note:', 'yellow', on=on)} {note}" for note in probe_notes(result)]
    if result.refusal is not None:  # a refused remote target (clientview.py)
        lines.append(f"  who refused: {result.refusal.summary}")
    if result.nearby is not None:
        found = ", ".join(f"{p.port} ({p.speaks or p.service or 'open'})" for p in result.nearby.open)
        lines.append(f"  ports nearby ({len(result.nearby.scanned)} tried): " + (f"{found} answer" if found else "none open"))
    return lines


def probe(result: ProbeResult) -> None:
    """Print a probe result (without rich: this is the command that must start fastest)."""
    on = colour_on()
    t = result.target
    n = len(result.addresses)
    head = paint(_endpoint(t.host, t.port), "bold", on=on)
    state = paint(result.state.value, _STATE_COLOUR.get(result.state, "red"), on=on)
    lines = [f"{head}  {state}" + (f"  ({n} address{'es' if n != 1 else ''}, timeout {result.timeout:g} s)" if n else "")]
    lines += probe_lines(result, on)
    sys.stdout.write("\n".join(lines) + "\n")


def explain(result: Any) -> None:
    """Print what a pasted error message means, then the probe of its target."""
    out = console()
    errno = result.errno_name or "no errno"
    num = f" ({result.errno_number})" if result.errno_number is not None else ""
    plat = f" on {result.platform}" if result.platform else ""
    out.print(f"[bold]{result.source}[/] error: [red]{errno}{num}[/]{plat}")
    if result.meaning:
        out.print(f"  {result.meaning}")
    for note in result.notes:
        out.print(f"  [yellow]note:[/] {note}")
    if result.target is None:
        if getattr(result, "unix_socket", None):
            out.print(f"  target: the unix socket {result.unix_socket} (no TCP port to probe)", markup=False)
        else:
            out.print("  no host or port in the message: run [bold]portdoctor probe HOST:PORT[/] with the address "
                      "the client used")
        return
    where = _endpoint(result.target.host, result.target.port)
    out.print(f"  target: [bold]{where}[/]" + (" (default port of the client)" if result.port_defaulted else ""))
    if result.probe is None:
        out.print(f"  next: [bold]portdoctor diagnose {where}[/] (on the server, for the cause and the fix)")
    elif getattr(result, "state", None) and result.probe.state.value != result.state:
        out.print(f"  [yellow]note:[/] the message says {result.state}, but from here the target is now "
                  f"{result.probe.state.value}: the service came back, or the client runs elsewhere (another "
                  f"host, a container) and sees a different network")


def diagnosis(result: Diagnosis) -> None:
    """Print a diagnosis the way an engineer answers: cause, evidence, fix; then the rest."""
    out = console()
    v = result.verdict
    style = "bold green" if v.cause.value == "ok" else "bold red"
    t = result.target
    where = endpoint(t.host, t.port)
    out.print(f"[bold]{where}[/]  [{style}]{v.cause.value}[/]  (confidence {v.confidence:.0%})")
    out.print(v.summary, markup=False)
    top = result.findings[0] if result.findings and result.findings[0].summary == v.summary else None
    if top is not None:
        _evidence_and_fix(out, top, indent="")
    out.print()
    out.print("[bold]Probe from this host[/]")
    out.file.write("\n".join(probe_lines(result.probe, out.is_terminal and not out.no_color)) + "\n")
    rest = [f for f in result.findings if f is not top]
    if rest:
        out.print()
        out.print("[bold]Also found[/]")
        for f in rest:
            sev = _SEVERITY_STYLE.get(f.severity.value, "")
            out.print(f"  [{sev}]{f.severity.value}[/] [bold]{f.cause.value}[/] ({f.check}): ", end="")
            out.print(f.summary, markup=False)
            _evidence_and_fix(out, f, indent="    ")
    if result.limitations:
        out.print()
        out.print("[bold]Could not see[/]")
        for lim in result.limitations:
            out.print(f"  - {lim}", markup=False)


def _evidence_and_fix(out: Console, finding: Any, indent: str) -> None:
    if finding.evidence:
        out.print(f"{indent}[bold]Evidence[/]" if not indent else f"{indent}[dim]evidence:[/]")
        for e in finding.evidence:
            out.print(f"{indent}  {e}", markup=False)
    if finding.fix:
        out.print(f"{indent}[bold]Fix[/]" if not indent else f"{indent}[green]fix:[/]")
        for n, fx in enumerate(finding.fix, 1):
            out.print(f"{indent}  {n}. {fx.description}", markup=False)
            if fx.command:
                for line in fx.command.splitlines():
                    out.print(f"{indent}       {line}", style="dim" if line.startswith("#") else "bold",
                              markup=False)
