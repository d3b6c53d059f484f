"""Debian's strace as a subprocess: find it on a trusted path, check that tracing is allowed,
build its command line, and read its output lines back as system-call events.

strace is run with the options below and writes to a FIFO (never to the program's stderr):

    strace -f -q -ttt -T -y -Y -s 2048 -x --seccomp-bpf -e signal=none -e trace=SYSCALLS -o FIFO -- CMD...

-f follows forks and threads; -ttt gives epoch timestamps, -T the time spent in a call; -y
annotates every descriptor with what it is (`5<socket:[29301]>`: a socket and its inode, which
survives dup and fork); -Y names the command of each pid (`1234<curl>`); -x prints binary data
(DNS packets) as hex escapes. --seccomp-bpf stops the program only at the traced calls, so the
rest of its system calls run at full speed (strace sets no_new_privs for it; see README).

A line looks like one of these (threads interleave, so a call may be split in two):

    1234<curl> 1796292576.165890 connect(5<socket:[293496]>, {sa_family=AF_INET, ...}, 16) = -1 EINPROGRESS (...) <0.000077>
    1235<node> 1796292815.0851 connect(19<socket:[1]>, {...}, 16 <unfinished ...>
    1235<node> 1796292815.0852 <... connect resumed>) = -1 ECONNREFUSED (Connection refused) <0.000064>
    1234<curl> 1796292576.1800 +++ exited with 7 +++
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from dataclasses import dataclass

# Where strace may come from. Never the caller's PATH: portdoctor runs as root and must not run a
# program another user could have put first on it.
SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

# What is traced: connects and what reports a non-blocking connect's result (SO_ERROR, the first
# send/recv on the socket), socket() for the socket type, close() for connects given up on,
# process creation and exec for who did it, open of /etc/hosts and DNS datagrams for names.
SYSCALLS = (
    "socket", "connect", "getsockopt", "close",
    "sendto", "sendmsg", "sendmmsg", "recvfrom", "recvmsg", "recvmmsg",
    "clone", "clone3", "fork", "vfork", "execve", "execveat",
    "open", "openat",
)

STRING_LIMIT = 2048  # bytes of a buffer strace prints: a whole DNS answer fits


class TraceUnavailable(Exception):
    """strace cannot trace here; the message says why in one line."""


def find_strace(path: str = SAFE_PATH) -> str:
    """The absolute path of a trusted strace on `path`, or raise TraceUnavailable.

    Trusted: a regular executable file owned by root that no group or other user can write,
    in directories with the same property all the way up to /.
    """
    for folder in path.split(os.pathsep):
        if not folder or not os.path.isabs(folder):
            continue
        candidate = os.path.join(folder, "strace")
        if not os.path.exists(candidate):
            continue
        problem = untrusted(candidate)
        if problem:
            raise TraceUnavailable(f"{candidate} is not trusted ({problem}), so it was not run")
        return candidate
    raise TraceUnavailable(f"strace is not installed (not found in {path}; apt-get install strace)")


def untrusted(path: str) -> str | None:
    """Why `path` could have been chosen by a user other than root, or None when it could not."""
    real = os.path.realpath(path)
    chain = [real, *_parents(real)]
    if real != path:  # a symlink: its own folders count too
        chain += _parents(os.path.abspath(path))
    for p in chain:
        try:
            st = os.stat(p)
        except OSError as exc:
            return f"{p}: {exc.strerror}"
        if st.st_uid != 0:
            return f"{p} is owned by uid {st.st_uid}, not root"
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return f"{p} is writable by group or others"
    st = os.stat(real)
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & stat.S_IXUSR:
        return f"{real} is not an executable file"
    return None


def _parents(path: str) -> list[str]:
    out = []
    p = os.path.dirname(path)
    while True:
        out.append(p)
        up = os.path.dirname(p)
        if up == p:
            return out
        p = up


def command(strace: str, output: str, argv: list[str], seccomp: bool = True) -> list[str]:
    """The strace command line that runs `argv` traced, writing events to `output`."""
    cmd = [strace, "-f", "-q", "-ttt", "-T", "-y", "-Y", "-s", str(STRING_LIMIT), "-x",
           "-e", "signal=none", "-e", "trace=" + ",".join(SYSCALLS), "-o", output]
    if seccomp:
        cmd.append("--seccomp-bpf")
    return [*cmd, "--", *argv]


def preflight(strace: str, timeout: float = 10.0) -> tuple[bool, str | None]:
    """Trace a harmless program (strace -V itself) to learn whether tracing works here.

    Returns (seccomp filtering works, None) when it does, else raises TraceUnavailable with the
    reason in one line: ptrace forbidden (Yama, seccomp, a container without CAP_SYS_PTRACE).
    """
    def attempt(seccomp: bool) -> subprocess.CompletedProcess[str]:
        argv = command(strace, os.devnull, [strace, "-V"], seccomp)
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env={"PATH": SAFE_PATH, "LC_ALL": "C"})

    try:
        cp = attempt(True)
        if cp.returncode == 0 and "strace" in cp.stdout and "seccomp" not in cp.stderr.lower():
            return True, None
        if cp.returncode == 0:  # traced, but without seccomp filtering (old kernel)
            return False, None
        retry = attempt(False)
        if retry.returncode == 0:
            return False, None
    except (OSError, subprocess.SubprocessError) as exc:
        raise TraceUnavailable(f"strace could not be started ({exc})") from None
    raise TraceUnavailable(ptrace_denied_reason(cp.stderr))


def ptrace_denied_reason(stderr: str, proc: str = "/proc") -> str:
    """One line saying why strace could not trace, from its error output and this host's settings."""
    text = stderr.lower()
    scope = _read_int(os.path.join(proc, "sys/kernel/yama/ptrace_scope"))
    if "operation not permitted" in text or "permission denied" in text:
        if scope == 3:
            return "ptrace is disabled on this host (Yama kernel.yama.ptrace_scope = 3)"
        if scope == 2 and not _has_cap_sys_ptrace(proc):
            return ("ptrace needs CAP_SYS_PTRACE here (Yama kernel.yama.ptrace_scope = 2) and this "
                    "process does not have it")
        seccomp = _status_field(proc, "Seccomp")
        if seccomp == "2":
            return ("ptrace is not permitted: a seccomp filter forbids it (a container without "
                    "CAP_SYS_PTRACE, e.g. docker run --cap-add SYS_PTRACE allows it)")
        return "ptrace is not permitted for this process (a container or security policy forbids it)"
    first = next((ln.strip() for ln in stderr.splitlines() if ln.strip()), "no message")
    return f"strace could not trace ({first})"


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def _status_field(proc: str, name: str) -> str | None:
    try:
        with open(os.path.join(proc, "self/status")) as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key == name:
                    return value.strip()
    except OSError:
        return None
    return None


