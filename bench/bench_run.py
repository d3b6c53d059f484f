"""Overhead of `portdoctor run`: a connect-heavy client run plain, under plain strace (the same
system-call filter, output to /dev/null: the reference) and under `portdoctor run`, in one run.

The client makes N connects to a refused loopback port and N to an open one (a listener in this
bench process accepts and closes), each non-blocking with SO_ERROR like asyncio, Node and Go.
Each command runs `--runs` times (after one warm-up); the best and the median are printed, and the
ratios against the plain run. `portdoctor run --no-diagnose` measures tracing and parsing only;
the full `portdoctor run` adds one diagnosis of the refused target.

    python bench/bench_run.py [-n 2000] [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

CLIENT = r"""
import errno, select, socket, sys
n, refused, opened = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
counts = {}
for port in [refused] * n + [opened] * n:
    s = socket.socket()
    s.setblocking(False)
    code = s.connect_ex(("127.0.0.1", port))
    if code == errno.EINPROGRESS:
        select.select([], [s], [], 2)
        code = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    counts[code] = counts.get(code, 0) + 1
    s.close()
print(sorted(counts.items()))
"""


def serve(sock: socket.socket, stop: threading.Event) -> None:
    """Accept and close connections until stopped."""
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = sock.accept()
            conn.close()
        except OSError:
            continue


def refused_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(argv: list[str], runs: int) -> tuple[list[float], str]:
    """Wall seconds of `runs` runs after one warm-up, and the client's last output line."""
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    times, out = [], ""
    for _ in range(runs):
        start = time.perf_counter()
        cp = subprocess.run(argv, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        out = (cp.stdout.strip().splitlines() or [""])[-1]
    return times, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=2000, help="connects to each port (default 2000)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()

    from portdoctor.runtrace.strace import command, find_strace

    strace = find_strace()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    stop = threading.Event()
    threading.Thread(target=serve, args=(listener, stop), daemon=True).start()
    client = [sys.executable, "-c", CLIENT, str(a.n), str(refused_port()), str(listener.getsockname()[1])]
    pd = [sys.executable, "-m", "portdoctor", "run", "--json", "--report", os.devnull]
    cases = [
        ("plain", client),
        ("strace (same filter, -o /dev/null)", command(strace, os.devnull, client)),
        ("portdoctor run --no-diagnose", [*pd, "--no-diagnose", "--", *client]),
        ("portdoctor run (with one diagnosis)", [*pd, "--timeout", "1", "--", *client]),
    ]
    results = []
    try:
        for name, argv in cases:
            times, out = timed(argv, a.runs)
            results.append({"name": name, "best": min(times), "median": statistics.median(times), "client": out})
    finally:
        stop.set()
        listener.close()
    base = results[0]["median"]
    for r in results:
        r["ratio"] = r["median"] / base
    if a.json:
        print(json.dumps({"connects": 2 * a.n, "runs": a.runs, "results": results}, indent=2))
        return 0
    print(f"{2 * a.n} connects ({a.n} refused, {a.n} accepted), best / median of {a.runs} runs, "
          f"strace {shutil.which('strace')}")
    for r in results:
        print(f"  {r['name']:<40} {r['best']:7.3f} s  {r['median']:7.3f} s  ×{r['ratio']:.2f}  {r['client']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
