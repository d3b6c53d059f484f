"""The client's view: resolve a target, connect to each address, classify what happened.

Every resolved address is tried at once (non-blocking connects polled together), so a probe
costs the slowest address, not their sum, while the result keeps the order getaddrinfo gave,
which is the order a client tries them.
"""

from __future__ import annotations

import errno as errno_mod
import ipaddress
import select
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace

from portdoctor.model import AddressResult, ProbeResult, State, Target

DEFAULT_TIMEOUT = 3.0  # an absent on-link host needs ~3 s of ARP before EHOSTUNREACH
# Accepted connections are watched this long at least for a close or reset by the server (a
# forwarder whose backend refused): a fork, a tunnel's round trip, a userland proxy's connect.
SETTLE_MIN = 0.1
RESET_AT_ONCE = "the connection was accepted and then reset at once"  # ERRNO_DETAIL[ECONNRESET]

# errno -> state, for a connect that failed with that errno
_ERRNO_STATE: dict[int, State] = {
    errno_mod.ECONNREFUSED: State.REFUSED,
    errno_mod.ETIMEDOUT: State.TIMEOUT,
    errno_mod.EHOSTUNREACH: State.UNREACHABLE,
    errno_mod.ENETUNREACH: State.UNREACHABLE,
    errno_mod.EHOSTDOWN: State.UNREACHABLE,
    errno_mod.ENETDOWN: State.UNREACHABLE,
    # Linux reports an ICMPv6 "administratively prohibited" answer (ip6tables REJECT
    # --reject-with adm-prohibited, the IPv6 twin of icmp-host-prohibited) as EACCES
    errno_mod.EACCES: State.UNREACHABLE,
}

# Plain words for errnos a connect can end with, beyond what the state says.
ERRNO_DETAIL: dict[int, str] = {
    errno_mod.EPERM: "this host refused to send the packet (a local OUTPUT firewall rule)",
    errno_mod.EACCES: "an ICMPv6 'administratively prohibited' answer: a firewall rejects the connection "
                      "(on the server, on the way, or on this host)",
    errno_mod.EADDRNOTAVAIL: "no local address can reach this destination",
    errno_mod.ECONNRESET: "the connection was accepted and then reset at once",
    errno_mod.EAFNOSUPPORT: "this host has no support for the address family",
}

# The detail of an address that accepted and then closed the connection within the settle
# window: open to the kernel, but nothing serves there yet (a proxy or published port whose
# backend is not up). `wait` and `guard` do not count it as ready.
CLOSED_AT_ONCE = "accepted, then closed by the server at once"


@dataclass
class Attempt:
    address: str
    family: int
    state: State
    errno: str | None
    seconds: float
    detail: str | None = None


def resolve(host: str, port: int) -> list[tuple[int, tuple]]:
    """Return (family, sockaddr) for each address of host, in getaddrinfo order, deduplicated.

    Uses the same call as Python's socket.create_connection (and, in effect, curl and most
    clients): AF_UNSPEC, SOCK_STREAM, no flags.
    """
    infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    seen: set[tuple] = set()
    out: list[tuple[int, tuple]] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        key = (family, sockaddr[0], sockaddr[3] if family == socket.AF_INET6 else 0)
        if key in seen:
            continue
        seen.add(key)
        out.append((family, sockaddr))
    return out


def errno_number(name: str | None, platform: str | None = None) -> int | None:
    """The number errno `name` has on `platform` (a sys.platform value; default: this machine).

    >>> errno_number("ECONNREFUSED", "darwin"), errno_number("ETIMEDOUT", "freebsd14"), errno_number("ECONNREFUSED", "linux")
    (61, 60, 111)
    """
    if not name:
        return None
    if platform is None or platform == sys.platform:
        value = getattr(errno_mod, name, None)
        return value if isinstance(value, int) else None
    from portdoctor.explain.errnos import BSD, ERRNO, LINUX, MACOS, WINDOWS

    table = (MACOS if platform == "darwin" else LINUX if platform.startswith("linux") else
             WINDOWS if platform in ("win32", "cygwin") else BSD)
    return ERRNO[table].get(name)


def errno_name(code: int) -> str:
    return errno_mod.errorcode.get(code, str(code))


