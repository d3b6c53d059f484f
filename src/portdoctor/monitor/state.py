"""The state machine of one watched target: checks in, state changes and alerts out.

Pure: no clock, no I/O; `Tracker.feed` gets each check with its time and returns what
changed. Rules:

- a target is `up` after its first good check, `down` after `failures` failed checks in a
  row, up again after `successes` good ones; a DNS failure is its own status, `dns`, not
  `down` (the service may be fine; the name is what failed);
- going down opens an incident, coming back closes it; each raises one alert;
- a target whose status changes `flap_changes` times within `flap_window` is flapping: one
  `flapping` alert, then silence until it has been stable for `flap_window`, when one alert
  says how it ended. However often it flapped, that is one incident.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

UP, DOWN, DNS, UNKNOWN = "up", "down", "dns", "unknown"

# a cause that can be named from the probe state alone (no local diagnosis)
STATE_CAUSE = {"dns_error": "dns", "unreachable": "host_unreachable"}


# upper edges of the probe duration histogram, in seconds (blackbox_exporter-like)
DURATION_BUCKETS = (0.001, 0.0025, 0.01, 0.05, 0.25, 1.0, 2.5, 5.0)


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of one check of a target."""

    at: float
    ok: bool
    state: str  # probe state, or http_error when the TCP connection opened but HTTP failed
    seconds: float
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)
    host: str = ""  # the address that answered (or was tried first): groups unreachable hosts


@dataclass(frozen=True, slots=True)
class Change:
    """A status change (or a change of failure state while down) of one target."""

    name: str
    at: float
    previous: str
    status: str
    check: Check
    incident: int | None
    alert: str | None  # down | dns | up | flapping | None (recorded, not alerted)
    note: str = ""  # why an alert was or was not raised (flapping ...)


@dataclass
class Tracker:
    """Status, counters and open incident of one target."""

    name: str
    failures: int = 2
    successes: int = 1
    flap_window: float = 600.0
    flap_changes: int = 4
    status: str = UNKNOWN
    state: str = "unknown"
    since: float = 0.0
    fails: int = 0
    oks: int = 0
    incident: int | None = None
    incident_opened: float = 0.0
    incident_changes: int = 0
    flapping: bool = False
    closed_incident: int | None = None  # the last incident closed, reopened if it fails again soon
    closed_at: float = 0.0
    changes: deque[float] = field(default_factory=deque)
    last_change: float = 0.0

    def feed(self, check: Check, new_incident: Any) -> list[Change]:
        """Take one check; return the changes it causes. `new_incident()` allocates an id."""
        out: list[Change] = []
        if check.ok:
            self.oks += 1
            self.fails = 0
        else:
            self.fails += 1
            self.oks = 0
        previous = self.status
        target = previous
        if check.ok:
            if previous == UNKNOWN or (previous in (DOWN, DNS) and self.oks >= self.successes):
                target = UP
        else:
            failed_status = DNS if check.state == "dns_error" else DOWN
            if previous in (UNKNOWN, UP) and self.fails >= self.failures:
                target = failed_status
            elif previous in (DOWN, DNS):
                target = failed_status
        if target != previous:
            out.append(self._change(previous, target, check, new_incident))
        elif target in (DOWN, DNS) and check.state != self.state and not check.ok:
            # still failing, but differently (refused -> timeout): recorded, not alerted
            self.state = check.state
            out.append(Change(self.name, check.at, previous, target, check, self.incident, None,
                              "the failure changed"))
        if self.flapping and check.at - self.last_change >= self.flap_window:
            out.append(self._end_flapping(check))
        if not check.ok or target != UNKNOWN:
            self.state = check.state
        return out

    def _change(self, previous: str, status: str, check: Check, new_incident: Any) -> Change:
        self.status = status
        self.since = check.at
        self.state = check.state
        if previous != UNKNOWN:
            self.changes.append(check.at)
            self.last_change = check.at
            while self.changes and check.at - self.changes[0] > self.flap_window:
                self.changes.popleft()
        alert: str | None = None
        note = ""
        if status in (DOWN, DNS):
            if self.incident is None and self.closed_incident is not None \
                    and check.at - self.closed_at <= self.flap_window:
                # down again soon after recovering: the same trouble, the same incident
                self.incident = self.closed_incident
                self.incident_changes += 1
                alert = status
                note = "reopened"
            elif self.incident is None:
                self.incident = new_incident()
                self.incident_opened = check.at
                self.incident_changes = 1
                alert = status
            else:  # back down within an incident still open (flapping): no new incident
                self.incident_changes += 1
                alert = None if self.flapping else status
        else:  # up
            if self.flapping:
                self.incident_changes += 1
                alert = None
            else:
                alert = UP if previous != UNKNOWN and self.incident is not None else None
                if self.incident is not None:
                    self.incident_changes += 1
        if not self.flapping and len(self.changes) >= self.flap_changes and self.incident is not None:
            self.flapping = True
            alert = "flapping"
            note = f"{len(self.changes)} changes within {self.flap_window:g} s"
        incident = self.incident
        if status == UP and not self.flapping:
            self._close(check.at)
        if alert is None and self.flapping:
            note = "flapping: alert held back"
        return Change(self.name, check.at, previous, status, check, incident, alert, note)

    def _end_flapping(self, check: Check) -> Change:
        """Stable for a whole window: one alert says how the flapping ended."""
        self.flapping = False
        self.changes.clear()
        incident = self.incident
        if self.status == UP:
            self._close(check.at)
            alert = UP
        else:
            alert = self.status
        return Change(self.name, check.at, self.status, self.status, check, incident, alert,
                      f"stopped flapping; {self.status} for {check.at - self.last_change:.0f} s")

    def _close(self, at: float) -> None:
        if self.incident is not None:
            self.closed_incident, self.closed_at = self.incident, at
        self.incident = None

    @property
    def incident_kind(self) -> str:
        """The kind of the open incident: flapping, dns or down."""
        return "flapping" if self.flapping else (DNS if self.status == DNS else DOWN)
