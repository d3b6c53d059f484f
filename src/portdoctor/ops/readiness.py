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

HOLD_WINDOW = 0.25  # seconds a second connection must stay open (see `hold`)

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


def judge(probe: ProbeResult, http: HttpOutcome | None = None, dropped: str | None = None) -> Observation:
    """Judge a probe (and the HTTP outcome on its open connection, if any): ready or not, and why.
    `dropped` is what `hold` saw on a second connection ("closed" or "reset"), if anything.

    Pure: the same probe gives the same observation.
    """
    from portdoctor.probe import CLOSED_AT_ONCE

    where = f"{probe.target.host}:{probe.target.port}"
    if probe.state is State.DNS_ERROR:
        return Observation(probe, False, "dns", f"{where}: DNS: {probe.dns_error or 'the name does not resolve'}")
    held = [a for a in probe.addresses if a.state is State.OPEN and a.detail != CLOSED_AT_ONCE]
    if held and dropped in ("closed", "reset"):
        return Observation(probe, False, dropped, f"{where} ({held[0].address}) {OUTCOME_WORDS[dropped]} "
                                                  f"(within {HOLD_WINDOW:g} s)")
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


def hold(address: str, port: int, window: float = 0.0) -> str | None:
    """Connect once more to an address that accepted and watch the connection for `window`
    seconds (HOLD_WINDOW by default): "closed" or "reset" when the server ends it at once, None
    when it stays open or the server sends data (a banner). The probe's own watch lasts about two
    round trips, which a slow server that accepts and then resets outlives."""
    import select
    import socket

    window = window or HOLD_WINDOW
    try:
        family, _t, _p, _c, sockaddr = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0]
        sk = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        sk.settimeout(window)
        try:
            sk.connect(sockaddr)
        except OSError:
            return None  # not accepted this time: the next check will see it
        readable, _w, _x = select.select([sk], [], [], window)
        if not readable:
            return None
        try:
            data = sk.recv(1, socket.MSG_PEEK)
        except ConnectionResetError:
            return "reset"
        except OSError:
            return None
        return None if data else "closed"
    finally:
        sk.close()


def observe(target: Target, timeout: float, http: HttpCheck | None = None) -> Observation:
    """Check `target` once: connect within `timeout` seconds, then the HTTP check if asked (or,
    without one, `hold` a second connection to the address that accepted)."""
    if http is None:
        from portdoctor.probe import probe

        first = judge(probe(target, timeout=timeout))
        if not first.ready:
            return first
        from portdoctor.probe import CLOSED_AT_ONCE

        address = next(a.address for a in first.probe.addresses
                       if a.state is State.OPEN and a.detail != CLOSED_AT_ONCE)
        # the full window even near a deadline: a short look would call a resetting port ready
        return judge(first.probe, dropped=hold(address, target.port))
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
