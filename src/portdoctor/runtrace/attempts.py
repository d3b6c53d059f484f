"""Fold strace events into the connections a program failed to make.

A connect fails in one of four ways, and each is read from a different call:

- at once or after blocking: `connect(...) = -1 ECONNREFUSED` (blocking sockets, local refusals);
- non-blocking (asyncio, Node, Go, curl, libpq): `connect(...) = -1 EINPROGRESS`, then
  `getsockopt(fd, SOL_SOCKET, SO_ERROR, [ECONNREFUSED], ...)`, or the error of the first
  send/recv on the socket, or a second connect();
- given up: still in progress when the program closed the socket (or exited): the client's own
  timeout ran out while nothing answered, which is what a silent drop looks like.

Sockets are followed by inode (`socket:[N]` of strace -y), so dup, fork and threads need no
descriptor bookkeeping. Threads are mapped to their process through clone flags, and each
process's command comes from its last execve (or its parent's, for a forked worker).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from portdoctor.addresses import endpoint as format_endpoint
from portdoctor.addresses import unmapped
from portdoctor.runtrace.strace import Event, first_fd, socket_inode, strings

# Unix sockets glibc probes on every name or user lookup and that are absent on most hosts:
# their failure is how glibc learns the optional service is not there, not a failed connection.
OPTIONAL_UNIX = ("/var/run/nscd/socket", "/run/nscd/socket", "/run/systemd/userdb/")

# errnos of a connect that has not finished yet (its outcome comes later)
_IN_PROGRESS = {"EINPROGRESS", "EALREADY", "EINTR", "ERESTARTSYS", "ERESTARTNOINTR"}
# errnos of a send/recv that say nothing about how the connect went
_NO_NEWS = {"EAGAIN", "EWOULDBLOCK", "EINPROGRESS", "EALREADY", "EINTR", "ENOTCONN", "ERESTARTSYS"}
_SENDRECV = {"sendto", "sendmsg", "sendmmsg", "recvfrom", "recvmsg", "recvmmsg"}

ATTEMPTS_KEPT = 50  # attempts remembered one by one per endpoint (the rest are counted)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a program tried to connect: a TCP address and port, or a Unix socket path."""

    kind: str  # "tcp" or "unix"
    address: str  # IP address (IPv4-mapped IPv6 shown as IPv4), or the socket path ("@name": abstract)
    port: int | None = None
    family: int = 0  # 4 or 6 for tcp, 0 for unix

    def __str__(self) -> str:
        if self.kind == "unix":
            return self.address
        return format_endpoint(self.address, self.port if self.port is not None else 0)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One failed connection attempt, as read from the trace."""

    endpoint: Endpoint
    tid: int  # the thread that called connect
    ts: float  # when connect was called (epoch seconds)
    errno: str | None  # None: no answer before the program gave up (closed the socket or exited)
    waited: float  # seconds from connect to the outcome
    how: str  # connect | so_error | send | recv | reconnect | closed | exit


@dataclass(frozen=True, slots=True)
class Process:
    """A traced process: its pid, parent and command line (as it was when it connected)."""

    pid: int
    ppid: int | None
    command: tuple[str, ...]


@dataclass
class _Pending:
    endpoint: Endpoint
    tid: int
    ts: float


@dataclass
class _Socket:
    stream: bool | None  # None: created before the trace or passed in
    peer: Endpoint | None = None  # for datagram sockets: the connected address


@dataclass
class Folded:
    """Everything the trace said: failed attempts, successes, names, processes, exits."""

    attempts: list[Attempt] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # endpoint -> failed attempts (all of them)
    successes: Counter = field(default_factory=Counter)  # endpoint -> successful connects
    ignored: Counter = field(default_factory=Counter)  # optional unix sockets glibc probed
    root_pid: int | None = None
    exit_code: int | None = None
    exit_signal: str | None = None
    first_ts: float | None = None
    last_ts: float | None = None
    processes_seen: int = 0
    bad_lines: int = 0
    reader_error: str | None = None  # the trace could not be read to its end (a bug of ours)


class Folder:
    """Feed it Events in trace order; `result()` gives the Folded trace.

    `on_failure`, when given, is called with each failed attempt as soon as it is known (for
    --live); names and processes are resolved at the end, when the whole trace is in.
    """

    def __init__(self, on_failure: Callable[[Attempt, Folder], None] | None = None) -> None:
        self.on_failure = on_failure
        self.out = Folded()
        self.tgid: dict[int, int] = {}
        self.parent: dict[int, tuple[int, float]] = {}  # pid -> (parent tid, fork time)
        self.execs: dict[int, list[tuple[float, tuple[str, ...]]]] = {}
        self.comms: dict[int, str] = {}
        self.sockets: dict[int, _Socket] = {}
        self.pending: dict[int, _Pending] = {}
        self.exit_ts: dict[int, float] = {}
        # names: per process, (time, address, name) from DNS answers; times of /etc/hosts reads
        self.dns: dict[int, list[tuple[float, str, str]]] = {}
        # every DNS answer: (time, thread, question name, response code, addresses in it)
        self.answers: list[tuple[float, int, str, str, int]] = []
        self.hosts_reads: dict[int, list[float]] = {}

    # ------------------------------------------------------------------ events

    def feed(self, ev: Event) -> None:
        """Fold one event."""
        o = self.out
        if o.root_pid is None:
            o.root_pid = ev.pid
            self.tgid[ev.pid] = ev.pid
        if o.first_ts is None:
            o.first_ts = ev.ts
        o.last_ts = ev.ts
        if ev.comm:
            self.comms.setdefault(self.process_of(ev.pid), ev.comm)
        handler = _HANDLERS.get(ev.name)
        if handler is not None:
            handler(self, ev)

    def process_of(self, tid: int) -> int:
        """The process (thread group) a thread id belongs to."""
        return self.tgid.get(tid, tid)

    def _exit(self, ev: Event) -> None:
        self.exit_ts[ev.pid] = ev.ts
        if ev.pid == self.out.root_pid:
            self.out.exit_code = ev.exit_code
            self.out.exit_signal = ev.signal

    def _clone(self, ev: Event) -> None:
        if ev.ret is None or ev.ret <= 0:
            return
        child = ev.ret
        if ev.name in ("clone", "clone3") and "CLONE_THREAD" in ev.args:
            self.tgid[child] = self.process_of(ev.pid)
        else:
            self.tgid[child] = child
            self.parent[child] = (ev.pid, ev.ts)
            self.out.processes_seen += 1

    def _execve(self, ev: Event) -> None:
        if ev.ret != 0:
            return
        texts = [s.decode("utf-8", "replace") for s, _cut in strings(ev.args)]
        argv = tuple(texts[1:]) if len(texts) > 1 else tuple(texts)
        pid = self.process_of(ev.pid)
        self.execs.setdefault(pid, []).append((ev.ts, argv))
        self.comms.pop(pid, None)

    def _open(self, ev: Event) -> None:
        if ev.ret is not None and ev.ret >= 0 and '"/etc/hosts"' in ev.args:
            self.hosts_reads.setdefault(self.process_of(ev.pid), []).append(ev.ts)

    def _socket(self, ev: Event) -> None:
        if ev.ret is None or ev.ret < 0:
            return
        inode = socket_inode(ev.retext)
        if inode is None:
            return
        self.sockets[inode] = _Socket(stream="SOCK_STREAM" in ev.args or "SOCK_SEQPACKET" in ev.args)
        self.pending.pop(inode, None)

    def _connect(self, ev: Event) -> None:
        _fd, note = first_fd(ev.args)
        inode = socket_inode(note)
        where = parse_sockaddr(ev.args)
        if where is None:
            return
        sock = self.sockets.get(inode) if inode is not None else None
        if sock is not None and sock.stream is False:  # a datagram socket: no connection at all
            sock.peer = where
            return
        if where.kind == "unix" and where.address.startswith(OPTIONAL_UNIX) and ev.errno:
            self.out.ignored[where.address] += 1
            return
        was = self.pending.pop(inode, None) if inode is not None else None
        if ev.ret == 0 or ev.errno == "EISCONN":
            self.out.successes[where] += 1
            return
        if ev.errno in _IN_PROGRESS:
            if was is not None and ev.errno == "EALREADY":
                self.pending[inode] = was  # type: ignore[index]
            elif inode is not None:
                self.pending[inode] = _Pending(where, ev.pid, ev.ts)
            return
        if ev.errno is None:
            return
        began = was if was is not None else _Pending(where, ev.pid, ev.ts)
        how = "reconnect" if was is not None else "connect"
        waited = (ev.ts + (ev.duration or 0.0)) - began.ts
        self._fail(Attempt(began.endpoint, began.tid, began.ts, ev.errno, max(0.0, waited), how))

    def _getsockopt(self, ev: Event) -> None:
        if "SO_ERROR" not in ev.args or ev.ret != 0:
            return
        inode = socket_inode(first_fd(ev.args)[1])
        if inode is None or inode not in self.pending:
            return
        m = _SO_ERROR.search(ev.args)
        if not m:
            return
        value = m.group(1)
        if value == "0":
            self.out.successes[self.pending.pop(inode).endpoint] += 1
            return
        errno = value if value.startswith("E") else _errno_name(int(value))
        p = self.pending.pop(inode)
        self._fail(Attempt(p.endpoint, p.tid, p.ts, errno, max(0.0, ev.ts - p.ts), "so_error"))

    def _sendrecv(self, ev: Event) -> None:
        inode = socket_inode(first_fd(ev.args)[1])
        if inode is None:
            return
        sock = self.sockets.get(inode)
        if sock is not None and sock.stream is False:
            if ev.name.startswith("recv") and ev.ret is not None and ev.ret > 0:
                self._dns_answer(ev, sock)
            return
        p = self.pending.get(inode)
        if p is None:
            return
        if ev.ret is not None and ev.ret >= 0:
            self.out.successes[self.pending.pop(inode).endpoint] += 1
        elif ev.errno and ev.errno not in _NO_NEWS:
            del self.pending[inode]
            how = "send" if ev.name.startswith("send") else "recv"
            self._fail(Attempt(p.endpoint, p.tid, p.ts, ev.errno, max(0.0, ev.ts - p.ts), how))

    def _close(self, ev: Event) -> None:
        if ev.ret != 0:
            return
        inode = socket_inode(first_fd(ev.args)[1])
        if inode is None:
            return
        p = self.pending.pop(inode, None)
        if p is not None:
            self._fail(Attempt(p.endpoint, p.tid, p.ts, None, max(0.0, ev.ts - p.ts), "closed"))

    def _dns_answer(self, ev: Event, sock: _Socket) -> None:
        src = sock.peer if sock.peer is not None else parse_sockaddr(ev.args)
        if src is None or src.port != 53:
            return
        from portdoctor.runtrace.names import parse_dns_answer

        found = strings(ev.args)
        if not found:
            return
        answer = parse_dns_answer(found[0][0])
        if answer is None:
            return
        qname, addresses, rcode = answer
        pid = self.process_of(ev.pid)
        self.answers.append((ev.ts, ev.pid, qname, rcode, len(addresses)))
        for a in addresses:
            self.dns.setdefault(pid, []).append((ev.ts, unmapped(a), qname))

    def _fail(self, attempt: Attempt) -> None:
        o = self.out
        o.counts[attempt.endpoint] += 1
        if o.counts[attempt.endpoint] <= ATTEMPTS_KEPT:
            o.attempts.append(attempt)
        if self.on_failure is not None:
            self.on_failure(attempt, self)

    # ------------------------------------------------------------------ the end

    def finish(self, bad_lines: int = 0) -> Folded:
        """Close the books: connects still in progress when the trace ended were given up."""
        o = self.out
        end = o.last_ts or 0.0
        for p in list(self.pending.values()):
            pid = self.process_of(p.tid)
            stop = self.exit_ts.get(pid, self.exit_ts.get(p.tid, end))
            self._fail(Attempt(p.endpoint, p.tid, p.ts, None, max(0.0, stop - p.ts), "exit"))
        self.pending.clear()
        o.attempts.sort(key=lambda a: a.ts)
        o.bad_lines = bad_lines
        return o

    def process(self, tid: int, ts: float) -> Process:
        """The process a thread belonged to at `ts`: pid, parent pid, command line then."""
        pid = self.process_of(tid)
        parent = self.parent.get(pid)
        ppid = self.process_of(parent[0]) if parent else None
        return Process(pid, ppid, self.command_at(pid, ts))

    def command_at(self, pid: int, ts: float, depth: int = 0) -> tuple[str, ...]:
        """The command line process `pid` ran at `ts` (a forked child runs its parent's)."""
        runs = self.execs.get(pid, [])
        i = bisect_right([t for t, _ in runs], ts)
        if i:
            return runs[i - 1][1]
        parent = self.parent.get(pid)
        if parent is not None and depth < 64:
            return self.command_at(self.process_of(parent[0]), parent[1], depth + 1)
        comm = self.comms.get(pid)
        return (comm,) if comm else ()

    def name_for(self, tid: int, ts: float, address: str,
                 hosts: dict[str, list[str]]) -> tuple[str | None, str | None]:
        """(name, source) the process resolved to `address` before `ts`: source 'dns' or
        '/etc/hosts'; (None, None) when the trace shows no look-up that gave that address."""
        pid = self.process_of(tid)
        for when, addr, qname in reversed(self.dns.get(pid, [])):
            if when <= ts and addr == address:
                return qname, "dns"
        reads = self.hosts_reads.get(pid, [])
        if any(t <= ts for t in reads) and hosts.get(address):
            return hosts[address][0], "/etc/hosts"
        return None, None


    def unresolved(self, window: float = 5.0) -> list[tuple[float, int, str, str]]:
        """DNS answers without an address that the process did not get past: (time, thread,
        name, response code). A failure is passed when the same process got addresses for a
        name with the same first label within `window` seconds (the next search domain, the
        other address family)."""
        ok: dict[int, list[tuple[float, str]]] = {}
        for ts, tid, qname, _rcode, n in self.answers:
            if n:
                ok.setdefault(self.process_of(tid), []).append((ts, qname.split(".")[0].lower()))
        out = []
        for ts, tid, qname, rcode, n in self.answers:
            if n:
                continue
            label = qname.split(".")[0].lower()
            passed = ok.get(self.process_of(tid), [])
            if not any(label == lab and ts - 1.0 <= t <= ts + window for t, lab in passed):
                out.append((ts, tid, qname, rcode))
        return out


_SO_ERROR = re.compile(r"SO_ERROR,\s*\[([A-Z0-9]+)\]")


def _errno_name(code: int) -> str:
    import errno

    return errno.errorcode.get(code, str(code))


_PORT = re.compile(r"sin6?_port=htons\((\d+)\)")
_ADDR4 = re.compile(r'sin_addr=inet_addr\("([^"]+)"\)')
_ADDR6 = re.compile(r'inet_pton\(AF_INET6, "([^"]+)"')
_UNIX = re.compile(r'sun_path=(@?)"((?:[^"\\]|\\.)*)"')


def parse_sockaddr(args: str) -> Endpoint | None:
    """The address of a connect/sendto/recvfrom argument text, or None (AF_UNSPEC, netlink...).

    >>> parse_sockaddr('3<socket:[1]>, {sa_family=AF_INET, sin_port=htons(9), sin_addr=inet_addr("127.0.0.1")}, 16')
    Endpoint(kind='tcp', address='127.0.0.1', port=9, family=4)
    """
    if "sa_family=AF_INET6" in args:
        p, a = _PORT.search(args), _ADDR6.search(args)
        if p and a:
            address = unmapped(a.group(1))
            return Endpoint("tcp", address, int(p.group(1)), 4 if "." in address else 6)
        return None
    if "sa_family=AF_INET" in args:
        p, a = _PORT.search(args), _ADDR4.search(args)
        if p and a:
            return Endpoint("tcp", a.group(1), int(p.group(1)), 4)
        return None
    if "sa_family=AF_UNIX" in args:
        u = _UNIX.search(args)
        if u:
            from portdoctor.runtrace.strace import unescape

            path = unescape(u.group(2)).decode("utf-8", "replace")
            return Endpoint("unix", ("@" if u.group(1) else "") + path)
    return None


_HANDLERS: dict[str, Callable[[Folder, Event], None]] = {
    "+++": Folder._exit,
    "clone": Folder._clone, "clone3": Folder._clone, "fork": Folder._clone, "vfork": Folder._clone,
    "execve": Folder._execve, "execveat": Folder._execve,
    "open": Folder._open, "openat": Folder._open,
    "socket": Folder._socket,
    "connect": Folder._connect,
    "getsockopt": Folder._getsockopt,
    "close": Folder._close,
    **{name: Folder._sendrecv for name in _SENDRECV},
}
