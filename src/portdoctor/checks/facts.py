"""Questions checks ask of a snapshot: which listeners accept an address, is an address ours.

Pure helpers over Snapshot data, shared by the checks so each check states its own logic only.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from portdoctor.model import Listener, Process, Scope, Snapshot, State

if TYPE_CHECKING:
    from portdoctor.checks import Context


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Parse an address (IPv6 zone ids dropped), or None when it is not one."""
    try:
        return ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None


def unmapped(text: str) -> str:
    """::ffff:1.2.3.4 -> 1.2.3.4; anything else unchanged."""
    a = ip(text)
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return str(a.ipv4_mapped)
    return str(a) if a is not None else text


def is_loopback(text: str) -> bool:
    """127.0.0.0/8, ::1 and ::ffff:127.x."""
    a = ip(unmapped(text))
    return bool(a is not None and a.is_loopback)


def is_local(snap: Snapshot, address: str) -> bool:
    """True when `address` belongs to this host (an interface address, or loopback)."""
    address = unmapped(address)
    if is_loopback(address):
        return True
    if any(unmapped(a.address) == address for a in snap.addresses):
        return True
    return any(r.destination == address and r.kind == "local" for r in snap.routes)


def listeners_on_port(snap: Snapshot, port: int) -> list[Listener]:
    """Every listening socket on `port`, whatever its address."""
    return [sock for sock in snap.listeners if sock.port == port]


def accepts(sock: Listener, address: str) -> bool:
    """Whether a socket listening on sock.address accepts a connection to `address`.

    IPv4 connections reach 0.0.0.0 and the exact address; on Linux an IPv6 `::` socket
    without IPV6_V6ONLY also takes IPv4 (as ::ffff:a.b.c.d). IPv6 connections reach `::`
    and the exact address.
    """
    dest = ip(unmapped(address))
    if dest is None:
        return False
    bound = unmapped(sock.address)
    if isinstance(dest, ipaddress.IPv4Address):
        if sock.family == 4:
            return bound in ("0.0.0.0", str(dest))
        if sock.address == "::":
            return sock.v6only is not True
        return bound == str(dest)  # ::ffff:a.b.c.d bound socket
    if sock.family != 6:
        return False
    return sock.address == "::" or ip(sock.address) == dest


def accepting(snap: Snapshot, address: str, port: int) -> list[Listener]:
    """Listeners on `port` that accept connections to `address`."""
    return [s for s in listeners_on_port(snap, port) if accepts(s, address)]


def owners(snap: Snapshot, sock: Listener) -> list[Process]:
    """The processes holding a listening socket (those the snapshot knows)."""
    return [snap.processes[p] for p in sock.pids if p in snap.processes]


def describe(snap: Snapshot, sock: Listener) -> str:
    """One listener as an evidence line: 'LISTEN 127.0.0.1:6379 (redis-server, pid 42, user redis)'."""
    procs = owners(snap, sock)
    who = ", ".join(f"{p.name}, pid {p.pid}" + (f", user {p.user}" if p.user else "") for p in procs)
    if not who:
        who = "owner unknown" if not sock.pids else ", ".join(f"pid {p}" for p in sock.pids)
    extra = ""
    if sock.family == 6 and sock.address == "::":
        extra = ", IPv6 only" if sock.v6only else (", IPv4 too" if sock.v6only is False else "")
    return f"LISTEN {sock.endpoint} backlog {sock.backlog}, queued {sock.queue}{extra} ({who})"


def target_is_local(snap: Snapshot, ctx: Context) -> bool:
    """Whether the target is this host: `:port`, or a resolved address that is ours."""
    if ctx.target.is_this_host:
        return True
    addrs = [a.address for a in ctx.probe.addresses]
    if not addrs:
        literal = ip(ctx.target.host)
        return literal is not None and is_local(snap, str(literal))
    return any(is_local(snap, a) for a in addrs)


def failed_addresses(ctx: Context) -> list[str]:
    """Probed addresses a client could not use (not open), in the order a client tries them."""
    return [a.address for a in ctx.probe.addresses if a.state is not State.OPEN]


def client_address(snap: Snapshot, ctx: Context) -> str | None:
    """The local address that clients from --from reach: the route's source toward them."""
    if ctx.from_addr is None:
        return None
    if is_local(snap, ctx.from_addr):
        return None
    for r in snap.routes:
        if r.destination == ctx.from_addr and r.source:
            return r.source
    return None


def addresses_to_check(snap: Snapshot, ctx: Context) -> list[str]:
    """The local addresses the failing clients use: the probed ones that failed, plus the
    address that answers --from clients (a loopback target says nothing of them)."""
    out = failed_addresses(ctx)
    via = client_address(snap, ctx)
    if via and via not in out:
        out.append(via)
    return out


def scope_word(sock: Listener) -> str:
    """'loopback only', 'every address' or 'only <address>' for a listener."""
    if sock.scope is Scope.LOOPBACK:
        return f"loopback only ({sock.address})"
    if sock.scope is Scope.ALL:
        return "every IPv4 address" if sock.family == 4 else (
            "every IPv6 address" if sock.v6only else "every address")
    return f"only {sock.address}"
