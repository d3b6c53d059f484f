"""The probe of portdoctor.probe on an asyncio loop, for thousands of targets in one process.

Same resolution (getaddrinfo order, deduplicated), same classification of states and errnos
(the tables and helpers of portdoctor.probe are imported, not copied), same "accepted then
reset" settle window; only the waiting is done by the event loop instead of poll(), so one
thread can hold thousands of connects in flight. An optional HTTP check runs on the
connection that opened.
"""

from __future__ import annotations

import asyncio
import errno as errno_mod
import functools
import ipaddress
import socket
import time
from concurrent.futures import Executor
from dataclasses import dataclass

from portdoctor.model import ProbeResult, State, Target
from portdoctor.monitor.config import HttpCheck
# shared with the blocking probe so both classify alike (private there: see the report)
from portdoctor.probe import (
    ERRNO_DETAIL,
    Attempt,
    errno_name,
    finish_failed,
    gai_text,
    merge_attempts,
    resolve,
)

_HOSTNAME = socket.gethostname()
# address literals resolve to themselves: remember them instead of calling getaddrinfo each time


@dataclass(frozen=True, slots=True)
class HttpOutcome:
    """What the HTTP check saw on an open connection."""

    status: int | None
    error: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None


def _wait_fd(loop: asyncio.AbstractEventLoop, fd: int, write: bool, timeout: float) -> asyncio.Future[bool]:
    """A future that becomes True when `fd` is ready, or False after `timeout` seconds.

    Cheaper than asyncio.wait_for (no task per wait), which matters at 500 probes a second.
    """
    fut: asyncio.Future[bool] = loop.create_future()
    add, remove = (loop.add_writer, loop.remove_writer) if write else (loop.add_reader, loop.remove_reader)

    def ready() -> None:
        remove(fd)
        timer.cancel()
        if not fut.done():
            fut.set_result(True)

    def expired() -> None:
        remove(fd)
        if not fut.done():
            fut.set_result(False)

    add(fd, ready)
    timer = loop.call_later(max(0.0, timeout), expired)

    def cancelled(f: asyncio.Future[bool]) -> None:
        if f.cancelled():
            remove(fd)
            timer.cancel()

    fut.add_done_callback(cancelled)
    return fut


async def _connect(loop: asyncio.AbstractEventLoop, family: int, sockaddr: tuple, timeout: float,
                   start: float) -> tuple[Attempt, socket.socket | None]:
    """Connect to one address; classify it as portdoctor.probe.connect_all does."""
    address, fam = sockaddr[0], (4 if family == socket.AF_INET else 6)
    try:
        s = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        return Attempt(address, fam, State.ERROR, errno_name(exc.errno or 0), 0.0,
                        ERRNO_DETAIL.get(exc.errno or 0, exc.strerror)), None
    s.setblocking(False)
    try:
        code = s.connect_ex(sockaddr)
        if code in (errno_mod.EINPROGRESS, errno_mod.EAGAIN):
            ready = await _wait_fd(loop, s.fileno(), True, timeout - (time.monotonic() - start))
            if not ready:
                s.close()
                return Attempt(address, fam, State.TIMEOUT, None, timeout, f"no answer within {timeout:g} s"), None
            code = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        elapsed = time.monotonic() - start
        if code == 0:
            return Attempt(address, fam, State.OPEN, None, elapsed), s
        s.close()
        return finish_failed(address, fam, code, elapsed), None
    except BaseException:
        s.close()
        raise


async def _settle(loop: asyncio.AbstractEventLoop, opened: list[tuple[int, socket.socket]],
                  attempts: list[Attempt]) -> None:
    """portdoctor.probe._settle on the loop: an accepted connection reset at once is an error."""
    window = min(0.5, max(0.02, 2 * max(attempts[i].seconds for i, _s in opened)))

    async def watch(i: int, s: socket.socket) -> None:
        if not await _wait_fd(loop, s.fileno(), False, window):
            return
        r = attempts[i]
        try:
            data = s.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError as exc:
            attempts[i] = Attempt(r.address, r.family, State.ERROR, errno_name(exc.errno or 0), r.seconds,
                                   ERRNO_DETAIL.get(exc.errno or 0, exc.strerror))
            return
        if not data:
            attempts[i] = Attempt(r.address, r.family, State.OPEN, None, r.seconds,
                                   "accepted, then closed by the server at once")

    if len(opened) == 1:
        await watch(*opened[0])
    else:
        await asyncio.gather(*(watch(i, s) for i, s in opened))


@functools.lru_cache(maxsize=16384)  # a pure function of a literal address: no resolver involved
def _literal_addresses(host: str, port: int) -> tuple[tuple[int, tuple], ...]:
    return tuple(resolve(host, port))


