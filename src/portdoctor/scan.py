"""`portdoctor scan`: a TCP connect sweep of one host, with nmap's port states and reasons.

Each port gets a non-blocking connect(); the answer decides its state:

    open         syn-ack            the connection was accepted
    closed       conn-refused       a reset (or ICMP port-unreachable) came back
    filtered     no-response        nothing came back, also after one retry
    unreachable  host-unreach, net-unreach, admin-prohibited
                                    ICMP said so (nmap reports these as filtered)

The sweep runs on an asyncio event loop: pending connects wait as writers on the loop, a timer
expires them. A connect whose answer arrived while connect() ran (a host on this machine or a
namespace next to it) is read at once with SO_ERROR, without a trip through the loop.

Timing follows nmap's engine (RFC 6298 applied to probes): the round-trip time of each answer
updates a smoothed RTT and its variation, and a probe is given up after srtt + 4 * rttvar (held
between 100 ms and 10 s; 1 s before the first answer). An unanswered port is tried once more;
only then is it filtered. Probes in flight are capped by the file-descriptor limit
(RLIMIT_NOFILE) and by a window that halves when a retry is answered (the first try was lost:
the path is congested), as nmap's congestion control does.

>>> parse_ports("22,80,8000-8002")
(22, 80, 8000, 8001, 8002)
>>> len(parse_ports("-"))
65535
"""

from __future__ import annotations

import errno as errno_mod
import os
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, NamedTuple

from portdoctor.errors import BadInput

if TYPE_CHECKING:
    import asyncio

ALL_PORTS = range(1, 65536)
DEFAULT_TOP = 1000

# nmap's defaults (timing template T3): initial, minimum and maximum probe timeout, seconds
INITIAL_TIMEOUT = 1.0
MIN_TIMEOUT = 0.1
MAX_TIMEOUT = 10.0
MAX_WINDOW = 4096  # probes in flight at most, whatever the fd limit allows
FD_RESERVE = 64  # descriptors left for everything else in the process
BURST = 256  # connects started before the loop looks at answers again

# connect() errno -> (state, reason), the reasons named as nmap's portreasons.cc names them
ERRNO_OUTCOME: dict[int, tuple[str, str]] = {
    errno_mod.ECONNREFUSED: ("closed", "conn-refused"),
    errno_mod.EHOSTUNREACH: ("unreachable", "host-unreach"),
    errno_mod.ENETUNREACH: ("unreachable", "net-unreach"),
    errno_mod.ENETDOWN: ("unreachable", "net-unreach"),
    errno_mod.EHOSTDOWN: ("unreachable", "host-unreach"),
    # ICMPv6 administratively prohibited (ip6tables REJECT --reject-with adm-prohibited)
    errno_mod.EACCES: ("unreachable", "admin-prohibited"),
    # a local OUTPUT rule refused to send the SYN
    errno_mod.EPERM: ("unreachable", "admin-prohibited"),
    errno_mod.ETIMEDOUT: ("filtered", "no-response"),
}
STATES = ("open", "closed", "filtered", "unreachable")

# Ports tried first by `--top N` when nmap's frequency table is not installed: services the
# SPEC's users run (databases, web, queues, remote access), then 1..65535 in order.
COMMON_PORTS: tuple[int, ...] = (
    80, 443, 22, 21, 25, 23, 53, 110, 143, 3306, 5432, 6379, 8080, 8443, 8000, 8008, 8081, 8888,
    3000, 5000, 9000, 9090, 27017, 11211, 9200, 9300, 5672, 15672, 2181, 9092, 2379, 2380,
    389, 636, 445, 139, 135, 3389, 5900, 993, 995, 587, 465, 111, 2049, 1433, 1521, 5984,
    6443, 10250, 8500, 8200, 4369, 25672, 7000, 7001, 9042, 8086, 9100, 9093, 3100, 4317, 4318,
    1883, 8883, 5222, 5269, 873, 179, 3128, 1080, 8010, 8180, 8280, 8880, 9443, 10000, 4444,
    4443, 7070, 7443, 5060, 5061, 1194, 1723, 500, 4500, 6000, 6667, 119, 123, 161, 162, 514,
    515, 631, 990, 992, 1025, 1026, 1027, 1028, 1029, 1110, 2000, 2001, 2121, 2222, 3001, 3128,
    4000, 4001, 4848, 5001, 5002, 5050, 5353, 5555, 5601, 5800, 5901, 6001, 6379, 6380, 7474,
    7687, 8001, 8002, 8009, 8042, 8082, 8083, 8084, 8085, 8088, 8089, 8090, 8091, 8161, 8181,
    8222, 8333, 8444, 8554, 8800, 8834, 8889, 9001, 9002, 9080, 9091, 9418, 9999, 10001, 11000,
    15000, 16379, 18080, 20000, 25565, 27018, 28017, 32768, 49152, 49153, 49154, 50000, 50070,
)
NMAP_SERVICES = "/usr/share/nmap/nmap-services"

