"""Benchmark: `diagnose :5432 --inventory FILE` over N real sshd hosts, against OpenSSH's own client.

Builds a client namespace and N server namespaces (each with Debian's sshd on its own config,
host key and authorized key in a temporary folder; half of them with a listener on 0.0.0.0:5432,
half on 127.0.0.1:5432), everything removed in `finally`. Times from the client, medians of 3:

  - `ssh HOST python3 -c pass` for each host in turn (OpenSSH: a log-in plus a Python start, the
    least any Python-based remote half can cost),
  - `portdoctor diagnose :5432 --inventory FILE --jobs 1` (one host after the other),
  - the same with `--jobs N` (all at once).

Prints the medians, portdoctor's time per host against the bare log-in, and the speed-up of the
concurrent run. Run as root: `python bench/bench_ssh.py [--hosts 8]` (under a minute).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "lab"))

from netlab import Lab  # noqa: E402


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, capture_output=True)
    return path.with_suffix(".pub").read_text().strip()


def timed(fn: object, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=8)
    n = ap.parse_args().hosts
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder; left in place
    d = Path(tempfile.mkdtemp(prefix="pdbench-ssh-"))
    lab = Lab()
    try:
        host_pub = keygen(d / "host_key").split()
        (d / "authorized_keys").write_text(keygen(d / "client_key") + "\n")
        (d / "ssh_config").write_text("")
        conf = d / "sshd.conf"
        conf.write_text(f"HostKey {d}/host_key\nPidFile none\nAuthorizedKeysFile {d}/authorized_keys\n"
                        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n")
        c = lab.host("c")
        addrs = []
        for k in range(n):
            s = lab.host(f"s{k}")
            lab.link(c, s, f"10.0.{k}.1/24", f"10.0.{k}.2/24")
            s.start(["/usr/sbin/sshd", "-D", "-e", "-f", str(conf)], ready_port=22)
            s.listen(5432, "0.0.0.0" if k % 2 == 0 else "127.0.0.1", argv0="postgres")
            addrs.append(f"10.0.{k}.2")
        (d / "known_hosts").write_text("".join(f"{a} {host_pub[0]} {host_pub[1]}\n" for a in addrs))
        (d / "hosts.txt").write_text("".join(f"root@{a}\n" for a in addrs))
        opts = ["-i", str(d / "client_key"), "-F", str(d / "ssh_config"), "-o", f"UserKnownHostsFile={d}/known_hosts",
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"]
        env = {"SSH_AUTH_SOCK": ""}

        def bare() -> None:
            for a in addrs:
                c.run(["ssh", *opts, f"root@{a}", "python3", "-c", "pass"], env=env)

        def pd(jobs: int) -> None:
            cp = c.portdoctor("diagnose", ":5432", "--inventory", str(d / "hosts.txt"), "--jobs", str(jobs),
                              "--ssh-key", str(d / "client_key"), "--known-hosts", str(d / "known_hosts"),
                              "--ssh-config", str(d / "ssh_config"), "--json", env=env, timeout=600)
            assert cp.returncode == 1, cp.stderr
            assert cp.stdout.count('"wrong_interface"') >= n // 2, cp.stdout[-2000:]

        ref = timed(bare)
        one = timed(lambda: pd(1))
        many = timed(lambda: pd(n))
        print(f"{n} hosts, medians of 3:")
        print(f"  ssh HOST python3 -c pass, one after the other: {ref:.2f} s ({ref / n * 1000:.0f} ms a host)")
        print(f"  portdoctor diagnose --jobs 1: {one:.2f} s ({one / n * 1000:.0f} ms a host, "
              f"{one / ref:.1f} x the bare log-in)")
        print(f"  portdoctor diagnose --jobs {n}: {many:.2f} s (speed-up {one / many:.1f} x over --jobs 1)")
    finally:
        lab.teardown()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
