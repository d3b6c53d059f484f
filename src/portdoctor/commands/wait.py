"""`wait` and `guard`: wait for dependencies, restart a service that stops answering."""

from __future__ import annotations

import sys
from typing import Any

import click

from portdoctor.cliutil import output_options, fmt_of, emit
from portdoctor.errors import BadInput, ExitCode


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


@click.command(cls=_SplitAtDoubleDash, context_settings={"help_option_names": ["--help"]})
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

    fmt = fmt_of(fmt, as_json)
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
                    emit("diagnosis", tw.diagnosis, fmt)
    if command and not runs:
        say(f"not running {command[0]}: not every target became ready (--lax runs it anyway)")
    if runs and path is not None:
        exec_command(path, command)
    raise SystemExit(ExitCode.OK if report.ready else ExitCode.PROBLEM)


def _seconds(low: float, high: float) -> click.FloatRange:
    return click.FloatRange(low, high)


@click.command()
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
    as_lines = not (log_json or fmt_of(fmt, as_json) == "json")
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
