"""Collectors: gather facts about this host into one Snapshot. They never decide anything.

Each collector is a function `collect_x(req: Request) -> Facts` listed in COLLECTORS; it
returns the Snapshot fields it knows (typed values: listeners, `FirewallFacts`, ...) plus
Limitations for what it could not see (no privilege, a tool missing). `collect()` merges them
into one Snapshot; the platform decides which run.

Facts that must be sampled around the probe (kernel counters, firewall rule counters) come
from `collect_before()`, called just before the probe; `collect()` samples them again after.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from portdoctor.model import Limitation

if TYPE_CHECKING:
    from portdoctor.snapshot import Snapshot


T = TypeVar("T")


@dataclass(frozen=True)
class Request:
    """What the collectors are asked about: the port, its addresses, the expected service."""

    port: int
    host: str = ""  # the target's host as the user wrote it (for /etc/hosts look-ups)
    addresses: tuple[str, ...] = ()  # the target's resolved addresses
    service: str | None = None
    from_addr: str | None = None  # where the failing clients come from (route lookups)
    dns_failed: bool = False  # the probe could not resolve the host: ask DNS directly why
    proc_root: str = "/proc"  # injectable, so procfs readers run on recorded trees
    before: dict[str, Any] = field(default_factory=dict)  # what collect_before returned
    # facts one collector read that later ones reuse (listeners and their owners, processes):
    # `collect()` gives each run a fresh one, so nothing outlives a snapshot
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def derive(self, key: str, compute: Callable[[], T]) -> T:
        """`compute()` once per collection run of this request."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]


@dataclass
class Facts:
    """A collector's contribution: Snapshot field values (by field name) and limitations."""

    fields: dict[str, Any] = field(default_factory=dict)
    limitations: list[Limitation] = field(default_factory=list)


# "module:function" per platform, imported on first use.
COLLECTORS: dict[str, list[str]] = {
    "linux": [
        "portdoctor.collectors.system:collect_system",
        "portdoctor.collectors.linux:collect_listeners",
        "portdoctor.collectors.processes:collect_processes",
        "portdoctor.collectors.linux:collect_addresses",
        "portdoctor.collectors.linux:collect_routes",
        "portdoctor.collectors.procfs:collect_sysctls",
        "portdoctor.collectors.procfs:collect_counters",
        "portdoctor.collectors.configs:collect_configs",
        "portdoctor.collectors.firewall:collect_firewall",
        "portdoctor.collectors.containers:collect_containers",
        "portdoctor.collectors.proxies:collect_proxies",
        "portdoctor.collectors.supervisors:collect_supervisors",
        "portdoctor.collectors.netns:collect_namespaces",
    ],
    "other": [
        "portdoctor.collectors.system:collect_system",
        "portdoctor.collectors.generic:collect_listeners",
        "portdoctor.collectors.generic:collect_addresses",
    ],
}

BEFORE: dict[str, list[str]] = {
    "linux": [
        "portdoctor.collectors.procfs:sample_counters",
        "portdoctor.collectors.firewall:sample_counters",
    ],
    "other": [],
}


def platform_key() -> str:
    """Which collector set fits this machine."""
    return "linux" if sys.platform.startswith("linux") else "other"


def load(spec: str) -> Callable:
    """The function a registry entry "module:function" names; a misspelt entry raises at once."""
    module, _, name = spec.partition(":")
    fn = getattr(importlib.import_module(module), name, None)
    if not callable(fn):
        raise LookupError(f"registry entry {spec!r}: {module} has no function {name!r}")
    return fn


def collect_before(req: Request) -> dict[str, Any]:
    """Sample the facts that must be compared across the probe; returns name -> sample."""
    out: dict[str, Any] = {}
    for spec in BEFORE[platform_key()]:
        out[spec] = load(spec)(req)
    return out


def collect(req: Request) -> Snapshot:
    """Run every collector of this platform and merge what they saw into one Snapshot."""
    from portdoctor.snapshot import Snapshot

    req = replace(req, memo={})  # facts shared between this run's collectors, and no longer
    fields: dict[str, Any] = {}
    limitations: list[Limitation] = []
    for spec in COLLECTORS[platform_key()]:
        fn = load(spec)
        try:
            facts: Facts = fn(req)
        except PermissionError as exc:
            limitations.append(Limitation(f"{spec.split(':')[1]}: permission denied ({exc.filename or exc})",
                                          "run as root"))
            continue
        except Exception as exc:  # one collector failing (an engine answering nonsense) must not stop the rest
            what = spec.split(":")[1].removeprefix("collect_")
            limitations.append(Limitation(
                f"{what} could not be read ({type(exc).__name__}: {exc})",
                "the diagnosis went on without them; `portdoctor diagnose ... --record FILE` captures the case "
                "for a bug report"))
            continue
        fields.update(facts.fields)
        limitations.extend(facts.limitations)
    seen: set[Limitation] = set()
    unique = [x for x in limitations if not (x in seen or seen.add(x))]
    return Snapshot(
        hostname=socket.gethostname(),
        platform=sys.platform,
        is_root=(os.geteuid() == 0) if hasattr(os, "geteuid") else False,
        limitations=tuple(unique),
        **fields,
    )
