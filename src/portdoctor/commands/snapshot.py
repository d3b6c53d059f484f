"""`snapshot`: this host's facts as JSON, to judge elsewhere."""

from __future__ import annotations

import sys

import click

from portdoctor.cliutil import check_writable, output_options, fmt_of, parse_from
from portdoctor.errors import ExitCode


@click.command()
@click.argument("target", required=False)
@click.option("--port", "-p", type=int, help="Port, when TARGET is a bare host or address.")
@click.option("--from", "from_addr", metavar="ADDR", help="Where the failing clients connect from (route look-ups).")
@click.option("--service", metavar="NAME", help="The service expected on the port.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Write the snapshot (JSON) to FILE; the summary still goes to stdout.")
@output_options
def snapshot(target: str | None, port: int | None, from_addr: str | None, service: str | None,
             output: str | None, fmt: str, as_json: bool) -> None:
    """Write this host's facts as versioned JSON (portdoctor.snapshot/2, docs/snapshot.md).

    \b
    Take it on the server, judge it anywhere with `diagnose TARGET --snapshot FILE`, or attach
    it to a bug report (passwords are redacted when collected). With TARGET the facts about its
    port are gathered too (its configs, other namespaces, supervisors). The document goes to
    FILE with -o, or to stdout with --json; otherwise a summary is printed.

    \b
    Examples:
      sudo portdoctor snapshot :5432 -o db1.json
      portdoctor diagnose db1:5432 --snapshot db1.json --from 10.0.0.7
    """
    import json

    check_writable(output, "the snapshot")
    from portdoctor.diagnose import take_snapshot
    from portdoctor.target import parse_target

    if target:
        snap = take_snapshot(parse_target(target, port), from_addr=parse_from(from_addr), service=service)
    else:
        from portdoctor.collectors import Request, collect

        snap = collect(Request(port=0))
    doc = snap.to_json()
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(doc, indent=1) + "\n")
    fmt = fmt_of(fmt, as_json)
    if fmt == "json":
        if not output:
            sys.stdout.write(json.dumps(doc, indent=1) + "\n")
        raise SystemExit(ExitCode.OK)
    groups = [k for k in ("firewall", "containers", "proxies", "supervisors", "names", "namespaces") if doc.get(k)]
    lines = [f"snapshot of {snap.hostname} ({doc['schema']}): {len(snap.listeners)} listening sockets, "
             f"{len(snap.processes)} processes, facts: {', '.join(groups) or 'none beyond listeners'}",
             f"written to {output}" if output else "not written: use -o FILE (or --json for stdout)"]
    lines += [f"could not see: {x}" for x in snap.limitations]
    if fmt == "markdown":
        lines = [f"# Snapshot of `{snap.hostname}`", ""] + [f"- {x}" for x in lines]
    sys.stdout.write("\n".join(lines) + "\n")
    raise SystemExit(ExitCode.OK)
