"""What the lab tests need to run real servers: the tools checked for, nginx and HAProxy
configurations, and a backend namespace behind the server."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

import pytest

from netlab import Host, Lab

# nginx's temporary folders (directive *_temp_path: folder), all pointed into the test's own folder
NGINX_TEMP_PATHS = {"client_body": "body", "proxy": "proxy", "fastcgi": "fastcgi", "uwsgi": "uwsgi", "scgi": "scgi"}


def need(*tools: str) -> None:
    """Fail under CI=true, skip elsewhere, when root or a tool is missing."""
    missing = [t for t in tools if shutil.which(t) is None and not os.path.exists(t)]
    why = "needs root" if os.geteuid() != 0 else (f"needs {', '.join(missing)}" if missing else "")
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)


def readable_tmpdir(prefix: str) -> Iterator[Path]:
    """A world-readable temporary folder (daemons that drop privileges read it), removed after;
    for a fixture to `yield from`."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def nginx_conf(d: Path, http: str, temp_paths: Iterable[str] = tuple(NGINX_TEMP_PATHS)) -> str:
    """An nginx.conf running in the foreground with its pid, logs and temporary files in `d`.

    `http` is the inside of the http block, indented by four spaces. Tests assert config line
    numbers, so the layout is fixed: `http` starts on line 8 plus one per temporary path set.
    """
    temps = "".join(f"    {t}_temp_path {d}/{NGINX_TEMP_PATHS[t]};\n" for t in temp_paths)
    return ("daemon off;\n"
            "worker_processes 1;\n"
            f"error_log {d}/error.log;\n"
            f"pid {d}/nginx.pid;\n"
            "events { worker_connections 64; }\n"
            "http {\n"
            "    access_log off;\n"
            f"{temps}{http}"
            "}\n")


def nginx_pass(listen: int, to: str) -> str:
    """An http block's server on port `listen` whose only location passes everything to `to`."""
    return ("    server {\n"
            f"        listen {listen};\n"
            f"        location / {{ proxy_pass http://{to}; }}\n"
            "    }\n")


def run_nginx(h: Host, d: Path, http: str, port: int = 8080) -> Path:
    """Run nginx in h on `d`/nginx.conf, nginx_conf(d, http); return once `port` listens."""
    need("nginx")
    conf = d / "nginx.conf"
    conf.write_text(nginx_conf(d, http))
    h.start(["nginx", "-c", str(conf)], ready_port=port)
    return conf


def haproxy_cfg(upstream: str) -> str:
    """A haproxy.cfg: an http frontend on *:8080 whose backend app has one server, `upstream`."""
    return ("global\n"
            "    maxconn 64\n"
            "\n"
            "defaults\n"
            "    mode http\n"
            "    timeout connect 2s\n"
            "    timeout client 5s\n"
            "    timeout server 5s\n"
            "\n"
            "frontend web\n"
            "    bind *:8080\n"
            "    default_backend app\n"
            "\n"
            "backend app\n"
            f"    server app1 {upstream}\n")


def backend(lab: Lab, s: Host) -> Host:
    """Third namespace b (10.0.1.2) behind s (10.0.1.1), routing back through s; s forwards."""
    b = lab.host("b")
    lab.link(s, b, "10.0.1.1/24", "10.0.1.2/24")
    b.run(["ip", "route", "add", "default", "via", "10.0.1.1"])
    s.sysctl("net.ipv4.ip_forward", 1)
    return b


def dnat(s: Host, to: str) -> None:
    """s maps what arrives for 10.0.0.2:8080 to `to` (iptables -t nat PREROUTING -j DNAT)."""
    s.iptables("-t", "nat", "-A", "PREROUTING", "-d", "10.0.0.2", "-p", "tcp", "--dport", "8080",
               "-j", "DNAT", "--to-destination", to)


# supervisord.conf before its programs: the control socket, pid and logs all in the folder {d}
SUPERVISORD_CONF = """[unix_http_server]
file={d}/supervisor.sock

[supervisord]
logfile={d}/supervisord.log
pidfile={d}/supervisord.pid
childlogdir={d}
nodaemon=true

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{d}/supervisor.sock
"""


def supervisord(s: Host, d: Path, programs: str, *until: str, seconds: float = 25) -> Path:
    """Run supervisord in s on `d`/supervisord.conf (SUPERVISORD_CONF then `programs`, which starts
    with an empty line); return the conf once `supervisorctl status` shows every word of `until`."""
    need("supervisord", "supervisorctl")
    conf = d / "supervisord.conf"
    conf.write_text(SUPERVISORD_CONF.format(d=d) + programs)
    s.start(["supervisord", "-c", str(conf)], ready_file=d / "supervisor.sock")
    deadline = time.monotonic() + seconds
    while True:
        out = s.run(["supervisorctl", "-c", str(conf), "status"], check=False).stdout
        if all(u in out for u in until):
            return conf
        if time.monotonic() > deadline:
            raise AssertionError(f"supervisord did not reach {' and '.join(until)}:\n{out}")
        time.sleep(0.2)


def ufw_rules(user_rules: str, track: bool = False) -> str:
    """iptables-restore input for a filter table as ufw writes it (INPUT policy DROP, loopback and
    established let in, then ufw-user-input), with `user_rules` (lines ending in a newline) in
    ufw-user-input; `track` adds ufw-track-input (NEW tcp connections accepted after the rest)."""
    chains = ["ufw-before-input", "ufw-user-input", "ufw-after-input", "ufw-reject-input"]
    chains += ["ufw-track-input"] if track else []
    return ("*filter\n"
            ":INPUT DROP [0:0]\n"
            ":FORWARD DROP [0:0]\n"
            ":OUTPUT ACCEPT [0:0]\n"
            + "".join(f":{c} - [0:0]\n" for c in chains)
            + "".join(f"-A INPUT -j {c}\n" for c in chains if c != "ufw-user-input")
            + "-A ufw-before-input -i lo -j ACCEPT\n"
            "-A ufw-before-input -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
            "-A ufw-before-input -j ufw-user-input\n"
            + user_rules
            + ("-A ufw-track-input -p tcp -m conntrack --ctstate NEW -j ACCEPT\n" if track else "")
            + "COMMIT\n")


def sshd_privsep() -> None:
    """Make /run/sshd (sshd refuses to start without its privilege separation folder) when it is
    missing, and remove it when this test process exits: not earlier, since every sshd running on
    the machine (another lab's too) needs it for each login, and not at all if it was already there."""
    import atexit

    privsep = Path("/run/sshd")
    if privsep.exists():
        return
    privsep.mkdir(mode=0o755)

    def remove() -> None:
        try:
            privsep.rmdir()
        except OSError:
            pass

    atexit.register(remove)