# names the sweep gives a few ports /etc/services lacks or names for something else
_EXTRA_NAMES: dict[int, str] = {
    3000: "http-dev", 5000: "http-dev", 8000: "http-alt", 8008: "http-alt", 8081: "http-alt",
    8443: "https-alt", 8888: "http-alt", 9090: "http-alt", 9200: "elasticsearch", 15672: "rabbitmq-mgmt",
    27017: "mongodb", 6443: "kubernetes-api", 10250: "kubelet",
}


# --------------------------------------------------------------------------- port lists


def parse_ports(text: str) -> tuple[int, ...]:
    """Ports of a -p argument: `22`, `80,443`, `8000-8100`, `-` or `1-` (to 65535), `-1024`
    (from 1), service names (`http,ssh`); in the order given, duplicates dropped.

    BadInput (exit 2) names the piece that is not a port.
    """
    text = text.strip()
    if not text:
        raise BadInput("-p needs ports: 22, 80,443, 8000-8100 or - for all")
    out: dict[int, None] = {}
    for piece in text.split(","):
        piece = piece.strip()
        if not piece:
            raise BadInput(f"-p {text!r}: an empty item between commas")
        if "-" in piece:
            lo_s, _, hi_s = piece.partition("-")
            lo = _port_number(lo_s, piece) if lo_s.strip() else 1
            hi = _port_number(hi_s, piece) if hi_s.strip() else 65535
            if lo > hi:
                raise BadInput(f"-p {piece!r}: the range runs backwards ({lo} > {hi})")
            for p in range(lo, hi + 1):
                out[p] = None
        elif piece.isdigit():
            out[_port_number(piece, piece)] = None
        else:
            try:
                out[socket.getservbyname(piece, "tcp")] = None
            except OSError:
                raise BadInput(f"-p {piece!r} is neither a port number nor a known TCP service name") from None
    return tuple(out)


def _port_number(s: str, piece: str) -> int:
    s = s.strip()
    if not s.isdigit():
        raise BadInput(f"-p {piece!r}: {s!r} is not a port number")
    n = int(s)
    if not 1 <= n <= 65535:
        raise BadInput(f"-p {piece!r}: ports run from 1 to 65535")
    return n


def top_ports(n: int, table: str | None = NMAP_SERVICES) -> tuple[int, ...]:
    """The `n` ports most often found open: nmap's frequency table when it is installed (read, not
    shipped), else COMMON_PORTS followed by the remaining ports in order."""
    if not 1 <= n <= 65535:
        raise BadInput("--top takes a number from 1 to 65535")
    ranked = _nmap_ranking(table) if table else []
    order: dict[int, None] = dict.fromkeys(ranked or COMMON_PORTS)
    if len(order) < n:
        for p in ALL_PORTS:
            order.setdefault(p, None)
            if len(order) >= n:
                break
    return tuple(order)[:n]


def _nmap_ranking(path: str) -> list[int]:
    """TCP ports of an nmap-services file, most frequently open first (empty when unreadable or
    not a root-owned file: portdoctor runs as root and reads nothing another user could plant)."""
    try:
        st = os.stat(path)
        if st.st_uid != 0 or st.st_mode & 0o022:
            return []
        with open(path, encoding="utf-8", errors="replace") as fh:
            rows = []
            for line in fh:
                if line.startswith("#"):
                    continue
                parts = line.split()
                if len(parts) < 3 or not parts[1].endswith("/tcp"):
                    continue
                try:
                    rows.append((float(parts[2]), int(parts[1].partition("/")[0])))
                except ValueError:
                    continue
    except OSError:
        return []
    rows.sort(key=lambda r: (-r[0], r[1]))
    return [p for _f, p in rows]


def service_name(port: int) -> str | None:
    """A name for a TCP port: /etc/services (through getservbyport), else our own short table."""
    try:
        return socket.getservbyport(port, "tcp")
    except OSError:
        return _EXTRA_NAMES.get(port)


