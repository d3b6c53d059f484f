"""The port map of this host (`portdoctor ports`): every listening socket, who owns it, its bind
scope, whether clients from outside can reach it, and what leads to it (published container
ports, DNAT rules, proxy routes). `build` is pure: it arranges a Snapshot through the shared
facts layer (`portdoctor.hostview`), the same one the checks of `diagnose` use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from portdoctor import addresses
from portdoctor.hostview import (
    HOLDERS, Exposure, container_named, containers_here, dnat_rules, holder_container, is_local, process_name,
    publisher,
)
from portdoctor.model import Listener
from portdoctor.snapshot import Snapshot

SCHEMA = "portdoctor.ports/1"


@dataclass(frozen=True, slots=True)
class PortProcess:
    """A process holding a listener (or the container app behind it)."""

    pid: int | None
    name: str | None = None
    user: str | None = None
    unit: str | None = None
    container: str | None = None


@dataclass(frozen=True, slots=True)
class Via:
    """A way in from elsewhere: a published port, a DNAT rule, a proxy route."""

    kind: str  # publish, dnat, proxy
    source: str  # the "from" endpoint of the JSON contract
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "from": self.source, "detail": self.detail}


@dataclass(slots=True)
class PortEntry:
    """One listening socket of the port map (built up while the map is assembled)."""

    address: str
    port: int
    family: int
    scope: str
    v6only: bool | None
    processes: list[PortProcess]
    exposed: bool | None
    via: list[Via] = field(default_factory=list)
    container: str | None = None
    container_addresses: tuple[str, ...] = ()

    def add_via(self, v: Via) -> None:
        """Add a way in, once."""
        if v not in self.via:
            self.via.append(v)

    def to_json(self) -> dict[str, Any]:
        """One entry of the `listeners` list of the JSON contract."""
        out: dict[str, Any] = {
            "address": self.address, "port": self.port, "family": self.family, "scope": self.scope,
            "v6only": self.v6only,
            "processes": [{"pid": p.pid, "name": p.name, "user": p.user, "unit": p.unit, "container": p.container}
                          for p in self.processes],
            "exposed": self.exposed, "via": [v.to_json() for v in self.via]}
        if self.container is not None:
            out["container"] = self.container
            out["container_addresses"] = list(self.container_addresses)
        return out


def _processes(snap: Snapshot, ln: Listener) -> list[PortProcess]:
    out = []
    for pid in ln.pids:
        p = snap.processes.get(pid)
        if p is None:
            out.append(PortProcess(pid))
            continue
        known = container_named(snap, p.container)
        container = known.label if known else (p.container[:12] if p.container else None)
        if container is None and p.name in HOLDERS:
            held = holder_container(snap, ln)  # the engine's process holding a published port
            pub = publisher(snap, ln.port)
            container = held.label if held else (pub.label if pub else None)
        out.append(PortProcess(pid, process_name(snap, pid), p.user, p.unit, container))
    return out


def _host_entries(snap: Snapshot, exposure: Exposure) -> list[PortEntry]:
    entries: list[PortEntry] = []
    seen: set[tuple[str, int, int]] = set()
    for ln in sorted(snap.listeners, key=lambda x: (x.port, x.family, x.address)):
        key = (ln.address, ln.port, ln.family)
        if key in seen:
            continue
        seen.add(key)
        entries.append(PortEntry(ln.address, ln.port, ln.family, ln.scope.value, ln.v6only, _processes(snap, ln),
                                 exposure.of(ln.address, ln.port, ln.v6only, ln.family)))
    return entries


def _container_entries(snap: Snapshot, exposure: Exposure) -> list[PortEntry]:
    """Listeners inside containers, reached through published ports."""
    entries: list[PortEntry] = []
    engine = (snap.containers.engine if snap.containers else None) or "container"
    for c in containers_here(snap):
        if c.same_netns or c.state != "running":
            continue
        name = c.label
        for x in c.listeners or ():
            lo = addresses.is_loopback(x.address)
            via = []
            exposed: bool | None = False
            for p in c.ports:
                if p.container_port == x.port and p.proto == "tcp":
                    hip = p.host_ip or "0.0.0.0"
                    front = addresses.endpoint(hip, p.host_port)
                    via.append(Via("publish", front, f"{engine} container {name}: {front}->{x.port}/tcp"
                                   + (" (the app listens on the container's loopback: unreachable)" if lo else "")))
                    if not lo:
                        e = exposure.of(hip, p.host_port, None)
                        exposed = e if exposed is False else (exposed or e)
            if lo:
                exposed = False
            proc = PortProcess(c.pid, os.path.basename(c.cmd[0]) if c.cmd else None, container=name)
            entries.append(PortEntry(x.address, x.port, x.family, addresses.scope(x.address), None, [proc],
                                     exposed, via, container=name, container_addresses=c.addresses))
    return entries


def _find(snap: Snapshot, entries: list[PortEntry], host: str, port: int) -> PortEntry | None:
    """The listener entry that a connection to host:port reaches (a container's, by address)."""
    for e in entries:
        if e.container is not None:
            if host in e.container_addresses and e.port == port and not addresses.is_loopback(e.address):
                return e
        elif e.port == port and is_local(snap, host) and addresses.accepts(e.address, e.family, e.v6only, host):
            return e
    return None


def _add_proxy_routes(snap: Snapshot, entries: list[PortEntry]) -> None:
    for proxy in (snap.proxies.proxies if snap.proxies else ()):
        for route in proxy.config.routes:
            froms = [addresses.endpoint(b.address, b.port) for b in route.binds]
            for up in route.upstreams:
                host = up.host or ""
                host = "127.0.0.1" if host in ("localhost", "") else host
                if up.unix or not up.port:
                    continue
                e = _find(snap, entries, host, up.port)
                if e is None:
                    continue
                where = f"{up.file}:{up.line}" if up.line else str(up.file)
                loc = f" location {route.location}" if route.location else ""
                for f in froms:
                    e.add_via(Via("proxy", f, f"{proxy.kind}{loc}: {where}: {up.text}"))


def _add_forwarders(snap: Snapshot, entries: list[PortEntry]) -> None:
    """A TCP forwarder's listening port leads to its backend (kind proxy: socat, ssh -L, rinetd, ...)."""
    for f in (snap.forwarders.forwarders if snap.forwarders else ()):
        front = addresses.endpoint(f.address, f.port)
        for t in f.targets:
            if t.unix or not t.port or t.side != "here":
                continue
            e = _find(snap, entries, "127.0.0.1" if t.host in ("localhost", "") else t.host, t.port)
            if e is not None:
                written = f"{t.file}:{t.line}: {t.text}" if t.file else t.text
                e.add_via(Via("proxy", front, f"{f.kind} (pid {f.pid}) forwards to {addresses.endpoint(t.host, t.port)}: "
                                              f"{written}"))


def _add_dnats(snap: Snapshot, entries: list[PortEntry]) -> None:
    for d in dnat_rules(snap):
        to = d.to_addr
        targets = [e for e in entries if e.port == d.to_port and e.container is None] if to in (None, "local") \
            else [e for e in [_find(snap, entries, to, d.to_port)] if e is not None]
        for e in targets:
            if any(v.kind == "publish" and v.source.endswith(f":{d.from_port}") for v in e.via):
                continue  # the engine's own DNAT for a published port: already listed
            e.add_via(Via("dnat", f"{d.from_addr}:{d.from_port}", d.text))


@dataclass(frozen=True, slots=True)
class PortMap:
    """The port map of one host."""

    host: str
    listeners: tuple[PortEntry, ...]
    limitations: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The `portdoctor.ports/1` document."""
        return {"schema": SCHEMA, "host": self.host, "listeners": [e.to_json() for e in self.listeners],
                "limitations": list(self.limitations)}


def build_map(snap: Snapshot) -> PortMap:
    """The port map of a snapshot."""
    exposure = Exposure(snap)
    entries = _host_entries(snap, exposure) + _container_entries(snap, exposure)
    entries.sort(key=lambda e: (e.port, e.container is not None, e.family, e.address))
    _add_proxy_routes(snap, entries)
    _add_forwarders(snap, entries)
    _add_dnats(snap, entries)
    return PortMap(snap.hostname, tuple(entries), tuple(str(x) for x in snap.limitations))


def build(snap: Snapshot) -> dict[str, Any]:
    """The `portdoctor.ports/1` document of a snapshot."""
    return build_map(snap).to_json()


def port_map() -> dict[str, Any]:
    """Collect a full snapshot of this host and build its port map."""
    from portdoctor.collectors import Request, collect

    return build(collect(Request(port=0)))
