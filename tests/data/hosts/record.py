"""Record a host for tests/unit/test_host_recorded.py: tests/data/hosts/NAME/{files/,host.json,expected.json}.

Run as root: `python tests/data/hosts/record.py lab1`. It builds a lab host (a network
namespace, tests/lab/netlab.py) with two listeners and an iptables REJECT rule, then runs the
Linux collectors for one port inside that namespace through a `RecordingHost`: a LocalHost
that copies every file the collectors read into files/ (links kept as symlinks), and writes
every command they ran (with its output) and every `which` answer into host.json. It is not
"live": netlink and connections are refused, as a RecordedHost refuses them, so the recording
holds all the collectors need to say the same thing again. Only processes of the lab's network namespace
are listed (not the recorder itself), so nothing of the machine's other processes is kept.
`expected.json` holds the facts collected live while recording.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "lab"))

PORT = 8080
# the listener's command line and environment carry secrets: the recording keeps them raw
# (they are fake), the collectors must redact them
ARGV_SECRETS = ["--requirepass", "hunter2-argv", "--db=postgres://app:pw-in-url@db:5432/app"]
ENV = {"PORT": "8080", "HOST_URL": "redis://:pw-in-env-url@cache:6379", "BIND_PASSWORD": "hunter2-env"}


def inside(out: Path) -> None:
    """Run in the lab namespace: collect through a RecordingHost and write the recording."""
    from portdoctor.collectors import Request, collect
    from portdoctor.host import LocalHost, NotLive

    files = out / "files"
    own_ns = os.readlink("/proc/self/ns/net")
    skip = {os.getpid(), os.getppid()}
    commands: list[dict] = []
    which: dict[str, str | None] = {}
    users: dict[int, str] = {}

    def keep(path: str, data: bytes | None = None, link: str | None = None, folder: bool = False) -> None:
        dst = files / path.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if link is not None:
            if not dst.is_symlink():
                os.symlink(link, dst)
        elif folder:
            dst.mkdir(exist_ok=True)
        elif data is not None and not dst.exists():
            dst.write_bytes(data)

    class RecordingHost(LocalHost):
        live = False  # read as a RecordedHost will: /proc/net/tcp, no probes, no ancestors of ours

        def listdir(self, path: str) -> list[str]:
            names = super().listdir(path)
            if path == self.proc_root:
                mine = []
                for n in names:
                    if not n.isdigit():
                        continue
                    try:
                        same = os.readlink(f"/proc/{n}/ns/net") == own_ns
                    except OSError:
                        same = False
                    if same and int(n) not in skip:
                        mine.append(n)
                return mine
            keep(path, folder=True)
            return names

        def read_bytes(self, path: str, limit: int = 1 << 20) -> bytes:
            data = super().read_bytes(path, limit)
            keep(path, data)
            return data

        def read_tail(self, path: str, size: int) -> bytes:
            data = super().read_tail(path, size)
            keep(path, data)
            return data

        def read_links(self, path: str) -> dict[str, str]:
            links = super().read_links(path)
            for name, target in links.items():
                keep(f"{path}/{name}", link=target)
            return links

        def readlink(self, path: str) -> str:
            target = super().readlink(path)
            keep(path, link=target)
            return target

        def exists(self, path: str) -> bool:
            found = super().exists(path)
            if found:
                keep(path, folder=os.path.isdir(path), data=None if os.path.isdir(path) else b"")
            return found

        def which(self, name: str) -> str | None:
            which[name] = found = super().which(name)
            return found

        def run_all(self, argvs, timeout: float = 10.0):
            results = super().run_all(argvs, timeout)
            for argv, r in zip(argvs, results, strict=True):
                if not r.missing:
                    commands.append({"argv": list(argv), "rc": r.rc, "stdout": r.stdout, "stderr": r.stderr})
            return results

        def user_name(self, uid: int) -> str | None:
            name = super().user_name(uid)
            if name:
                users[uid] = name
            return name

        def connect(self, family: int, address: object, timeout: float):
            raise NotLive("a connection")

        def netlink(self, protocol: int):
            raise NotLive("netlink")

    host = RecordingHost()
    snap = collect(Request(port=PORT, system=host))
    (files / "etc").mkdir(parents=True, exist_ok=True)
    (files / "etc" / "passwd").write_text("".join(f"{n}:x:{u}:{u}::/:/usr/sbin/nologin\n"
                                                  for u, n in sorted(users.items())))
    meta = {"is_root": host.is_root, "platform": host.platform, "which": {k: v for k, v in sorted(which.items()) if v},
            "commands": commands}
    (out / "host.json").write_text(json.dumps(meta, indent=1) + "\n")
    plain = snap.to_json()
    expected = {k: plain[k] for k in ("listeners", "processes", "sysctls", "counters_after", "configs")}
    expected["firewall_ruleset"] = plain["extra"]["firewall"]["ruleset"]
    expected["port"] = PORT
    (out / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


def main(name: str) -> None:
    from netlab import Lab

    out = HERE / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with Lab() as lab:
        h = lab.host("rec")
        # a small server whose argv0 is "webapp" and whose command line and environment hold secrets
        server = ("import socket,sys,time\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                  f"s.bind(('0.0.0.0',{PORT}));s.listen(64);print('ready',flush=True)\nwhile True: time.sleep(1)")
        # `env -i`: the recording holds this environment only, nothing of the machine's
        clean = [f"{k}={v}" for k, v in {**ENV, "PYTHONHOME": sys.base_prefix, "PATH": "/usr/bin:/bin"}.items()]
        proc = h.popen(["env", "-i", *clean, "bash", "-c", 'exec -a "$0" "$@"', "webapp", sys.executable, "-c",
                        server, *ARGV_SECRETS], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        h.iptables("-A", "INPUT", "-p", "tcp", "--dport", "9090", "-j", "REJECT", "--reject-with", "tcp-reset")
        cp = h.run([sys.executable, __file__, "--inside", str(out)], check=False, timeout=120,
                   env={"PYTHONPATH": str(ROOT / "src")})
        if cp.returncode != 0:
            raise SystemExit(f"recording failed:\n{cp.stdout}\n{cp.stderr}")
    print(f"recorded {out}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--inside"]:
        inside(Path(sys.argv[2]))
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "lab1")
