"""What leads to a socket on this host, and who holds it: the facts layer that `diagnose`'s
checks and `ports` (and `audit`) both stand on.

Pure questions over a Snapshot, no judgement of a failing client: which listeners take an
address, which processes own them, which containers belong to this network namespace and which
engine process holds their published ports, which DNAT rules lead where, and whether a client on
another host could reach a listener once bind scope and firewall are combined (`Exposure`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from portdoctor import addresses
from portdoctor.hostfacts import Container
from portdoctor.model import InterfaceAddress, Listener, Process
from portdoctor.snapshot import Snapshot

if TYPE_CHECKING:
    from portdoctor.firewall.evaluate import Evaluator, FlowVerdict

# Engine processes that hold a published port open on the host side for a container.
HOLDERS = ("conmon", "docker-proxy", "rootlessport", "rootlessport-child", "slirp4netns", "pasta")
MAX_INTERFACES = 8


# --------------------------------------------------------------------------- listeners and owners


def is_local(snap: Snapshot, address: str) -> bool:
    """True when `address` belongs to this host (an interface address, or loopback)."""
    if addresses.is_loopback(address):
        return True
    if any(addresses.same_address(a.address, address) for a in snap.addresses):
        return True
    return any(r.kind == "local" and addresses.same_address(r.destination, address) for r in snap.routes)


def listeners_on_port(snap: Snapshot, port: int) -> list[Listener]:
    """Every listening socket on `port`, whatever its address."""
    return [sock for sock in snap.listeners if sock.port == port]


def takes(sock: Listener, address: str) -> bool:
    """Whether a listening socket takes a connection addressed to `address`."""
    return addresses.accepts(sock.address, sock.family, sock.v6only, address)


def accepting(snap: Snapshot, address: str, port: int) -> list[Listener]:
    """Listeners on `port` that accept connections to `address`."""
    return [s for s in listeners_on_port(snap, port) if takes(s, address)]


def owners(snap: Snapshot, sock: Listener) -> list[Process]:
    """The processes holding a listening socket (those the snapshot knows)."""
    return [snap.processes[p] for p in sock.pids if p in snap.processes]


def process_name(snap: Snapshot, pid: int) -> str:
    """The name a user knows a process by: argv[0]'s base name (as renamed), else the kernel's."""
    p = snap.processes[pid]
    first = os.path.basename(p.cmdline[0]) if p.cmdline else ""
    return first if first and not first.endswith(":") else p.name


def describe(snap: Snapshot, sock: Listener) -> str:
    """One listener as an evidence line: 'LISTEN 127.0.0.1:6379 (redis-server, pid 42, user redis)'."""
    procs = owners(snap, sock)
    who = ", ".join(f"{p.name}, pid {p.pid}" + (f", user {p.user}" if p.user else "") for p in procs)
    if not who:
        who = "owner unknown" if not sock.pids else ", ".join(f"pid {p}" for p in sock.pids)
    extra = ""
    if sock.family == 6 and addresses.is_wildcard(sock.address):
        extra = ", IPv6 only" if sock.v6only else (", IPv4 too" if sock.v6only is False else "")
    return f"LISTEN {sock.endpoint} backlog {sock.backlog}, queued {sock.queue}{extra} ({who})"


# --------------------------------------------------------------------------- containers


def argv_value(argv: tuple[str, ...] | list[str], *flags: str) -> str | None:
    """The value of the first of `flags` in argv (`-f value` or `--flag=value`)."""
    for i, a in enumerate(argv):
        for f in flags:
            if a == f and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith(f + "="):
                return a.split("=", 1)[1]
    return None


def is_port_holder(snap: Snapshot, pid: int) -> bool:
    """Whether pid is a container engine's port holder (conmon, docker-proxy, rootlessport...)."""
    proc = snap.processes.get(pid)
    if proc is None:
        return False
    first = proc.cmdline[0].rsplit("/", 1)[-1] if proc.cmdline else ""
    return proc.name in HOLDERS or first in HOLDERS


def held_by_engine(snap: Snapshot, sock: Listener) -> bool:
    """Whether every known owner of a listening socket is a container engine's port holder."""
    pids = [p for p in sock.pids if p in snap.processes]
    return bool(pids) and all(is_port_holder(snap, p) for p in pids)


