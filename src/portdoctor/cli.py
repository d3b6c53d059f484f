"""The `portdoctor` command line: parse, call the library, render, exit.

Commands stay thin: each parses its arguments, calls one library function and hands the result
to a renderer. Errors meet the user in one place, `main`, as one line and an exit code.
Heavy modules (rich, psutil, the docker SDK) are imported inside the commands that need them.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

import click

from portdoctor import __version__
from portdoctor.errors import ExitCode, PortdoctorError

FORMATS = ("text", "json", "markdown")


def output_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command `--format text|json|markdown` and `--json`."""
    func = click.option("--json", "as_json", is_flag=True, help="Short for --format json.")(func)
    func = click.option(
        "--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
        help="Output format.",
    )(func)
    return func


def _fmt(fmt: str, as_json: bool) -> str:
    return "json" if as_json else fmt


def _timeout(value: float) -> float:
    if not value > 0 or value > 3600:
        raise click.BadParameter("must be a number of seconds above 0 and at most 3600")
    return value


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:  # keep the SPEC's order
        return list(self.commands)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="portdoctor")
@click.option("--debug", is_flag=True, help="Show the traceback of an unexpected error.")
@click.pass_context
def app(ctx: click.Context, debug: bool) -> None:
    """Why is my TCP connection refused, and what exactly do I change to fix it?

    \b
    Examples:
      portdoctor diagnose 127.0.0.1:5432       why is this port refused here?
      portdoctor diagnose :8080 --from 10.0.0.7  as seen by a client at 10.0.0.7
      portdoctor probe localhost:3000          what does a client see, per address?
      portdoctor explain "connect ECONNREFUSED ::1:3000"
      curl -sS http://localhost:9 2>&1 | portdoctor explain -

    Exit codes: 0 the target accepts, 1 a problem was found, 2 bad input,
    3 the check could not be completed (privilege or tool missing).
    """
    ctx.obj = {"debug": debug}
    if debug:  # tracebacks of a collector or check that failed (they go on as limitations)
        import logging

        logger = logging.getLogger("portdoctor")
        logger.setLevel(logging.DEBUG)
        logger.addHandler(logging.StreamHandler(sys.stderr))


# --------------------------------------------------------------------------- diagnose


@app.command()
@click.argument("target")
@click.option("--port", "-p", type=int, help="Port, when TARGET is a bare host or address.")
@click.option("--from", "from_addr", metavar="ADDR",
              help="Where the failing clients connect from (an address), for bind scope and firewall checks.")
@click.option("--service", metavar="NAME",
              help="The service you expect there: a process name, a command-line fragment or a unit.")
@click.option("--timeout", type=float, default=3.0, show_default=True, callback=lambda c, p, v: _timeout(v),
              help="Seconds to wait for each connection.")
@click.option("--attempts", "-n", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="Connect this many times: an intermittent refusal (a rate limit) shows as mixed results.")
@click.option("--record", "record", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Also write what was seen (probe + host snapshot) as JSON: a bug report, or a test case "
                   "replayed with --replay.")
@click.option("--replay", "replay", type=click.Path(dir_okay=False, exists=True), metavar="FILE", hidden=True,
              help="Judge a recorded case instead of this host (nothing is probed or read).")
@click.option("--snapshot", "snapshot_file", type=click.Path(dir_okay=False, exists=True), metavar="FILE",
              help="Judge the host facts of FILE (written by `portdoctor snapshot` on the server) instead of "
                   "this host's; the probe still runs from here.")
@output_options
def diagnose(target: str, port: int | None, from_addr: str | None, service: str | None, timeout: float,
             attempts: int, record: str | None, replay: str | None, snapshot_file: str | None, fmt: str, as_json: bool) -> None:
    """Probe TARGET, inspect this host, name the cause and the fix.

    \b
    TARGET: host:port, [v6addr]:port, :port (this host) or a URL (postgres://db/app).
    Run it on the server for the full diagnosis; run on a client, it tells what it can
    see from there and which checks need the server.

    \b
    Examples:
      portdoctor diagnose :5432
      portdoctor diagnose 10.0.0.2:8080 --from 10.0.0.1
      sudo portdoctor diagnose redis://localhost --service redis-server
      portdoctor diagnose 10.0.0.2:8080 --snapshot server.json   # facts taken on the server
    """
    import json

    from portdoctor.diagnose import diagnose as run_diagnose
    from portdoctor.diagnose import recording, replay_recording
    from portdoctor.target import parse_target

    if replay:
        with open(replay) as fh:
            result = replay_recording(json.load(fh))
    else:
        t = parse_target(target, port)
        from_ip = _parse_from(from_addr)
        snap = _read_snapshot(snapshot_file) if snapshot_file else None
        result = run_diagnose(t, from_addr=from_ip, service=service, timeout=timeout, snapshot=snap,
                              attempts=attempts)
    if record:
        with open(record, "w") as fh:
            json.dump(recording(result, from_addr=_parse_from(from_addr), service=service), fh, indent=1)
    _emit("diagnosis", result, _fmt(fmt, as_json))
    raise SystemExit(ExitCode.OK if result.verdict.cause.value == "ok" else ExitCode.PROBLEM)


