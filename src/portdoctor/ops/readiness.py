"""One readiness check of a target, shared by `wait` and `guard`: connect (the library's probe),
optionally ask an HTTP status, and say in plain words what was seen.

A target is ready when an address accepted and kept the connection: an address that accepts
and at once closes or resets it (a published container port or a proxy before its backend
listens) is not ready, although a bare connect succeeds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from portdoctor.model import ProbeResult, State, Target

if TYPE_CHECKING:
    from portdoctor.monitor.aprobe import HttpOutcome
    from portdoctor.monitor.config import HttpCheck

# outcome key -> what it means, in the words a log line uses
OUTCOME_WORDS: dict[str, str] = {
    "ready": "accepts",
    "refused": "refused: nothing listening (or a firewall REJECT)",
    "timeout": "no answer (a silent drop, a host that is down, or a full accept queue)",
    "unreachable": "unreachable (no route, or ICMP host/network unreachable)",
    "dns": "DNS: the name does not resolve",
    "closed": "accepts, then closes the connection at once (nothing serves behind it yet)",
    "reset": "accepts, then resets the connection at once (nothing serves behind it yet)",
    "http": "accepts, but the HTTP check fails",
    "error": "the connection fails",
}


@dataclass(frozen=True, slots=True)
class Observation:
    """One check of a target: the probe, the HTTP outcome if one was asked, and the judgement."""

    probe: ProbeResult
    ready: bool
    outcome: str  # a key of OUTCOME_WORDS
    words: str  # one line for a person: the outcome with its particulars
    http_status: int | None = None
    http_error: str | None = None

    @property
    def tcp_failed(self) -> bool:
        """True when the failure is below HTTP (no usable connection at all)."""
        return not self.ready and self.outcome != "http"

    def to_json(self) -> dict[str, object]:
        """The observation as JSON: outcome, words, the probe document, the HTTP status."""
        out: dict[str, object] = {"ready": self.ready, "outcome": self.outcome, "words": self.words,
                                  "probe": self.probe.to_json()}
        if self.http_status is not None or self.http_error is not None:
            out["http"] = {"status": self.http_status, "error": self.http_error}
        return out


def judge(probe: ProbeResult, http: HttpOutcome | None = None) -> Observation:
    """Judge a probe (and the HTTP outcome on its open connection, if any): ready or not, and why.

    Pure: the same probe gives the same observation.
    """
    from portdoctor.probe import CLOSED_AT_ONCE

    where = f"{probe.target.host}:{probe.target.port}"
    if probe.state is State.DNS_ERROR:
        return Observation(probe, False, "dns", f"{where}: DNS: {probe.dns_error or 'the name does not resolve'}")
    held = [a for a in probe.addresses if a.state is State.OPEN and a.detail != CLOSED_AT_ONCE]
    if held:
        if http is None:
            return Observation(probe, True, "ready", f"{where} accepts ({held[0].address})")
        if http.ok:
            return Observation(probe, True, "ready", f"{where} accepts, HTTP {http.status}", http.status)
        return Observation(probe, False, "http", f"{where} accepts, but the HTTP check fails: {http.error}",
                           http.status, http.error)
    closed = [a for a in probe.addresses if a.state is State.OPEN]
    if closed:
        return Observation(probe, False, "closed", f"{where} ({closed[0].address}) {OUTCOME_WORDS['closed']}")
    first = probe.addresses[0] if probe.addresses else None
    if first is not None and first.errno == "ECONNRESET":
        return Observation(probe, False, "reset", f"{where} ({first.address}) {OUTCOME_WORDS['reset']}")
    key = {State.REFUSED: "refused", State.TIMEOUT: "timeout", State.UNREACHABLE: "unreachable"}.get(
        probe.state, "error")
    detail = ""
    if first is not None:
        detail = f" ({first.address}" + (f", {first.errno}" if first.errno else "") + ")"
        if key == "error" and first.detail:
            detail += f": {first.detail}"
    return Observation(probe, False, key, f"{where}{detail} {OUTCOME_WORDS[key]}")


def observe(target: Target, timeout: float, http: HttpCheck | None = None) -> Observation:
    """Check `target` once: connect within `timeout` seconds, then the HTTP check if asked."""
    if http is None:
        from portdoctor.probe import probe

        return judge(probe(target, timeout=timeout))
    import asyncio

    from portdoctor.monitor.aprobe import aprobe

    result, outcome = asyncio.run(aprobe(target, timeout, http=http))
    return judge(result, outcome)


@dataclass(slots=True)
class Tally:
    """What was seen over many checks of one target: how often each outcome, the last failure."""

    counts: Counter[str] = field(default_factory=Counter)
    last_failure: Observation | None = None
    attempts: int = 0

    def add(self, obs: Observation) -> None:
        """Count one observation."""
        self.attempts += 1
        self.counts[obs.outcome] += 1
        if not obs.ready:
            self.last_failure = obs

    def summary(self) -> str:
        """'refused: nothing listening ... 12 times, no answer ... 2 times' (most frequent first)."""
        parts = [f"{OUTCOME_WORDS[k].split(' (')[0]} {n}×" for k, n in self.counts.most_common() if k != "ready"]
        return ", ".join(parts) if parts else "no failure"
