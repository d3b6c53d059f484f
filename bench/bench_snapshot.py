"""Benchmark: collecting the snapshot vs `ss -ltnp`, on a namespace with 10,000 listeners.

Builds its own network namespace (removed in `finally`), forks 200 processes in it holding 50
listening sockets each and, between them, 50,000 established loopback connections (100,000
socket ends), then times inside the namespace, best of 5 each:

  - `ss -ltnp` (a subprocess, as a user runs it),
  - this project's collectors for one port, in-process (listeners + owners, processes,
    addresses, routes, sysctls, counters, configs),
  - the same as a fresh `python -c` (Python start-up and imports included),
  - every registered collector (`collect()`, other teams' ones included), in-process.

Prints medians and the ratios to `ss -ltnp`; the goals (issue 10): `ports --json` at most 1.0 x
`ss -ltnp`, and the one-port snapshot (collectors, python -c) at most 1.0 x `ss -ltnp 'sport = :PORT'`. Run as root:
`python bench/bench_snapshot.py [--procs 200 --per 50 --conns 50000]` (about a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAUNCHER = r"""
import os, resource, signal, socket, sys
nproc, per, conns, base = (int(x) for x in sys.argv[1:5])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
r, w = os.pipe()
kids = []
for i in range(nproc):
    pid = os.fork()
    if pid == 0:
        os.close(r)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            ls = []
            for j in range(per):
                s = socket.socket()
                s.bind(("127.0.0.1", base + i * per + j))
                s.listen(128)
                ls.append(s)
            held = []
            mine = conns // nproc + (1 if i < conns % nproc else 0)
            for c in range(mine):
                l = ls[c % per]
                cs = socket.socket()
                cs.connect(l.getsockname())
                held.append(cs)
                held.append(l.accept()[0])
        except OSError as exc:
            os.write(w, b"!")
            print(f"child {i}: {exc}", file=sys.stderr, flush=True)
            os._exit(1)
        os.write(w, b"x")
        while True:
            signal.pause()
    kids.append(pid)
os.close(w)
got = b""
while len(got) < nproc:
    got += os.read(r, 4096)
    if b"!" in got:
        break
print("ready" if got.count(b"x") == nproc else f"failed after {got.count(b'x')} processes", flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
for k in kids:
    os.kill(k, signal.SIGKILL)
for k in kids:
    os.waitpid(k, 0)
"""

TIMER = r"""
import json, os, subprocess, sys, time
port, rounds, profile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
from portdoctor import collectors
from portdoctor.collectors import Request, collect

MINE = [
    "portdoctor.collectors.linux:collect_listeners",
    "portdoctor.collectors.processes:collect_processes",
    "portdoctor.collectors.linux:collect_addresses",
    "portdoctor.collectors.linux:collect_routes",
    "portdoctor.collectors.procfs:collect_sysctls",
    "portdoctor.collectors.procfs:collect_counters",
    "portdoctor.collectors.configs:collect_configs",
]
ALL = list(collectors.COLLECTORS["linux"])

def best(fn):
    times = []
    for _ in range(rounds):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2], times  # the median: these runs alternate with ss's

def ss():
    subprocess.run(["ss", "-ltnp"], stdout=subprocess.DEVNULL, check=True)

def mine():
    collectors.COLLECTORS["linux"] = MINE
    req = Request(port=port, addresses=("127.0.0.1",))
    collectors.collect_before(req)
    return collect(req)

def everything():
    collectors.COLLECTORS["linux"] = ALL
    req = Request(port=port, addresses=("127.0.0.1",))
    collectors.collect_before(req)
    return collect(req)

SCRIPT = ("import sys; from portdoctor import collectors; from portdoctor.collectors import Request, collect;"
          f"collectors.COLLECTORS['linux'] = {MINE!r};"
          f"req = Request(port={port}, addresses=('127.0.0.1',)); collectors.collect_before(req); collect(req)")

def fresh():
    subprocess.run([sys.executable, "-c", SCRIPT], check=True)

def dump_only():
    from portdoctor.collectors import linux
    return linux.read_listeners("/proc")

def scan_only():
    from portdoctor.collectors import linux, procfs
    return procfs.scan_socket_owners([r.inode for r in linux.read_listeners("/proc")[0]], "/proc")

def bare_python():
    subprocess.run([sys.executable, "-c", "pass"], check=True)

def whole_diagnose():
    # the CLI end to end, start-up included: probe + every collector + checks + verdict + JSON
    subprocess.run([sys.executable, "-m", "portdoctor", "diagnose", f":{port}", "--json", "--timeout", "1"],
                   stdout=subprocess.DEVNULL, check=False)

def ss_no_p():
    subprocess.run(["ss", "-ltn"], stdout=subprocess.DEVNULL, check=True)