def _has_cap_sys_ptrace(proc: str) -> bool:
    eff = _status_field(proc, "CapEff")
    try:
        return bool(int(eff or "0", 16) & (1 << 19))  # CAP_SYS_PTRACE = 19
    except ValueError:
        return False


# --------------------------------------------------------------------------- output lines


@dataclass(frozen=True, slots=True)
class Event:
    """One system call (or process exit) as strace printed it, unfinished halves joined."""

    pid: int  # the thread id strace prints
    comm: str  # its command name (-Y)
    ts: float  # when the call started (epoch seconds)
    name: str  # syscall name; "+++" for an exit/kill line
    args: str  # the argument text between the parentheses ("" for exits)
    ret: int | None  # return value (None: "?" or an exit line)
    errno: str | None  # ECONNREFUSED, ... when the call failed
    retext: str  # the text after " = " (return value and its decoration)
    duration: float | None = None  # -T: seconds spent in the call
    exit_code: int | None = None  # for "+++ exited with N +++"
    signal: str | None = None  # for "+++ killed by SIGX +++"


_HEAD = re.compile(r"^(\d+)(?:<([^>]*)>)?\s+(\d+\.\d+)\s+(.*)$")
_CALL = re.compile(r"^([a-z_0-9]+)\((.*)$", re.S)
_RESUMED = re.compile(r"^<\.\.\. ([a-z_0-9]+) resumed>(.*)$", re.S)
_RET = re.compile(r"\) = (-?\d+|\?|0x[0-9a-f]+)(.*)$", re.S)
_ERRNO = re.compile(r"^(?:<[^>]*>)?\s*(E[A-Z0-9]+) \(")
_DURATION = re.compile(r"\s<(\d+\.\d+)>\s*$")
_EXIT = re.compile(r"^\+\+\+ (?:exited with (\d+)|killed by (SIG[A-Z0-9]+)(?: \(core dumped\))?) \+\+\+$")
UNFINISHED = " <unfinished ...>"


