"""The one seam between collectors and the machine they describe: `Host`.

Collectors never call subprocess, open(), os.listdir, os.readlink or shutil.which on the
host's files themselves; they ask a Host: run a command (an argv list, never a shell, with a
timeout), read a file (with a size cap), list a directory, read a link, stat a path. Two
implementations:

- `LocalHost`: this machine. Its proc root is injectable, so the procfs readers run on a
  recorded /proc tree (`LocalHost(proc_root="tests/data/proc/lab1")`).
- `RecordedHost`: a folder holding recorded files (`files/proc/...`, `files/etc/hosts`) and
  `host.json` (command argv -> recorded output, `which` answers, the recording's user ids).
  Nothing on the real system is read or run.

The security rules of the whole code base live here too, because they are questions about
the host: a proxy's own binary is run only when `trusted_executable` says so (owned by root
up to /, writable by root only); commands are looked up in a fixed safe PATH when portdoctor
runs as root; a file named by another user's process is read only when `readable_for` says
that process's user could have read it anyway.

Probes are not host reads. Connections to the service under test (Redis INFO, supervisord's
XML-RPC, an HTTP request to a proxy, a unix socket connect) and netlink dumps (sock_diag,
rtnetlink) go through `connect` and `netlink`, which a recorded host refuses (`NotLive`), so
collectors fall back or record a limitation. Three probes stay outside the seam, all only
when `host.live`: the Docker SDK talks to the engine's socket itself (collectors/containers.py),
dnspython asks the resolvers of /etc/resolv.conf (collectors/system.py) and urllib asks Caddy's
admin API on 127.0.0.1:2019 (collectors/proxies.py); psutil (the generic collectors for platforms
other than Linux, macOS and FreeBSD, and a fallback for addresses) reads this machine.

`platform` says which machine a Host describes (`sys.platform` for LocalHost, `"platform"` in a
recording's host.json, "linux" when absent); `collectors.collect()` picks its collectors by it.
"""

from __future__ import annotations

import errno
import glob as glob_mod
import json
import os
import posixpath
import shutil
import socket
import stat as stat_mod
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

# Where commands are looked up when portdoctor runs as root: never the caller's PATH, which
# another user (or a sudo -E) may have chosen.
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_READ = 1 << 20  # default size cap of one file read