def ss_one_port():
    subprocess.run(["ss", "-ltnp", f"sport = :{port}"], stdout=subprocess.DEVNULL, check=True)

def ports_json():
    # `portdoctor ports --json` end to end: every collector, the port map, the JSON document
    subprocess.run([sys.executable, "-m", "portdoctor", "ports", "--json"], stdout=subprocess.DEVNULL, check=True)

out = {}
ss_lines = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout.count("\n")
snap = mine()
established = subprocess.run(["ss", "-tnH", "state", "established"], capture_output=True, text=True).stdout.count("\n")
out["check"] = {"ss_listeners": ss_lines, "established_socket_ends": established, "listeners": len(snap.listeners),
                "with_owner": sum(1 for x in snap.listeners if x.pids), "processes": len(snap.processes),
                "limitations": [str(x) for x in snap.limitations]}
for name, fn in (("ss -ltnp", ss), ("collectors in-process", mine), ("collectors, python -c", fresh),
                 ("collect() all collectors in-process", everything), ("part: sock_diag dump", dump_only),
                 ("part: sock_diag dump + owner scan", scan_only), ("ss -ltn (no owners)", ss_no_p),
                 ("portdoctor diagnose :PORT (whole CLI)", whole_diagnose),
                 ("ss -ltnp 'sport = :PORT'", ss_one_port), ("portdoctor ports --json (whole CLI)", ports_json),
                 ("python -c pass (start-up alone)", bare_python)):
    b, times = best(fn)
    out[name] = {"best": b, "all": times}
if profile:
    import cProfile, io, pstats
    pr = cProfile.Profile(); pr.enable(); mine(); pr.disable()
    buf = io.StringIO(); pstats.Stats(pr, stream=buf).sort_stats("cumulative").print_stats(25)
    out["profile"] = buf.getvalue()
print(json.dumps(out))
"""


def sh(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=200)
    ap.add_argument("--per", type=int, default=50)
    ap.add_argument("--conns", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--base-port", type=int, default=20000)
    ap.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of one collection")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_snapshot: needs root (ip netns add)", file=sys.stderr)
        return 3
    if args.base_port + args.procs * args.per > 32768:
        ap.error("listener ports must stay below the ephemeral range (32768)")
    # SIGTERM (timeout, Ctrl-C from a wrapper) must still run the cleanup in `finally`
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ns = f"pdbench{os.getpid()}"
    launcher: subprocess.Popen | None = None
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t0 = time.monotonic()
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        launcher = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", LAUNCHER, str(args.procs), str(args.per),
             str(args.conns), str(args.base_port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert launcher.stdout is not None
        ready, _, _ = select.select([launcher.stdout], [], [], 120)
        line = launcher.stdout.readline().strip() if ready else "no answer within 120 s"
        if line != "ready":
            raise RuntimeError(f"launcher: {line!r}")
        built = time.monotonic() - t0
        cp = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", TIMER, str(args.base_port),
                             str(args.rounds), "1" if args.profile else "0"],
                            capture_output=True, text=True, env=env, timeout=300)
        if cp.returncode != 0:
            raise RuntimeError(cp.stderr)
        res = json.loads(cp.stdout)
    finally:
        if launcher is not None:
            try:
                os.killpg(launcher.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            launcher.wait()
        subprocess.run(["ip", "netns", "delete", ns], check=False)
    ss = res["ss -ltnp"]["best"]
    print(f"namespace: {args.procs} processes, {args.procs * args.per} listeners, {args.conns} established "
          f"connections (built in {built:.1f} s)")
    print(f"check: {res['check']}")
    for name in ("ss -ltnp", "collectors in-process", "collectors, python -c", "collect() all collectors in-process",
                 "part: sock_diag dump", "part: sock_diag dump + owner scan", "ss -ltn (no owners)",
                 "portdoctor diagnose :PORT (whole CLI)", "ss -ltnp 'sport = :PORT'",
                 "portdoctor ports --json (whole CLI)", "python -c pass (start-up alone)"):
        b = res[name]["best"]
        print(f"{name:40s} median of {args.rounds}: {b * 1000:8.1f} ms   ratio to ss -ltnp: {b / ss:5.2f}")
    one = res["ss -ltnp 'sport = :PORT'"]["best"]
    goals = [("portdoctor ports --json (whole CLI)", ss, "ss -ltnp"),
             ("collectors, python -c", one, "ss -ltnp 'sport = :PORT'")]
    for name, ref, ref_name in goals:
        r = res[name]["best"] / ref
        print(f"goal: {name} <= 1.0 x {ref_name}: {r:.2f} ({'met' if r <= 1.0 else 'MISSED'})")
    if args.json:
        print(json.dumps(res))
    if args.profile:
        print(res["profile"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
