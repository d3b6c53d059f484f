"""portdoctor runs as root: it never executes a program another user could have chosen, never
reads a file for a process whose user could not read it, and never records a secret.

Decoys: one small compiled program copied as `nginx`, `haproxy`, `caddy` and `redis-server`
into a folder owned by `nobody` (under a root-owned folder, so only the decoy's own owner
makes it untrusted). Started with DECOY_SERVE=PORT it listens there and sleeps; run any other
way (as `nginx -T` would be) it leaves a marker file and exits. Each decoy names a root-only
file (mode 600) as its configuration; those files hold a string that must never come out.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netlab import Host, Lab  # noqa: E402
from servers import need, nginx_conf  # noqa: E402

DECOY_C = r"""
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *serve = getenv("DECOY_SERVE");
    if (serve == NULL) {  /* someone ran us: leave the proof and go */
        char path[4096];
        const char *name = strrchr(argv[0], '/');
        snprintf(path, sizeof path, "%s/executed-%s-uid%d", MARKER_DIR, name ? name + 1 : argv[0], (int)geteuid());
        int fd = open(path, O_WRONLY | O_CREAT, 0644);
        if (fd >= 0) close(fd);
        return 1;
    }
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(serve));
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 16) != 0) return 2;
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
"""

NOBODY = pwd.getpwnam("nobody")
SECRET = "pdsecret" + secrets.token_hex(6)
PORTS = {"nginx": 18081, "haproxy": 18082, "caddy": 18083, "redis-server": 16390, "root-nginx": 18084}


class Decoys:
    """The decoy folder, the root-only configs and the marker folder of one test."""

    def __init__(self, lab: Lab) -> None:
        need("cc", "nginx")
        base = Path("/srv")
        base.mkdir(exist_ok=True)
        self.dir = Path(f"/srv/pd-decoy-{os.getpid()}-{secrets.token_hex(3)}")
        self.dir.mkdir(mode=0o755)
        lab._register("dir", self.dir)
        self.markers = self.dir / "markers"
        self.markers.mkdir()
        os.chmod(self.markers, 0o777)
        src = self.dir / "decoy.c"
        src.write_text(DECOY_C)
        subprocess.run(["cc", "-O0", f'-DMARKER_DIR="{self.markers}"', "-o", str(self.dir / "decoy"), str(src)],
                       check=True, capture_output=True, text=True)
        self.bin = self.dir / "bin"
        self.bin.mkdir()
        for name in ("nginx", "haproxy", "caddy", "redis-server"):
            shutil.copy(self.dir / "decoy", self.bin / name)
            os.chmod(self.bin / name, 0o755)
            os.chown(self.bin / name, NOBODY.pw_uid, NOBODY.pw_gid)
        os.chown(self.bin, NOBODY.pw_uid, NOBODY.pw_gid)
        # root-only configurations, each naming the secret where a parser would keep it
        self.secret_dir = self.dir / "secret"
        self.secret_dir.mkdir(mode=0o755)
        self.configs = {
            "nginx": ("nginx.conf", "events {}\nhttp {\n    server {\n        listen 18081;\n"
                                    f"        location / {{ proxy_pass http://{SECRET}:9; }}\n    }}\n}}\n"),
            "haproxy": ("haproxy.cfg", f"frontend f\n    bind :18082\n    default_backend b\nbackend b\n"
                                       f"    server s1 {SECRET}:9\n"),
            "caddy": ("Caddyfile", f":18083 {{\n    reverse_proxy {SECRET}:9\n}}\n"),
            "redis-server": ("redis.conf", f"bind 127.0.0.1 # {SECRET}\nport 16390\n"),
        }
        for name, text in self.configs.values():
            path = self.secret_dir / name
            path.write_text(text)
            os.chmod(path, 0o600)
        # root's own nginx config (a root process may have its root-only files read; no secret here)
        self.configs["root-nginx"] = ("root-nginx.conf", "events {}\nhttp {\n    server {\n        listen 18084;\n"
                                                         "        location / { proxy_pass http://127.0.0.1:9; }\n"
                                                         "    }\n}\n")
        (self.secret_dir / "root-nginx.conf").write_text(self.configs["root-nginx"][1])
        os.chmod(self.secret_dir / "root-nginx.conf", 0o600)

    def config(self, kind: str) -> str:
        return str(self.secret_dir / self.configs[kind][0])

    def start(self, h: Host, kind: str, argv: list[str], user: str | None, port: int) -> subprocess.Popen:
        exe = str(self.bin / kind.removeprefix("root-"))
        proc = h.popen(["env", "-i", f"DECOY_SERVE={port}", exe, *argv], user=user, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", kind
        return proc

    def executed(self) -> list[str]:
        return sorted(p.name for p in self.markers.iterdir())


@pytest.fixture
def decoys(lab: Lab) -> Iterator[tuple[Decoys, Host]]:
    d = Decoys(lab)
    h = lab.host("sec")
    d.start(h, "nginx", ["-c", d.config("nginx"), "-g", "daemon off;"], "nobody", PORTS["nginx"])
    d.start(h, "haproxy", ["-f", d.config("haproxy"), "-db"], "nobody", PORTS["haproxy"])
    d.start(h, "caddy", ["run", "--config", d.config("caddy"), "--adapter", "caddyfile"], "nobody", PORTS["caddy"])
    d.start(h, "redis-server", [d.config("redis-server")], "nobody", PORTS["redis-server"])
    # run by root, but from a binary nobody owns: still not to be run
    d.start(h, "root-nginx", ["-c", d.config("root-nginx")], None, PORTS["root-nginx"])
    yield d, h


def _diagnose(h: Host, port: int, record: Path) -> tuple[dict, str]:
    cp = h.portdoctor("diagnose", f"127.0.0.1:{port}", "--json", "--record", str(record))
    assert cp.returncode in (0, 1), cp.stderr
    return json.loads(cp.stdout), cp.stdout + cp.stderr + record.read_text()


def test_decoy_proxies_are_never_run_and_their_root_only_configs_never_read(
        decoys: tuple[Decoys, Host], tmp_path: Path) -> None:
    d, h = decoys
    seen = ""
    lims: list[str] = []
    for kind in ("nginx", "haproxy", "caddy", "redis-server"):
        doc, text = _diagnose(h, PORTS[kind], tmp_path / f"{kind}.json")
        seen += text
        lims += doc["limitations"]
    cp = h.portdoctor("ports", "--json")
    assert cp.returncode in (0, 1), cp.stderr
    seen += cp.stdout + cp.stderr
    lims += json.loads(cp.stdout)["limitations"]
    assert d.executed() == []  # no decoy ran, as root or otherwise
    assert SECRET not in seen  # no root-only file was read for them
    text = "\n".join(lims)
    nobody_pids = {int(x.split("(pid ")[1].split(")")[0]) for x in lims if "-T was not run: it runs as nobody" in x}
    assert nobody_pids, text
    assert f"-T was not run: {d.bin}/nginx is owned by uid {NOBODY.pw_uid}, not root" in text
    for kind in ("nginx", "haproxy", "caddy", "redis"):
        config = d.config("redis-server" if kind == "redis" else kind)
        assert (f"{kind} configuration {config}, named by process" in text
                and f"was not read: the process's user (uid {NOBODY.pw_uid}) could not read {config} itself" in text), kind


def test_a_trusted_root_nginx_is_still_asked_for_its_configuration(lab: Lab, tmp_path: Path) -> None:
    need("nginx")
    h = lab.host("trust")
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf(tmp_path, "    server {\n        listen 18085;\n"
                                         "        location / { proxy_pass http://127.0.0.1:9; }\n    }\n"))
    h.start(["nginx", "-c", str(conf)], ready_port=18085)
    doc, _ = _diagnose(h, 18085, tmp_path / "rec.json")
    snap = json.loads((tmp_path / "rec.json").read_text())["snapshot"]
    (proxy,) = snap["proxies"]["proxies"]
    assert proxy["source"] == "nginx -T"
    assert not [x for x in doc["limitations"] if "-T was not run" in x]


def test_a_recording_holds_no_password(lab: Lab, tmp_path: Path) -> None:
    need()
    h = lab.host("pw")
    server = ("import socket,time\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
              "s.bind(('0.0.0.0',18090));s.listen(8);print('ready',flush=True)\nwhile True: time.sleep(1)")
    words = {"argv": "pd-argv-" + secrets.token_hex(4), "url": "pd-url-" + secrets.token_hex(4),
             "env": "pd-env-" + secrets.token_hex(4), "envurl": "pd-envurl-" + secrets.token_hex(4),
             "short": "pdshort" + secrets.token_hex(4)}
    env = [f"PORT=18090", f"BIND_PASSWORD={words['env']}", f"LISTEN_URL=redis://:{words['envurl']}@cache:6379",
           f"PYTHONHOME={sys.base_prefix}", "PATH=/usr/bin:/bin"]
    proc = h.popen(["env", "-i", *env, "bash", "-c", 'exec -a "$0" "$@"', "webapp", sys.executable, "-c", server,
                    "--requirepass", words["argv"], f"--db=postgres://app:{words['url']}@db/app",
                    f"-p{words['short']}"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    record = tmp_path / "rec.json"
    _doc, text = _diagnose(h, 18090, record)
    for word in words.values():
        assert word not in text
    snap = json.loads(record.read_text())["snapshot"]
    (web,) = [p for p in snap["processes"].values() if p["cmdline"][:1] == ["webapp"]]
    assert web["cmdline"][-4:] == ["--requirepass", "<redacted>", "--db=postgres://app:<redacted>@db/app",
                                   "-p<redacted>"]
    assert web["env"] == {"PORT": "18090", "BIND_PASSWORD": "<redacted>",
                          "LISTEN_URL": "redis://:<redacted>@cache:6379"}
