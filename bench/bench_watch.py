"""`portdoctor watch` at scale: 5,000 targets every 10 s on loopback, held for 2 minutes.

Half the targets are open (a few listeners on 127.0.0.2-5 that this bench opens in a helper
process, which accepts and holds each connection until the client closes it), half are
refused (nothing listens on 127.0.1.x). A few refused targets ask for a local diagnosis.
The monitor runs as the real command, `python -m portdoctor watch CONFIG`, with its history,
dashboard and /metrics (scraped every 15 s, as Prometheus would).

Measured over the window, after one interval of warm-up:
  - scheduling lag: p50 / p99 / max of (actual start - planned start) of every check (goal p99 < 1 s)
  - CPU: the monitor's user + system time over wall time (goal < 50 % of one core)
  - memory: the monitor's largest RSS (goal < 300 MB)
  - the cost of a /metrics scrape, and the dashboard's overview page

    python bench/bench_watch.py [--targets 5000] [--interval 10] [--seconds 120] [--json]

Bounded: it stops by itself after warm-up + window (about 2.5 minutes by default), and kills
what it started on any exit. Traffic stays on 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

GOALS = {"lag_p99_s": 1.0, "cpu_share": 0.5, "rss_mb": 300.0}
LISTEN_ADDRS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
LISTEN_PORTS = list(range(21000, 21025))  # 4 x 25 = 100 listening sockets

ACCEPTOR = r"""
import selectors, socket, sys
sel = selectors.DefaultSelector()
for addr in sys.argv[1].split(","):
    for port in map(int, sys.argv[2].split(",")):
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port)); s.listen(4096); s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, "listen")
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        if key.data == "listen":
            try:
                conn, _ = key.fileobj.accept()
            except OSError:
                continue
            conn.setblocking(False)
            sel.register(conn, selectors.EVENT_READ, "conn")
        else:
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(key.fileobj); key.fileobj.close()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def get(port: int, path: str, timeout: float = 10) -> tuple[bytes, float]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
        body = resp.read()
    return body, time.perf_counter() - t0


def write_config(folder: Path, n: int, interval: float, web_port: int) -> Path:
    lines = [f"history: {{path: {folder / 'history.db'}}}",
             f"web: {{listen: '127.0.0.1:{web_port}'}}",
             "alerts: {log: false}",
             f"defaults: {{interval: {interval}s, timeout: 2s, failures: 2}}",
             "concurrency: 2000",
             "targets:"]
    open_endpoints = [(a, p) for a in LISTEN_ADDRS for p in LISTEN_PORTS]
    for i in range(n):
        if i % 2 == 0:
            addr, port = open_endpoints[(i // 2) % len(open_endpoints)]
            lines.append(f"  - {{target: '{addr}:{port}', name: open-{i}}}")
        else:
            addr = f"127.0.1.{1 + (i // 2) % 250}"
            port = 22000 + (i // 500)
            extra = ", diagnose: local" if i % 250 == 1 else ""
            lines.append(f"  - {{target: '{addr}:{port}', name: refused-{i}{extra}}}")
    path = folder / "watch.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", type=int, default=5000)
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=120.0, help="measurement window after warm-up")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="pd-bench-watch-") as tmp:
        folder = Path(tmp)
        try:
            acceptor = subprocess.Popen([sys.executable, "-c", ACCEPTOR, ",".join(LISTEN_ADDRS),
                                         ",".join(map(str, LISTEN_PORTS))], stdout=subprocess.PIPE, text=True)
            procs.append(acceptor)
            assert acceptor.stdout is not None and acceptor.stdout.readline().strip() == "ready"
            web_port = free_port()
            cfg = write_config(folder, args.targets, args.interval, web_port)
            log = open(folder / "watch.log", "w")
            watch = subprocess.Popen([sys.executable, "-m", "portdoctor", "watch", str(cfg)], stderr=log, stdout=log)
            procs.append(watch)
            deadline = time.monotonic() + 60
            while True:
                try:
                    get(web_port, "/healthz", 1)
                    break
                except OSError:
                    if watch.poll() is not None or time.monotonic() > deadline:
                        print((folder / "watch.log").read_text(), file=sys.stderr)
                        return 3
                    time.sleep(0.2)
            started = time.monotonic()
            time.sleep(args.interval + 5)  # warm-up: every target has had its first check

            st0 = json.loads(get(web_port, "/api/status")[0])
            cpu0, t0 = cpu_seconds(watch.pid), time.monotonic()
            peak_rss = rss_mb(watch.pid)
            scrapes: list[tuple[float, int]] = []
            next_scrape = t0
            end = t0 + args.seconds
            while time.monotonic() < end:
                if watch.poll() is not None:
                    print("watch exited during the run:\n" + (folder / "watch.log").read_text(), file=sys.stderr)
                    return 1
                peak_rss = max(peak_rss, rss_mb(watch.pid))
                if time.monotonic() >= next_scrape:
                    body, took = get(web_port, "/metrics")
                    scrapes.append((took, len(body)))
                    next_scrape += 15
                time.sleep(1.0)
            cpu1, t1 = cpu_seconds(watch.pid), time.monotonic()
            st1 = json.loads(get(web_port, "/api/status")[0])
            window_checks = st1["probes"] - st0["probes"]
            lags = json.loads(get(web_port, f"/api/status?last={window_checks}")[0])["lag"]
            _page, page_time = get(web_port, "/")
            targets = json.loads(get(web_port, "/api/targets")[0])["targets"]
            by_status: dict[str, int] = {}
            for t in targets:
                by_status[t["status"]] = by_status.get(t["status"], 0) + 1
            peak_rss = max(peak_rss, rss_mb(watch.pid))

            t_stop = time.monotonic()
            watch.send_signal(signal.SIGTERM)
            code = watch.wait(30)
            stop_seconds = time.monotonic() - t_stop
            db_mb = sum(p.stat().st_size for p in folder.glob("history.db*")) / 1e6
        finally:
            for p in reversed(procs):
                if p.poll() is None:
                    p.kill()
                    p.wait()

    wall = t1 - t0
    result = {
        "targets": args.targets,
        "interval_s": args.interval,
        "window_s": round(wall, 1),
        "checks": window_checks,
        "checks_per_s": round(window_checks / wall, 1),
        "expected_checks_per_s": round(args.targets / args.interval, 1),
        "skipped": st1["lag"]["skipped"],
        "lag_p50_s": round(lags["p50"], 4),
        "lag_p99_s": round(lags["p99"], 4),
        "lag_max_s": round(lags["max"], 4),
        "cpu_share": round((cpu1 - cpu0) / wall, 3),
        "rss_mb": round(peak_rss, 1),
        "metrics_scrape_s": round(max(s[0] for s in scrapes), 3) if scrapes else None,
        "metrics_bytes": scrapes[-1][1] if scrapes else None,
        "overview_page_s": round(page_time, 3),
        "status": by_status,
        "history_mb": round(db_mb, 1),
        "sigterm_exit": code,
        "sigterm_seconds": round(stop_seconds, 2),
        "run_s": round(time.monotonic() - started, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        goal = {"lag_p99_s": "< 1 s", "cpu_share": "< 0.5 core", "rss_mb": "< 300 MB"}
        for k, v in result.items():
            mark = ""
            if k in GOALS:
                mark = f"   goal {goal[k]}: {'met' if v < GOALS[k] else 'MISSED'}"
            print(f"{k:22} {v}{mark}")
    met = all(result[k] < v for k, v in GOALS.items())
    return 0 if met and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
