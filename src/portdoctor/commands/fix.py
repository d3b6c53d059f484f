"""`fix`: apply the diagnosis's fix after consent, check it, roll back if it fails; `fix --undo`.

The logic lives in portdoctor.remedy (docs/fix.md); this module parses, asks and renders.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from portdoctor.cliutil import fmt_of, output_options, parse_from, timeout_value
from portdoctor.errors import ExitCode


@click.command()
@click.argument("target", required=False)
@click.option("--port", "-p", type=int, help="Port, when TARGET is a bare host or address.")
@click.option("--from", "from_addr", metavar="ADDR", help="Where the failing clients connect from; a firewall "
              "rule is scoped to it.")
@click.option("--service", metavar="NAME", help="The service meant to listen on the port (moves it there).")
@click.option("--yes", "-y", is_flag=True, help="Apply without asking (for scripts).")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--undo", is_flag=True, help="Undo the last applied fix.")
@click.option("--timeout", type=float, default=3.0, show_default=True, callback=lambda c, p, v: timeout_value(v),
              help="Seconds to wait for each connection.")
@output_options
def fix(target: str | None, port: int | None, from_addr: str | None, service: str | None, yes: bool,
        dry_run: bool, undo: bool, timeout: float, fmt: str, as_json: bool) -> None:
    """Diagnose TARGET, show the fix, apply it after consent, check it, roll back if it fails.

    \b
    Every edited file is backed up and every step journaled (/var/lib/portdoctor);
    `fix --undo` restores the last applied fix. See docs/fix.md.

    \b
    Examples:
      sudo portdoctor fix 10.0.0.2:6379 --from 10.0.0.1
      sudo portdoctor fix :8080 --service nginx --dry-run
      sudo portdoctor fix --undo
    """
    import json

    from portdoctor.errors import BadInput, Incomplete
    from portdoctor.remedy import session
    from portdoctor.render.fix import report as text_report
    from portdoctor.render.fix import report_markdown

    fmt = fmt_of(fmt, as_json)
    say = (lambda m: sys.stderr.write(f"  {m}\n")) if fmt == "text" else (lambda _m: None)
    if undo:
        if target:
            raise BadInput("--undo takes no TARGET: it undoes the last applied fix")
        if os.geteuid() != 0:
            raise Incomplete("undoing a fix needs root: run `sudo portdoctor fix --undo`")
        rep = session.undo(say)
        shown = []
    else:
        if not target:
            raise BadInput("fix needs a TARGET (or --undo)")
        from portdoctor.target import parse_target

        shown: list[bool] = []

        def ask(plan: Any, previews: list[str]) -> bool:
            if fmt != "text" or sys.stdin is None:
                return False
            from portdoctor.render.fix import plan_lines

            sys.stdout.write("\n".join(plan_lines(plan, previews)) + "\n")
            sys.stdout.flush()
            shown.append(True)
            try:
                return click.confirm("Apply these changes?", default=False, err=True)
            except click.exceptions.Abort:  # no answer (end of input): no
                return False

        rep = session.fix_target(parse_target(target, port), parse_from(from_addr), service, yes=yes,
                                 dry_run=dry_run, confirm=ask, say=say, timeout=timeout)
    if fmt == "json":
        sys.stdout.write(json.dumps(rep.to_json(), indent=2) + "\n")
    elif fmt == "markdown":
        sys.stdout.write(report_markdown(rep))
    else:
        if shown:  # the plan was printed before the question
            from portdoctor.render.fix import result_lines

            sys.stdout.write("\n".join(result_lines(rep)) + "\n")
        else:
            sys.stdout.write(text_report(rep))
    if rep.status == "needs_root":
        raise SystemExit(ExitCode.INCOMPLETE)
    raise SystemExit(ExitCode.OK if rep.ok else ExitCode.PROBLEM)

