"""Start-up cost of portdoctor, measured like hyperfine: warm-up runs, then the best of N.

Times, in one run so the figures compare: `python -c pass` (the interpreter's floor),
`ss -ltn` (what a user would otherwise type), `portdoctor --help` and
`portdoctor probe 127.0.0.1:1` (a closed loopback port: refused at once, so the figure is
start-up plus one connect). Goals: --help under 0.3 s; the probe's median under 0.10 s.

    python bench/bench_startup.py [-n 20] [--warmup 3] [--json]

When a figure misses, `python -X importtime -m portdoctor --help 2>&1 | sort -t'|' -k2 -n`
shows which import costs it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

GOAL_SECONDS = 0.3
# median goals per command (issue 10: the probe of a closed loopback port in 0.10 s)
MEDIAN_GOALS = {"portdoctor --help": 0.3, "portdoctor probe 127.0.0.1:1": 0.10}


@dataclass
class Figure:
    """Timings of one command: best, median and mean of the measured runs, in seconds."""

    name: str
    argv: list[str]
    best: float
    median: float
    mean: float
    runs: int
    exit_codes: list[int]


def time_command(name: str, argv: list[str], runs: int, warmup: int) -> Figure:
    """Run argv `warmup` times untimed, then `runs` times timed; return the figures."""
    codes: list[int] = []
    for _ in range(warmup):
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        cp = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
        codes.append(cp.returncode)
    return Figure(name, argv, min(times), statistics.median(times), statistics.fmean(times), runs,
                  sorted(set(codes)))


def commands(python: str) -> list[tuple[str, list[str]]]:
    """The commands to time, the interpreter floor first."""
    out = [("python -c pass", [python, "-c", "pass"])]
    ss = shutil.which("ss")
    if ss:
        out.append(("ss -ltn", [ss, "-ltn"]))
    out.append(("portdoctor --help", [python, "-m", "portdoctor", "--help"]))
    out.append(("portdoctor probe 127.0.0.1:1", [python, "-m", "portdoctor", "probe", "127.0.0.1:1"]))
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the figures and ratios; exit 1 when a portdoctor figure misses the goal."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)

    figures = [time_command(name, cmd, a.runs, a.warmup) for name, cmd in commands(a.python)]
    floor = figures[0].best
    if a.json:
        print(json.dumps([{**f.__dict__, "vs_python": f.best / floor} for f in figures], indent=1))
    else:
        print(f"best of {a.runs} (after {a.warmup} warm-up runs), {os.cpu_count()} CPUs, {a.python}")
        print(f"{'command':34} {'best':>8} {'median':>8} {'mean':>8} {'x python':>9}  exit")
        for f in figures:
            print(f"{f.name:34} {f.best * 1000:7.1f}ms {f.median * 1000:7.1f}ms {f.mean * 1000:7.1f}ms "
                  f"{f.best / floor:8.1f}x  {','.join(map(str, f.exit_codes))}")
        by = {f.name: f for f in figures}
        if "ss -ltn" in by:
            for name in ("portdoctor --help", "portdoctor probe 127.0.0.1:1"):
                print(f"{name} / ss -ltn = {by[name].best / by['ss -ltn'].best:.1f}x")
    for f in figures:
        if f.name in MEDIAN_GOALS:
            print(f"{f.name}: median {f.median * 1000:.1f} ms, goal {MEDIAN_GOALS[f.name] * 1000:.0f} ms: "
                  + ("met" if f.median <= MEDIAN_GOALS[f.name] else "MISSED"))
    missed = [f for f in figures if f.name.startswith("portdoctor")
              and (f.best > GOAL_SECONDS or f.median > MEDIAN_GOALS.get(f.name, GOAL_SECONDS))]
    for f in missed:
        print(f"MISSED: {f.name}: best {f.best:.3f} s (goal {GOAL_SECONDS} s), median {f.median:.3f} s "
              f"(goal {MEDIAN_GOALS.get(f.name, GOAL_SECONDS)} s)", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