# --------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """nmap's probe timeout from answers seen so far (RFC 6298 smoothing of round-trip times).

    >>> t = Timing(); t.timeout
    1.0
    >>> t.observe(0.2); round(t.timeout, 3)   # first answer: srtt 0.2, rttvar max(0.2, 0.1)
    1.0
    >>> t.observe(0.2); round(t.timeout, 3)
    0.8
    """

    initial: float = INITIAL_TIMEOUT
    minimum: float = MIN_TIMEOUT
    maximum: float = MAX_TIMEOUT
    srtt: float | None = None
    rttvar: float = 0.0
    answers: int = 0

    @property
    def timeout(self) -> float:
        """Seconds to wait for an answer before a probe counts as lost."""
        if self.srtt is None:
            return self.initial
        return min(self.maximum, max(self.minimum, self.srtt + 4 * self.rttvar))

    def observe(self, rtt: float) -> None:
        """Learn from one answer that took `rtt` seconds."""
        rtt = max(0.0, rtt)
        self.answers += 1
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = max(rtt, self.minimum)
            return
        delta = rtt - self.srtt
        self.srtt += delta / 8
        self.rttvar += (abs(delta) - self.rttvar) / 4


@dataclass
class Window:
    """How many probes may be in flight: capped by descriptors, halved when a retry is answered
    (a lost first try), grown by one per answer back to the cap."""

    cap: int
    size: float = 0.0

    def __post_init__(self) -> None:
        self.size = float(self.cap)

    @property
    def allowed(self) -> int:
        """Probes that may be in flight now."""
        return max(1, int(self.size))

    def answered(self, was_retry: bool) -> None:
        """One answer arrived; a retry's answer means the first SYN or its answer was lost."""
        if was_retry:
            self.size = max(8.0, self.size / 2)
        else:
            self.size = min(float(self.cap), self.size + 1)


