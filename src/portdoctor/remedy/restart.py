"""Restarting a server started by hand (no supervisor): stop it gracefully, start it again the way
it ran: same program, command line, working directory, environment, user and groups, in its own
network, mount, UTS and IPC namespaces. Its output goes to a log in the fix journal.

Only a program file that root owns and only root can write is started again (Host.trusted_executable):
portdoctor runs as root and never runs a program another user could have chosen.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from portdoctor.errors import PortdoctorError
from portdoctor.host import LocalHost

# signals asking each server for a clean, quick shutdown (postgres: SIGINT is "fast shutdown")
_STOP_SIGNAL = {"postgres": signal.SIGINT, "postmaster": signal.SIGINT}
_NAMESPACES = ("net", "mnt", "uts", "ipc")
_CLONE = {"net": 0x40000000, "mnt": 0x00020000, "uts": 0x04000000, "ipc": 0x08000000}


class RestartError(PortdoctorError):
    """The server could not be restarted (it did not stop, or its program is not trusted)."""


@dataclass(frozen=True)
class Started:
    """How a process ran: enough to start it again."""

    pid: int
    exe: str
    argv: tuple[str, ...]
    cwd: str
    env: dict[str, str]
    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str


def how_started(pid: int) -> Started:
    """Read /proc/PID: program, argv, directory, environment, user and groups."""
    base = Path(f"/proc/{pid}")
    try:
        argv = tuple(a.decode(errors="surrogateescape") for a in (base / "cmdline").read_bytes().split(b"\0") if a)
        exe = os.readlink(base / "exe")
        cwd = os.readlink(base / "cwd")
        env = {}
        for item in (base / "environ").read_bytes().split(b"\0"):
            k, eq, v = item.decode(errors="surrogateescape").partition("=")
            if eq:
                env[k] = v
        status = (base / "status").read_text()
    except OSError as exc:
        raise RestartError(f"pid {pid} cannot be read ({exc.strerror or exc})") from exc
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    uid = int(fields["Uid"].split()[0])
    gid = int(fields["Gid"].split()[0])
    groups = tuple(int(g) for g in fields.get("Groups", "").split())
    name = fields.get("Name", "").strip()
    return Started(pid, exe.removesuffix(" (deleted)"), argv, cwd, env, uid, gid, groups, name)


def stop(pid: int, name: str, timeout: float = 30.0) -> None:
    """Ask the process to stop (SIGTERM, or the server's own fast-shutdown signal); wait for it."""
    try:
        os.kill(pid, _STOP_SIGNAL.get(name, signal.SIGTERM))
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    raise RestartError(f"{name} (pid {pid}) did not stop within {timeout:g} s; it is still running")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def start(how: Started, log: Path, netns: dict[str, int]) -> int:
    """Start the program again as `how` describes, inside the namespaces whose fds are in `netns`
    (opened before the old process stopped); return the new pid."""
    ok, why = LocalHost().trusted_executable(how.exe)
    if not ok:
        raise RestartError(f"{how.exe} is not started again by portdoctor: {why}")
    libc = ctypes.CDLL(None, use_errno=True)

    def enter() -> None:  # runs in the child, before exec
        for kind, fd in netns.items():
            if libc.setns(fd, _CLONE[kind]) != 0:
                raise OSError(ctypes.get_errno(), f"setns {kind}")
        os.setgroups(list(how.groups))
        os.setgid(how.gid)
        os.setuid(how.uid)

    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(list(how.argv), executable=how.exe, cwd=how.cwd, env=how.env, stdin=subprocess.DEVNULL,
                                stdout=fd, stderr=fd, preexec_fn=enter, start_new_session=True,
                                pass_fds=tuple(netns.values()))
    finally:
        os.close(fd)
    return proc.pid


def namespaces_of(pid: int) -> dict[str, int]:
    """Open fds of the process's namespaces that differ from portdoctor's own (caller closes)."""
    out: dict[str, int] = {}
    for kind in _NAMESPACES:
        theirs = f"/proc/{pid}/ns/{kind}"
        try:
            if os.stat(theirs).st_ino == os.stat(f"/proc/self/ns/{kind}").st_ino:
                continue
            out[kind] = os.open(theirs, os.O_RDONLY)
        except OSError:
            continue
    return out


def respawn(pid: int, log: Path, expect_name: str | None = None) -> tuple[int, Started]:
    """Stop `pid` and start it again the same way; return (new pid, how it was started)."""
    how = how_started(pid)
    if expect_name and expect_name not in (how.name, Path(how.exe).name) and \
            not any(expect_name in a for a in how.argv[:1]):
        raise RestartError(f"pid {pid} is now {how.name}, not {expect_name}: it was restarted by someone else")
    ok, why = LocalHost().trusted_executable(how.exe)
    if not ok:
        raise RestartError(f"{how.exe} is not started again by portdoctor: {why}")
    ns = namespaces_of(pid)
    try:
        stop(pid, how.name)
        return start(how, log, ns), how
    finally:
        for fd in ns.values():
            os.close(fd)


def argv_hash(argv: tuple[str, ...] | list[str]) -> str:
    """A hash of a command line (the journal keeps this, not a command line that may hold secrets)."""
    return hashlib.sha256("\0".join(argv).encode(errors="surrogateescape")).hexdigest()


def find_again(sha: str) -> int | None:
    """The pid of a running process whose command line has this hash (a respawned server)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = [a.decode(errors="surrogateescape")
                    for a in Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if argv and argv_hash(argv) == sha:
            return int(entry)
    return None


def run_quiet(argv: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a command through LocalHost's safe PATH rules; (rc, output)."""
    res = LocalHost().run(argv, timeout=timeout)
    return subprocess.CompletedProcess(argv, res.rc if res.rc is not None else 127,
                                       res.stdout, res.stderr or ("not installed" if res.missing else ""))
