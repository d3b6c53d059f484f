"""The scheduler on a real asyncio loop: no drift, no pile-up, a slow job delays no other."""

from __future__ import annotations

import asyncio

from portdoctor.monitor.scheduler import Scheduler, offset_for


def test_runs_keep_their_plan_without_drift() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        starts: list[float] = []

        async def job(_j: object) -> None:
            starts.append(loop.time())
            await asyncio.sleep(0.03)  # each run takes a while: the plan must not slide by it

        s = Scheduler(job)
        t0 = loop.time() + 0.05
        s.add("a", 0.1, None, start=t0)
        await asyncio.sleep(1.02)
        s.stop()
        await s.drain(1)
        return [x - t0 for x in starts]

    starts = asyncio.run(main())
    assert len(starts) >= 9
    for n, t in enumerate(starts):
        assert abs(t - n * 0.1) < 0.03, (n, t)  # run n starts at n * interval, not n * (interval + 0.03)


def test_a_busy_job_is_skipped_not_piled_up_and_others_stay_on_time() -> None:
    async def main() -> tuple[int, int, float, int]:
        loop = asyncio.get_running_loop()
        slow_runs = 0
        fast_lags: list[float] = []

        async def job(j: object) -> None:
            nonlocal slow_runs
            if j.key == "slow":  # type: ignore[attr-defined]
                slow_runs += 1
                await asyncio.sleep(0.35)  # far longer than its interval

        s = Scheduler(job)
        s.on_lag = fast_lags.append
        t0 = loop.time() + 0.02
        s.add("slow", 0.1, None, start=t0)
        for i in range(20):
            s.add(f"fast{i}", 0.1, None, start=t0 + i * 0.005)
        await asyncio.sleep(1.0)
        s.stop()
        await s.drain(1)
        stats = s.lag_stats()
        return slow_runs, s.jobs["slow"].skipped, stats.p99, s.jobs["fast0"].runs

    slow_runs, skipped, p99, fast_runs = asyncio.run(main())
    assert slow_runs <= 3 and skipped >= 6  # one run at a time; the rest skipped
    assert fast_runs >= 9  # the fast job ran on every tick
    assert p99 < 0.05


def test_concurrency_bound_is_respected() -> None:
    async def main() -> int:
        running = peak = 0

        async def job(_j: object) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.05)
            running -= 1

        s = Scheduler(job, concurrency=3)
        for i in range(10):
            s.add(f"j{i}", 10, None, start=asyncio.get_running_loop().time())
        await asyncio.sleep(0.4)
        s.stop()
        await s.drain(1)
        return peak

    assert asyncio.run(main()) == 3


def test_offsets_spread_jobs_over_the_interval() -> None:
    offsets = sorted(offset_for(f"10.0.{i // 250}.{i % 250}:80", 10.0) for i in range(1000))
    assert 0 <= offsets[0] < 0.2 and 9.8 < offsets[-1] < 10
    # no second of the interval holds more than twice its share
    per_second = [sum(1 for o in offsets if s <= o < s + 1) for s in range(10)]
    assert max(per_second) < 200, per_second
    assert offset_for("a", 10) == offset_for("a", 10)  # stable across restarts