class NotLive(OSError):
    """The host cannot do this (a recorded host opens no socket and has no kernel to ask)."""

    def __init__(self, what: str) -> None:
        super().__init__(errno.EOPNOTSUPP, f"{what}: not possible on a recorded host")


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a command did: exit status, output, or that its program is not there."""

    argv: tuple[str, ...]
    rc: int | None = None  # None when it did not run to completion (missing, timed out)
    stdout: str = ""
    stderr: str = ""
    missing: bool = False  # the program is not installed (or not in the safe PATH)
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """True when the command ran and exited with status 0."""
        return self.rc == 0 and not self.missing and not self.timed_out


@dataclass(frozen=True, slots=True)
class FileStat:
    """The parts of stat(2) the collectors use."""

    uid: int
    gid: int
    mode: int  # permission bits only (S_IMODE)
    kind: str  # file, dir, link, socket, fifo, char, block
    ino: int = 0
    size: int = 0
    dev: int = 0


@runtime_checkable
class Host(Protocol):
    """What collectors may ask of the machine they describe."""

    proc_root: str  # where this host's /proc is (collectors build paths under it)
    platform: str  # sys.platform of the machine described: linux, darwin, freebsd14, ...
    live: bool  # its /proc is the running kernel's: sockets and netlink reach the same machine
    is_root: bool  # portdoctor runs there with uid 0

    def run(self, argv: Sequence[str], timeout: float = 10.0) -> CommandResult:
        """Run argv (never through a shell); a bare program name is looked up with `which`."""
        ...

    def run_all(self, argvs: Sequence[Sequence[str]], timeout: float = 10.0) -> list[CommandResult]:
        """Run several commands at once, each within `timeout`; results in argv order."""
        ...

    def which(self, name: str) -> str | None:
        """The path of a program (the safe PATH when root), or None."""
        ...

    def read_bytes(self, path: str, limit: int = MAX_READ) -> bytes:
        """At most `limit` bytes of a file; raises OSError."""
        ...

    def read_text(self, path: str, limit: int = MAX_READ) -> str:
        """At most `limit` bytes of a file as text (undecodable bytes replaced); raises OSError."""
        ...

    def read_tail(self, path: str, size: int) -> bytes:
        """The last `size` bytes of a file; raises OSError."""
        ...

    def listdir(self, path: str) -> list[str]:
        """Names in a directory (unsorted); raises OSError."""
        ...

    def read_links(self, path: str) -> dict[str, str]:
        """name -> target of every symlink in a directory (/proc/PID/fd); raises OSError."""
        ...

    def readlink(self, path: str) -> str:
        """The target of a symlink; raises OSError."""
        ...

    def stat(self, path: str, follow_symlinks: bool = True) -> FileStat:
        """Owner, mode and kind of a path; raises OSError."""
        ...

    def exists(self, path: str) -> bool:
        """True when the path exists."""
        ...

    def glob(self, pattern: str) -> list[str]:
        """Paths matching a glob pattern, sorted."""
        ...

    def user_name(self, uid: int) -> str | None:
        """Login name of uid on this host, None when it has none."""
        ...

    def trusted_executable(self, path: str) -> tuple[bool, str]:
        """(may portdoctor run it, why not): only root-owned binaries in root-owned folders."""
        ...

    def readable_for(self, path: str, uid: int | None, owner_rule: bool = True) -> tuple[bool, str]:
        """(may portdoctor read this file for a process of `uid`, why not). `owner_rule`: the
        file must also belong to root or to uid (a config path from a command line or a reply;
        not for a log that an already vetted config names)."""
        ...

    def environ(self) -> Mapping[str, str]:
        """portdoctor's own environment there (DOCKER_HOST, XDG_RUNTIME_DIR, PATH)."""
        ...

    def connect(self, family: int, address: object, timeout: float) -> socket.socket:
        """A connected stream socket to a service of this host (a probe); raises OSError."""
        ...

    def netlink(self, protocol: int) -> socket.socket:
        """A netlink socket into this host's kernel; raises OSError (NotLive when recorded)."""
        ...

    def connect_from(self, pid: int, family: int, address: object, timeout: float) -> socket.socket:
        """`connect`, made from the network namespace of process `pid` (a forwarder's backend, seen
        from the side that connects to it); raises OSError (NotLive when recorded)."""
        ...

    def read_netns_file(self, netns: str, name: str) -> bytes:
        """/proc/net/`name` (tcp, tcp6, fib_trie, if_inet6) of the network namespace bound at path
        `netns` (/run/netns/NAME), which may hold no process; raises OSError (NotLive when recorded)."""
        ...


# --------------------------------------------------------------------------- shared policy


def _kind(mode: int) -> str:
    for test, name in ((stat_mod.S_ISREG, "file"), (stat_mod.S_ISDIR, "dir"), (stat_mod.S_ISLNK, "link"),
                       (stat_mod.S_ISSOCK, "socket"), (stat_mod.S_ISFIFO, "fifo"), (stat_mod.S_ISCHR, "char"),
                       (stat_mod.S_ISBLK, "block")):
        if test(mode):
            return name
    return "other"


def _to_stat(st: os.stat_result) -> FileStat:
    return FileStat(st.st_uid, st.st_gid, stat_mod.S_IMODE(st.st_mode), _kind(st.st_mode), st.st_ino, st.st_size,
                    st.st_dev)


