"""`explain`: read a pasted connection error, then check the target it names."""

from __future__ import annotations

import sys

import click

from portdoctor.cliutil import output_options, fmt_of, timeout_value, emit
from portdoctor.errors import BadInput, ExitCode


# --------------------------------------------------------------------------- explain


@click.command()
@click.argument("text", nargs=-1, required=True)
@click.option("--no-probe", is_flag=True, help="Only parse the message; do not connect anywhere.")
@click.option("--timeout", type=float, default=3.0, show_default=True, callback=lambda c, p, v: timeout_value(v),
              help="Seconds to wait for each connection of the probe.")
@output_options
def explain(text: tuple[str, ...], no_probe: bool, timeout: float, fmt: str, as_json: bool) -> None:
    """Read a pasted connection error, name its errno and platform, and diagnose its target.

    \b
    TEXT is the message (quote it), or - to read it from standard input.

    \b
    Examples:
      portdoctor explain "Error: connect ECONNREFUSED 127.0.0.1:3000"
      portdoctor explain "ERROR 2003 (HY000): Can't connect to MySQL server on 'db' (111)"
      psql -h db 2>&1 | portdoctor explain -
    """
    from portdoctor.explain import explain as run_explain

    message = sys.stdin.read() if text == ("-",) else " ".join(text)
    if not message.strip():
        raise BadInput("nothing to explain: the message is empty")
    result = run_explain(message)
    if not result.recognized:
        raise BadInput("not a connection error portdoctor knows: " + _first_line(message))
    diagnosis = None
    if result.target is not None and not no_probe:
        from portdoctor.diagnose import diagnose as run_diagnose

        diagnosis = run_diagnose(result.target, timeout=timeout)
        result = result.with_probe(diagnosis.probe)
    fmt = fmt_of(fmt, as_json)
    if fmt == "json":
        import json

        doc = result.to_json()
        if diagnosis is not None:
            doc["diagnosis"] = diagnosis.to_json()
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        emit("explain", result, fmt)
        if diagnosis is not None:
            if fmt == "text":
                sys.stdout.write("\n")
            emit("diagnosis", diagnosis, fmt)
    state = result.probe.state.value if result.probe is not None else None
    raise SystemExit(ExitCode.OK if state == "open" else ExitCode.PROBLEM)


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 120 else line[:117] + "..."
