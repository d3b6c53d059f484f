"""Collectors: gather facts about this host into one Snapshot. They never decide anything.

Each collector is a function `collect_x(req: Request) -> Facts` listed in COLLECTORS; it
returns the Snapshot fields it knows (typed values: listeners, `FirewallFacts`, ...) plus
Limitations for what it could not see (no privilege, a tool missing). `collect()` merges them
into one Snapshot; the platform the Host reports (`host.platform`: linux, darwin, freebsd...)
decides which run, so a recorded macOS host runs the macOS collectors on any machine.

Facts that must be sampled around the probe (kernel counters, firewall rule counters) come
from `collect_before()`, called just before the probe; `collect()` samples them again after.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from portdoctor.host import Host, LocalHost
from portdoctor.model import Limitation

if TYPE_CHECKING:
    from portdoctor.snapshot import Snapshot

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """What the collectors are asked about: the port, its addresses, the expected service,
    and `system`, the Host they read it from (the only way a collector reaches the machine).

    `proc_root` builds a LocalHost over a recorded /proc tree when no `system` is given; with
    a `system` it mirrors `system.proc_root`.
    """

    port: int
    host: str = ""  # the target's host as the user wrote it (for /etc/hosts look-ups)
    addresses: tuple[str, ...] = ()  # the target's resolved addresses
    service: str | None = None
    from_addr: str | None = None  # where the failing clients come from (route lookups)
    dns_failed: bool = False  # the probe could not resolve the host: ask DNS directly why
    proc_root: str = "/proc"  # injectable, so procfs readers run on recorded trees
    before: dict[str, Any] = field(default_factory=dict)  # what collect_before returned
    system: Host = None  # type: ignore[assignment]  # the machine; LocalHost(proc_root) when None
    # facts one collector derived that later ones reuse (listeners + owners, processes), for
    # one collect() only: collect() gives every run a fresh one, so nothing outlives it
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.system is None:
            object.__setattr__(self, "system", LocalHost(proc_root=self.proc_root))
        else:
            object.__setattr__(self, "proc_root", self.system.proc_root)

    def derive(self, key: str, compute: Callable[[], T]) -> T:
        """`compute()` once per collect() run (a Request and its `replace`d copies share it)."""
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
        "portdoctor.collectors.forwarders:collect_forwarders",
    ],
    # macOS: lsof + netstat for listeners, launchd/Homebrew, pf, the Application Firewall, Docker Desktop
    "darwin": [
        "portdoctor.collectors.system:collect_system",
        "portdoctor.collectors.darwin:collect_listeners",
        "portdoctor.collectors.bsd:collect_addresses",
        "portdoctor.collectors.bsd:collect_sysctls",
        "portdoctor.collectors.darwin:collect_platform",
    ],
    # FreeBSD: sockstat + netstat -Lan, rc.d, pf and ipfw
    "freebsd": [
        "portdoctor.collectors.system:collect_system",
        "portdoctor.collectors.freebsd:collect_listeners",
        "portdoctor.collectors.bsd:collect_addresses",
        "portdoctor.collectors.bsd:collect_sysctls",
        "portdoctor.collectors.freebsd:collect_platform",
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
    "darwin": [],
    "freebsd": [],
    "other": [],
}


def platform_key(platform: str | None = None) -> str:
    """Which collector set fits a machine of this `sys.platform` (default: this machine)."""
    platform = sys.platform if platform is None else platform
    if platform.startswith("linux"):
        return "linux"
    if platform == "darwin":
        return "darwin"
    if platform.startswith("freebsd"):
        return "freebsd"
    return "other"


class RegistryError(LookupError):
    """A registry entry ("module:function") names nothing: a bug, never skipped."""


def load_entry(spec: str) -> Callable:
    """The function a "module:function" registry entry names; RegistryError when it names nothing."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise RegistryError(f"registry entry {spec!r} is not of the form 'module:function'")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise RegistryError(f"registry entry {spec!r}: no module {module}") from exc
        raise
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise RegistryError(f"registry entry {spec!r}: {module} has no function {name}")
    return fn



def collect_before(req: Request) -> dict[str, Any]:
    """Sample the facts that must be compared across the probe; returns name -> sample."""
    out: dict[str, Any] = {}
    for spec in BEFORE[platform_key(req.system.platform)]:
        out[spec] = load_entry(spec)(req)
    return out


def collect(req: Request) -> Snapshot:
    """Run every collector of this platform and merge what they saw into one Snapshot."""
    from portdoctor.snapshot import Snapshot

    fields: dict[str, Any] = {}
    limitations: list[Limitation] = []
    req = replace(req, memo={})  # what collectors share lives for this run only
    for spec in COLLECTORS[platform_key(req.system.platform)]:
        fn = load_entry(spec)
        try:
            facts: Facts = fn(req)
        except PermissionError as exc:
            limitations.append(Limitation(f"{spec.split(':')[1]}: permission denied ({exc.filename or exc})",
                                          "run as root"))
            continue
        except Exception as exc:  # one collector failing (an engine answering nonsense) must not stop the rest
            log.debug("collector %s failed", spec, exc_info=True)  # --debug shows the traceback
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
        platform=req.system.platform,
        is_root=req.system.is_root,
        observer_pid=os.getpid() if req.system.live else None,
        limitations=tuple(unique),
        **fields,
    )