def connect_all(addrs: list[tuple[int, tuple]], timeout: float, settle: float | None = None) -> list[Attempt]:
    """Connect to every address at once; classify each outcome within `timeout` seconds.

    Accepted connections are then watched for `settle` seconds (None: about two round trips,
    at least SETTLE_MIN) for a server that closes or resets them at once."""
    start = time.monotonic()
    deadline = start + timeout
    socks: dict[int, tuple[int, socket.socket]] = {}
    results: dict[int, Attempt] = {}
    poller = select.poll()

    def label(i: int) -> tuple[str, int]:
        family, sockaddr = addrs[i]
        return sockaddr[0], (4 if family == socket.AF_INET else 6)

    for i, (family, sockaddr) in enumerate(addrs):
        address, fam = label(i)
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            results[i] = Attempt(address, fam, State.ERROR, errno_name(exc.errno or 0), 0.0,
                                  ERRNO_DETAIL.get(exc.errno or 0, exc.strerror))
            continue
        s.setblocking(False)
        code = s.connect_ex(sockaddr)
        if code in (0, errno_mod.EINPROGRESS, errno_mod.EAGAIN):
            socks[s.fileno()] = (i, s)
            poller.register(s.fileno(), select.POLLOUT | select.POLLERR | select.POLLHUP)
        else:
            results[i] = finish_failed(address, fam, code, time.monotonic() - start)
            s.close()

    opened: dict[int, tuple[socket.socket, float]] = {}
    while socks:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        for fd, _events in poller.poll(remaining * 1000):
            i, s = socks.pop(fd)
            poller.unregister(fd)
            elapsed = time.monotonic() - start
            address, fam = label(i)
            code = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code == 0:
                opened[i] = (s, elapsed)
                results[i] = Attempt(address, fam, State.OPEN, None, elapsed)
            else:
                results[i] = finish_failed(address, fam, code, elapsed)
                s.close()
    for i, s in socks.values():  # no answer in time
        address, fam = label(i)
        results[i] = Attempt(address, fam, State.TIMEOUT, None, timeout,
                              f"no answer within {timeout:g} s")
        s.close()

    _settle(opened, results, settle)
    return [results[i] for i in range(len(addrs))]


def finish_failed(address: str, fam: int, code: int, elapsed: float) -> Attempt:
    state = _ERRNO_STATE.get(code, State.ERROR)
    return Attempt(address, fam, state, errno_name(code), elapsed, ERRNO_DETAIL.get(code))


def _settle(opened: dict[int, tuple[socket.socket, float]], results: dict[int, Attempt],
            settle: float | None = None) -> None:
    """Watch accepted connections for about two round trips (or `settle` seconds): a server whose
    accept queue overflowed with tcp_abort_on_overflow=1 resets a connection the client thought
    open, and a forwarder whose backend refused closes or resets it."""
    if not opened:
        return
    window = settle if settle is not None else min(0.5, max(SETTLE_MIN, 2 * max(t for _s, t in opened.values())))
    poller = select.poll()
    by_fd = {s.fileno(): (i, s) for i, (s, _t) in opened.items()}
    for fd in by_fd:
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    deadline = time.monotonic() + window
    pending = dict(by_fd)
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        for fd, _ev in poller.poll(remaining * 1000):
            i, s = pending.pop(fd)
            poller.unregister(fd)
            try:
                data = s.recv(1, socket.MSG_PEEK)
            except OSError as exc:
                r = results[i]
                results[i] = Attempt(r.address, r.family, State.ERROR, errno_name(exc.errno or 0),
                                      r.seconds, ERRNO_DETAIL.get(exc.errno or 0, exc.strerror))
                continue
            if not data:
                r = results[i]
                results[i] = Attempt(r.address, r.family, State.OPEN, None, r.seconds, CLOSED_AT_ONCE)
    for s, _t in opened.values():
        s.close()


class ResolverTimeout(Exception):
    """getaddrinfo did not return in time (a resolver that drops queries)."""


