"""How `guard` restarts a service: through its own supervisor when it has one (systemctl,
supervisorctl, podman/docker), or the command the user gave (an argv, never a shell unless
asked).

Supervisors are recognised from the host's snapshot (SupervisorFacts, the owners of the
listening socket, the containers that publish the port). Every program run is looked up in
the safe PATH when portdoctor runs as root and must be a trusted executable (owned by root up
to /, writable by root only), so a restart never runs a program another user chose.

A restart command runs in its own session with a timeout; when it hangs, its whole process
group is stopped (SIGTERM, then SIGKILL). Its output goes to a file, not a pipe, so a daemon it
leaves running cannot keep guard waiting for end-of-file.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from portdoctor.errors import BadInput, Incomplete
from portdoctor.host import SAFE_PATH, LocalHost

if TYPE_CHECKING:
    from portdoctor.host import Host
    from portdoctor.model import Target
    from portdoctor.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class Restarter:
    """A way to restart the service: what it is (kind, name) and the argv that does it."""

    kind: str  # command, shell, systemd, supervisord, podman, docker
    argv: tuple[str, ...]
    name: str | None = None  # the unit, program or container
    how_found: str = "given"  # given, or the snapshot fact that named it

    def describe(self) -> str:
        """'supervisord program web (supervisorctl -c ... restart web)'."""
        what = {"command": "command", "shell": "shell command", "systemd": "systemd unit",
                "supervisord": "supervisord program", "podman": "podman container",
                "docker": "docker container"}[self.kind]
        from portdoctor import redact

        name = f" {self.name}" if self.name else ""
        return f"{what}{name}: {shlex.join(redact.argv(self.argv))}"


@dataclass(frozen=True, slots=True)
class RestartResult:
    """What one restart command did."""

    rc: int | None  # None: it did not finish (killed at its timeout) or did not start
    seconds: float
    timed_out: bool = False
    output: str = ""  # the tail of what it printed (redacted)
    error: str | None = None  # why it could not start

    @property
    def ok(self) -> bool:
        """True when the command ran and exited with status 0."""
        return self.rc == 0 and not self.timed_out and self.error is None

    def words(self) -> str:
        """'exit 0 in 0.2 s', 'killed after its 5 s timeout', 'could not start: ...'."""
        if self.error:
            return f"could not start: {self.error}"
        if self.timed_out:
            return f"did not finish within its timeout, killed after {self.seconds:.1f} s"
        return f"exit {self.rc} in {self.seconds:.1f} s"


def trusted_program(name: str, host: Host) -> str:
    """The full path of program `name` (looked up in the safe PATH when root); BadInput when it is
    missing, Incomplete when root may not run it."""
    path = host.which(name) if "/" not in name else os.path.abspath(name)
    if path is None or not os.path.exists(path):
        where = "the safe PATH (" + SAFE_PATH + ")" if host.is_root else "PATH"
        raise BadInput(f"{name}: not found in {where}")
    if host.is_root:
        ok, why = host.trusted_executable(path)
        if not ok:
            raise BadInput(f"not running {path} as root: {why}")
    return path


def from_command(command: str, shell: bool = False, host: Host | None = None) -> Restarter:
    """--restart CMD: split like a shell would (no shell runs) unless `shell`, then /bin/sh -c."""
    host = host or LocalHost()
    if not command.strip():
        raise BadInput("--restart: the command is empty")
    if shell:
        return Restarter("shell", (trusted_program("/bin/sh", host), "-c", command))
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise BadInput(f"--restart {command!r}: {exc}") from None
    return Restarter("command", (trusted_program(argv[0], host), *argv[1:]))


def for_unit(name: str, host: Host | None = None) -> Restarter:
    """--unit NAME: systemctl restart NAME (systemd must run as PID 1)."""
    host = host or LocalHost()
    if not os.path.isdir("/run/systemd/system"):
        raise Incomplete(f"--unit {name}: systemd is not running on this host (no /run/systemd/system)")
    return Restarter("systemd", (trusted_program("systemctl", host), "restart", "--", name), name)


def for_program(name: str, snap: Snapshot | None, host: Host | None = None) -> Restarter:
    """--program NAME: supervisorctl restart NAME, through the supervisord that runs it."""
    host = host or LocalHost()
    ctl = trusted_program("supervisorctl", host)
    sup = snap.supervisors if snap is not None else None
    for sd in (sup.supervisord if sup is not None else ()):
        for p in sd.programs:
            full = f"{p.group}:{p.name}" if p.group and p.group != p.name else p.name
            if name in (p.name, full):
                return Restarter("supervisord", (*_ctl_args(ctl, sd.config, sd.socket), "restart", full), full,
                                 f"supervisord pid {sd.pid}")
    only = sup.supervisord[0] if sup is not None and len(sup.supervisord) == 1 else None
    if only is not None:  # not (yet) known to it: supervisorctl will say so when asked
        return Restarter("supervisord", (*_ctl_args(ctl, only.config, only.socket), "restart", name), name,
                         f"supervisord pid {only.pid}")
    return Restarter("supervisord", (ctl, "restart", name), name)


def _ctl_args(ctl: str, config: str | None, sock: str | None) -> tuple[str, ...]:
    args: list[str] = [ctl]
    if config:
        args += ["-c", config]
    if sock:
        args += ["-s", f"unix://{sock}"]
    return tuple(args)


def for_container(name: str, snap: Snapshot | None, host: Host | None = None) -> Restarter:
    """--container NAME: `podman restart` or `docker restart`, the engine the snapshot saw."""
    host = host or LocalHost()
    engine = snap.containers.engine if snap is not None and snap.containers is not None else None
    engines = [engine] if engine in ("podman", "docker") else ["podman", "docker"]
    for e in engines:
        if host.which(e):
            return Restarter(e, (trusted_program(e, host), "restart", "--", name), name)
    raise Incomplete(f"--container {name}: neither podman nor docker is installed here")


def detect(snap: Snapshot, target: Target, host: Host | None = None) -> Restarter | None:
    """The supervisor of the service on the target's port, from the snapshot: the systemd unit or
    container of the socket's owner, the supervisord program that owns it or names the port,
    the container that publishes the port. None when nothing supervises it."""
    from portdoctor import hostview
    from portdoctor.collectors.processes import mentions_port

    host = host or LocalHost()
    owners = [p for sock in hostview.listeners_on_port(snap, target.port) for p in hostview.owners(snap, sock)]
    pids = {p.pid for p in owners}
    sup = snap.supervisors
    for sd in (sup.supervisord if sup is not None else ()):
        for p in sd.programs:
            if p.pid in pids or (p.command and mentions_port(_words(p.command), target.port)):
                r = for_program(p.name if not p.group or p.group == p.name else f"{p.group}:{p.name}", snap, host)
                return Restarter(r.kind, r.argv, r.name, f"supervisord pid {sd.pid} runs program {r.name}")
    for p in owners:
        if p.container:
            r = for_container(p.container, snap, host)
            return Restarter(r.kind, r.argv, r.name, f"the socket's owner runs in container {p.container}")
    c = hostview.publisher(snap, target.port)
    if c is not None:
        r = for_container(c.label, snap, host)
        return Restarter(r.kind, r.argv, r.name, f"container {c.label} publishes port {target.port}")
    for p in owners:
        if p.unit and p.unit.endswith(".service") and os.path.isdir("/run/systemd/system"):
            r = for_unit(p.unit, host)
            return Restarter(r.kind, r.argv, r.name, f"the socket's owner {p.name} (pid {p.pid}) is unit {p.unit}")
    return None


def _words(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:  # an unbalanced quote (or a redacted word): plain words still name the port
        return command.split()


def run_restart(r: Restarter, timeout: float, host: Host | None = None) -> RestartResult:
    """Run the restart command within `timeout` seconds; stop its whole session when it hangs."""
    host = host or LocalHost()
    env = {**os.environ}
    if host.is_root:
        env["PATH"] = SAFE_PATH
    start = time.monotonic()
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(list(r.argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    env=env, start_new_session=True, close_fds=True)
        except OSError as exc:
            return RestartResult(None, time.monotonic() - start, error=exc.strerror or str(exc))
        timed_out = False
        try:
            rc: int | None = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop_group(proc)
            rc = None
        seconds = time.monotonic() - start
        out.seek(0)
        tail = out.read()[-4000:].decode("utf-8", "replace")
    lines = [ln for ln in tail.splitlines() if ln.strip()][-5:]
    return RestartResult(rc, seconds, timed_out, "\n".join(_clean(ln) for ln in lines))


def _clean(text: str) -> str:
    """A line of the restart command's output with secrets redacted as in a command line
    (every word is an argument: none is taken for the program)."""
    from portdoctor import redact

    words = text.split()
    clean = list(redact.argv(["-", *words])[1:])
    return text if clean == words else " ".join(clean)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the command's process group, SIGKILL what is left after 2 s; reap the command."""
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(wait)
            if sig == signal.SIGTERM:
                try:  # the leader is gone: whatever it left in its group goes too
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            return
        except subprocess.TimeoutExpired:
            continue
