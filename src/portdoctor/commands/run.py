"""`run -- CMD`: run a program and explain every connection it failed to make."""

from __future__ import annotations

import sys
from typing import Any

import click

from portdoctor.cliutil import check_writable, output_options, fmt_of, timeout_value


# --------------------------------------------------------------------------- run


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- CMD [ARGS]...")
@click.option("--timeout", type=float, default=3.0, show_default=True, callback=lambda c, p, v: timeout_value(v),
              help="Seconds to wait for each connection when diagnosing the targets.")
@click.option("--report", "report_to", metavar="FILE", default=None,
              help="Write the report to FILE (- for stdout) instead of stderr.")
@click.option("--live", is_flag=True, help="Also say each failed connection on stderr as it happens.")
@click.option("--no-diagnose", is_flag=True, help="Only list the failed connections; do not diagnose them.")
@click.option("--keep-trace", metavar="FILE", hidden=True, help="Keep strace's raw output in FILE (mode 0600).")
@output_options
def run(argv: tuple[str, ...], timeout: float, report_to: str | None, live: bool, no_diagnose: bool,
        keep_trace: str | None, fmt: str, as_json: bool) -> None:
    """Run a program unchanged and explain every connection it failed to make.

    \b
    The program runs under strace (its stdin, stdout, stderr, signals and exit
    status stay its own); when it ends, each address it could not connect to is
    listed (errno, how often, when, which process, the name it resolved) and
    diagnosed once. The report goes to stderr; portdoctor exits with the
    program's own exit status (128+N when a signal N killed it).

    \b
    Examples:
      portdoctor run -- python manage.py test
      portdoctor run --json --report run.json -- npm test
      portdoctor run --live -- ./start-worker.sh
    """
    from portdoctor.render import run as render_run
    from portdoctor.runtrace import ProgramNotFound, run_traced

    check_writable(report_to, "the report")

    fmt = fmt_of(fmt, as_json)

    def say(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def on_failure(attempt: Any, folder: Any) -> None:
        proc = folder.process(attempt.tid, attempt.ts)
        from portdoctor.runtrace.report import shown

        say(render_run.live_line(str(attempt.endpoint), attempt.errno, attempt.waited, proc.pid,
                                 shown(proc.command) if proc.command else f"pid {proc.pid}"))

    try:
        report = run_traced(list(argv), timeout=timeout, diagnose=not no_diagnose,
                            on_untraced=lambda reason: say(render_run.untraced_line(reason)),
                            on_failure=on_failure if live else None, keep_trace=keep_trace)
    except ProgramNotFound as exc:
        say(f"portdoctor run: {exc}")
        raise SystemExit(exc.code) from None
    out = sys.stdout if report_to == "-" else sys.stderr
    fh = open(report_to, "w") if report_to not in (None, "-") else None
    try:
        stream = fh or out
        if fmt == "json":
            import json

            stream.write(json.dumps(report.to_json(), indent=2) + "\n")
        elif fmt == "markdown":
            stream.write(render_run.markdown(report))
        elif report.traced or fh is not None or report_to == "-":
            render_run.text(report, stream)
        stream.flush()
    finally:
        if fh is not None:
            fh.close()
    raise SystemExit(report.status)