def check_trusted(path: str, stat_fn, realpath_fn) -> tuple[bool, str]:
    """The executable rule on any host: the file and every folder above it belong to root and
    nobody else may write them (no group/other write bit). Returns (trusted, reason if not)."""
    if not path or not path.startswith("/"):
        return False, f"{path or 'the program'} is not an absolute path"
    real = realpath_fn(path)
    try:
        st = stat_fn(real)
    except OSError as exc:
        return False, f"{real} cannot be checked ({exc.strerror or exc})"
    if st.kind != "file":
        return False, f"{real} is not a regular file"
    if st.uid != 0:
        return False, f"{real} is owned by uid {st.uid}, not root"
    if st.mode & 0o022:
        return False, f"{real} is writable by group or others (mode {st.mode:o})"
    folder = posixpath.dirname(real)
    while True:
        try:
            st = stat_fn(folder)
        except OSError as exc:
            return False, f"{folder} cannot be checked ({exc.strerror or exc})"
        if st.uid != 0:
            return False, f"its folder {folder} is owned by uid {st.uid}, not root"
        if st.mode & 0o022:
            return False, f"its folder {folder} is writable by group or others (mode {st.mode:o})"
        if folder == "/":
            return True, ""
        folder = posixpath.dirname(folder)


def _may_read(st: FileStat, uid: int, groups: set[int], bits: int) -> bool:
    """Would a user with uid and groups pass the permission bits `bits` (r=4, x=1) of st?"""
    if uid == 0:
        return True
    if st.uid == uid:
        return bool(st.mode & (bits << 6))
    if st.gid in groups:
        return bool(st.mode & (bits << 3))
    return bool(st.mode & bits)


def check_readable_for(path: str, uid: int | None, groups: set[int], stat_fn, realpath_fn,
                       owner_rule: bool = True) -> tuple[bool, str]:
    """The rule for files another process named, when portdoctor is root: the file belongs to
    root or to the process's user (`owner_rule`), and that user could read it (every folder
    searchable, the file readable), so portdoctor shows nothing its user could not see already."""
    if uid is None:
        return False, "the process's user is unknown"
    real = realpath_fn(path)
    try:
        st = stat_fn(real)
    except FileNotFoundError:
        return True, ""  # nothing to protect: the read fails as missing
    except OSError as exc:
        return False, f"{real} cannot be checked ({exc.strerror or exc})"
    if owner_rule and st.uid not in (0, uid):
        return False, f"{real} belongs to uid {st.uid}, neither root nor the process's user (uid {uid})"
    if st.kind not in ("file", "dir"):
        return False, f"{real} is not a regular file"
    if not _may_read(st, uid, groups, 4):
        return False, f"the process's user (uid {uid}) could not read {real} itself"
    folder = posixpath.dirname(real)
    while folder != "/":
        try:
            fst = stat_fn(folder)
        except OSError as exc:
            return False, f"{folder} cannot be checked ({exc.strerror or exc})"
        if not _may_read(fst, uid, groups, 1):
            return False, f"the process's user (uid {uid}) could not reach {real} (folder {folder})"
        folder = posixpath.dirname(folder)
    return True, ""


# --------------------------------------------------------------------------- this machine


