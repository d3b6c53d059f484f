"""`ports`: the port map of this host."""

from __future__ import annotations

import sys

import click

from portdoctor.cliutil import output_options, fmt_of
from portdoctor.errors import ExitCode


# --------------------------------------------------------------------------- ports


@click.command()
@output_options
def ports(fmt: str, as_json: bool) -> None:
    """The port map of this host: every listener, its process, bind scope, exposure, mappings.

    \b
    Run as root to see every owner and the firewall. The Markdown form is a document a team
    can commit next to its services.

    \b
    Examples:
      sudo portdoctor ports
      sudo portdoctor ports --format markdown > PORTS.md
    """
    from portdoctor.portmap import port_map

    doc = port_map()
    fmt = fmt_of(fmt, as_json)
    from portdoctor.render import ports as render_ports

    if fmt == "json":
        sys.stdout.write(render_ports.json_text(doc))
    else:
        out = render_ports.markdown(doc) if fmt == "markdown" else render_ports.text(doc)
        if isinstance(out, str):
            sys.stdout.write(out if out.endswith("\n") else out + "\n")
    raise SystemExit(ExitCode.OK)
