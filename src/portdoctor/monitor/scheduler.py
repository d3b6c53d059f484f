"""Run many periodic jobs on one asyncio loop: on time, without drift, without pile-up.

- No drift: run n of a job is planned at start + offset + n * interval, whatever the runs took.
- Jittered start: each job's offset within its first interval comes from its key, so a
  thousand targets do not fire at once (and keep their slot across restarts).
- No pile-up: a job whose previous run is still going skips this run (counted), and a loop
  that fell behind by more than an interval skips forward instead of catching up in a burst.
- A slow job never delays others: every run is its own task; only `concurrency` bounds how
  many run at once.

Lag (actual start minus planned start) of recent runs is kept for metrics and benchmarks.
"""

from __future__ import annotations

import asyncio
import math
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable


@dataclass(eq=False)
class Job:
    """One periodic job: its key, interval, payload and bookkeeping."""

    key: str
    interval: float
    payload: Any
    busy: bool = False
    handle: asyncio.TimerHandle | None = None
    runs: int = 0
    skipped: int = 0
    removed: bool = False


@dataclass
class LagStats:
    """Summary of recent scheduling lags, in seconds."""

    count: int
    p50: float
    p99: float
    max: float
    skipped: int
    runs: int
    recent: list[float] = field(default_factory=list)


def offset_for(key: str, interval: float) -> float:
    """Where in its interval a job first runs: spread evenly by a hash of its key."""
    return (zlib.crc32(key.encode()) / 2**32) * interval


class Scheduler:
    """Fire `run(job)` for every job on its interval (see the module docstring)."""

    def __init__(self, run: Callable[[Job], Awaitable[None]], concurrency: int = 1000,
                 keep_lags: int = 100_000) -> None:
        self._run = run
        self._sem = asyncio.Semaphore(concurrency)
        self._jobs: dict[str, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._lags: deque[float] = deque(maxlen=keep_lags)
        self._loop = asyncio.get_running_loop()
        self.skipped = 0
        self.runs = 0
        self.running = True
        self.on_lag: Callable[[float], None] | None = None

    @property
    def jobs(self) -> dict[str, Job]:
        return self._jobs

    def add(self, key: str, interval: float, payload: Any, start: float | None = None) -> Job:
        """Schedule a job; its first run is at `start` (loop time) or at its jittered offset."""
        self.remove(key)
        job = Job(key, interval, payload)
        first = start if start is not None else self._loop.time() + offset_for(key, interval)
        job.handle = self._loop.call_at(first, self._fire, job, first)
        self._jobs[key] = job
        return job

    def remove(self, key: str) -> None:
        """Stop scheduling a job (a run in progress finishes)."""
        job = self._jobs.pop(key, None)
        if job is not None:
            job.removed = True
            if job.handle is not None:
                job.handle.cancel()

    def _fire(self, job: Job, planned: float) -> None:
        if job.removed or not self.running:
            return
        now = self._loop.time()
        nxt = planned + job.interval
        if nxt <= now:  # fell behind by a whole interval: skip forward, do not burst
            missed = math.floor((now - planned) / job.interval)
            job.skipped += missed
            self.skipped += missed
            nxt = planned + (missed + 1) * job.interval
        job.handle = self._loop.call_at(nxt, self._fire, job, nxt)
        if job.busy:  # the previous run is still going: no second run on top of it
            job.skipped += 1
            self.skipped += 1
            return
        job.busy = True
        task = self._loop.create_task(self._one(job, planned))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _one(self, job: Job, planned: float) -> None:
        try:
            async with self._sem:
                lag = self._loop.time() - planned
                self._lags.append(lag)
                if self.on_lag is not None:
                    self.on_lag(lag)
                job.runs += 1
                self.runs += 1
                await self._run(job)
        finally:
            job.busy = False

    def stop(self) -> None:
        """Plan no more runs."""
        self.running = False
        for job in self._jobs.values():
            if job.handle is not None:
                job.handle.cancel()

    async def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for runs in progress; cancel the rest. True if all ended."""
        if not self._tasks:
            return True
        _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        return not pending

    def lag_stats(self, last: int | None = None) -> LagStats:
        """Percentiles of the most recent `last` lags (all kept ones by default)."""
        lags = list(self._lags)
        if last is not None:
            lags = lags[-last:]
        if not lags:
            return LagStats(0, 0.0, 0.0, 0.0, self.skipped, self.runs)
        ordered = sorted(lags)

        def q(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(math.ceil(p * len(ordered))) - 1)]

        return LagStats(len(ordered), q(0.5), q(0.99), ordered[-1], self.skipped, self.runs)
