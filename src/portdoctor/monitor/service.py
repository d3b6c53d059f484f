"""The `watch` process: schedule probes, track states, diagnose, record, alert, serve.

config -> Scheduler (aprobe per target) -> Tracker (state changes) -> local diagnosis for
targets that ask for it -> Batch (history, written in the background) + AlertRouter + the
live view read by /metrics and the dashboard. Storage trouble (locked, read-only, full) is
reported and retried; probing never waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from portdoctor.addresses import endpoint
from portdoctor.model import ProbeResult, State
from portdoctor.monitor.alerts import Alert, AlertRouter
from portdoctor.monitor.aprobe import HttpOutcome, aprobe
from portdoctor.monitor.config import WatchConfig, WatchTarget, load_config
from portdoctor.monitor.history import (
    Batch,
    Event,
    Incident,
    Rollup,
    SqliteStore,
    StorageError,
    Store,
    TargetState,
)
from portdoctor.monitor.scheduler import Job, Scheduler
from portdoctor.monitor.state import (
    DNS,
    DOWN,
    DURATION_BUCKETS,
    STATE_CAUSE,
    UNKNOWN,
    UP,
    Change,
    Check,
    Tracker,
)

log = logging.getLogger("portdoctor.watch")

# histogram buckets of probe durations (seconds): loopback to a slow far host
STATES = ("open", "refused", "timeout", "unreachable", "dns_error", "error", "http_error")


@dataclass(eq=False)
class Live:
    """Everything known right now about one target (read by /metrics and the dashboard)."""

    spec: WatchTarget
    tracker: Tracker
    last: Check | None = None
    cause: str | None = None
    summary: str = "not checked yet"
    diagnosis: dict[str, Any] | None = None
    last_duration: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    dur_sum: float = 0.0
    dur_count: int = 0
    failures: dict[tuple[str, str], int] = field(default_factory=dict)  # (state, cause) -> count
    dirty: bool = True
    incident_id: int | None = None
    incident_kind: str = DOWN
    incident_cause: str | None = None
    incident_summary: str = ""
    label_cache: tuple[tuple[str, ...], str] | None = None  # for /metrics
    restored_diagnosis: bool = False  # tried once for a target found down at start

    @property
    def name(self) -> str:
        return self.spec.name

    def observe(self, seconds: float) -> None:
        self.last_duration = seconds
        self.dur_sum += seconds
        self.dur_count += 1
        for i, edge in enumerate(DURATION_BUCKETS):
            if seconds <= edge:
                self.buckets[i] += 1
                break


def summarize(probe: ProbeResult, http: HttpOutcome | None) -> tuple[bool, str, str, float, str]:
    """(ok, state, one-line summary, seconds, host) of one probe and its HTTP check."""
    addrs = probe.addresses
    host = addrs[0].address if addrs else probe.target.host
    if probe.state is State.DNS_ERROR:
        return False, "dns_error", f"{probe.target.host}: {probe.dns_error or 'did not resolve'}", 0.0, host
    if probe.state is State.OPEN:
        first = next(a for a in addrs if a.state is State.OPEN)
        seconds = first.seconds
        if http is not None:
            seconds += http.seconds
            if not http.ok:
                return False, "http_error", f"{first.address} accepted, but {http.error}", seconds, first.address
            return True, "open", f"HTTP {http.status} from {first.address} in {seconds * 1000:.1f} ms", seconds, \
                first.address
        note = f" ({first.detail})" if first.detail else ""
        return True, "open", f"{first.address} accepted in {seconds * 1000:.1f} ms{note}", seconds, first.address
    a = addrs[0]
    if probe.state is State.REFUSED:
        text = f"{a.address} refused the connection ({a.errno or 'ECONNREFUSED'})"
    elif probe.state is State.TIMEOUT:
        text = f"no answer from {a.address} within {probe.timeout:g} s"
    elif probe.state is State.UNREACHABLE:
        text = f"{a.address} is unreachable ({a.errno})"
    else:
        text = f"{a.address}: {a.errno or 'error'}" + (f": {a.detail}" if a.detail else "")
    if len(addrs) > 1:
        text += f" (and {len(addrs) - 1} more address{'es' if len(addrs) > 2 else ''})"
    return False, probe.state.value, text, a.seconds, a.address


class Watch:
    """One monitor: its config, live state, scheduler, history and alerts."""

    def __init__(self, config: WatchConfig, store: Store | None = None, flush_interval: float = 5.0) -> None:
        self.config = config
        self.store: Store = store if store is not None else SqliteStore(config.history.path)
        self.flush_interval = flush_interval
        self.lives: dict[str, Live] = {}
        self.started = time.time()
        self.hostname = socket.gethostname()
        self.storage_ok: bool | None = None
        self.storage_error: str | None = None
        self.storage_errors = 0
        self.probes = 0
        self.config_error: list[str] = []
        self.reloads = 0
        self._current = Batch()
        self._pending = Batch()
        self._next_incident = int(time.time())
        self._flush_now: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="pd-history")
        self._resolver = ThreadPoolExecutor(16, thread_name_prefix="pd-resolve")
        self._diagnoser = ThreadPoolExecutor(config.diagnosis_workers, thread_name_prefix="pd-diagnose")
        self.scheduler: Scheduler | None = None
        self.router: AlertRouter | None = None
        self._last_prune = 0.0
        self._last_storage_log = 0.0
        self._install(config, {})

    # ------------------------------------------------------------------ targets

    def _install(self, config: WatchConfig, keep: dict[str, Live]) -> None:
        lives: dict[str, Live] = {}
        a = config.alerts
        for spec in config.targets:
            old = keep.get(spec.name)
            if old is not None:
                tr = old.tracker
                tr.failures, tr.successes = spec.failures, spec.successes
                tr.flap_window, tr.flap_changes = a.flap_window, a.flap_changes
                old.spec = spec
                lives[spec.name] = old
            else:
                lives[spec.name] = Live(spec, Tracker(spec.name, spec.failures, spec.successes,
                                                      a.flap_window, a.flap_changes))
            self._current.targets[spec.name] = (spec.target.input, dict(spec.labels))
        self.lives = lives
        self.config = config

    def _restore(self, states: dict[str, TargetState]) -> None:
        """Take up the state machines where the last run (or --once) left them."""
        for name, st in states.items():
            live = self.lives.get(name)
            if live is None:
                continue
            tr = live.tracker
            tr.status, tr.state, tr.since, tr.fails, tr.oks, tr.incident = (
                st.status, st.state, st.since, st.fails, st.oks, st.incident)
            live.cause, live.summary = st.cause, st.summary
            live.incident_id = st.incident

    def _new_incident(self) -> int:
        self._next_incident += 1
        return self._next_incident

    async def _load_state(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._writer, self.store.open)
            states = await loop.run_in_executor(self._writer, self.store.load_states)
            top = await loop.run_in_executor(self._writer, self.store.max_incident)
            self._next_incident = max(self._next_incident, top)
            self._restore(states)
            self._storage_good()
        except StorageError as exc:
            self._storage_bad(exc)

    # ------------------------------------------------------------------ one check

    async def check(self, live: Live) -> list[Change]:
        """Probe one target once, feed its state machine, handle what changed."""
        spec = live.spec
        at = time.time()
        probe, http = await aprobe(spec.target, spec.timeout, spec.http, self._resolver)
        ok, state, text, seconds, host = summarize(probe, http)
        detail: dict[str, Any] = {"probe": probe.to_json()}
        if http is not None:
            detail["http"] = {"status": http.status, "error": http.error, "seconds": round(http.seconds, 4)}
        check = Check(at, ok, state, seconds, text, detail, host)
        self.probes += 1
        live.last = check
        live.observe(seconds)
        key = (spec.name, int(at // 60))
        r = self._current.rollups.get(key)
        if r is None:
            r = self._current.rollups[key] = Rollup()
        r.add(ok, seconds)
        changes = live.tracker.feed(check, self._new_incident)
        if not changes and (live.tracker.status == UNKNOWN or (ok and live.tracker.status == UP)):
            live.summary = text
        for ch in changes:
            await self._on_change(live, ch)
        if (not changes and not ok and spec.diagnose == "local" and live.diagnosis is None
                and not live.restored_diagnosis and live.tracker.status in (DOWN, DNS)):
            # down since before a restart: diagnose once so the dashboard can show why
            live.restored_diagnosis = True
            diag = await self._diagnose(spec)
            if diag is not None:
                live.diagnosis = diag
                live.cause, live.summary = diag["verdict"]["cause"], diag["verdict"]["summary"]
        if not ok:  # counted once the diagnosis (if any) has named the cause
            tr = live.tracker
            known = tr.status in (DOWN, DNS) and tr.state == state and live.cause
            k = (state, live.cause if known else STATE_CAUSE.get(state, "unknown"))
            live.failures[k] = live.failures.get(k, 0) + 1
        if changes or not ok or live.tracker.oks <= spec.successes:
            live.dirty = True
        return changes

    async def _diagnose(self, spec: WatchTarget) -> dict[str, Any] | None:
        """A local `diagnose` of the target (in a worker thread), as its JSON document."""
        from portdoctor.diagnose import diagnose

        loop = asyncio.get_running_loop()
        try:
            result = await asyncio.wait_for(
                loop.run_in_executor(self._diagnoser, lambda: diagnose(
                    spec.target, from_addr=spec.from_addr, service=spec.service, timeout=spec.timeout)),
                spec.timeout * 4 + 20)
        except asyncio.TimeoutError:
            log.warning("diagnosis of %s took too long; recorded without it", spec.name)
            return None
        except Exception as exc:  # a diagnosis must never take the monitor down
            log.warning("diagnosis of %s failed: %s: %s", spec.name, type(exc).__name__, exc)
            return None
        return result.to_json()

    async def _on_change(self, live: Live, ch: Change) -> None:
        spec, tr = live.spec, live.tracker
        check = ch.check
        detail = dict(check.detail)
        evidence: list[str] = []
        fixes: list[dict[str, Any]] = []
        if ch.status == UP:
            cause, summary = "ok", check.summary
            live.diagnosis = None
        else:
            cause = STATE_CAUSE.get(check.state, "unknown")
            summary = check.summary
            entering = ch.status != ch.previous
            if spec.diagnose == "local" and (ch.alert is not None or (entering and live.diagnosis is None)):
                # while the diagnosis runs, show what the probe alone can say
                live.cause, live.summary = STATE_CAUSE.get(check.state), summary
                diag = await self._diagnose(spec)
                if diag is not None:
                    detail["diagnosis"] = diag
                    cause = diag["verdict"]["cause"]
                    summary = diag["verdict"]["summary"]
                    live.diagnosis = diag
            elif live.diagnosis is not None and check.state == live.diagnosis["probe"]["state"]:
                cause, summary = live.cause or cause, live.summary
            if live.diagnosis is not None:
                for f in live.diagnosis.get("findings", [])[:1]:
                    evidence = list(f.get("evidence", []))
                    fixes = list(f.get("fix", []))
        live.cause, live.summary = cause, summary
        if ch.note:
            detail["note"] = ch.note
        self._current.events.append(Event(spec.name, ch.at, ch.status, check.state, cause, summary, detail,
                                          ch.incident, ch.previous))
        if ch.incident is not None:
            if ch.status != UP and (live.incident_id != ch.incident or ch.alert is not None):
                if live.incident_id != ch.incident:
                    live.incident_kind = ch.status
                live.incident_id, live.incident_cause, live.incident_summary = ch.incident, cause, summary
            if tr.flapping or ch.alert == "flapping":
                live.incident_kind = "flapping"
            closed = ch.at if (ch.status == UP and tr.incident is None) else None
            self._current.incidents[ch.incident] = Incident(
                ch.incident, spec.name, tr.incident_opened or ch.at, closed, live.incident_kind,
                live.incident_cause, live.incident_summary, tr.incident_changes)
        if ch.alert and self.router is not None:
            self.router.submit(Alert(
                event=ch.alert, name=spec.name, target=spec.target.input, at=ch.at, state=check.state,
                cause=cause, summary=summary, incident=ch.incident, labels=dict(spec.labels),
                evidence=evidence, fix=fixes, host=check.host, note=ch.note))
        live.dirty = True
        if self._flush_now is not None:
            self._flush_now.set()

    # ------------------------------------------------------------------ history

    def _collect_states(self) -> None:
        now = time.time()
        for live in self.lives.values():
            if not live.dirty:
                continue
            tr = live.tracker
            self._current.states[live.name] = TargetState(
                live.name, tr.status, tr.state, live.cause, live.summary, tr.since or now, tr.fails, tr.oks,
                tr.incident, now)
            live.dirty = False

    async def flush(self) -> bool:
        """Write what is waiting; on failure keep it for the next try. True when written."""
        self._collect_states()
        batch, self._pending = self._pending, Batch()
        batch.absorb(self._current)
        self._current = Batch()
        if batch.empty():
            return True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._writer, self.store.write, batch)
        except StorageError as exc:
            self._pending = batch
            self._storage_bad(exc)
            return False
        self._storage_good()
        now = time.time()
        if now - self._last_prune > 600:
            self._last_prune = now
            h = self.config.history
            try:
                await loop.run_in_executor(self._writer, lambda: self.store.prune(
                    now, h.keep_minutes, h.keep_hours, h.keep_events))
            except StorageError as exc:
                self._storage_bad(exc)
        return True

    def _storage_bad(self, exc: Exception) -> None:
        self.storage_errors += 1
        first = self.storage_ok is not False
        self.storage_ok = False
        self.storage_error = str(exc)
        now = time.time()
        if first or now - self._last_storage_log > 60:
            self._last_storage_log = now
            log.error("history: %s; probing goes on, %d record(s) wait to be written", exc, self._pending.size())

    def _storage_good(self) -> None:
        if self.storage_ok is False:
            log.warning("history: writing again to %s", self.store.path)
        self.storage_ok = True
        self.storage_error = None

    async def _flush_loop(self) -> None:
        assert self._flush_now is not None and self._stop is not None
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._flush_now.wait(), self.flush_interval)
                await asyncio.sleep(0.2)  # let a burst of changes land in one transaction
            except asyncio.TimeoutError:
                pass
            self._flush_now.clear()
            await self.flush()

    # ------------------------------------------------------------------ running

    async def _job(self, job: Job) -> None:
        try:
            await self.check(job.payload)
        except Exception:  # one target's bug must not stop the others
            log.exception("check of %s failed", job.key)

    def _schedule_all(self) -> None:
        assert self.scheduler is not None
        for key in list(self.scheduler.jobs):
            if key not in self.lives:
                self.scheduler.remove(key)
        for live in self.lives.values():
            job = self.scheduler.jobs.get(live.name)
            if job is None or job.interval != live.spec.interval or job.payload is not live:
                self.scheduler.add(live.name, live.spec.interval, live)

    async def reload(self) -> bool:
        """Read the config file again; install it only when it is valid. True when installed."""
        from portdoctor.monitor.config import ConfigError

        loop = asyncio.get_running_loop()
        try:
            new = await loop.run_in_executor(None, load_config, self.config.path)
        except ConfigError as exc:
            self.config_error = exc.errors
            for line in exc.errors:
                log.error("config reload rejected, the running config stays: %s", line)
            return False
        if (new.web.host, new.web.port) != (self.config.web.host, self.config.web.port):
            log.warning("web.listen changed: restart watch to move the dashboard")
        self.config_error = []
        self._install(new, self.lives)
        if self.router is not None:
            self.router.settings = new.alerts
        self._schedule_all()
        self.reloads += 1
        log.info("config reloaded: %d targets", len(self.lives))
        return True

    async def run(self, ready: Any = None) -> int:
        """Monitor until SIGTERM/SIGINT; SIGHUP reloads the config. Returns the exit code."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._flush_now = asyncio.Event()
        self.router = AlertRouter(self.config.alerts)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload()))
        await self._load_state()
        web = None
        if self.config.web.enabled:
            from portdoctor.monitor.web import start_web

            web = await start_web(self)
        self.scheduler = Scheduler(self._job, self.config.concurrency)
        self._schedule_all()
        flusher = loop.create_task(self._flush_loop())
        log.info("watching %d targets; history %s%s", len(self.lives), self.store.path,
                 f"; dashboard http://{_hostport(self.config.web.host, self.config.web.port)}/" if web else "")
        if ready is not None:
            ready()
        await self._stop.wait()
        log.info("stopping: finishing checks in progress and writing history")
        self.scheduler.stop()
        longest = max((t.timeout for t in self.config.targets), default=3.0)
        await self.scheduler.drain(min(10.0, longest + 1.0))
        flusher.cancel()
        try:
            await flusher
        except asyncio.CancelledError:
            pass
        written = await self.flush()
        await self.router.close(grace=2.0)
        if web is not None:
            await web.cleanup()
        await loop.run_in_executor(self._writer, self.store.close)
        self._shutdown_pools()
        if not written:
            log.error("history: %d record(s) could not be written before exit", self._pending.size())
        log.info("stopped")
        return 0

    async def once(self) -> list[Live]:
        """Check every target once (for cron): record, alert, and return the live states."""
        self._stop = asyncio.Event()
        self.router = AlertRouter(self.config.alerts)
        await self._load_state()
        sem = asyncio.Semaphore(self.config.concurrency)

        async def one(live: Live) -> None:
            async with sem:
                await self.check(live)

        await asyncio.gather(*(one(live) for live in self.lives.values()))
        await self.flush()
        hook = self.config.alerts.webhook
        grace = min(60.0, (hook.timeout + hook.backoff * 2) * (hook.retries + 1)) if hook else 0.0
        await self.router.close(grace=grace)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self.store.close)
        self._shutdown_pools()
        return list(self.lives.values())

    def _shutdown_pools(self) -> None:
        for pool in (self._writer, self._resolver, self._diagnoser):
            pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ views

    def status_counts(self) -> dict[str, int]:
        """How many targets are up, down, dns or unknown."""
        out = {UP: 0, DOWN: 0, DNS: 0, UNKNOWN: 0}
        for live in self.lives.values():
            out[live.tracker.status] = out.get(live.tracker.status, 0) + 1
        return out

    def target_json(self, live: Live) -> dict[str, Any]:
        """One target's current state as JSON (the /api/targets entries, `watch --once --json`)."""
        tr = live.tracker
        return {
            "name": live.name,
            "target": live.spec.target.input,
            "status": tr.status,
            "state": tr.state,
            "cause": live.cause,
            "summary": live.summary,
            "since": _iso(tr.since) if tr.since else None,
            "incident": tr.incident,
            "flapping": tr.flapping,
            "seconds": round(live.last.seconds, 6) if live.last else None,
            "checked": _iso(live.last.at) if live.last else None,
            "labels": dict(live.spec.labels),
        }


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _hostport(host: str, port: int) -> str:
    return endpoint(host, port)
