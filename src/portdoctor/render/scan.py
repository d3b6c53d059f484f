"""Output of `portdoctor scan`: nmap-like text and Markdown. Renderers only arrange the result."""

from __future__ import annotations

from typing import TYPE_CHECKING

from portdoctor.render.term import colour_on, columns, paint

if TYPE_CHECKING:
    from portdoctor.scan import PortResult, ScanResult

_COLOUR = {"open": "green", "closed": "red", "filtered": "yellow", "unreachable": "red"}
_SHOW_ALL_BELOW = 25  # a short list shows every port; a long one folds closed and filtered ports


def _shown(result: ScanResult) -> list[PortResult]:
    if len(result.ports) < _SHOW_ALL_BELOW:
        return list(result.ports)
    return [p for p in result.ports if p.state == "open" or p.reason not in ("conn-refused", "no-response")]


def _rtt(p: PortResult) -> str:
    if p.rtt is None:
        return ""
    return f"{p.rtt * 1000:.1f} ms" if p.rtt < 1 else f"{p.rtt:.2f} s"


def _not_shown(result: ScanResult, shown: list[PortResult]) -> str | None:
    hidden: dict[str, int] = {}
    ids = {p.port for p in shown}
    for p in result.ports:
        if p.port not in ids:
            key = f"{p.state} ({p.reason})"
            hidden[key] = hidden.get(key, 0) + 1
    if not hidden:
        return None
    return "not shown: " + ", ".join(f"{n} {k}" for k, n in sorted(hidden.items(), key=lambda kv: -kv[1]))


def text(result: ScanResult) -> str:
    """The scan as lines for a terminal (colour only on a terminal)."""
    on = colour_on()
    counts = result.to_json()["counts"]
    head = (f"{paint(result.host, 'bold', on=on)}"
            + (f" ({result.address})" if result.address != result.host.strip('[]') else "")
            + f": {len(result.ports)} ports in {result.seconds:.2f} s, "
            + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    lines = [head]
    shown = _shown(result)
    if shown:
        raw = [[f"{p.port}/tcp", p.state, p.reason, p.service or "", _rtt(p),
                f"after {p.tries} tries" if p.tries > 1 else ""] for p in shown]
        rows = [[r[0], paint(r[1], _COLOUR.get(r[1], ""), on=on), *r[2:]] for r in raw]
        lines += columns(("port", "state", "reason", "service", "rtt", ""), rows, widths_of=raw)
    else:
        lines.append("no open port")
    hidden = _not_shown(result, shown)
    if hidden:
        lines.append(hidden)
    timing = (f"timing: smoothed rtt {result.srtt * 1000:.2f} ms, " if result.srtt is not None
              else "timing: no answer to learn from, ")
    timing += f"probe timeout {result.timeout * 1000:.0f} ms, up to {result.window} in flight, {result.retries} retries"
    lines.append(timing)
    if result.cut_short:
        lines.append("the time limit ended the sweep: ports without an answer by then are shown as filtered")
    return "\n".join(lines) + "\n"


def markdown(result: ScanResult) -> str:
    """The scan as a Markdown table."""
    out = [f"# scan of {result.host} ({result.address})", "",
           "| port | state | reason | service | rtt |", "| --- | --- | --- | --- | --- |"]
    shown = _shown(result)
    out += [f"| {p.port} | {p.state} | {p.reason} | {p.service or ''} | {_rtt(p)} |" for p in shown]
    hidden = _not_shown(result, shown)
    if hidden:
        out += ["", hidden]
    return "\n".join(out) + "\n"