class LineReader:
    """Turns strace output lines into Events, joining `<unfinished ...>` and `resumed` halves.

    >>> r = LineReader()
    >>> r.feed('7<x> 1.5 connect(3<socket:[9]>, {sa_family=AF_UNIX, sun_path="/s"}, 110 <unfinished ...>')
    >>> e = r.feed('7<x> 1.6 <... connect resumed>) = -1 ENOENT (No such file or directory) <0.000010>')
    >>> (e.name, e.errno, e.ts, e.ret)
    ('connect', 'ENOENT', 1.5, -1)
    """

    def __init__(self) -> None:
        self._pending: dict[int, tuple[str, float, str]] = {}  # pid -> (name, ts, text so far)
        self.bad_lines = 0

    def feed(self, line: str) -> Event | None:
        """The event `line` completes, or None (half a call, a message strace adds, garbage)."""
        line = line.rstrip("\n")
        m = _HEAD.match(line)
        if not m:
            if line.strip():
                self.bad_lines += 1
            return None
        pid, comm, ts, rest = int(m.group(1)), m.group(2) or "", float(m.group(3)), m.group(4)
        if rest.startswith("+++"):
            x = _EXIT.match(rest.strip())
            if not x:
                return None  # "+++ superseded by execve in pid N +++" and the like
            code = int(x.group(1)) if x.group(1) is not None else None
            return Event(pid, comm, ts, "+++", "", None, None, "", None, code, x.group(2))
        if rest.startswith("---"):
            return None  # signal lines (disabled with -e signal=none, kept out anyway)
        if rest.endswith(UNFINISHED):
            c = _CALL.match(rest[: -len(UNFINISHED)])
            if c:
                self._pending[pid] = (c.group(1), ts, c.group(2))
            return None
        r = _RESUMED.match(rest)
        if r:
            began = self._pending.pop(pid, None)
            if began is None or began[0] != r.group(1):
                return None  # the first half was lost (attached mid-call): nothing reliable
            name, ts, head = began
            return self._finish(pid, comm, ts, name, head + r.group(2))
        c = _CALL.match(rest)
        if not c:
            self.bad_lines += 1
            return None
        return self._finish(pid, comm, ts, c.group(1), c.group(2))

    def _finish(self, pid: int, comm: str, ts: float, name: str, text: str) -> Event | None:
        # text: "ARGS) = RET DECORATION <DURATION>"; a data string in ARGS may hold ") = " too,
        # but the return value always comes last, so the rightmost separator is the one
        at = text.rfind(") = ")
        m = _RET.match(text, at) if at >= 0 else None
        if m is None:
            self.bad_lines += 1
            return None
        args = text[:at]
        raw, tail = m.group(1), m.group(2)
        duration = None
        d = _DURATION.search(tail)
        if d:
            duration = float(d.group(1))
            tail = tail[: d.start()]
        ret: int | None
        if raw == "?":
            ret = None
        elif raw.startswith("0x"):
            ret = int(raw, 16)
        else:
            ret = int(raw)
        errno = None
        if ret is None or ret < 0:  # "= ? ERESTARTSYS (...)": interrupted, to be restarted
            e = _ERRNO.match(tail.strip())
            errno = e.group(1) if e else None
        return Event(pid, comm, ts, name, args, ret, errno, (raw + tail).strip(), duration)


# --------------------------------------------------------------------------- argument text


_ESCAPE = re.compile(r'\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)', re.S)
_SIMPLE = {"n": 10, "t": 9, "r": 13, "v": 11, "f": 12, "a": 7, "b": 8, "\\": 92, '"': 34, "'": 39, "e": 27}


def unescape(text: str) -> bytes:
    r"""The bytes of a string as strace prints it (C escapes, -x hex escapes).

    >>> unescape(r'ab\x00\n\1\"')
    b'ab\x00\n\x01"'
    """
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(text):
        out += text[pos:m.start()].encode("utf-8", "surrogateescape")
        esc = m.group(1)
        if esc[0] == "x" and len(esc) == 3:
            out.append(int(esc[1:], 16))
        elif esc[0] in "01234567":
            out.append(int(esc, 8) & 0xFF)
        else:
            out.append(_SIMPLE.get(esc, ord(esc[0]) & 0xFF))
        pos = m.end()
    out += text[pos:].encode("utf-8", "surrogateescape")
    return bytes(out)


_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"(\.\.\.)?', re.S)


def strings(text: str) -> list[tuple[bytes, bool]]:
    """Every quoted string in an argument text: (its bytes, whether strace cut it short)."""
    return [(unescape(m.group(1)), bool(m.group(2))) for m in _STRING.finditer(text)]


_FD = re.compile(r"^(-?\d+)<([^>]*)>")
_SOCKET_INODE = re.compile(r"socket:\[(\d+)\]")


def first_fd(args: str) -> tuple[int | None, str]:
    """The first argument as (descriptor, its -y annotation): `5<socket:[29]>` -> (5, 'socket:[29]')."""
    m = _FD.match(args)
    if not m:
        return None, ""
    return int(m.group(1)), m.group(2)


def socket_inode(annotation: str) -> int | None:
    """The inode of a `socket:[N]` annotation, or None for anything else."""
    m = _SOCKET_INODE.search(annotation)
    return int(m.group(1)) if m else None
