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


# --------------------------------------------------------------------------- diagnose --ssh


def ssh_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options of `diagnose --ssh` (docs/ssh.md)."""
    opts = [
        click.option("--ssh", "ssh_hosts", multiple=True, metavar="[USER@]HOST[:PORT]",
                     help="Take the server's facts on HOST over SSH (keys and agent only, known_hosts checked); "
                          "repeat for several hosts."),
        click.option("--inventory", type=click.Path(dir_okay=False), metavar="FILE",
                     help="Hosts for --ssh, one [USER@]HOST[:PORT] a line (# comments)."),
        click.option("--ssh-key", "ssh_keys", multiple=True, type=click.Path(dir_okay=False, exists=True),
                     metavar="FILE", help="Private key to log in with (repeatable); default: agent and ~/.ssh."),
        click.option("--known-hosts", type=click.Path(dir_okay=False, exists=True), metavar="FILE",
                     help="known_hosts file to check host keys against (default: ~/.ssh/known_hosts)."),
        click.option("--ssh-config", type=click.Path(dir_okay=False, exists=True), metavar="FILE",
                     help="OpenSSH client config to read instead of ~/.ssh/config."),
        click.option("--jobs", type=click.IntRange(1, 256), default=8, show_default=True,
                     help="Hosts inspected at the same time."),
        click.option("--ssh-code", type=click.Choice(["auto", "send", "installed"]), default="auto",
                     show_default=True,
                     help="On the server: an installed portdoctor when found (auto), or always send this one."),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def _diagnose_ssh(target: str, port: int | None, from_addr: str | None, service: str | None, timeout: float,
                  fmt: str, ssh_hosts: tuple[str, ...], inventory: str | None, ssh_keys: tuple[str, ...],
                  known_hosts: str | None, ssh_config: str | None, jobs: int, ssh_code: str) -> None:
    from portdoctor import remote
    from portdoctor.render import ssh as render_ssh
    from portdoctor.target import parse_target

    t = parse_target(target, port)
    hosts = [remote.parse_ssh_host(h) for h in ssh_hosts]
    if inventory:
        hosts += remote.read_inventory(inventory)
    options = remote.SshOptions(keys=ssh_keys, known_hosts=known_hosts, config=ssh_config, jobs=jobs, code=ssh_code)
    results = remote.diagnose_over_ssh(t, hosts, options, from_addr=_parse_from(from_addr), service=service,
                                       timeout=timeout)
    several = len(ssh_hosts) > 1 or bool(inventory)
    if not several and results[0].error is not None:
        if fmt != "json":
            raise remote.RemoteError(results[0].error)
        sys.stderr.write(f"portdoctor: error: {results[0].error}\n")
    if fmt == "json":
        sys.stdout.write(render_ssh.json_text(results, as_list=several))
    elif fmt == "markdown":
        sys.stdout.write(render_ssh.markdown(results, as_table=several))
    else:
        sys.stdout.write(render_ssh.text(results, as_table=several))
    raise SystemExit(remote.exit_code(results))


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
@ssh_options
@output_options
def diagnose(target: str, port: int | None, from_addr: str | None, service: str | None, timeout: float,
             attempts: int, record: str | None, replay: str | None, snapshot_file: str | None, fmt: str,
             as_json: bool, **ssh: Any) -> None:
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
      portdoctor diagnose 10.0.0.2:8080 --ssh root@10.0.0.2       # ... over SSH (docs/ssh.md)
      portdoctor diagnose :5432 --inventory dbhosts.txt          # a table, one row per host
    """
    import json

    if ssh["ssh_hosts"] or ssh["inventory"]:
        if record or replay or snapshot_file:
            from portdoctor.errors import BadInput

            raise BadInput("--ssh/--inventory take the server's facts over SSH: not with --snapshot, --record or --replay")
        _diagnose_ssh(target, port, from_addr, service, timeout, _fmt(fmt, as_json), **ssh)

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

    from portdoctor.clientview import widen

    result = widen(run_probe(parse_target(target, port), timeout=timeout, attempts=attempts))
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


# --------------------------------------------------------------------------- scan


@app.command()
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
    from portdoctor.errors import BadInput
    from portdoctor.scan import DEFAULT_TOP, parse_ports, top_ports
    from portdoctor.scan import scan as run_scan

    if port_spec is not None and top is not None:
        raise BadInput("give -p or --top, not both")
    if max_seconds is not None:
        _timeout(max_seconds)
    ports = parse_ports(port_spec) if port_spec is not None else top_ports(top if top is not None else DEFAULT_TOP)
    fmt = _fmt(fmt, as_json)
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