def all_containers(snap: Snapshot) -> tuple[Container, ...]:
    """Every container the engine listed (rootful Podman lists other namespaces' ones too)."""
    return snap.containers.containers if snap.containers else ()


def holder_container(snap: Snapshot, sock: Listener) -> Container | None:
    """The container a port-holder listener (conmon, docker-proxy, rootlessport) holds its port for."""
    if not held_by_engine(snap, sock):
        return None
    every = all_containers(snap)
    for pid in sock.pids:
        if pid not in snap.processes:  # gone between the socket scan and the process read
            continue
        argv = snap.processes[pid].cmdline
        cid = argv_value(argv, "-c", "--cid", "-u", "--cuuid")
        cname = argv_value(argv, "-n", "--name")
        cip = argv_value(argv, "-container-ip", "--container-ip")
        for c in every:
            if cid and c.id and cid.startswith(c.id):
                return c
            if cname and c.name == cname:
                return c
            if cip and cip in c.addresses and any(p.host_port == sock.port for p in c.ports):
                return c
    cands = [c for c in every if c.state == "running" and any(
        p.host_port == sock.port and (p.host_ip or "0.0.0.0") in ("0.0.0.0", "::", sock.address)
        for p in c.ports)]
    return cands[0] if len(cands) == 1 else None


def container_here(snap: Snapshot, c: Container) -> bool:
    """Whether container c belongs to this network namespace, so that it may explain this host's
    ports: portdoctor runs inside it, or its engine side (conmon, containerd-shim) runs here (the
    collector's `here`), or, when that is unknown, a port holder or a DNAT rule of this namespace
    leads to it. Rootful Podman lists the containers of every network namespace of the machine."""
    if c.same_netns:
        return True
    if c.here is not None:
        return bool(c.here)
    if c.local is False:
        return False
    if c.state == "running":
        if any(holder_container(snap, ln) is c for ln in snap.listeners):
            return True
        if c.addresses and any(d.to_addr in c.addresses for d in dnat_rules(snap)):
            return True
        return c.local is True
    # stopped: nothing holds its ports any more; it is ours when a network it uses is ours
    nets = {n.name for n in c.networks if n.name}
    if any(n.gateway and is_local(snap, n.gateway) for n in c.networks):
        return True
    return bool(nets) and any(o is not c and o.state == "running" and nets & {n.name for n in o.networks}
                              and container_here(snap, o) for o in all_containers(snap))


def containers_here(snap: Snapshot) -> list[Container]:
    """The containers whose ports and network belong to this network namespace."""
    return [c for c in all_containers(snap) if container_here(snap, c)]


def container_named(snap: Snapshot, cid: str | None) -> Container | None:
    """This namespace's container with id (or id prefix) `cid`."""
    if not cid:
        return None
    for c in containers_here(snap):
        if c.id and (cid.startswith(c.id) or c.id.startswith(cid[:12])):
            return c
    return None


def publisher(snap: Snapshot, port: int) -> Container | None:
    """The container of this namespace that publishes host port `port`."""
    return next((c for c in containers_here(snap) if any(p.host_port == port for p in c.ports)), None)


# --------------------------------------------------------------------------- NAT


@dataclass(frozen=True, slots=True)
class DnatRule:
    """A DNAT or REDIRECT rule: connections to from_addr:from_port go to to_addr:to_port."""

    from_addr: str  # "*" for any destination address
    from_port: int
    to_addr: str | None  # "local" for REDIRECT (this host), None when the rule keeps the address
    to_port: int
    text: str


def dnat_rules(snap: Snapshot) -> list[DnatRule]:
    """Hand-made and engine DNAT / REDIRECT rules of the snapshot's rulesets, one per port."""
    if snap.firewall is None:
        return []
    out: list[DnatRule] = []
    for table in snap.firewall.ruleset.tables:
        for chain in table.chains:
            for rule in chain.rules:
                act = rule.action
                if act.kind not in ("dnat", "redirect"):
                    continue
                dports = [v for m in rule.matches if m.kind == "dport" and not m.neg for v in m.values]
                daddrs = [v for m in rule.matches if m.kind == "daddr" and not m.neg for v in m.values]
                for dp in dports:
                    if not str(dp).isdigit():
                        continue
                    to_port = str(act.port or dp).split("-")[0].split(":")[0]
                    out.append(DnatRule(
                        from_addr=str(daddrs[0]) if daddrs else "*", from_port=int(dp),
                        to_addr=act.addr or ("local" if act.kind == "redirect" else None),
                        to_port=int(to_port) if to_port.isdigit() else int(dp), text=rule.text))
    return out


