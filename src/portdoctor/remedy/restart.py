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
import re
import signal
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from portdoctor.errors import PortdoctorError
from portdoctor.host import LocalHost

# signals asking each server for a clean, quick shutdown (postgres: SIGINT is "fast shutdown")
_STOP_SIGNAL = {"postgres": signal.SIGINT, "postmaster": signal.SIGINT, "nginx": signal.SIGQUIT}
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
    argv = normal_argv(argv)
    return Started(pid, exe.removesuffix(" (deleted)"), argv, cwd, env, uid, gid, groups, name)


def normal_argv(argv: tuple[str, ...]) -> tuple[str, ...]:
    """The command line a process was started with, from /proc/PID/cmdline (nginx's master
    rewrites it into its title: `nginx: master process nginx -c FILE`)."""
    if argv and argv[0].startswith("nginx: master process "):
        return tuple(argv[0].removeprefix("nginx: master process ").split()) + argv[1:]
    if len(argv) == 1 and " " in argv[0] and argv[0].split()[0].endswith("redis-server"):
        return tuple(argv[0].split())  # redis's title, one string: `redis-server 127.0.0.1:6379`
    return argv


_REDIS_TITLE = re.compile(r"^\S*:\d+$")


def with_config(how: Started, config: str | None) -> Started:
    """Redis replaces its command line with a title (`redis-server 127.0.0.1:6379`): its real
    one was `redis-server CONFIG_FILE` when it reads a file (INFO config_file); anything else is
    lost, and such a server is not started again by hand."""
    # the program is redis-check-rdb on Debian (redis-server links to it): argv[0] says what it runs as
    if not Path(how.argv[0] if how.argv else "").name.startswith("redis-server") or len(how.argv) != 2 \
            or not _REDIS_TITLE.match(how.argv[1]):
        return how
    if not config:
        raise RestartError("redis-server rewrote its command line and reads no config file: the options it was "
                           "started with are not known; restart it yourself")
    return replace(how, argv=(how.argv[0], config))


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


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    return _alive(pid)


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


def respawn(pid: int, log: Path, keep: dict[str, Any] | None = None,
            config: str | None = None) -> tuple[int, Started]:
    """Stop `pid` and start it again the same way; return (new pid, how it was started).

    With `keep` (a dict), how it was started and its namespaces' fds stay there for `start_kept`,
    so a rollback can start it again even when the new process died; `close_kept` closes them.
    """
    how = with_config(how_started(pid), config)
    ok, why = LocalHost().trusted_executable(how.exe)
    if not ok:
        raise RestartError(f"{how.exe} is not started again by portdoctor: {why}")
    ns = namespaces_of(pid)
    try:
        stop(pid, how.name)
        new_pid = start(how, log, ns)
    except BaseException:
        if keep is None:
            _close(ns)
        raise
    finally:
        if keep is not None:
            keep.setdefault("ns", ns)
            keep.setdefault("how", how)
    if keep is None:
        _close(ns)
    return new_pid, how


def start_kept(keep: dict[str, Any], log: Path) -> int:
    """Start again a server whose start details `respawn` kept."""
    return start(keep["how"], log, keep["ns"])


def close_kept(keep: dict[str, Any]) -> None:
    """Close the namespace fds `respawn` kept."""
    _close(keep.get("ns") or {})


def _close(ns: dict[str, int]) -> None:
    for fd in ns.values():
        try:
            os.close(fd)
        except OSError:
            pass


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
        if argv and sha in (argv_hash(normal_argv(tuple(argv))), argv_hash(tuple(argv))):
            return int(entry)
    return None


def run_quiet(argv: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a command through LocalHost's safe PATH rules; (rc, output)."""
    res = LocalHost().run(argv, timeout=timeout)
    return subprocess.CompletedProcess(argv, res.rc if res.rc is not None else 127,
                                       res.stdout, res.stderr or ("not installed" if res.missing else ""))
