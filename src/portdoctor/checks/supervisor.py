"""service_not_running, told by the supervisor: a crashed, looping or stopped program or unit.

Facts come from snap.supervisors (collectors/supervisors.py). A program or unit is tied to
the target when its command line names the port, or its name is the service the user gave.
"""

from __future__ import annotations

import re
import shlex

from portdoctor.checks import Context
from portdoctor.collectors.processes import mentions_port
from portdoctor.hostfacts import Supervisord, SystemdUnit
from portdoctor.model import Cause, Finding, Fix, Severity, State
from portdoctor.snapshot import Snapshot

CHECK = "supervisor"
_EXIT = re.compile(r"exited: (\S+) \((?:exit status (\d+)|terminated by (\S+))")


def _argv(command: str | None) -> list[str]:
    if not command:
        return []
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


def _related(name: str, argv: list[str], ctx: Context) -> bool:
    if ctx.service and ctx.service.lower().removesuffix(".service") in name.lower():
        return True
    text = " ".join(argv)
    return mentions_port(argv, ctx.target.port) or re.search(rf"(?<![\d.]){ctx.target.port}(?!\d)", text) is not None


def _last_exit(events: list[str], name: str) -> tuple[str | None, int]:
    """(last exit status or signal, number of exits seen) from supervisord's log lines."""
    last, n = None, 0
    for ln in events:
        m = _EXIT.search(ln)
        if m and m.group(1) == name:
            n += 1
            last = m.group(2) or m.group(3)
    return last, n


def _supervisord(snap: Snapshot, ctx: Context, sup: Supervisord) -> list[Finding]:
    out: list[Finding] = []
    conf = sup.config
    ctl = f"supervisorctl -c {conf}" if conf else "supervisorctl"
    for p in sup.programs or []:
        name, state = (p.name or ""), p.state
        status, exits = _last_exit(list(p.events), name)
        # STARTING after recorded exits is one moment of a restart loop (it flips between
        # STARTING and BACKOFF), not a program on its way up
        if state in ("RUNNING", None) or (state == "STARTING" and not exits):
            continue
        related = _related(name, _argv(p.command), ctx)
        if status is None and state == "EXITED" and p.exitstatus is not None:
            status = str(p.exitstatus)
        code = f"exit status {status}" if status and status.isdigit() else (f"signal {status}" if status else None)
        if state == "FATAL":
            what = (f"crashed ({code})" if code else "could not be started") + \
                   f" and supervisord gave up after {p.startretries or 3} retries (FATAL)"
        elif state in ("BACKOFF", "STARTING"):
            what = (f"keeps exiting right after start; supervisord is retrying ({state})"
                    + (f", last {code}" if code else ""))
        elif state == "EXITED":
            what = f"exited ({code or p.spawnerr or 'exit'})" + \
                   (" and is not restarted (autorestart=" + str(p.autorestart) + ")"
                    if str(p.autorestart).lower() in ("false", "unexpected") else "")
        elif state == "STOPPED":
            what = "is stopped" + (" (autostart=false)" if str(p.autostart).lower() == "false" else
                                   " (stopped by hand)")
        else:
            what = f"is {state}"
        summary = f"supervisord program {name} {what}."
        if p.command:
            summary += f" It runs `{p.command}`."
        ev = [f"{ctl} status {name}: {state} {p.description or ''}".rstrip()]
        if p.spawnerr:
            ev.append(f"supervisord: {p.spawnerr}")
        if exits:
            ev.append(f"supervisord log ({sup.logfile}): {exits} exits recorded")
        ev += [f"supervisord log: {ln}" for ln in (p.events or [])[-3:]]
        ev += [f"program log ({p.log_file}): {ln}" for ln in (p.log or [])[-5:]]
        fixes = [Fix("read what the program printed before it stopped", f"{ctl} tail {name} stderr")]
        if state == "STOPPED" and str(p.autostart).lower() == "false":
            fixes.append(Fix(f"set autostart=true in [program:{name}] of {conf} so it starts with supervisord"))
        fixes.append(Fix("start it again once the cause is fixed", f"{ctl} start {name}"))
        weight = 0.88 if related else 0.35
        sev = Severity.ERROR if related else Severity.INFO
        out.append(Finding(Cause.SERVICE_NOT_RUNNING, CHECK, sev, summary, tuple(ev), tuple(fixes), weight))
    return out


