"""Rank findings and pick the one cause to name."""

from __future__ import annotations

from portdoctor.addresses import endpoint
from portdoctor.model import (
    Cause,
    Finding,
    ProbeResult,
    Severity,
    State,
    Target,
    Verdict,
)

_SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


def rank(findings: list[Finding]) -> list[Finding]:
    """Errors before warnings before notes; within each, the strongest evidence first."""
    return sorted(findings, key=lambda f: (_SEVERITY_ORDER[f.severity], -f.weight))


def decide(target: Target, probe: ProbeResult, ranked: list[Finding]) -> Verdict:
    """The verdict: `ok` when the target accepts and no error was found, else the top finding's cause.

    Confidence is the top finding's weight, lowered when a different cause comes close.
    """
    errors = [f for f in ranked if f.severity is Severity.ERROR]
    where = endpoint(target.host, target.port)
    if probe.state is State.OPEN and not errors:
        warn = [f for f in ranked if f.severity is Severity.WARNING]
        extra = f" ({len(warn)} warning{'s' if len(warn) != 1 else ''} below)" if warn else ""
        n_open = sum(1 for a in probe.addresses if a.state is State.OPEN)
        return Verdict(Cause.OK, 0.95 if not warn else 0.8,
                       f"{where} accepts connections ({n_open} of {len(probe.addresses)} "
                       f"address{'es' if len(probe.addresses) != 1 else ''}){extra}.")
    # a check may vouch that the failing clients do get through even though this host's own
    # probe does not (a DNAT that PREROUTING applies to remote clients only): cause ok, as info
    vouched = [f for f in ranked if f.cause is Cause.OK]
    if not errors and vouched:
        return Verdict(Cause.OK, vouched[0].weight, vouched[0].summary)
    pool = [f for f in (errors or ranked) if f.cause is not Cause.OK]
    if not pool:
        return Verdict(Cause.UNKNOWN, 0.2,
                       f"{where} is {probe.state.value}, and no check found why; see the limitations below "
                       f"for what could not be inspected.")
    top = pool[0]
    confidence = top.weight if errors else top.weight * 0.8
    rival = next((f for f in pool[1:] if f.cause is not top.cause), None)
    if rival is not None and top.weight - rival.weight < 0.1:
        confidence -= 0.1
    return Verdict(top.cause, max(0.05, min(0.99, confidence)), top.summary)
