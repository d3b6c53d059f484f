"""Record a /proc tree from a throw-away network namespace into tests/data/proc/NAME/.

Run as root: `python tests/data/proc/capture.py lab1`. It builds a namespace with a few real
listeners (IPv4, IPv6 dual-stack and V6ONLY, v4-mapped, one whose accept queue is full), copies
net/tcp, tcp6, netstat, snmp, the sysctls of procfs.SYSCTLS and, per listener process, cmdline,
comm, stat, status, environ, limits, cgroup and its fd links (as symlinks), then removes the
namespace and the processes. `expected.json` beside the tree holds `ss -ltnHe` and `ss -ltnpH`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "src"))

from portdoctor.collectors.procfs import SYSCTLS  # noqa: E402

HERE = Path(__file__).resolve().parent

SERVER = r"""
import os, socket, sys, time
addr, port, backlog, v6only, accept = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if v6only != "-":
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
s.bind((addr, port)); s.listen(backlog)
print("ready", flush=True)
held = []
while True:
    if accept:
        held.append(s.accept()[0])
    else:
        time.sleep(1)
"""

# (argv0, addr, port, backlog, v6only, accept, extra env)
LISTENERS = [
    ("webapp", "0.0.0.0", 8080, 128, "-", "1", {"PORT": "8080", "BIND_ADDR": "0.0.0.0"}),
    ("postgres", "127.0.0.1", 5432, 244, "-", "1", {"PGDATA": "/var/lib/postgresql/15/main"}),
    ("nginx", "::", 80, 511, "0", "1", {}),
    ("tlsproxy", "::", 443, 4096, "1", "1", {"LISTEN": "[::]:443"}),
    ("redis-server", "::1", 6379, 511, "-", "1", {}),
    ("mapped", "::ffff:127.0.0.1", 9000, 16, "-", "1", {}),
    ("slowapp", "10.0.0.2", 3000, 2, "-", "0", {"PORT": "3001"}),
]


def sh(*argv: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, **kw)


def copy_file(src: str, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(src, "rb") as fh:
            data = fh.read()
    except OSError:
        return
    dst.write_bytes(data)


def main(name: str) -> None:
    ns = f"pdcap{os.getpid()}"
    out = HERE / name
    procs: list[subprocess.Popen] = []
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", "10.0.0.2/24", "dev", "lo")
        for argv0, addr, port, backlog, v6only, accept, env in LISTENERS:
            p = subprocess.Popen(
                ["ip", "netns", "exec", ns, "bash", "-c", 'exec -a "$0" "$@"', argv0, sys.executable,
                 "-c", SERVER, addr, str(port), str(backlog), v6only, accept],
                stdout=subprocess.PIPE, text=True, env={**os.environ, **env, "PYTHONHOME": sys.base_prefix},
                start_new_session=True)
            procs.append(p)
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        # fill slowapp's accept queue (backlog 2 -> 3 queued) and overflow it, and open two
        # established connections to webapp, from a client inside the namespace
        client = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c",
             "import socket,time\n"
             "h=[]\n"
             "for i in range(6):\n"
             "    s=socket.socket(); s.setblocking(False); s.connect_ex(('10.0.0.2',3000)); h.append(s)\n"
             "for i in range(2):\n"
             "    h.append(socket.create_connection(('127.0.0.1',8080)))\n"
             "print('ready',flush=True); time.sleep(60)"],
            stdout=subprocess.PIPE, text=True, start_new_session=True)
        procs.append(client)
        assert client.stdout is not None and client.stdout.readline().strip() == "ready"
        time.sleep(1.5)  # SYN retransmits to the full queue count as ListenOverflows
        if out.exists():
            shutil.rmtree(out)
        for f in ("tcp", "tcp6", "netstat", "snmp"):
            data = sh("ip", "netns", "exec", ns, "cat", f"/proc/net/{f}").stdout
            (out / "net").mkdir(parents=True, exist_ok=True)
            (out / "net" / f).write_text(data)
        for key in SYSCTLS:
            path = "/proc/sys/" + key.replace(".", "/")
            r = subprocess.run(["ip", "netns", "exec", ns, "cat", path], capture_output=True, text=True)
            if r.returncode == 0:
                dst = out / "sys" / Path(*key.split("."))
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_text(r.stdout)
        pids = []
        for p in procs:
            pids.append(p.pid)  # `ip netns exec` and `bash exec -a` exec in place: same pid
        for pid in pids:
            base = out / str(pid)
            for f in ("cmdline", "comm", "stat", "status", "environ", "limits", "cgroup"):
                copy_file(f"/proc/{pid}/{f}", base / f)
            (base / "fd").mkdir(parents=True, exist_ok=True)
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    os.symlink(os.readlink(f"/proc/{pid}/fd/{fd}"), base / "fd" / fd)
                except OSError:
                    pass
            os.symlink(os.readlink(f"/proc/{pid}/cwd"), base / "cwd")
        dump = sh("ip", "netns", "exec", ns, sys.executable, "-c",
                  "from portdoctor.collectors.linux import sock_diag_chunks, NLMSG_DONE\n"
                  "import socket, struct\n"
                  "for fam in (socket.AF_INET, socket.AF_INET6):\n"
                  "    for c in sock_diag_chunks(fam):\n"
                  "        print(bytes(c).hex())\n"
                  "        if struct.unpack_from('=IH', c, len(c) - 20)[1] == NLMSG_DONE: break\n",
                  env={**os.environ, "PYTHONPATH": str(HERE.parents[2] / "src")}).stdout
        (HERE / f"{name}.sock_diag.hex").write_text(dump)
        expected = {
            "ss_ltnHe": sh("ip", "netns", "exec", ns, "ss", "-ltnHe").stdout.splitlines(),
            "ss_ltnpH": sh("ip", "netns", "exec", ns, "ss", "-ltnpH").stdout.splitlines(),
            "pids": {argv0: pid for (argv0, *_), pid in zip(LISTENERS, pids, strict=False)},
        }
        (HERE / f"{name}.expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        subprocess.run(["ip", "netns", "delete", ns], check=False)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "lab1")