def _systemd(snap: Snapshot, ctx: Context, units: tuple[SystemdUnit, ...]) -> list[Finding]:
    out: list[Finding] = []
    for u in units:
        uid, active = u.id or "", u.active_state
        if active == "active" or not uid:
            continue
        related = _related(uid, _argv(u.exec_start), ctx)
        restarts = u.n_restarts or 0
        status = u.exec_main_status
        if u.sub_state == "auto-restart" or (active == "activating" and restarts):
            what = f"is in a restart loop ({restarts} restarts, last exit status {status})"
        elif active == "failed":
            what = f"failed (result {u.result}, exit status {status})"
        elif u.unit_file_state in ("disabled", "masked"):
            what = f"is {active} and {u.unit_file_state} (not started at boot)"
        else:
            what = f"is {active} ({u.sub_state})"
        summary = f"systemd unit {uid} {what}."
        ev = [f"systemctl show {uid}: ActiveState={active} SubState={u.sub_state} Result={u.result} "
              f"NRestarts={restarts} ExecMainStatus={status} UnitFileState={u.unit_file_state}"]
        if u.exec_start:
            ev.append(f"ExecStart: {u.exec_start}")
        ev += [f"journal: {ln}" for ln in (u.journal or [])[-5:]]
        fixes = [Fix("read why it stopped", f"journalctl -u {uid} -n 50 --no-pager")]
        if u.unit_file_state == "disabled":
            fixes.append(Fix("enable and start it", f"systemctl enable --now {uid}"))
        elif u.unit_file_state == "masked":
            fixes.append(Fix("unmask and start it", f"systemctl unmask {uid} && systemctl start {uid}"))
        else:
            fixes.append(Fix("start it again once the cause is fixed", f"systemctl restart {uid}"))
        out.append(Finding(Cause.SERVICE_NOT_RUNNING, CHECK, Severity.ERROR if related else Severity.INFO,
                           summary, tuple(ev), tuple(fixes), 0.88 if related else 0.35))
    return out


def check_supervisor(snap: Snapshot, ctx: Context) -> list[Finding]:
    """What supervisord / systemd know about a service that should serve the target port."""
    doc = snap.supervisors
    if doc is None or ctx.probe.state is State.OPEN:
        return []
    holders = [ln for ln in snap.listeners if ln.port == ctx.target.port]
    if holders:  # something listens: only a program that failed because of it matters
        return [f for sup in doc.supervisord or [] for f in _port_taken(snap, ctx, sup, holders)]
    out: list[Finding] = []
    for sup in doc.supervisord or []:
        out += _supervisord(snap, ctx, sup)
    out += _systemd(snap, ctx, doc.systemd.units if doc.systemd else ())
    return out


_IN_USE = ("Address already in use", "EADDRINUSE", "address already in use")


def _port_taken(snap: Snapshot, ctx: Context, sup: Supervisord, holders: list) -> list[Finding]:
    """A supervised program that died with 'Address already in use' while another process holds
    the port: an old instance (or another service) took it, so the new one cannot start."""
    out: list[Finding] = []
    conf = sup.config
    ctl = f"supervisorctl -c {conf}" if conf else "supervisorctl"
    port = ctx.target.port
    for p in sup.programs or []:
        name, state = (p.name or ""), p.state
        if state in ("RUNNING", "STARTING", None) or not _related(name, _argv(p.command), ctx):
            continue
        lines = [ln for ln in (p.log or []) if any(m in ln for m in _IN_USE)]
        if not lines:
            continue
        held = []
        for ln in holders:
            for pid in ln.pids:
                proc = snap.processes.get(pid)
                who = f"pid {pid}" + (f" (`{proc.command}`)" if proc is not None else "")
                held.append(f"{ln.endpoint} by {who}")
        pids = sorted({pid for ln in holders for pid in ln.pids})
        summary = (f"supervisord program {name} is {state}: it could not bind port {port} (Address already in use) "
                   f"because another process holds it: {'; '.join(held) or 'an unknown process'}. An old instance "
                   f"still running is the usual reason.")
        ev = [f"{ctl} status {name}: {state} {p.description or ''}".rstrip(),
              *(f"program log ({p.log_file}): {ln}" for ln in lines[-2:]),
              *(f"port {port} held: {h}" for h in held)]
        fixes = [Fix("stop the process that holds the port (check first that it is the old instance)",
                     f"kill {' '.join(str(x) for x in pids)}" if pids else f"ss -ltnp 'sport = :{port}'"),
                 Fix(f"then start {name}", f"{ctl} start {name}")]
        out.append(Finding(Cause.SERVICE_NOT_RUNNING, CHECK, Severity.ERROR, summary, tuple(ev), tuple(fixes), 0.92))
    return out