def resolve_within(host: str, port: int, timeout: float) -> list[tuple[int, tuple]]:
    """`resolve`, but give up after `timeout` seconds: glibc alone may wait 10 s or more per
    nameserver. Address literals need no resolver and take the direct path."""
    try:
        ipaddress.ip_address(host.split("%")[0])
        return resolve(host, port)
    except ValueError:
        pass
    box: dict[str, object] = {}

    def work() -> None:
        try:
            box["value"] = resolve(host, port)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    worker = threading.Thread(target=work, name="portdoctor-resolve", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise ResolverTimeout(f"the resolver did not answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def probe(target: Target, timeout: float = DEFAULT_TIMEOUT, attempts: int = 1,
          interval: float = 0.0, settle: float | None = None) -> ProbeResult:
    """Resolve `target` and connect to each address `attempts` times; classify the outcome.

    `settle`: how long an accepted connection is watched for a close or reset by the server
    (None: about two round trips, at least SETTLE_MIN seconds)."""
    try:
        addrs = resolve_within(target.host, target.port, max(timeout, 2.0))
    except ResolverTimeout as exc:
        return ProbeResult(target, State.DNS_ERROR, (), timeout, dns_error=str(exc))
    except socket.gaierror as exc:
        return ProbeResult(target, State.DNS_ERROR, (), timeout, dns_error=gai_text(exc))
    except UnicodeError:
        return ProbeResult(target, State.DNS_ERROR, (), timeout, dns_error="the name is not valid")
    if not addrs:
        return ProbeResult(target, State.DNS_ERROR, (), timeout,
                           dns_error="the name has no IPv4 or IPv6 address")

    rounds: list[list[Attempt]] = []
    for n in range(max(1, attempts)):
        if n and interval:
            time.sleep(interval)
        rounds.append(connect_all(addrs, timeout, settle))

    merged = tuple(count_drops(merge_attempts([r[i] for r in rounds]), [r[i] for r in rounds])
                   for i in range(len(addrs)))
    if any(a.state is State.OPEN for a in merged):
        top = State.OPEN
    else:
        top = merged[0].state
    return ProbeResult(target, top, merged, timeout, source=socket.gethostname())


def merge_attempts(tries: list[Attempt]) -> AddressResult:
    """Fold several attempts at one address into one result with per-state counts."""
    counts = Counter(t.state.value for t in tries)
    failures = [t for t in tries if t.state is not State.OPEN]
    if failures:
        worst = Counter(t.state for t in failures).most_common(1)[0][0]
        pick = next(t for t in reversed(failures) if t.state is worst)
    else:
        pick = tries[-1]
    seconds = sorted(t.seconds for t in tries)[len(tries) // 2]
    return AddressResult(
        address=pick.address,
        family=pick.family,
        state=pick.state,
        errno=pick.errno,
        seconds=seconds,
        attempts=dict(counts) if len(tries) > 1 else {},
        detail=pick.detail,
        errno_number=errno_number(pick.errno),
    )


def count_drops(merged: AddressResult, tries: list[Attempt]) -> AddressResult:
    """`merged` with its detail saying in how many of several attempts the server accepted and
    then closed or reset the connection at once (every time, or some)."""
    drops = [t.detail for t in tries if t.detail in (CLOSED_AT_ONCE, RESET_AT_ONCE)]
    if len(tries) < 2 or not drops:
        return merged
    return replace(merged, detail=f"{drops[0]} ({len(drops)} of {len(tries)} attempts)")


def dropped_at_once(a: AddressResult) -> bool:
    """Whether the server accepted the connection to this address and then closed or reset it at
    once (in any attempt): a forwarder whose backend refused, or a server turning clients away."""
    d = a.detail or ""
    return d.startswith(CLOSED_AT_ONCE) or d.startswith(RESET_AT_ONCE)


def accepted_then_closed(result: ProbeResult) -> list[AddressResult]:
    """The addresses of a probe whose connections were accepted and then closed or reset at once.

    A port like that is not ready (`wait`) and not ok (`diagnose`), although connect() succeeded.

    >>> from portdoctor.model import Target
    >>> r = ProbeResult(Target(":1", "127.0.0.1", 1), State.OPEN,
    ...                 (AddressResult("127.0.0.1", 4, State.OPEN, None, 0.001, detail=CLOSED_AT_ONCE),), 1.0)
    >>> [a.address for a in accepted_then_closed(r)]
    ['127.0.0.1']
    """
    return [a for a in result.addresses if dropped_at_once(a)]


def gai_text(exc: socket.gaierror) -> str:
    code = exc.args[0] if exc.args else None
    names = {
        getattr(socket, "EAI_NONAME", -2): "the name does not exist (NXDOMAIN or not in /etc/hosts)",
        getattr(socket, "EAI_AGAIN", -3): "the resolver did not answer (temporary failure in name resolution)",
        getattr(socket, "EAI_FAIL", -4): "the resolver failed permanently",
        getattr(socket, "EAI_NODATA", -5): "the name exists but has no address",
    }
    return names.get(code, str(exc.args[-1] if exc.args else exc))


STATE_MEANING: dict[State, str] = {
    State.OPEN: "open: the connection was accepted",
    State.REFUSED: "refused: the host answered with a reset or ICMP port-unreachable; nothing accepted on that port",
    State.TIMEOUT: "timeout: no answer at all (a silent drop by a firewall, a host that is down, or a full accept queue)",
    State.UNREACHABLE: "unreachable: the network or a router said the host cannot be reached (ICMP unreachable, no route, or no ARP answer)",
    State.DNS_ERROR: "dns_error: the name did not resolve to any address",
    State.ERROR: "error: the connection failed in a way that is not a refusal",
}


def probe_notes(result: ProbeResult) -> list[str]:
    """Remarks a reader needs beyond the per-address states: families that disagree, intermittent answers."""
    notes = []
    states = {a.state for a in result.addresses}
    fams = {a.family: a for a in result.addresses}
    if len(states) > 1 and 4 in fams and 6 in fams:
        good = [a for a in result.addresses if a.state is State.OPEN]
        bad = [a for a in result.addresses if a.state is not State.OPEN]
        if good and bad:
            g, b = good[0], bad[0]
            first = result.addresses[0]
            order = ("a client tries " + first.address + " first")
            notes.append(
                f"{result.target.host} resolves to {len(result.addresses)} addresses and they disagree: "
                f"{g.address} accepts, {b.address} is {b.state.value}. {order.capitalize()}; "
                + ("clients that do not fall back to the next address fail (Node before 20, many "
                   "database drivers)." if first.state is not State.OPEN else
                   "clients that only use the other family fail.")
                + f" Make the service listen on both families, or connect to {g.address} explicitly."
            )
    for a in result.addresses:
        if a.attempts and len(a.attempts) > 1:
            notes.append(
                f"{a.address} answered inconsistently ("
                + ", ".join(f"{k} {v}" for k, v in sorted(a.attempts.items()))
                + "): an intermittent failure often means an overloaded server (full accept queue) "
                "or a load balancer with a dead backend."
            )
    return notes