@dataclass
class LocalHost:
    """The machine portdoctor runs on (its /proc may be a recorded tree: `proc_root`)."""

    proc_root: str = "/proc"
    is_root: bool = field(default_factory=lambda: hasattr(os, "geteuid") and os.geteuid() == 0)
    platform: str = field(default_factory=lambda: sys.platform)

    @property
    def live(self) -> bool:
        """True when proc_root is this kernel's /proc."""
        return self.proc_root == "/proc"

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "LC_ALL": "C"}
        if self.is_root:
            env["PATH"] = SAFE_PATH
        return env

    def which(self, name: str) -> str | None:
        """Root: SAFE_PATH only. Others: their own PATH, then the sbin folders."""
        if "/" in name:
            return name if os.access(name, os.X_OK) else None
        if self.is_root:
            return shutil.which(name, path=SAFE_PATH)
        return shutil.which(name, path=os.environ.get("PATH", "") + ":" + SAFE_PATH)

    def _argv(self, argv: Sequence[str]) -> list[str] | None:
        argv = list(argv)
        path = self.which(argv[0]) if argv and "/" not in argv[0] else (argv[0] if argv else None)
        if path is None:
            return None
        return [path, *argv[1:]]

    def run(self, argv: Sequence[str], timeout: float = 10.0) -> CommandResult:
        return self.run_all([argv], timeout)[0]

    def run_all(self, argvs: Sequence[Sequence[str]], timeout: float = 10.0) -> list[CommandResult]:
        started: list[tuple[tuple[str, ...], subprocess.Popen[str] | None]] = []
        env = self._env()
        for argv in argvs:
            full = self._argv(argv)
            if full is None:
                started.append((tuple(argv), None))
                continue
            try:
                p = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     errors="replace", stdin=subprocess.DEVNULL, env=env)
            except (FileNotFoundError, PermissionError):
                p = None
            started.append((tuple(argv), p))
        out: list[CommandResult] = []
        deadline = time.monotonic() + timeout
        for argv, p in started:
            if p is None:
                out.append(CommandResult(argv, missing=True))
                continue
            try:
                so, se = p.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                so, se = p.communicate()
                out.append(CommandResult(argv, None, so or "", f"timed out after {timeout:g} s", timed_out=True))
                continue
            out.append(CommandResult(argv, p.returncode, so, se))
        return out

    def read_bytes(self, path: str, limit: int = MAX_READ) -> bytes:
        with open(path, "rb") as fh:
            return fh.read(limit)

    def read_text(self, path: str, limit: int = MAX_READ) -> str:
        return self.read_bytes(path, limit).decode("utf-8", errors="replace")

    def read_tail(self, path: str, size: int) -> bytes:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - size))
            return fh.read(size)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def read_links(self, path: str) -> dict[str, str]:
        dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            out: dict[str, str] = {}
            readlink = os.readlink
            for name in os.listdir(dfd):
                try:
                    out[name] = readlink(name, dir_fd=dfd)
                except OSError:
                    continue
            return out
        finally:
            os.close(dfd)

    def readlink(self, path: str) -> str:
        return os.readlink(path)

    def stat(self, path: str, follow_symlinks: bool = True) -> FileStat:
        return _to_stat(os.stat(path, follow_symlinks=follow_symlinks))

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def glob(self, pattern: str) -> list[str]:
        return sorted(glob_mod.glob(pattern))

    def user_name(self, uid: int) -> str | None:
        import pwd

        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return None

    def _groups(self, uid: int) -> set[int]:
        import pwd

        try:
            pw = pwd.getpwuid(uid)
        except KeyError:
            return set()
        try:
            return set(os.getgrouplist(pw.pw_name, pw.pw_gid))
        except OSError:
            return {pw.pw_gid}

    def _realpath(self, path: str) -> str:
        # /proc/PID/root/... is another mount namespace's tree: resolving it here would name
        # our file of that path, so it is stat'ed through the kernel as it is
        if path.startswith(self.proc_root.rstrip("/") + "/"):
            return posixpath.normpath(path)
        return os.path.realpath(path)

    def trusted_executable(self, path: str) -> tuple[bool, str]:
        return check_trusted(path, self.stat, self._realpath)

    def readable_for(self, path: str, uid: int | None, owner_rule: bool = True) -> tuple[bool, str]:
        if not self.is_root:
            return True, ""  # the kernel checks our own permissions; we can read no more than we may
        return check_readable_for(path, uid, self._groups(uid) if uid is not None else set(), self.stat,
                                  self._realpath, owner_rule)

    def environ(self) -> Mapping[str, str]:
        return os.environ

    def connect(self, family: int, address: object, timeout: float) -> socket.socket:
        if not self.live:
            raise NotLive("a connection")
        sk = socket.socket(family, socket.SOCK_STREAM)
        try:
            sk.settimeout(timeout)
            sk.connect(address)
        except BaseException:
            sk.close()
            raise
        return sk

    def netlink(self, protocol: int) -> socket.socket:
        if not self.live:
            raise NotLive("netlink")
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)

    def connect_from(self, pid: int, family: int, address: object, timeout: float) -> socket.socket:
        if not self.live:
            raise NotLive("a connection")
        path = f"{self.proc_root}/{pid}/ns/net"
        if os.stat(path).st_ino == os.stat(f"{self.proc_root}/self/ns/net").st_ino:
            return self.connect(family, address, timeout)
        # a socket belongs to the namespace of the thread that creates it: a short-lived thread
        # joins the other namespace (setns, root only), opens and connects the socket there
        import ctypes
        import threading

        box: dict[str, object] = {}

        def work() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(path, os.O_RDONLY)
                try:
                    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
                        err = ctypes.get_errno()
                        raise OSError(err, os.strerror(err), path)
                finally:
                    os.close(fd)
                box["sock"] = self.connect(family, address, timeout)
            except BaseException as exc:  # handed to the caller below
                box["error"] = exc

        t = threading.Thread(target=work, name="portdoctor-netns-connect", daemon=True)
        t.start()
        t.join(timeout + 2)
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        if "sock" not in box:
            raise TimeoutError(f"no answer within {timeout:g} s")
        return box["sock"]  # type: ignore[return-value]

    def read_netns_file(self, netns: str, name: str) -> bytes:
        if not self.live:
            raise NotLive("another network namespace")
        import ctypes
        import threading

        box: dict[str, object] = {}

        def work() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(netns, os.O_RDONLY)
                try:
                    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET, for this thread only
                        err = ctypes.get_errno()
                        raise OSError(err, os.strerror(err), netns)
                finally:
                    os.close(fd)
                box["data"] = self.read_bytes(f"{self.proc_root}/thread-self/net/{os.path.basename(name)}", 1 << 26)
            except BaseException as exc:  # handed to the caller below
                box["error"] = exc

        t = threading.Thread(target=work, name="portdoctor-netns-read", daemon=True)
        t.start()
        t.join(10)
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        if "data" not in box:
            raise TimeoutError(f"{netns}: no answer")
        return box["data"]  # type: ignore[return-value]