def fd_budget(cap: int = MAX_WINDOW, raise_soft: bool = True) -> int:
    """Probes the process can keep in flight: the RLIMIT_NOFILE soft limit (raised to the hard
    limit when allowed) minus descriptors in use and a reserve, at most `cap`."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if raise_soft and hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 16
    return max(1, min(cap, soft - in_use - FD_RESERVE))


# --------------------------------------------------------------------------- results


class PortResult(NamedTuple):
    """One scanned port: its state, why (nmap's reason), the answer's round trip, tries made.

    A named tuple, not a dataclass: a full sweep makes 65,535 of them and creating a tuple costs
    a fifth of a frozen dataclass."""

    port: int
    state: str
    reason: str
    rtt: float | None = None
    tries: int = 1
    service: str | None = None

    def to_json(self) -> dict[str, Any]:
        """One entry of `ports` in `portdoctor.scan/1`."""
        return {"port": self.port, "state": self.state, "reason": self.reason,
                "rtt": round(self.rtt, 6) if self.rtt is not None else None, "tries": self.tries,
                "service": self.service}


@dataclass(frozen=True, slots=True, repr=False)
class ScanResult:
    """A sweep of one address: every port's result (in port order) and how the sweep went."""

    host: str
    address: str
    family: int
    ports: tuple[PortResult, ...]
    seconds: float
    srtt: float | None = None
    timeout: float = INITIAL_TIMEOUT
    window: int = 0
    retries: int = 0
    cut_short: bool = False  # a deadline ended the sweep; unfinished ports are filtered/no-response
    counts: dict[str, int] = field(default_factory=dict)

    def __repr__(self) -> str:
        counts = ", ".join(f"{s} {n}" for s, n in self.to_json()["counts"].items() if n)
        return f"<ScanResult {self.address}: {len(self.ports)} ports ({counts}) in {self.seconds:.2f} s>"

    def by_state(self, state: str) -> list[PortResult]:
        """The ports in `state`."""
        return [p for p in self.ports if p.state == state]

    def to_json(self) -> dict[str, Any]:
        """The `portdoctor.scan/1` document: every open port and every port that is not closed
        or filtered by no-response, plus counts per state and reason for all of them."""
        shown = [p.to_json() for p in self.ports if p.state == "open" or p.reason not in _QUIET_REASONS]
        reasons: dict[str, int] = {}
        for p in self.ports:
            key = f"{p.state}/{p.reason}"
            reasons[key] = reasons.get(key, 0) + 1
        return {
            "schema": "portdoctor.scan/1",
            "host": self.host, "address": self.address, "family": self.family,
            "scanned": len(self.ports),
            "counts": {s: sum(1 for p in self.ports if p.state == s) for s in STATES},
            "reasons": dict(sorted(reasons.items())),
            "ports": shown,
            "seconds": round(self.seconds, 3),
            "timing": {"srtt": round(self.srtt, 6) if self.srtt is not None else None,
                       "timeout": round(self.timeout, 4), "window": self.window, "retries": self.retries},
            "cut_short": self.cut_short,
        }


_QUIET_REASONS = ("conn-refused", "no-response")


# --------------------------------------------------------------------------- the sweep


Progress = Callable[[int, int], None]


def scan(host: str, ports: Iterable[int], *, timing: Timing | None = None, window: int | None = None,
         retries: int = 1, deadline: float | None = None, names: bool = True,
         progress: Progress | None = None) -> ScanResult:
    """Sweep `ports` of `host` (a name resolves to its first address, as a client tries it).

    `deadline` (seconds) bounds the whole sweep: ports without an answer by then are filtered.
    `progress(done, total)` is called as ports finish. Raises BadInput for a name that does not
    resolve.
    """
    import asyncio

    family, sockaddr = _address_of(host)
    # a loop of our own rather than asyncio.run: run() swaps the SIGINT handler and, restoring it,
    # formats the finished task (and a 65,535-port result) into an exception message it drops
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(sweep(host, family, sockaddr, tuple(ports), timing=timing, window=window,
                                             retries=retries, deadline=deadline, names=names,
                                             progress=progress))
    finally:
        loop.close()


def _address_of(host: str) -> tuple[int, tuple]:
    """(family, sockaddr) of an address literal, else of the first address the name resolves to."""
    literal = host.strip("[]")
    for fam in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(fam, literal.split("%")[0])
        except OSError:
            continue
        if fam == socket.AF_INET:
            return fam, (literal, 0)
        return fam, socket.getaddrinfo(literal, 0, fam, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)[0][4]
    from portdoctor.probe import resolve_within

    try:
        addrs = resolve_within(literal, 0, 5.0)
    except Exception as exc:  # gaierror, ResolverTimeout, UnicodeError: the name is the problem
        raise BadInput(f"{host!r} does not resolve: {exc}") from None
    if not addrs:
        raise BadInput(f"{host!r} has no IPv4 or IPv6 address")
    return addrs[0]


async def sweep(host: str, family: int, sockaddr: tuple, ports: tuple[int, ...], *,
                timing: Timing | None = None, window: int | None = None, retries: int = 1,
                deadline: float | None = None, names: bool = True,
                progress: Progress | None = None) -> ScanResult:
    """The sweep itself, on the running event loop (see `scan`)."""
    import asyncio

    loop = asyncio.get_running_loop()
    timing = timing or Timing()
    win = Window(window or fd_budget())
    started = time.perf_counter()
    stop_at = started + deadline if deadline else None
    address = sockaddr[0]
    # port -> (state, reason, rtt, tries); PortResults are made once, at the end
    results: dict[int, tuple[str, str, float | None, int]] = {}
    todo: deque[tuple[int, int]] = deque((p, 1) for p in ports)  # (port, try number)
    inflight: dict[int, tuple[socket.socket, int, int, float]] = {}  # fd -> (sock, port, try, t0)
    launched: deque[tuple[float, int, int]] = deque()  # (t0, fd, port) in launch order
    woke = asyncio.Event()
    stats = {"retries": 0}
    total = len(ports)
    kind = socket.SOCK_STREAM | getattr(socket, "SOCK_NONBLOCK", 0)
    nonblock_flag = bool(kind & getattr(socket, "SOCK_NONBLOCK", 0))
    six = family == socket.AF_INET6

    def answered(port: int, attempt: int, code: int, rtt: float) -> None:
        if code == 0:
            state, reason = "open", "syn-ack"
        else:
            state, reason = ERRNO_OUTCOME.get(code, ("filtered", errno_mod.errorcode.get(code, str(code)).lower()))
        if reason != "no-response":
            timing.observe(rtt)
            win.answered(attempt > 1)
        results[port] = (state, reason, rtt, attempt)

    def on_writable(fd: int) -> None:
        entry = inflight.pop(fd, None)
        loop.remove_writer(fd)
        if entry is None:
            return
        s, port, attempt, t0 = entry
        rtt = time.perf_counter() - t0
        code = s.getsockopt(SOL_SOCKET, SO_ERROR)
        if code == 0:
            s.setsockopt(SOL_SOCKET, SO_LINGER, _LINGER_RESET)
        s.close()
        answered(port, attempt, code, rtt)
        woke.set()

    def launch_burst() -> None:
        """Start up to BURST connects. The answer of a host next to us is often in before
        connect() returns: read it at once (SO_ERROR), with the bookkeeping kept to a minimum,
        since a full sweep does this 65,535 times."""
        new_socket, clock, refused = socket.socket, time.perf_counter, errno_mod.ECONNREFUSED
        in_progress = (errno_mod.EINPROGRESS, errno_mod.EAGAIN)
        allowed = win.allowed
        first_rtt: float | None = None
        n_refused = 0
        for _ in range(BURST):
            if not todo or len(inflight) >= allowed:
                break
            port, attempt = todo.popleft()
            try:
                s = new_socket(family, kind)
            except OSError as exc:  # out of descriptors after all: try again later
                if exc.errno in (errno_mod.EMFILE, errno_mod.ENFILE, errno_mod.ENOBUFS):
                    todo.appendleft((port, attempt))
                    win.size = max(1.0, len(inflight) - 1.0)
                    break
                raise
            if not nonblock_flag:
                s.setblocking(False)
            t0 = clock()
            code = s.connect_ex((address, port, sockaddr[2], sockaddr[3]) if six else (address, port))
            if code in in_progress:
                code = s.getsockopt(SOL_SOCKET, SO_ERROR)
                if code == 0:
                    fd = s.fileno()
                    inflight[fd] = (s, port, attempt, t0)
                    launched.append((t0, fd, port))
                    loop.add_writer(fd, on_writable, fd)
                    continue
            rtt = clock() - t0
            if code == refused:  # the common case of a sweep: closed
                s.close()
                results[port] = ("closed", "conn-refused", rtt, attempt)
                n_refused += 1
                if first_rtt is None:
                    first_rtt = rtt
                continue
            if code == 0:
                s.setsockopt(SOL_SOCKET, SO_LINGER, _LINGER_RESET)
            s.close()
            if code == errno_mod.EADDRNOTAVAIL:  # out of local ports: wait for some to free up
                todo.append((port, attempt))
                break
            answered(port, attempt, code, rtt)
        if first_rtt is not None:  # immediate answers teach the timing engine once per burst
            timing.observe(first_rtt)
            win.size = min(float(win.cap), win.size + n_refused)

    def expire(now: float) -> None:
        limit = timing.timeout
        while launched:
            t0, fd, port = launched[0]
            entry = inflight.get(fd)
            if entry is None or entry[1] != port or entry[3] != t0:
                launched.popleft()  # answered already (the fd may be reused)
                continue
            if now - t0 < limit:
                break
            launched.popleft()
            s, _port, attempt, _t0 = inflight.pop(fd)
            loop.remove_writer(fd)
            s.close()
            if attempt <= retries:
                stats["retries"] += 1
                todo.append((port, attempt + 1))
            else:
                results[port] = ("filtered", "no-response", None, attempt)

    cut = False
    while todo or inflight:
        launch_burst()
        await asyncio.sleep(0)  # the writers of answers already in run now, before any expiry
        if progress is not None:
            progress(len(results), total)
        now = time.perf_counter()
        if stop_at is not None and now >= stop_at:
            cut = True
            break
        expire(now)
        if not inflight or (todo and len(inflight) < win.allowed):
            continue
        woke.clear()
        wait = (launched[0][0] + timing.timeout - now) if launched else timing.timeout
        if stop_at is not None:
            wait = min(wait, stop_at - now)
        if wait > 0:
            try:
                await asyncio.wait_for(woke.wait(), timeout=wait)
            except asyncio.TimeoutError:
                pass

    if cut:
        for fd, (s, port, attempt, _t0) in list(inflight.items()):
            loop.remove_writer(fd)
            s.close()
            results[port] = ("filtered", "no-response", None, attempt)
        inflight.clear()
        while todo:
            port, attempt = todo.popleft()
            results[port] = ("filtered", "no-response", None, max(1, attempt - 1))
    if progress is not None:
        progress(len(results), total)
    ordered = []
    for p in sorted(results):
        state, reason, rtt, tries = results[p]
        ordered.append(PortResult(p, state, reason, rtt, tries,
                                  service_name(p) if names and state == "open" else None))
    return ScanResult(host=host, address=address, family=4 if family == socket.AF_INET else 6,
                      ports=tuple(ordered), seconds=time.perf_counter() - started, srtt=timing.srtt,
                      timeout=timing.timeout, window=win.cap, retries=stats["retries"], cut_short=cut)


SOL_SOCKET, SO_ERROR, SO_LINGER = socket.SOL_SOCKET, socket.SO_ERROR, socket.SO_LINGER
_LINGER_RESET = struct.pack("ii", 1, 0)  # struct linger {l_onoff=1, l_linger=0}: close with a reset
