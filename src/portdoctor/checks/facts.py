"""Questions checks ask about the failing clients: is the target this host, which of its
addresses failed, which local address do the --from clients reach.

The host-wide questions (which listeners take an address, who owns them) live in
`portdoctor.hostview`, the address predicates in `portdoctor.addresses`; they are re-exported
here so a check imports one module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from portdoctor.addresses import ip, is_loopback, same_address, unmapped
from portdoctor.hostview import accepting, describe, is_local, listeners_on_port, owners, takes
from portdoctor.model import Listener, Scope, State
from portdoctor.snapshot import Snapshot
if TYPE_CHECKING:
    from portdoctor.checks import Context


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
        if r.source and same_address(r.destination, ctx.from_addr):
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


__all__ = ["accepting", "addresses_to_check", "client_address", "describe", "failed_addresses", "ip",
           "is_local", "is_loopback", "listeners_on_port", "owners", "scope_word", "takes", "target_is_local",
           "unmapped"]
