"""Checks: pure functions from (snapshot, context) to findings, one module per cause.

A check never reads the system; everything it knows comes from the Snapshot (host facts) and
the Context (the target, the client's probe, what the user told us, probes of backends that a
follow-up asked for). That keeps every check testable on a recorded snapshot.

To add a check: write `def check_x(snap: Snapshot, ctx: Context) -> list[Finding]` in a module
of this package and list it in CHECKS. A module that needs another address probed before its
check can decide (a DNAT destination, a proxy upstream) lists a function in FOLLOWUPS:
`def followups(snap: Snapshot, ctx: Context) -> list[Target]`; diagnose probes those targets
and hands the results to every check as `ctx.followups["host:port"]`.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from portdoctor.addresses import endpoint
from portdoctor.model import Finding, ProbeResult, Target
from portdoctor.snapshot import Snapshot

T = TypeVar("T")

log = logging.getLogger(__name__)

# "module:function", imported on first use, run in this order.
CHECKS: list[str] = [
    "portdoctor.checks.reachability:check_reachability",
    "portdoctor.checks.listener:check_listener",
    "portdoctor.checks.bind:check_bind",
    "portdoctor.checks.resources:check_resources",
    "portdoctor.checks.firewall:check_firewall",
    "portdoctor.checks.mapping:check_mapping",
    "portdoctor.checks.forwarder:check_forwarder",
    "portdoctor.checks.proxy:check_proxy",
    "portdoctor.checks.supervisor:check_supervisor",
    "portdoctor.checks.elsewhere:check_other_namespaces",
    "portdoctor.checks.bsd:check_bsd",
    "portdoctor.checks.clientside:check_client_view",
]

FOLLOWUPS: list[str] = [
    "portdoctor.checks.firewall:followups",
    "portdoctor.checks.mapping:followups",
    "portdoctor.checks.proxy:followups",
]


@dataclass(frozen=True)
class Context:
    """What a check may know besides host facts."""

    target: Target
    probe: ProbeResult
    from_addr: str | None = None
    service: str | None = None
    # "host:port" -> what a client on this host saw there (backends named by FOLLOWUPS)
    followups: dict[str, ProbeResult] = field(default_factory=dict)
    # work derived from the snapshot that several checks share (the compiled firewall, its walk
    # of this diagnosis' flows): computed once per diagnosis, dropped with it
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def derive(self, key: str, compute: Callable[[], T]) -> T:
        """`compute()` once per diagnosis (this Context and its `replace`d copies share the memo)."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]


CheckFn = Callable[[Snapshot, Context], list[Finding]]


class RegistryError(LookupError):
    """A registry entry ("module:function") names nothing: a bug, never skipped."""


def load_entry(spec: str) -> Callable:
    """The function a "module:function" entry of CHECKS or FOLLOWUPS names; RegistryError when
    the module or the function does not exist (a misspelt entry must not vanish silently)."""
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


@dataclass(frozen=True)
class CheckRun:
    """What run_checks produced: every finding (unranked), and a limitation per check that failed."""

    findings: list[Finding] = field(default_factory=list)
    limitations: list[str] = field(default_factory=list)


def run_checks(snap: Snapshot, ctx: Context, checks: list[str] | None = None) -> CheckRun:
    """Run every registered check (or `checks`); a check that raises becomes a limitation naming
    it, and the others still run (its traceback goes to the `portdoctor` logger: `--debug`)."""
    out = CheckRun()
    for spec in CHECKS if checks is None else checks:
        fn = load_entry(spec)
        try:
            found = fn(snap, ctx)
        except Exception as exc:  # one check's bug must not hide the other findings
            log.debug("check %s failed", spec, exc_info=True)
            name = spec.rpartition(":")[2]
            out.limitations.append(
                f"check {name} failed ({type(exc).__name__}: {exc}); its cause was not judged. This is a bug: "
                "`portdoctor --debug diagnose ... --record FILE` captures the case for a bug report")
            continue
        out.findings.extend(found)
    return out


def followup_targets(snap: Snapshot, ctx: Context) -> list[Target]:
    """Targets some check wants probed before it decides (deduplicated, in order)."""
    seen: set[tuple[str, int]] = set()
    out: list[Target] = []
    for spec in FOLLOWUPS:
        fn = load_entry(spec)
        for t in fn(snap, ctx):
            if (t.host, t.port) not in seen:
                seen.add((t.host, t.port))
                out.append(t)
    return out


def endpoint_key(host: str, port: int) -> str:
    """The key of ctx.followups: host:port, with IPv6 in brackets."""
    return endpoint(host, port)
