"""`scan`: a connect sweep of a host's ports, with nmap's states and reasons."""

from __future__ import annotations

import sys
from typing import Callable

import click

from portdoctor.cliutil import output_options, fmt_of, timeout_value
from portdoctor.errors import BadInput, ExitCode


# --------------------------------------------------------------------------- scan


@click.command()
@click.argument("host")
@click.option("-p", "--ports", "port_spec", metavar="RANGE|LIST",
              help="Ports: 22, 80,443, 8000-8100, - (all 65,535), http,ssh. Default: --top 1000.")
@click.option("--top", type=int, default=None, metavar="N", help="The N ports most often open.")
@click.option("--max-seconds", type=float, default=None, metavar="S",
              help="Stop after S seconds; ports without an answer by then are filtered.")
@output_options
def scan(host: str, port_spec: str | None, top: int | None, max_seconds: float | None, fmt: str,
         as_json: bool) -> None:
    """Sweep the TCP ports of HOST with connect(): where does a service really listen?

    \b
    States and reasons as nmap names them: open (syn-ack), closed (conn-refused),
    filtered (no-response after one retry), unreachable (host-unreach, net-unreach,
    admin-prohibited). Exit 0 when a port is open, 1 when none is.

    \b
    Examples:
      portdoctor scan 10.0.0.2 -p 8000-8100
      portdoctor scan db.internal -p- --json
      portdoctor scan 10.0.0.2 --top 100
    """
    from portdoctor.scan import DEFAULT_TOP, parse_ports, top_ports
    from portdoctor.scan import scan as run_scan

    if port_spec is not None and top is not None:
        raise BadInput("give -p or --top, not both")
    if max_seconds is not None:
        timeout_value(max_seconds)
    ports = parse_ports(port_spec) if port_spec is not None else top_ports(top if top is not None else DEFAULT_TOP)
    fmt = fmt_of(fmt, as_json)
    progress, done = _scan_progress(len(ports)) if fmt == "text" and sys.stderr.isatty() else (None, None)
    try:
        result = run_scan(host, ports, deadline=max_seconds, progress=progress)
    finally:
        if done is not None:
            done()
    if fmt == "json":
        import json

        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
    else:
        from portdoctor.render import scan as render_scan

        sys.stdout.write(render_scan.markdown(result) if fmt == "markdown" else render_scan.text(result))
    raise SystemExit(ExitCode.OK if result.by_state("open") else ExitCode.PROBLEM)


def _scan_progress(total: int) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A rich progress bar on stderr (only called on a terminal): update and close functions."""
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), transient=True)
    task = bar.add_task("scanning", total=total)
    bar.start()
    step = max(1, total // 200)

    def update(done: int, _total: int) -> None:
        if done % step == 0 or done == _total:
            bar.update(task, completed=done)

    return update, bar.stop