# --------------------------------------------------------------------------- exposure


def firewall_evaluator(snap: Snapshot) -> Evaluator | None:
    """The snapshot's rulesets compiled for evaluation, or None without a ruleset.

    Compiling costs time on large rulesets: a caller that needs it several times keeps the
    result (a diagnosis keeps it on its Context, `Exposure` on itself).
    """
    fw = snap.firewall
    if fw is None or not fw.ruleset.tables and not fw.ruleset.ipsets:
        return None
    from portdoctor.firewall.evaluate import Evaluator, HostInfo

    local = dict(fw.local_addresses)
    for a in snap.addresses:
        local.setdefault(a.address, a.ifname)
    routes = [(r[0], r[1], r[2]) for r in fw.routes if len(r) == 3]
    fwd = {int(k): (v if v is not None else True) for k, v in fw.forwarding.items()}
    return Evaluator(fw.ruleset, HostInfo(local, routes, {4: True, 6: True, **fwd}, fw.stateful))


@dataclass
class Exposure:
    """Would a client on another host reach address:port, bind scope and firewall combined?

    One per snapshot: it compiles the ruleset once and remembers each (address, port) it judged.
    """

    snap: Snapshot
    evaluator: Evaluator | None = None
    judged: dict[tuple[str, int], bool | None] = field(default_factory=dict)

    unreadable: bool = False  # the ruleset could not be compiled: nothing can be judged
    partial: bool = False  # a ruleset dump failed (e.g. without root): what was read may not be all
    external: list[InterfaceAddress] = field(default_factory=list)  # addresses a remote client can use

    def __post_init__(self) -> None:
        self.external = [a for a in self.snap.addresses
                         if not addresses.is_loopback(a.address) and not addresses.is_link_local(a.address)]
        if self.snap.firewall is not None:
            self.partial = any(not t.ok for t in self.snap.firewall.tools)
        if self.evaluator is None and self.snap.firewall is not None:
            try:
                self.evaluator = firewall_evaluator(self.snap)
            except Exception:  # noqa: BLE001 - an evaluator bug must not take the port map down
                self.unreadable = True

    def _flow(self, dst: str, port: int, iif: str) -> bool | None:
        key = (dst, port)
        if key not in self.judged:
            self.judged[key] = self._judge(dst, port, iif)
        return self.judged[key]

    def _judge(self, dst: str, port: int, iif: str) -> bool | None:
        if self.unreadable:
            return None
        if self.evaluator is None:
            # a firewall collector ran and found no ruleset: nothing stops the client (unless a
            # dump failed: an unread ruleset is not an empty one)
            return True if self.snap.firewall is not None and not self.partial else None
        from portdoctor.firewall.evaluate import Flow, FlowVerdict

        outcomes = self.evaluator.evaluate(Flow(dst=dst, dport=port, src=None, iif=iif, not_lo=True)).outcomes
        verdicts = {o.verdict for o in outcomes}
        if FlowVerdict.ACCEPT in verdicts:  # some client from elsewhere gets through
            return None if self.partial else True  # unless a ruleset it could not read stops them
        if verdicts and verdicts <= {FlowVerdict.DROP, FlowVerdict.REJECT}:
            return False
        return None

    def of(self, address: str, port: int, v6only: bool | None, bound_family: int | None = None) -> bool | None:
        """True, False, or None when it cannot be judged (no firewall facts, a rule it cannot read)."""
        if addresses.is_loopback(address):
            return False
        fam = bound_family or addresses.family(address)
        dests = [a for a in self.external if addresses.accepts(address, fam, v6only, a.address)][:MAX_INTERFACES]
        if not dests:
            return False if self.snap.addresses else None
        results = [self._flow(a.address, port, a.ifname) for a in dests]
        if any(r is True for r in results):
            return True
        return None if any(r is None for r in results) else False
