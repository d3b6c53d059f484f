"""`probe`: what a client sees when it connects, address by address."""

from __future__ import annotations

import click

from portdoctor.cliutil import output_options, fmt_of, timeout_value, emit
from portdoctor.errors import ExitCode


# --------------------------------------------------------------------------- probe


@click.command()
@click.argument("target")
@click.option("--port", "-p", type=int, help="Port, when TARGET is a bare host or address.")
@click.option("--attempts", "-n", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="Connect this many times to each address and count the outcomes.")
@click.option("--timeout", type=float, default=3.0, show_default=True, callback=lambda c, p, v: timeout_value(v),
              help="Seconds to wait for each connection.")
@output_options
def probe(target: str, port: int | None, attempts: int, timeout: float, fmt: str, as_json: bool) -> None:
    """Connect to each address of TARGET and classify what a client sees.

    \b
    States: open, refused (reset or ICMP port-unreachable), timeout (no answer),
    unreachable (ICMP host/network unreachable, no route), dns_error, error.

    \b
    Examples:
      portdoctor probe 127.0.0.1:5432
      portdoctor probe localhost:3000 --json
      portdoctor probe db.internal:5432 --attempts 20 --timeout 1
    """
    from portdoctor.probe import probe as run_probe
    from portdoctor.target import parse_target

    from portdoctor.clientview import widen

    result = widen(run_probe(parse_target(target, port), timeout=timeout, attempts=attempts))
    emit("probe", result, fmt_of(fmt, as_json))
    raise SystemExit(ExitCode.OK if result.state.value == "open" else ExitCode.PROBLEM)
