"""Benchmark: `portdoctor scan` against Debian's `nmap -sT`, in the same run, on namespaces it builds.

    c (10.213.0.1) --- s (10.213.0.2): 5 ports open among 65,535
    c (10.213.1.1) --- d (10.213.1.2): INPUT drops every TCP packet

Times, from inside c, each as a fresh process (start-up included), median of --runs:
  1. `portdoctor scan 10.213.0.2 -p- --json`  vs  `nmap -sT -p- -n -Pn 10.213.0.2`
     (and checks both find exactly the five open ports; goal: ratio at most 1.0)
  2. `portdoctor scan 10.213.1.2 --top 1000 --json`  vs  `nmap -sT --top-ports 1000 -n -Pn 10.213.1.2`
     once each (nmap needs minutes here; goal: at most 0.1, every port filtered after one retry).
     `--nmap-host-timeout S` stops nmap after S seconds instead: its true time is then at least S,
     so the printed ratio is an upper bound, and says so.

Run as root: `python bench/bench_scan.py [--runs 5] [--nmap-host-timeout 30]`. Everything it
creates (namespaces, processes) is removed in `finally`. Nothing leaves these namespaces.
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
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPEN = (22, 80, 5432, 31337, 65000)
LISTENER = """
import socket, sys, time
socks = []
for p in sys.argv[1:]:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("10.213.0.2", int(p))); s.listen(4096); socks.append(s)
print("ready", flush=True)
time.sleep(86400)
"""


def sh(*argv: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


def in_ns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def timed(argv: list[str], timeout: float = 900) -> tuple[float, str]:
    t0 = time.perf_counter()
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    took = time.perf_counter() - t0
    if cp.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed ({cp.returncode}): {cp.stderr.strip()}")
    return took, cp.stdout


def nmap_open(xml: str) -> tuple[list[int], dict[str, int]]:
    root = ET.fromstring(xml)
    opened, states = [], {}
    for p in root.iter("port"):
        st = p.find("state").get("state")
        states[st] = states.get(st, 0) + 1
        if st == "open":
            opened.append(int(p.get("portid")))
    for extra in root.iter("extraports"):
        states[extra.get("state")] = states.get(extra.get("state"), 0) + int(extra.get("count"))
    return sorted(opened), states


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--nmap-host-timeout", type=int, default=0, metavar="S",
                    help="stop nmap's dropped-host scan after S seconds (0: let it finish)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the bench builds network namespaces")
    if not shutil.which("nmap"):
        raise SystemExit("nmap is not installed (apt-get install nmap)")
    tag = f"pdbs{os.getpid()}"
    c, s, d = f"{tag}c", f"{tag}s", f"{tag}d"
    procs: list[subprocess.Popen] = []
    made: list[str] = []
    py = sys.executable
    try:
        for ns in (c, s, d):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh(*in_ns(ns, "ip", "link", "set", "lo", "up"))
        for peer, net in ((s, "0"), (d, "1")):
            a, b = f"{tag}{net}a", f"{tag}{net}b"
            sh("ip", "link", "add", a, "netns", c, "type", "veth", "peer", "name", b, "netns", peer)
            sh(*in_ns(c, "ip", "addr", "add", f"10.213.{net}.1/24", "dev", a))
            sh(*in_ns(peer, "ip", "addr", "add", f"10.213.{net}.2/24", "dev", b))
            sh(*in_ns(c, "ip", "link", "set", a, "up"))
            sh(*in_ns(peer, "ip", "link", "set", b, "up"))
        sh(*in_ns(d, "iptables", "-A", "INPUT", "-p", "tcp", "-j", "DROP"))
        lp = subprocess.Popen(in_ns(s, py, "-c", LISTENER, *map(str, OPEN)), stdout=subprocess.PIPE, text=True)
        procs.append(lp)
        assert lp.stdout is not None and lp.stdout.readline().strip() == "ready"
        env_py = [py, "-m", "portdoctor"]

        ours_t, nmap_t = [], []
        for _ in range(args.runs):
            t, out = timed(in_ns(c, *env_py, "scan", "10.213.0.2", "-p-", "--json"))
            ours_t.append(t)
            doc = json.loads(out)
            ours_open = sorted(p["port"] for p in doc["ports"] if p["state"] == "open")
            t, out = timed(in_ns(c, "nmap", "-sT", "-p-", "-n", "-Pn", "-oX", "-", "10.213.0.2"))
            nmap_t.append(t)
            theirs, _states = nmap_open(out)
            if ours_open != list(OPEN) or theirs != list(OPEN):
                raise SystemExit(f"disagreement: portdoctor {ours_open}, nmap {theirs}, expected {list(OPEN)}")
        mo, mn = statistics.median(ours_t), statistics.median(nmap_t)
        print(f"5 open among 65,535 ({args.runs} runs, medians): portdoctor scan -p- {mo:.2f} s, "
              f"nmap -sT -p- {mn:.2f} s, ratio {mo / mn:.2f} (goal <= 1.0); both found exactly {list(OPEN)}")

        t_ours, out = timed(in_ns(c, *env_py, "scan", "10.213.1.2", "--top", "1000", "--json"))
        doc = json.loads(out)
        filtered_ok = doc["reasons"] == {"filtered/no-response": 1000} and doc["timing"]["retries"] == 1000
        nmap_argv = ["nmap", "-sT", "--top-ports", "1000", "-n", "-Pn", "-oX", "-", "10.213.1.2"]
        if args.nmap_host_timeout:
            nmap_argv[1:1] = ["--host-timeout", f"{args.nmap_host_timeout}s"]
        t_nmap, out = timed(in_ns(c, *nmap_argv), timeout=1800)
        _o, states = nmap_open(out)
        cut = bool(args.nmap_host_timeout) and not states
        print(f"1,000 dropped ports: portdoctor scan --top 1000 {t_ours:.2f} s "
              f"({'all 1000 filtered after one retry' if filtered_ok else 'NOT all filtered: ' + str(doc['reasons'])}), "
              f"nmap -sT --top-ports 1000 {t_nmap:.2f} s{' (stopped by --host-timeout: its real time is longer)' if cut else ''} "
              f"{states or ''}, ratio {t_ours / t_nmap:.3f}{' (an upper bound)' if cut else ''} (goal <= 0.1)")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for ns in made:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


if __name__ == "__main__":
    main()
