"""`watch` and `history`: monitor targets, and what was recorded of one."""

from __future__ import annotations

import sys

import click

from portdoctor.cliutil import output_options, fmt_of
from portdoctor.errors import ExitCode


# --------------------------------------------------------------------------- watch, history


@click.command()
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

    fmt = fmt_of(fmt, as_json)
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


@click.command()
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
    sys.stdout.write(monitor.render_history(doc, fmt_of(fmt, as_json)))
    raise SystemExit(ExitCode.OK)
