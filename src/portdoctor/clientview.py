"""The client's wider view of a refused remote target: what answers on the ports around it, and who
sent the refusal. Added to a ProbeResult (`nearby`, `refusal`) by `diagnose` and `probe`, so the
checks judge it as part of what the client saw; nothing here reads the host's own facts.

Only for a target that is not this host (a local target is diagnosed from its listeners), and
bounded in time: the short scan stops after `budget` seconds, whatever did not answer by then is
left out.
"""

from __future__ import annotations

import socket
import time
from dataclasses import replace

from portdoctor.model import NearbyPort, NearbyScan, ProbeResult, State
from portdoctor.refusal import is_this_host

NEIGHBOURS = 3  # ports on each side of the refused one
# ports an HTTP service often moves to when its usual one is taken
HTTP_PORTS = (80, 443, 3000, 5000, 8000, 8008, 8080, 8081, 8443, 8888)
MAX_PORTS = 32
BUDGET = 0.8  # seconds for the short scan and its identification together


def nearby_ports(port: int, service: str | None = None) -> tuple[int, ...]:
    """Ports worth a look when `port` refuses: its neighbours, the usual ports of the service
    expected there (by name, else by the port), and HTTP's usual ports when it is an HTTP port.

    >>> nearby_ports(8080)[:6]
    (8079, 8081, 8078, 8082, 8077, 8083)
    >>> 6380 in nearby_ports(6379)
    True
    """
    from portdoctor import services

    out: dict[int, None] = {}
    for d in range(1, NEIGHBOURS + 1):
        for p in (port - d, port + d):
            if 1 <= p <= 65535:
                out[p] = None
    infos = []
    if service:
        info = services.by_name(service)
        if info is not None:
            infos.append(info)
    infos += services.by_port(port)
    for info in infos:
        for p in info.ports:
            out[p] = None
    if port in HTTP_PORTS or any(i.name in ("http", "https", "nginx", "apache", "node", "python") for i in infos):
        for p in HTTP_PORTS:
            out[p] = None
    out.pop(port, None)
    return tuple(out)[:MAX_PORTS]


def identify(address: str, port: int, timeout: float) -> str | None:
    """What a port speaks, from its first bytes: a banner it sends unasked (SSH, SMTP, FTP,
    MySQL), else its answer to an HTTP HEAD request (HTTP, or Redis' error for an unknown command)."""
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            s.settimeout(max(0.01, min(0.15, (deadline - time.monotonic()) / 2)))
            try:
                first = s.recv(128)
            except (socket.timeout, OSError):
                first = b""
            if first:
                return _banner(first)
            left = deadline - time.monotonic()
            if left <= 0.01:
                return None
            s.settimeout(left)
            s.sendall(b"HEAD / HTTP/1.0\r\nHost: " + address.encode() + b"\r\n\r\n")
            try:
                reply = s.recv(128)
            except (socket.timeout, OSError):
                return None
            return _banner(reply)
    except OSError:
        return None


def _banner(data: bytes) -> str | None:
    if data.startswith(b"HTTP/"):
        return "HTTP"
    if data.startswith(b"SSH-"):
        return "SSH"
    if data.startswith(b"-ERR") or data.startswith(b"-DENIED") or data.startswith(b"+PONG"):
        return "Redis"
    if data[:3] in (b"220", b"221") and b"FTP" in data.upper():
        return "FTP"
    if data[:3] == b"220":
        return "SMTP"
    if len(data) > 5 and data[4] == 10:  # MySQL/MariaDB handshake: protocol version 10
        return "MySQL"
    if data[:1] == b"\x15" or data[:1] == b"\x16":
        return "TLS"
    return None


def short_scan(address: str, port: int, service: str | None = None, budget: float = BUDGET) -> NearbyScan:
    """Scan the ports around a refused `port` of `address` within `budget` seconds and say what
    the open ones speak."""
    import asyncio

    from portdoctor.scan import Timing, service_name, sweep

    ports = nearby_ports(port, service)
    started = time.perf_counter()
    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    sockaddr = (address, 0, 0, 0) if fam == socket.AF_INET6 else (address, 0)
    loop = asyncio.new_event_loop()
    try:
        result = loop.run_until_complete(sweep(address, fam, sockaddr, ports, timing=Timing(initial=budget / 3),
                                               deadline=budget * 0.6, names=False))
    finally:
        loop.close()
    opened = [p for p in result.ports if p.state == "open"]
    left = max(0.05, budget - (time.perf_counter() - started))
    speaks: list[str | None] = [None] * len(opened)
    if opened:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(8, len(opened))) as pool:
            speaks = list(pool.map(lambda p: identify(address, p.port, left), opened))
    found = tuple(NearbyPort(p.port, p.state, p.reason, service_name(p.port), s) for p, s in zip(opened, speaks))
    return NearbyScan(address, port, ports, found, time.perf_counter() - started, result.cut_short)


def widen(probe: ProbeResult, service: str | None = None, budget: float = BUDGET) -> ProbeResult:
    """`probe` with `nearby` and `refusal` added when its first refused address is remote; as is
    otherwise. Costs at most `budget` for the scan plus a few round trips."""
    if probe.state is not State.REFUSED:
        return probe
    refused = next((a for a in probe.addresses if a.state is State.REFUSED), None)
    if refused is None or is_this_host(refused.address.split("%")[0]):
        return probe
    from portdoctor.refusal import who_refused

    address, port = refused.address, probe.target.port
    nearby = short_scan(address, port, service, budget)
    rtt = max(refused.seconds, 0.001)
    # the target's own packets to compare the refusal with: open ports' SYN-ACKs, else a
    # neighbour's reset when it echoes the TOS mark (its TCP stack, not a rule)
    refs = tuple((p.port, p.state) for p in nearby.open) + tuple(
        (p, "closed") for p in nearby.scanned[:2] if p not in {q.port for q in nearby.open})
    refusal = who_refused(address, port, min(1.0, max(0.2, 20 * rtt)), refs)
    return replace(probe, nearby=nearby, refusal=refusal)
