"""The Snapshot: every fact the collectors gathered about one host, in one typed, versioned value.

Checks read only this (plus the probe); nothing in it is a judgement. Its JSON form,
`portdoctor.snapshot/2` (docs/snapshot.md), is what `diagnose --record` writes, what a bug
report attaches and what a remote host sends back. `Snapshot.from_json` also reads the first
form (no `schema` key; later facts under a free-form `extra` object).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from portdoctor.errors import BadInput
from portdoctor.hostfacts import ForwarderFacts
from portdoctor.hostfacts import (
    ContainerFacts, FirewallFacts, NameFacts, NamespaceFacts, ProxyFacts, SupervisorFacts,
)
from portdoctor.platformfacts import BsdFacts
from portdoctor.model import InterfaceAddress, Limitation, Listener, Process, RouteLookup, ServiceConfig
from portdoctor.plain import from_plain, to_plain

SCHEMA = "portdoctor.snapshot/2"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything collectors learned about one host, gathered once.

    A fact group is None when its collector did not run or saw nothing to report (no firewall
    tool, no container engine, no proxy, no supervisor).
    """

    hostname: str = ""
    platform: str = "linux"
    is_root: bool = False
    init: str | None = None  # the name of PID 1: systemd, init, tini, ...
    # the process that collected this snapshot (a long-running `watch` listens too): never a suspect
    observer_pid: int | None = None
    listeners: tuple[Listener, ...] = ()
    processes: dict[int, Process] = field(default_factory=dict)
    addresses: tuple[InterfaceAddress, ...] = ()
    routes: tuple[RouteLookup, ...] = ()
    sysctls: dict[str, str] = field(default_factory=dict)
    counters_before: dict[str, int] = field(default_factory=dict)
    counters_after: dict[str, int] = field(default_factory=dict)
    configs: tuple[ServiceConfig, ...] = ()
    firewall: FirewallFacts | None = None
    containers: ContainerFacts | None = None
    proxies: ProxyFacts | None = None
    supervisors: SupervisorFacts | None = None
    forwarders: ForwarderFacts | None = None  # TCP forwarders (socat, ssh -L, rinetd, ...) and their backends
    names: NameFacts | None = None
    namespaces: NamespaceFacts | None = None  # listeners on the port in other network namespaces
    bsd: BsdFacts | None = None  # macOS / FreeBSD: pf, ipfw, launchd, Homebrew, rc.d, ALF, Docker Desktop
    limitations: tuple[Limitation, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The `portdoctor.snapshot/2` document."""
        return {"schema": SCHEMA, **to_plain(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        """Rebuild a snapshot written by `to_json` (or by the first, untyped format)."""
        if not isinstance(data, dict):
            raise BadInput("a snapshot is a JSON object")
        schema = data.get("schema")
        if schema is None and "extra" in data:
            data = upgrade_v1(data)
        elif schema not in (None, SCHEMA):
            raise BadInput(f"unknown snapshot format {schema!r} (this portdoctor reads {SCHEMA})")
        try:
            return from_plain(cls, data)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise BadInput(f"not a portdoctor snapshot: {exc}") from exc


def upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """The first snapshot form (facts of later collectors under `extra`) as a /2 document."""
    out = {k: v for k, v in data.items() if k != "extra"}
    extra = data.get("extra") or {}
    out["schema"] = SCHEMA
    out["init"] = extra.get("init")
    for key in ("firewall", "containers", "proxies", "supervisors"):
        if extra.get(key) is not None:
            out[key] = extra[key]
    if any(k in extra for k in ("nameservers", "hosts_entries", "dns_answers")):
        out["names"] = {
            "nameservers": extra.get("nameservers") or [],
            "hosts_entries": [{"line": e[0], "address": e[1], "text": e[2]} for e in extra.get("hosts_entries") or []],
            "dns_answers": extra.get("dns_answers"),
        }
    return out
