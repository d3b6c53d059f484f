"""`diagnose` (and its --ssh form): why is TARGET refused, and what to change."""

from __future__ import annotations

import sys
from typing import Any, Callable

import click

from portdoctor.cliutil import check_writable, output_options, fmt_of, timeout_value, emit, parse_from, read_snapshot
from portdoctor.errors import BadInput, ExitCode


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
    results = remote.diagnose_over_ssh(t, hosts, options, from_addr=parse_from(from_addr), service=service,
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


@click.command()
@click.argument("target")
@click.option("--port", "-p", type=int, help="Port, when TARGET is a bare host or address.")
@click.option("--from", "from_addr", metavar="ADDR",
              help="Where the failing clients connect from (an address), for bind scope and firewall checks.")
@click.option("--service", metavar="NAME",
              help="The service you expect there: a process name, a command-line fragment or a unit.")
@click.option("--timeout", type=float, default=3.0, show_default=True, callback=lambda c, p, v: timeout_value(v),
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

            raise BadInput("--ssh/--inventory take the server's facts over SSH: not with --snapshot, --record or --replay")
        _diagnose_ssh(target, port, from_addr, service, timeout, fmt_of(fmt, as_json), **ssh)

    from portdoctor.diagnose import diagnose as run_diagnose
    from portdoctor.diagnose import recording, replay_recording
    from portdoctor.target import parse_target

    check_writable(record, "the recording")
    if replay:
        with open(replay) as fh:
            result = replay_recording(json.load(fh))
    else:
        t = parse_target(target, port)
        from_ip = parse_from(from_addr)
        snap = read_snapshot(snapshot_file) if snapshot_file else None
        result = run_diagnose(t, from_addr=from_ip, service=service, timeout=timeout, snapshot=snap,
                              attempts=attempts)
    if record:
        with open(record, "w") as fh:
            json.dump(recording(result, from_addr=parse_from(from_addr), service=service), fh, indent=1)
    emit("diagnosis", result, fmt_of(fmt, as_json))
    raise SystemExit(ExitCode.OK if result.verdict.cause.value == "ok" else ExitCode.PROBLEM)