# --------------------------------------------------------------------------- a recording


class RecordedHost:
    """A host read from a recording folder: `files/` (the recorded filesystem: proc/, etc/)
    and `host.json`:

        {"is_root": true, "uid": 0, "platform": "linux",
         "which": {"iptables-save": "/usr/sbin/iptables-save", ...},
         "commands": [{"argv": ["/usr/sbin/iptables-save", "-c"], "rc": 0,
                       "stdout": "...", "stderr": ""}, ...],
         "stat": {"/usr/sbin/nginx": {"uid": 0, "gid": 0, "mode": "755", "kind": "file"}}}

    A command that was not recorded is "missing"; nothing is run, no socket is opened.
    Links under files/ are read with readlink (fd tables, cwd, ns/net), never followed out of
    the folder.
    """

    proc_root = "/proc"
    live = False

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder).resolve()
        self.files = self.folder / "files"
        meta = json.loads((self.folder / "host.json").read_text())
        self.is_root = bool(meta.get("is_root", False))
        self.platform = str(meta.get("platform") or "linux")  # sys.platform of the recorded machine
        self._which: dict[str, str] = dict(meta.get("which") or {})
        self._commands: dict[tuple[str, ...], dict] = {
            tuple(c["argv"]): c for c in meta.get("commands") or []}
        self._stat: dict[str, dict] = dict(meta.get("stat") or {})
        self._env: dict[str, str] = dict(meta.get("environ") or {})

    def _path(self, path: str) -> Path:
        """The recorded file for an absolute host path; never a path outside files/."""
        norm = posixpath.normpath("/" + path.lstrip("/"))
        return self.files / norm.lstrip("/")

    def _inside(self, p: Path) -> Path:
        real = Path(os.path.realpath(p))
        if real != self.files and self.files not in real.parents:
            raise FileNotFoundError(errno.ENOENT, "outside the recording", str(p))
        return real

    def which(self, name: str) -> str | None:
        if "/" in name:
            return name if any(argv and argv[0] == name for argv in self._commands) else None
        return self._which.get(name)

    def run(self, argv: Sequence[str], timeout: float = 10.0) -> CommandResult:
        argv = tuple(argv)
        full = argv if not argv or "/" in argv[0] else ((self.which(argv[0]) or argv[0]),) + argv[1:]
        rec = self._commands.get(full) or self._commands.get(argv)
        if rec is None:
            return CommandResult(argv, missing=True)
        return CommandResult(argv, rec.get("rc"), rec.get("stdout", ""), rec.get("stderr", ""),
                             timed_out=bool(rec.get("timed_out")))

    def run_all(self, argvs: Sequence[Sequence[str]], timeout: float = 10.0) -> list[CommandResult]:
        return [self.run(a, timeout) for a in argvs]

    def read_bytes(self, path: str, limit: int = MAX_READ) -> bytes:
        with open(self._inside(self._path(path)), "rb") as fh:
            return fh.read(limit)

    def read_text(self, path: str, limit: int = MAX_READ) -> str:
        return self.read_bytes(path, limit).decode("utf-8", errors="replace")

    def read_tail(self, path: str, size: int) -> bytes:
        data = self.read_bytes(path, 1 << 30)
        return data[-size:]

    def listdir(self, path: str) -> list[str]:
        return os.listdir(self._inside(self._path(path)))

    def read_links(self, path: str) -> dict[str, str]:
        folder = self._inside(self._path(path))
        out = {}
        for name in os.listdir(folder):
            if os.path.islink(folder / name):
                out[name] = os.readlink(folder / name)
        return out

    def readlink(self, path: str) -> str:
        p = self._path(path)
        self._inside(p.parent)
        return os.readlink(p)

    def stat(self, path: str, follow_symlinks: bool = True) -> FileStat:
        norm = posixpath.normpath(path)
        if norm in self._stat:
            s = self._stat[norm]
            return FileStat(int(s.get("uid", 0)), int(s.get("gid", 0)), int(str(s.get("mode", "644")), 8),
                            s.get("kind", "file"))
        p = self._path(path)
        st = os.stat(self._inside(p)) if follow_symlinks else os.lstat(p)
        return _to_stat(st)

    def exists(self, path: str) -> bool:
        try:
            self._inside(self._path(path))
        except OSError:
            return False
        return self._path(path).exists()

    def glob(self, pattern: str) -> list[str]:
        base = str(self.files)
        found = glob_mod.glob(base + posixpath.normpath("/" + pattern.lstrip("/")))
        return sorted(p[len(base):] for p in found)

    def user_name(self, uid: int) -> str | None:
        try:
            text = self.read_text("/etc/passwd")
        except OSError:
            return None
        for line in text.splitlines():
            parts = line.split(":")
            if len(parts) > 2 and parts[2] == str(uid):
                return parts[0]
        return None

    def trusted_executable(self, path: str) -> tuple[bool, str]:
        return False, "a recorded host runs no program"

    def readable_for(self, path: str, uid: int | None, owner_rule: bool = True) -> tuple[bool, str]:
        if not self.is_root:
            return True, ""
        return check_readable_for(path, uid, set(), self.stat, posixpath.normpath, owner_rule)

    def environ(self) -> Mapping[str, str]:
        return self._env

    def connect(self, family: int, address: object, timeout: float) -> socket.socket:
        raise NotLive("a connection")

    def netlink(self, protocol: int) -> socket.socket:
        raise NotLive("netlink")

    def connect_from(self, pid: int, family: int, address: object, timeout: float) -> socket.socket:
        raise NotLive("a connection")

    def read_netns_file(self, netns: str, name: str) -> bytes:
        raise NotLive("another network namespace")