async def _resolve(loop: asyncio.AbstractEventLoop, target: Target, timeout: float,
                   executor: Executor | None) -> list[tuple[int, tuple]] | str:
    """Addresses of the target, or the text of a DNS failure (as portdoctor.probe words it)."""
    try:
        ipaddress.ip_address(target.host.split("%")[0])
        literal = True
    except ValueError:
        literal = False
    try:
        if literal:
            return list(_literal_addresses(target.host, target.port))
        wait = max(timeout, 2.0)
        addrs = await asyncio.wait_for(loop.run_in_executor(executor, resolve, target.host, target.port), wait)
    except asyncio.TimeoutError:
        return f"the resolver did not answer within {max(timeout, 2.0):g} s"
    except socket.gaierror as exc:
        return gai_text(exc)
    except UnicodeError:
        return "the name is not valid"
    if not addrs:
        return "the name has no IPv4 or IPv6 address"
    return addrs


async def aprobe(target: Target, timeout: float, http: HttpCheck | None = None,
                 executor: Executor | None = None) -> tuple[ProbeResult, HttpOutcome | None]:
    """Probe `target` once on the running loop: the ProbeResult portdoctor.probe.probe would
    give, and the HTTP check's outcome when `http` is set and an address accepted."""
    loop = asyncio.get_running_loop()
    addrs = await _resolve(loop, target, timeout, executor)
    if isinstance(addrs, str):
        return ProbeResult(target, State.DNS_ERROR, (), timeout, dns_error=addrs), None
    start = time.monotonic()
    if len(addrs) == 1:
        outcomes = [await _connect(loop, addrs[0][0], addrs[0][1], timeout, start)]
    else:
        outcomes = list(await asyncio.gather(*(_connect(loop, f, sa, timeout, start) for f, sa in addrs)))
    attempts = [a for a, _s in outcomes]
    opened = [(i, s) for i, (_a, s) in enumerate(outcomes) if s is not None]
    http_out: HttpOutcome | None = None
    try:
        if opened and http is not None:
            _i, first = opened.pop(0)
            for _i, other in opened:
                other.close()
            opened = []
            http_out = await _http(loop, first, target, http, timeout - (time.monotonic() - start))
        elif opened:
            await _settle(loop, opened, attempts)
    finally:
        for _i, s in opened:
            s.close()
    merged = tuple(merge_attempts([a]) for a in attempts)
    top = State.OPEN if any(a.state is State.OPEN for a in merged) else merged[0].state
    return ProbeResult(target, top, merged, timeout, source=_HOSTNAME), http_out


async def _http(loop: asyncio.AbstractEventLoop, sock: socket.socket, target: Target, check: HttpCheck,
                budget: float) -> HttpOutcome:
    """Send one HTTP/1.1 request on the open socket; read the status line."""
    start = time.monotonic()
    ssl_ctx = None
    if check.tls:
        import ssl

        ssl_ctx = ssl.create_default_context()
        if not check.verify:
            ssl_ctx.check_hostname = False
            ssl_ctx.verify_mode = ssl.CERT_NONE
    host = check.host_header or (f"[{target.host}]" if ":" in target.host else target.host)
    default_port = 443 if check.tls else 80
    if target.port != default_port and not check.host_header:
        host = f"{host}:{target.port}"
    request = (f"{check.method} {check.path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portdoctor-watch\r\n"
               "Accept: */*\r\nConnection: close\r\n\r\n").encode()
    writer = None
    try:
        async with asyncio.timeout(max(0.01, budget)):
            reader, writer = await asyncio.open_connection(
                sock=sock, ssl=ssl_ctx, server_hostname=target.host if ssl_ctx else None)
            writer.write(request)
            line = await reader.readline()
    except TimeoutError:
        return HttpOutcome(None, f"no HTTP answer within {budget:g} s", time.monotonic() - start)
    except OSError as exc:
        what = errno_name(exc.errno) if exc.errno else type(exc).__name__
        return HttpOutcome(None, f"HTTP request failed: {what}: {exc.strerror or exc}", time.monotonic() - start)
    except Exception as exc:  # ssl errors, a broken stream: the check failed, say how
        return HttpOutcome(None, f"HTTP request failed: {type(exc).__name__}: {exc}", time.monotonic() - start)
    finally:
        if writer is not None:
            writer.transport.abort()
        else:
            sock.close()
    seconds = time.monotonic() - start
    parts = line.decode("latin-1").split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        shown = line[:60].decode("latin-1").strip() or "nothing"
        return HttpOutcome(None, f"not an HTTP answer: {shown!r}", seconds)
    status = int(parts[1])
    if not check.passes(status):
        reason = " ".join(parts[2:])
        return HttpOutcome(status, f"HTTP status {status}" + (f" ({reason})" if reason else ""), seconds)
    return HttpOutcome(status, None, seconds)
