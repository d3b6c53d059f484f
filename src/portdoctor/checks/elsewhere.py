"""port_mapping when the port is served, but in another network namespace of this machine: a
server started with `ip netns exec` in a namespace of its own, or in a container its engine does
not list, listens where this namespace's clients never arrive.

Facts come from snap.namespaces (collectors/netns.py). Containers the engine knows are the
mapping check's (it names the container and the `-p` to add); this check speaks of the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from portdoctor.addresses import endpoint
from portdoctor.checks import facts
from portdoctor.hostfacts import ForeignListener
from portdoctor.hostview import all_containers
from portdoctor.model import Cause, Finding, Fix, Severity, State
from portdoctor.snapshot import Snapshot

if TYPE_CHECKING:
    from portdoctor.checks import Context

CHECK = "namespaces"


def _known_container(snap: Snapshot, x: ForeignListener) -> bool:
    ids = [c.id for c in all_containers(snap) if c.id]
    return bool(x.container) and any(x.container.startswith(i) or i.startswith(x.container[:12]) for i in ids)


def _where(x: ForeignListener) -> str:
    if x.name:
        return f"network namespace {x.name}"
    if x.container:
        return f"the network namespace of container {x.container[:12]}"
    return f"network namespace net:[{x.netns}]"


def check_other_namespaces(snap: Snapshot, ctx: Context) -> list[Finding]:
    """Nothing listens on the port here, but a process in another network namespace does."""
    ns = snap.namespaces
    if ns is None or not ns.listeners or ctx.probe.state is State.OPEN:
        return []
    port = ctx.target.port
    if not facts.target_is_local(snap, ctx) or facts.listeners_on_port(snap, port):
        return []
    # A namespace with addresses of its own is a host on a network (another machine's stand-in, a pod,
    # the --from clients' own namespace): routing, NAT and the firewall decide whether it is reached,
    # and other checks follow those paths. A server in a namespace with no address but loopback, or in
    # a container its engine does not know, is one nobody outside can reach: that is this check's case.
    theirs = [x for x in ns.listeners if x.port == port and not _known_container(snap, x)
              and (not x.addresses or x.container)]
    if not theirs or _nat_sends_it_elsewhere(snap, ctx):
        return []
    first = theirs[0]
    who = ", ".join(f"{prog} (pid {pid})" for prog, pid in zip(first.programs, first.pids)) or "a process"
    summary = (f"Nothing listens on port {port} in this network namespace, but {who} listens on "
               f"{endpoint(first.address, port)} in {_where(first)} of this machine: connections to this "
               f"namespace's addresses never reach it.")
    evidence = [f"{_where(x)}: LISTEN {endpoint(x.address, x.port)}"
                + (f" ({', '.join(f'{p} pid {n}' for p, n in zip(x.programs, x.pids))})" if x.pids else "")
                for x in theirs[:4]]
    evidence.append(f"no socket listens on port {port} in this namespace")
    fixes: list[Fix] = []
    if first.container:
        fixes.append(Fix(f"publish the port from its container (`-p {port}:{port}` on docker/podman run, "
                         f"`ports:` in compose), or connect to the container's own address"))
    if first.name:
        fixes.append(Fix("run the client inside that namespace", f"ip netns exec {first.name} <client command>"))
        if first.address not in ("0.0.0.0", "::") and facts.is_loopback(first.address):
            fixes.append(Fix(f"it listens on {first.address} there, which only that namespace's own clients reach"))
    fixes.append(Fix(f"or start the server in this namespace (the one `portdoctor` ran in), or route or forward "
                     f"port {port} to the namespace that has it (a veth pair and its address, or a TCP forwarder)"))
    # a named namespace or a container is where an operator puts a server on purpose: strong evidence,
    # above the generic "nothing listens" (0.8); an anonymous namespace is only a lead
    weight = 0.9 if first.name or first.container else 0.6
    if len({x.netns for x in theirs}) > 1:
        # several namespaces serve the port: which one the client meant is a guess, though still
        # a better lead than "nothing listens" (0.8)
        weight = min(weight, 0.82)
        summary += f" ({len({x.netns for x in theirs})} namespaces listen on port {port}: which one is meant?)"
    return [Finding(Cause.PORT_MAPPING, CHECK, Severity.ERROR, summary, tuple(evidence), tuple(fixes), weight)]


def _nat_sends_it_elsewhere(snap: Snapshot, ctx: Context) -> bool:
    """Whether this namespace's NAT rewrites connections to the target: a DNATed port needs no
    listener here, so a listener in another namespace explains nothing (the firewall check follows
    the mapping to its backend)."""
    if snap.firewall is None:
        return False
    from portdoctor.checks.firewall.nat import redirected

    return bool(redirected(snap, ctx))