# --------------------------------------------------------------------------- verify, audit


@app.command()
@click.argument("spec", required=False, metavar="SPEC")
@click.option("--generate", is_flag=True,
              help="Write a spec of this host as it is now to SPEC (stdout when SPEC is omitted or -).")
@click.option("--force", is_flag=True, help="With --generate: overwrite SPEC if it exists.")
@click.option("--junit", "junit", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Also write the results as JUnit XML to FILE (for CI).")
@click.option("--no-diagnose", is_flag=True, help="Do not diagnose failures (faster; no cause or fix).")
@click.option("--verbose", "-v", is_flag=True, help="Also show the evidence of passing checks.")
@output_options
def verify(spec: str | None, generate: bool, force: bool, junit: str | None, no_diagnose: bool, verbose: bool,
           fmt: str, as_json: bool) -> None:
    """Check this host against SPEC (YAML): listeners, bind scope, owners, reachability, HTTP.

    \b
    Every failure says why (the cause and the fix, from a diagnosis); an expectation that
    could not be observed (no privilege, an unreadable table) is reported as such, never as
    "not listening". Exit 0 all passed, 1 a check failed, 2 bad spec, 3 could not observe.

    \b
    Examples:
      sudo portdoctor verify --generate host.yaml    # a starting point, from this host
      sudo portdoctor verify host.yaml --junit verify.xml
      portdoctor verify host.yaml --json
    """
    from portdoctor.errors import BadInput
    from portdoctor.verify import SpecError, load_spec

    if generate:
        from portdoctor.verify.generate import generate_here

        if spec not in (None, "-") and os.path.exists(spec) and not force:
            raise BadInput(f"{spec} exists; use --force to overwrite it")
        text = generate_here()
        if spec in (None, "-"):
            sys.stdout.write(text)
        else:
            with open(spec, "w", encoding="utf-8") as fh:
                fh.write(text)
            sys.stderr.write(f"portdoctor: wrote {spec}\n")
        raise SystemExit(ExitCode.OK)
    if spec is None:
        raise BadInput("give the SPEC file to check (or --generate to write one)")
    try:
        parsed = load_spec(spec)
    except SpecError as exc:
        for line in exc.errors:
            sys.stderr.write(f"portdoctor: error: {line}\n")
        raise SystemExit(ExitCode.USAGE) from None
    from portdoctor.verify.run import verify as run_verify

    report = run_verify(parsed, diagnose=not no_diagnose)
    if junit:
        from portdoctor.verify.junit import write

        write(report, junit)
    fmt = _fmt(fmt, as_json)
    from portdoctor.render import verify as render_verify

    if fmt == "json":
        import json

        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(render_verify.markdown(report) if fmt == "markdown" else render_verify.text(report, verbose))
    raise SystemExit(report.exit_code)


@app.command()
@click.option("--baseline", type=click.Path(dir_okay=False), metavar="FILE",
              help="Compare with a saved audit (from --save); exit 1 on any difference.")
@click.option("--save", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Save this audit as JSON to FILE: the baseline of a later run.")
@output_options
def audit(baseline: str | None, save: str | None, fmt: str, as_json: bool) -> None:
    """This host's exposure (which ports other hosts reach, bind scope + firewall + NAT) and
    its difference from a baseline: ports newly exposed, newly blocked, changed owner or bind.

    \b
    Examples:
      sudo portdoctor audit --save /var/lib/portdoctor/exposure.json
      sudo portdoctor audit --baseline /var/lib/portdoctor/exposure.json   # cron / CI: exit 1 on drift
      sudo portdoctor audit --baseline base.json --format markdown > ticket.md
    """
    import json

    from portdoctor.audit import audit as run_audit

    result = run_audit(baseline)
    if save:
        with open(save, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(result.to_json(), indent=1) + "\n")
    fmt = _fmt(fmt, as_json)
    from portdoctor.render import audit as render_audit

    if fmt == "json":
        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(render_audit.markdown(result) if fmt == "markdown" else render_audit.text(result))
    raise SystemExit(result.exit_code)


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


# --------------------------------------------------------------------------- fix


@app.command()
@click.argument("target", required=False)
@click.option("--port", "-p", type=int, help="Port, when TARGET is a bare host or address.")
@click.option("--from", "from_addr", metavar="ADDR", help="Where the failing clients connect from; a firewall "
              "rule is scoped to it.")
@click.option("--service", metavar="NAME", help="The service meant to listen on the port (moves it there).")
@click.option("--yes", "-y", is_flag=True, help="Apply without asking (for scripts).")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--undo", is_flag=True, help="Undo the last applied fix.")
@click.option("--timeout", type=float, default=3.0, show_default=True, callback=lambda c, p, v: _timeout(v),
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

    fmt = _fmt(fmt, as_json)
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

        rep = session.fix_target(parse_target(target, port), _parse_from(from_addr), service, yes=yes,
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
# --------------------------------------------------------------------------- wait, guard


class _SplitAtDoubleDash(click.Command):
    """Keeps what follows the first `--` as the command to run (click would drop the `--` and
    mix the command's words with the targets): `wait db:5432 -t 5 -- app --flag`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            ctx.meta["portdoctor.command"] = tuple(args[at + 1:])
            args = args[:at]
        return super().parse_args(ctx, args)


def _http_check(path: str | None, statuses: str | None, targets: Any) -> Any:
    """The HTTP check of --http PATH [--status CODES], or None."""
    if path is None:
        if statuses:
            raise click.BadParameter("--status needs --http PATH", param_hint="--status")
        return None
    from portdoctor.errors import BadInput
    from portdoctor.monitor.config import HttpCheck

    if not path.startswith("/"):
        raise BadInput(f"--http {path!r}: give a path starting with /")
    codes: tuple[int, ...] = ()
    if statuses:
        try:
            codes = tuple(int(x) for x in statuses.replace(",", " ").split())
        except ValueError:
            raise BadInput(f"--status {statuses!r}: give HTTP status codes, e.g. 200,204") from None
        if not codes or any(not 100 <= c <= 599 for c in codes):
            raise BadInput(f"--status {statuses!r}: status codes are 100 to 599")
    tls = any(t.scheme in ("https", "wss") for t in targets)
    return HttpCheck(path=path, expect=codes, tls=tls)


@app.command(cls=_SplitAtDoubleDash, context_settings={"help_option_names": ["--help"]})
@click.argument("targets", nargs=-1, metavar="TARGET... [-- CMD [ARGS]...]")
@click.option("-t", "--timeout", type=click.FloatRange(0, 86400), default=15.0, show_default=True,
              help="Give up after this many seconds (0: wait for ever).")
@click.option("-s", "--strict", is_flag=True,
              help="Run CMD only if every target became ready (always so; accepted for wait-for-it).")
@click.option("--lax", is_flag=True, help="wait-for-it's default: run CMD even after a timeout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines (the diagnosis of a timeout is still printed).")
@click.option("-h", "--host", "wf_host", metavar="HOST", help="wait-for-it's form: the host (with --port).")
@click.option("-p", "--port", "wf_port", type=click.IntRange(1, 65535), help="wait-for-it's form: the port.")
@click.option("--http", "http_path", metavar="PATH", help="Ready only when GET PATH answers 200-399 (or --status).")
@click.option("--status", "statuses", metavar="CODES", help="HTTP statuses that count as ready, e.g. 200,204.")
@click.option("--connect-timeout", type=click.FloatRange(0.05, 60), default=2.0, show_default=True,
              help="Seconds one connection attempt may wait for an answer.")
@click.option("--no-diagnose", is_flag=True, help="On timeout, say what was seen but do not diagnose.")
@output_options
@click.pass_context
def wait(ctx: click.Context, targets: tuple[str, ...], timeout: float, strict: bool, lax: bool, quiet: bool,
         wf_host: str | None, wf_port: int | None, http_path: str | None, statuses: str | None,
         connect_timeout: float, no_diagnose: bool, fmt: str, as_json: bool) -> None:
    """Block until every TARGET accepts, then run CMD (exec: same arguments and environment).

    \b
    Retries with exponential backoff and jitter. A port that accepts and at once closes or
    resets the connection is not ready. On timeout it says what it saw the whole time
    (refused: nothing listening; no answer; unreachable; DNS) and prints the diagnosis of
    the last failure; exit 1, and CMD does not run (wait-for-it runs it anyway unless -s:
    --lax does that). Drop-in for wait-for-it: host:port, -t, -s, -q, -h/-p.

    \b
    Examples:
      portdoctor wait db:5432 -- python manage.py migrate
      portdoctor wait db:5432 redis:6379 -t 60 -s -- ./start.sh
      portdoctor wait http://api:8080 --http /healthz -q -- npm start
      portdoctor wait -h db -p 5432 -t 0            # wait-for-it.sh -h db -p 5432 -t 0
    """
    import contextlib

    from portdoctor.ops.wait import WaitRequest, command_path, diagnose_failures, exec_command, timeout_line
    from portdoctor.ops.wait import wait_for
    from portdoctor.target import parse_target

    fmt = _fmt(fmt, as_json)
    command: tuple[str, ...] = ctx.meta.get("portdoctor.command", ())
    words = list(targets)
    if wf_host or wf_port:
        if not (wf_host and wf_port):
            raise click.BadParameter("give both --host and --port", param_hint="-h/-p")
        words.append(f"[{wf_host}]:{wf_port}" if ":" in wf_host else f"{wf_host}:{wf_port}")
    if not words:
        raise click.UsageError("give at least one TARGET (host:port)")
    parsed = tuple(parse_target(w) for w in words)
    http = _http_check(http_path, statuses, parsed)
    path = command_path(command) if command else None  # refuse an untrusted program before waiting

    def say(line: str) -> None:
        sys.stderr.write(f"portdoctor wait: {line}\n")
        sys.stderr.flush()

    req = WaitRequest(parsed, timeout=timeout, attempt_timeout=connect_timeout, http=http)
    report = wait_for(req, on_progress=None if quiet else say)
    if not report.ready:
        for tw in report.targets:
            if not tw.ready:
                say(timeout_line(tw, timeout))
        if not no_diagnose:
            diagnose_failures(report, timeout=min(3.0, max(0.5, connect_timeout)))
    if strict and lax:
        raise BadInput("-s/--strict and --lax contradict each other: give one")
    runs = bool(command) and (report.ready or lax)
    if fmt == "json":
        import json

        sys.stdout.write(json.dumps(report.to_json(command, runs), indent=2) + "\n")
    else:
        for tw in report.targets:
            if tw.diagnosis is not None:
                with contextlib.redirect_stdout(sys.stderr):
                    _emit("diagnosis", tw.diagnosis, fmt)
    if command and not runs:
        say(f"not running {command[0]}: not every target became ready (--lax runs it anyway)")
    if runs and path is not None:
        exec_command(path, command)
    raise SystemExit(ExitCode.OK if report.ready else ExitCode.PROBLEM)


def _seconds(low: float, high: float) -> click.FloatRange:
    return click.FloatRange(low, high)


@app.command()
@click.argument("target")
@click.option("--restart", "restart_cmd", metavar="CMD",
              help="Restart with this command (split into words; no shell unless --shell).")
@click.option("--shell", is_flag=True, help="Run --restart CMD through /bin/sh -c.")
@click.option("--unit", metavar="NAME", help="Restart the systemd unit NAME (systemctl restart).")
@click.option("--program", metavar="NAME", help="Restart the supervisord program NAME (supervisorctl restart).")
@click.option("--container", metavar="NAME", help="Restart the container NAME (podman or docker restart).")
@click.option("--service", metavar="NAME", help="The service expected on the port (for the diagnosis).")
@click.option("--interval", type=_seconds(0.05, 86400), default=5.0, show_default=True,
              help="Seconds between checks.")
@click.option("--timeout", type=_seconds(0.05, 600), default=2.0, show_default=True,
              help="Seconds one check may wait for an answer.")
@click.option("--failures", type=click.IntRange(1, 1000), default=3, show_default=True,
              help="Consecutive failed checks before acting.")
@click.option("--grace", type=_seconds(0, 86400), default=10.0, show_default=True,
              help="Seconds after a restart in which failures are not counted.")
@click.option("--backoff", type=_seconds(0, 86400), default=10.0, show_default=True,
              help="Least seconds between the first and second restart; doubles each time.")
@click.option("--max-backoff", type=_seconds(0, 86400), default=300.0, show_default=True,
              help="Upper bound of the backoff between restarts.")
@click.option("--max-restarts", type=click.IntRange(1, 10000), default=5, show_default=True,
              help="Restarts allowed within --window; then none until --cooldown has passed.")
@click.option("--window", type=_seconds(1, 864000), default=600.0, show_default=True,
              help="Seconds over which restarts are counted.")
@click.option("--cooldown", type=_seconds(0, 864000), default=600.0, show_default=True,
              help="Seconds without restarts once the cap is reached; then a fresh budget.")
@click.option("--restart-timeout", type=_seconds(0.1, 3600), default=30.0, show_default=True,
              help="A restart command running longer is killed (with its process group).")
@click.option("--stable", type=_seconds(0, 864000), default=60.0, show_default=True,
              help="Healthy this long and the backoff starts over from --backoff.")
@click.option("--on-cap", type=click.Choice(["alert", "exit"]), default="alert", show_default=True,
              help="At the cap: keep watching and alert (resume after --cooldown), or exit 1.")
@click.option("--http", "http_path", metavar="PATH", help="Healthy only when GET PATH answers 200-399 (or --status).")
@click.option("--status", "statuses", metavar="CODES", help="HTTP statuses that count as healthy, e.g. 200,204.")
@click.option("--log-json", is_flag=True, help="One JSON object per decision (same as --format json).")
@output_options
def guard(target: str, restart_cmd: str | None, shell: bool, unit: str | None, program: str | None,
          container: str | None, service: str | None, interval: float, timeout: float, failures: int,
          grace: float, backoff: float, max_backoff: float, max_restarts: int, window: float, cooldown: float,
          restart_timeout: float, stable: float, on_cap: str, http_path: str | None, statuses: str | None,
          log_json: bool, fmt: str, as_json: bool) -> None:
    """Check TARGET every interval; restart its service when it fails and a restart can help.

    \b
    After --failures consecutive failed checks the failure is diagnosed: a cause a restart
    cannot fix (firewall reject or drop, wrong bind address or port, DNS, unreachable host,
    proxy upstream, port mapping) is logged and not restarted. Otherwise the service is
    restarted through its supervisor (auto-detected: supervisord, systemd, podman/docker) or
    --restart CMD, then a grace period; exponential backoff between restarts; at most
    --max-restarts per --window, then an alert and no restart for --cooldown. Every decision
    is one log line on stdout. SIGTERM/SIGINT stop it cleanly (exit 0).

    \b
    Examples:
      sudo portdoctor guard :8080 --program web
      sudo portdoctor guard 127.0.0.1:5432 --unit postgresql --interval 10
      portdoctor guard :3000 --restart "/usr/local/bin/app-restart --hard" --restart-timeout 20
      sudo portdoctor guard :8080 --http /healthz --log-json     # supervisor auto-detected
    """
    import signal
    import threading

    from portdoctor.errors import BadInput
    from portdoctor.ops import restart as restarts
    from portdoctor.ops.backoff import Backoff
    from portdoctor.ops.guard import Policy
    from portdoctor.ops.guardrun import GuardRequest, guard as run_guard, line
    from portdoctor.target import parse_target

    given = [x for x in (restart_cmd, unit, program, container) if x]
    if len(given) > 1:
        raise BadInput("give only one of --restart, --unit, --program, --container")
    if shell and not restart_cmd:
        raise BadInput("--shell goes with --restart CMD")
    t = parse_target(target)
    http = _http_check(http_path, statuses, (t,))
    if restart_cmd:
        restarter = restarts.from_command(restart_cmd, shell=shell)
    elif unit:
        restarter = restarts.for_unit(unit)
    else:
        from portdoctor.diagnose import take_snapshot

        snap = take_snapshot(t, service=service, timeout=timeout)
        if program:
            restarter = restarts.for_program(program, snap)
        elif container:
            restarter = restarts.for_container(container, snap)
        else:
            found = restarts.detect(snap, t)
            if found is None:
                raise BadInput(f"no supervisor of port {t.port} found (no supervisord program, container or "
                               "systemd unit runs it): give --restart CMD, --unit, --program or --container")
            restarter = found
    policy = Policy(interval=interval, timeout=timeout, failures=failures, grace=grace,
                    backoff=Backoff(initial=backoff, factor=2.0, maximum=max(backoff, max_backoff), jitter=0.1),
                    max_restarts=max_restarts, window=window, cooldown=cooldown, restart_timeout=restart_timeout,
                    stable=stable, on_cap=on_cap)
    as_lines = not (log_json or _fmt(fmt, as_json) == "json")
    def log(rec: dict[str, Any]) -> None:
        import json

        text = line(rec) if as_lines else json.dumps(rec)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    req = GuardRequest(t, policy, restarter, http=http, service=service)
    raise SystemExit(run_guard(req, log, stop))


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
