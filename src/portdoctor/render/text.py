"""Terminal output, written with rich. Renderers only arrange what the result already says."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from portdoctor.model import State

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
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def probe_table(result: ProbeResult, out: Console) -> None:
    """The per-address table of a probe, with the meaning of each state seen."""
    from rich.table import Table

    from portdoctor.probe import STATE_MEANING

    t = result.target
    if result.state is State.DNS_ERROR:
        out.print(f"[bold]{t.host}[/] did not resolve: {result.dns_error}")
        out.print(STATE_MEANING[State.DNS_ERROR])
        return
    table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    for col in ("address", "family", "state", "errno", "time", ""):
        table.add_column(col)
    for a in result.addresses:
        attempts = ""
        if a.attempts:
            attempts = " ".join(f"{k}×{v}" for k, v in sorted(a.attempts.items()))
        note = "; ".join(x for x in (attempts, a.detail or "") if x)
        table.add_row(a.address, f"IPv{a.family}", f"[{_STATE_STYLE[a.state]}]{a.state.value}[/]",
                      a.errno or "", _ms(a.seconds), note)
    out.print(table)
    seen = []
    for a in result.addresses:
        if a.state not in seen:
            seen.append(a.state)
    for s in seen:
        meaning = STATE_MEANING[s]
        if s is State.TIMEOUT:
            meaning += f"; only {result.timeout:g} s were waited, so this alone does not prove a DROP" \
                if result.timeout < 3 else ""
        out.print(f"  {meaning}")
    for note in probe_notes(result):
        out.print(f"[yellow]note:[/] {note}")


def probe_notes(result: ProbeResult) -> list[str]:
    """Remarks a reader needs beyond the table: split families, intermittent answers."""
    notes = []
    states = {a.state for a in result.addresses}
    fams = {a.family: a for a in result.addresses}
    if len(states) > 1 and 4 in fams and 6 in fams:
        good = [a for a in result.addresses if a.state is State.OPEN]
        bad = [a for a in result.addresses if a.state is not State.OPEN]
        if good and bad:
            g, b = good[0], bad[0]
            first = result.addresses[0]
            order = ("a client tries " + first.address + " first")
            notes.append(
                f"{result.target.host} resolves to {len(result.addresses)} addresses and they disagree: "
                f"{g.address} accepts, {b.address} is {b.state.value}. {order.capitalize()}; "
                + ("clients that do not fall back to the next address fail (Node before 20, many "
                   "database drivers)." if first.state is not State.OPEN else
                   "clients that only use the other family fail.")
                + f" Make the service listen on both families, or connect to {g.address} explicitly."
            )
    for a in result.addresses:
        if a.attempts and len(a.attempts) > 1:
            notes.append(
                f"{a.address} answered inconsistently ("
                + ", ".join(f"{k} {v}" for k, v in sorted(a.attempts.items()))
                + "): an intermittent failure often means an overloaded server (full accept queue) "
                "or a load balancer with a dead backend."
            )
    return notes


def probe(result: ProbeResult) -> None:
    """Print a probe result."""
    out = console()
    t = result.target
    n = len(result.addresses)
    head = f"[bold]{t.host}:{t.port}[/]" if ":" not in t.host else f"[bold][{t.host}]:{t.port}[/]"
    out.print(f"{head}  [{_STATE_STYLE[result.state]}]{result.state.value}[/]"
              + (f"  ({n} address{'es' if n != 1 else ''}, timeout {result.timeout:g} s)" if n else ""))
    probe_table(result, out)


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
        out.print("  no host or port in the message: run [bold]portdoctor probe HOST:PORT[/] with the address the client used")
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
    where = f"[{t.host}]:{t.port}" if ":" in t.host else f"{t.host}:{t.port}"
    out.print(f"[bold]{where}[/]  [{style}]{v.cause.value}[/]  (confidence {v.confidence:.0%})")
    out.print(v.summary, markup=False)
    top = result.findings[0] if result.findings and result.findings[0].summary == v.summary else None
    if top is not None:
        _evidence_and_fix(out, top, indent="")
    out.print()
    out.print("[bold]Probe from this host[/]")
    probe_table(result.probe, out)
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
