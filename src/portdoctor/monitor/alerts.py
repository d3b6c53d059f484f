"""Alerts of `watch`: to the log and to a webhook (JSON), grouped by cause.

- A host that does not answer at all (state `unreachable`) raises one alert for the host, not
  one per port: the first unreachable target opens a host group, waits `group_wait` seconds
  for its neighbours, then alerts once with every target in it; the group's `up` alert goes
  out when the last of them recovers.
- The webhook gets a `portdoctor.alert/1` JSON body, with a timeout per attempt and retries
  with exponential backoff. Deliveries run on their own task from a bounded queue, so a
  webhook that hangs delays no probe and no other part of the monitor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from portdoctor.monitor.config import AlertSettings

log = logging.getLogger("portdoctor.watch")

SCHEMA = "portdoctor.alert/1"


@dataclass
class Alert:
    """One alert: a target (or a host group) went down, came back, or is flapping."""

    event: str  # down | dns | up | flapping
    name: str
    target: str
    at: float
    state: str
    cause: str | None
    summary: str
    incident: int | None
    labels: dict[str, str] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)
    fix: list[dict[str, Any]] = field(default_factory=list)
    host: str = ""
    targets: list[str] = field(default_factory=list)  # for a host group: every target in it
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """The webhook body."""
        return {
            "schema": SCHEMA,
            "event": self.event,
            "name": self.name,
            "target": self.target,
            "at": _iso(self.at),
            "state": self.state,
            "cause": self.cause,
            "summary": self.summary,
            "incident": self.incident,
            "labels": self.labels,
            "evidence": self.evidence,
            "fix": self.fix,
            "host": self.host or None,
            "targets": self.targets or [self.name],
            "note": self.note or None,
        }

    def line(self) -> str:
        """One log line."""
        cause = f" cause={self.cause}" if self.cause else ""
        extra = f" ({self.note})" if self.note else ""
        return f"{self.event.upper()} {self.name} [{self.target}] state={self.state}{cause}: {self.summary}{extra}"


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass
class _HostGroup:
    host: str
    members: dict[str, Alert]
    opened: float
    sent: bool = False
    timer: asyncio.TimerHandle | None = None


class AlertRouter:
    """Groups, logs and delivers alerts; counts what happened for /metrics."""

    def __init__(self, settings: AlertSettings, queue_size: int = 1000) -> None:
        self.settings = settings
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(queue_size)
        self._groups: dict[str, _HostGroup] = {}
        self._member_of: dict[str, str] = {}
        self._worker: asyncio.Task[None] | None = None
        self._session: Any = None
        self.counts: dict[str, int] = {"sent": 0, "failed": 0, "dropped": 0, "grouped": 0}
        self.last_error: str | None = None
        self.delivered: list[dict[str, Any]] = []  # the last few bodies, for the dashboard
        self._loop = asyncio.get_running_loop()

    # ------------------------------------------------------------------ routing

    def submit(self, alert: Alert) -> None:
        """Take an alert from the state machine: group it, or emit it now."""
        if alert.event in ("down",) and alert.state == "unreachable" and alert.host:
            self._join_group(alert)
            return
        host = self._member_of.pop(alert.name, None)
        if host is not None:
            group = self._groups.get(host)
            if group is not None:
                group.members.pop(alert.name, None)
                if alert.event == "up" and not group.members:
                    self._close_group(group, alert)
                    return
                if alert.event == "up":
                    self.counts["grouped"] += 1
                    return  # the host's other targets are still unreachable: the group speaks
        self._emit(alert)

    def _join_group(self, alert: Alert) -> None:
        group = self._groups.get(alert.host)
        self._member_of[alert.name] = alert.host
        if group is not None:
            group.members[alert.name] = alert
            self.counts["grouped"] += 1
            return
        group = _HostGroup(alert.host, {alert.name: alert}, alert.at)
        self._groups[alert.host] = group
        if self.settings.group_wait > 0:
            group.timer = self._loop.call_later(self.settings.group_wait, self._send_group, group)
        else:
            self._send_group(group)

    def _send_group(self, group: _HostGroup) -> None:
        if group.sent or self._groups.get(group.host) is not group or not group.members:
            return
        group.sent = True
        first = next(iter(group.members.values()))
        names = sorted(group.members)
        if len(names) == 1:
            self._emit(first)
            return
        self._emit(Alert(
            event="down", name=f"host {group.host}", target=group.host, at=group.opened, state="unreachable",
            cause=first.cause or "host_unreachable",
            summary=f"host {group.host} is unreachable: {len(names)} targets down ({', '.join(names)})",
            incident=first.incident, labels=first.labels, evidence=first.evidence, fix=first.fix,
            host=group.host, targets=names))

    def _close_group(self, group: _HostGroup, last: Alert) -> None:
        del self._groups[group.host]
        if group.timer is not None:
            group.timer.cancel()
        if not group.sent:  # recovered before anyone was told: stay silent
            return
        self._emit(Alert(
            event="up", name=f"host {group.host}", target=group.host, at=last.at, state=last.state,
            cause="ok", summary=f"host {group.host} answers again", incident=last.incident,
            labels=last.labels, host=group.host, targets=[last.name]))

    # ------------------------------------------------------------------ delivery

    def _emit(self, alert: Alert) -> None:
        if self.settings.log:
            level = logging.INFO if alert.event == "up" else logging.WARNING
            log.log(level, alert.line())
        if self.settings.webhook is None:
            return
        try:
            self._queue.put_nowait(alert)
        except asyncio.QueueFull:
            self.counts["dropped"] += 1
            log.error("alert queue full (%d waiting): dropped the alert for %s", self._queue.qsize(), alert.name)
            return
        if self._worker is None or self._worker.done():
            self._worker = self._loop.create_task(self._deliver_loop())

    async def _deliver_loop(self) -> None:
        import aiohttp

        hook = self.settings.webhook
        assert hook is not None
        timeout = aiohttp.ClientTimeout(total=hook.timeout)
        headers = {"Content-Type": "application/json", "User-Agent": "portdoctor-watch", **dict(hook.headers)}
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=timeout, headers=headers)
        while True:
            alert = await self._queue.get()
            try:
                await self._post(alert)
            finally:
                self._queue.task_done()

    async def _post(self, alert: Alert) -> None:
        hook = self.settings.webhook
        assert hook is not None
        body = alert.to_json()
        error = ""
        for attempt in range(hook.retries + 1):
            if attempt:
                await asyncio.sleep(hook.backoff * 2 ** (attempt - 1))
            try:
                async with self._session.post(hook.url, json=body) as resp:
                    await resp.read()
                    if resp.status < 300:
                        self.counts["sent"] += 1
                        self.delivered = (self.delivered + [body])[-20:]
                        return
                    error = f"HTTP {resp.status}"
                    if 400 <= resp.status < 500 and resp.status not in (408, 429):
                        break  # the receiver rejects this body: retrying will not help
            except asyncio.TimeoutError:
                error = f"no answer within {hook.timeout:g} s"
            except Exception as exc:  # connection refused, reset, DNS: retry, then report
                error = f"{type(exc).__name__}: {exc}"
        self.counts["failed"] += 1
        self.last_error = f"{hook.safe_url}: {error}"
        log.error("webhook %s: could not deliver the %s alert for %s after %d attempt(s): %s",
                  hook.safe_url, alert.event, alert.name, attempt + 1, error)

    async def close(self, grace: float = 2.0) -> None:
        """Deliver what is queued within `grace` seconds, then stop."""
        if self._worker is not None and not self._worker.done():
            try:
                await asyncio.wait_for(self._queue.join(), grace)
            except asyncio.TimeoutError:
                log.error("webhook: %d alert(s) not delivered at shutdown", self._queue.qsize())
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):
                pass
        if self._session is not None:
            await self._session.close()
            self._session = None

    def pending(self) -> int:
        """Alerts waiting for the webhook."""
        return self._queue.qsize()
