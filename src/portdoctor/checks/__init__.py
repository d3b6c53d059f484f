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
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from portdoctor.model import Finding, ProbeResult, Target
from portdoctor.snapshot import Snapshot

T = TypeVar("T")

# "module:function", imported on first use, run in this order.
CHECKS: list[str] = [
    "portdoctor.checks.reachability:check_reachability",
    "portdoctor.checks.listener:check_listener",
    "portdoctor.checks.bind:check_bind",
    "portdoctor.checks.resources:check_resources",
    "portdoctor.checks.firewall:check_firewall",
    "portdoctor.checks.mapping:check_mapping",
    "portdoctor.checks.proxy:check_proxy",
    "portdoctor.checks.supervisor:check_supervisor",
    "portdoctor.checks.elsewhere:check_other_namespaces",
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


def load(spec: str) -> Callable:
    """The function a registry entry "module:function" names; a misspelt entry raises at once."""
    module, _, name = spec.partition(":")
    fn = getattr(importlib.import_module(module), name, None)
    if not callable(fn):
        raise LookupError(f"registry entry {spec!r}: {module} has no function {name!r}")
    return fn


@dataclass(frozen=True)
class CheckRun:
    """What the checks concluded, and the checks that failed (a bug, reported as a limitation)."""

    findings: list[Finding]
    failed: list[str]


def run_checks(snap: Snapshot, ctx: Context, debug: bool = False) -> CheckRun:
    """Run every registered check; one that raises becomes a line in `failed` (re-raised with
    `debug`), so a bug in one check does not hide what the others found."""
    findings: list[Finding] = []
    failed: list[str] = []
    for spec in CHECKS:
        fn = load(spec)
        try:
            findings.extend(fn(snap, ctx))
        except Exception as exc:
            if debug:
                raise
            failed.append(f"the {spec.rpartition(':')[2].removeprefix('check_')} check failed "
                          f"({type(exc).__name__}: {exc}); its cause was not judged (run with --debug for the "
                          f"traceback, and report it with `diagnose ... --record FILE`)")
    return CheckRun(findings, failed)


def followup_targets(snap: Snapshot, ctx: Context) -> list[Target]:
    """Targets some check wants probed before it decides (deduplicated, in order)."""
    seen: set[tuple[str, int]] = set()
    out: list[Target] = []
    for spec in FOLLOWUPS:
        for t in load(spec)(snap, ctx):
            if (t.host, t.port) not in seen:
                seen.add((t.host, t.port))
                out.append(t)
    return out


def endpoint_key(host: str, port: int) -> str:
    """The key of ctx.followups: host:port, with IPv6 in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