def _parse_from(text: str | None) -> str | None:
    if text is None:
        return None
    import ipaddress

    from portdoctor.errors import BadInput

    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise BadInput(f"--from {text!r} is not an IP address") from None


# --------------------------------------------------------------------------- probe


@app.command()
@click.argument("target")
@click.option("--port", "-p", type=int, help="Port, when TARGET is a bare host or address.")
@click.option("--attempts", "-n", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="Connect this many times to each address and count the outcomes.")
@click.option("--timeout", type=float, default=3.0, show_default=True, callback=lambda c, p, v: _timeout(v),
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

    result = run_probe(parse_target(target, port), timeout=timeout, attempts=attempts)
    _emit("probe", result, _fmt(fmt, as_json))
    raise SystemExit(ExitCode.OK if result.state.value == "open" else ExitCode.PROBLEM)


# --------------------------------------------------------------------------- explain


@app.command()
@click.argument("text", nargs=-1, required=True)
@click.option("--no-probe", is_flag=True, help="Only parse the message; do not connect anywhere.")
@click.option("--timeout", type=float, default=3.0, show_default=True, callback=lambda c, p, v: _timeout(v),
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
    from portdoctor.errors import BadInput
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
    fmt = _fmt(fmt, as_json)
    if fmt == "json":
        import json

        doc = result.to_json()
        if diagnosis is not None:
            doc["diagnosis"] = diagnosis.to_json()
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        _emit("explain", result, fmt)
        if diagnosis is not None:
            if fmt == "text":
                sys.stdout.write("\n")
            _emit("diagnosis", diagnosis, fmt)
    state = result.probe.state.value if result.probe is not None else None
    raise SystemExit(ExitCode.OK if state == "open" else ExitCode.PROBLEM)


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 120 else line[:117] + "..."


# --------------------------------------------------------------------------- ports


@app.command()
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
    fmt = _fmt(fmt, as_json)
    from portdoctor.render import ports as render_ports

    if fmt == "json":
        sys.stdout.write(render_ports.json_text(doc))
    else:
        out = render_ports.markdown(doc) if fmt == "markdown" else render_ports.text(doc)
        if isinstance(out, str):
            sys.stdout.write(out if out.endswith("\n") else out + "\n")
    raise SystemExit(ExitCode.OK)


# --------------------------------------------------------------------------- run


@app.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- CMD [ARGS]...")
@click.option("--timeout", type=float, default=3.0, show_default=True, callback=lambda c, p, v: _timeout(v),
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

    fmt = _fmt(fmt, as_json)

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

# --------------------------------------------------------------------------- watch, history


@app.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--once", is_flag=True, help="Check every target once, record, alert, print, exit (for cron).")
@click.option("--check", "check_only", is_flag=True, help="Only validate CONFIG: list every error, exit.")
@output_options
def watch(config: str, once: bool, check_only: bool, fmt: str, as_json: bool) -> None:
    """Monitor the targets of CONFIG: history, alerts, Prometheus metrics, web dashboard.

    \b
    Runs until SIGTERM (history is flushed first); SIGHUP reloads CONFIG (an invalid
    file is rejected and the running config stays). With --format json, log lines are JSON.

    \b
    Examples:
      portdoctor watch /etc/portdoctor/watch.yaml
      portdoctor watch watch.yaml --once --json
      portdoctor watch watch.yaml --check
    """
    from portdoctor.monitor import run as monitor
    from portdoctor.monitor.config import ConfigError

    fmt = _fmt(fmt, as_json)
    try:
        if check_only:
            from portdoctor.monitor.config import load_config

            cfg = load_config(config)
            sys.stdout.write(f"{config}: valid, {len(cfg.targets)} targets\n")
            raise SystemExit(ExitCode.OK)
        if once:
            doc = monitor.watch_once(config)
            sys.stdout.write(monitor.render_once(doc, fmt))
            raise SystemExit(ExitCode.OK if all(t["status"] == "up" for t in doc["targets"]) else ExitCode.PROBLEM)
        raise SystemExit(monitor.watch_forever(config, fmt))
    except ConfigError as exc:
        for line in exc.errors:
            sys.stderr.write(f"portdoctor: error: {line}\n")
        raise SystemExit(ExitCode.USAGE) from None


@app.command()
@click.argument("target")
@click.option("--config", "config", type=click.Path(dir_okay=False), help="The watch config (its history path).")
@click.option("--db", type=click.Path(dir_okay=False), help="The history database, instead of --config.")
@click.option("--since", default="7d", show_default=True, help="How far back: 90m, 24h, 30d.")
@output_options
def history(target: str, config: str | None, db: str | None, since: str, fmt: str, as_json: bool) -> None:
    """State changes, causes and availability of one watched TARGET (its name or target).

    \b
    Examples:
      portdoctor history web --config /etc/portdoctor/watch.yaml
      portdoctor history 10.0.0.2:5432 --db /var/lib/portdoctor/watch.db --since 24h --json
    """
    from portdoctor.monitor import run as monitor
    from portdoctor.monitor.config import ConfigError

    try:
        doc = monitor.history(target, config, db, since)
    except ConfigError as exc:
        for line in exc.errors:
            sys.stderr.write(f"portdoctor: error: {line}\n")
        raise SystemExit(ExitCode.USAGE) from None
    sys.stdout.write(monitor.render_history(doc, _fmt(fmt, as_json)))
    raise SystemExit(ExitCode.OK)


def _read_snapshot(path: str) -> Any:
    """A `portdoctor.snapshot/2` file (or a recording holding one) as a Snapshot; BadInput if it is not."""
    import json

    from portdoctor.errors import BadInput
    from portdoctor.snapshot import Snapshot

    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"cannot read the snapshot {path}: {exc}") from None
    if isinstance(doc, dict) and isinstance(doc.get("snapshot"), dict):
        doc = doc["snapshot"]  # a recording (`diagnose --record`)
    return Snapshot.from_json(doc)


@app.command()
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

    from portdoctor.diagnose import take_snapshot
    from portdoctor.target import parse_target

    if target:
        snap = take_snapshot(parse_target(target, port), from_addr=_parse_from(from_addr), service=service)
    else:
        from portdoctor.collectors import Request, collect

        snap = collect(Request(port=0))
    doc = snap.to_json()
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(doc, indent=1) + "\n")
    fmt = _fmt(fmt, as_json)
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


# --------------------------------------------------------------------------- output


def _emit(kind: str, result: Any, fmt: str) -> None:
    """Render `result` (a probe, explanation or diagnosis) in the chosen format to stdout."""
    if fmt == "json":
        import json

        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
    elif fmt == "markdown":
        from portdoctor.render import markdown

        sys.stdout.write(getattr(markdown, kind)(result))
    else:
        from portdoctor.render import text

        getattr(text, kind)(result)


# click >= 8.2 raises this for a group called with no command; older click exits with its help
_NO_ARGS: tuple[type[BaseException], ...] = tuple(
    x for x in [getattr(click.exceptions, "NoArgsIsHelpError", None)] if x is not None)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script and `python -m portdoctor`: one error boundary."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        app.main(args=argv, prog_name="portdoctor", standalone_mode=False)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
        sys.exit(code)
    except click.exceptions.Abort:
        sys.stderr.write("portdoctor: interrupted\n")
        sys.exit(130)
    except _NO_ARGS as exc:  # a command (or the program) called without its arguments: its help
        sys.stderr.write(exc.format_message().rstrip("\n") + "\n")
        sys.exit(ExitCode.USAGE)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "portdoctor"
        sys.stderr.write(f"portdoctor: error: {exc.format_message()} (see '{where} --help')\n")
        sys.exit(ExitCode.USAGE)
    except click.ClickException as exc:
        sys.stderr.write(f"portdoctor: error: {exc.format_message()}\n")
        sys.exit(ExitCode.USAGE)
    except PortdoctorError as exc:
        if debug:
            raise
        sys.stderr.write(f"portdoctor: error: {exc}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("portdoctor: interrupted\n")
        sys.exit(130)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(ExitCode.OK)
    except Exception as exc:  # the one place an unexpected error meets the user
        if debug:
            raise
        sys.stderr.write(
            f"portdoctor: internal error: {type(exc).__name__}: {exc} (run again with --debug for the traceback)\n"
        )
        sys.exit(ExitCode.INCOMPLETE)
    sys.exit(ExitCode.OK)
