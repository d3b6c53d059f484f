"""Shared pieces of the fault catalogue (tests/lab/test_faults_*.py): how a fault is checked
(`diagnosed_as` from 10.0.0.1 to 10.0.0.2, `diagnosed_at` any address, `diagnosed_locally_as`), the
stand-in application server, and the nginx, HAProxy, ufw, firewalld, mariadb, redis and dnsmasq
set-ups those faults are built with. Client c: 10.0.0.1 / fd00::1; server s: 10.0.0.2 / fd00::2;
backend b: 10.0.1.2 behind s.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from netlab import Host
from servers import (
    need, readable_tmpdir, run_nginx, ufw_rules,
)
from verdicts import diagnose, verdict


@pytest.fixture(autouse=True)
def _root() -> None:
    need("iptables", "ip6tables", "nft")

def diagnosed_as(c: Host, s: Host, err: int, cause: str, port: int = 8080) -> dict[str, Any]:
    """A real client c connecting to 10.0.0.2:`port` gets `err` (0: connected); diagnose on s for
    that client (--from 10.0.0.1, and --timeout 1 when it timed out) gives the verdict `cause`."""
    assert c.connect_errno("10.0.0.2", port) == err
    timeout = ("--timeout", "1") if err == errno.ETIMEDOUT else ()
    doc = diagnose(s, f"10.0.0.2:{port}", "--from", "10.0.0.1", *timeout)
    verdict(doc, cause)
    return doc

def diagnosed_locally_as(h: Host, address: str, port: int, err: int, cause: str) -> dict[str, Any]:
    """A client in h connecting to address:`port` gets `err`; diagnose in h for it (no --from)
    gives the verdict `cause`."""
    assert h.connect_errno(address, port) == err
    doc = diagnose(h, f"{address}:{port}")
    verdict(doc, cause)
    return doc

@pytest.fixture
def tmpdir() -> Iterator[Path]:
    """A world-readable temporary folder, removed after (see servers.readable_tmpdir)."""
    yield from readable_tmpdir("pdfault-")

# A stand-in for an application server: it reads where to listen the way the real one would
# (`--bind HOST:PORT` on its command line, or a config file), so its argv looks like the real thing.
APP = r'''#!/usr/bin/env python3
import socket, sys, time
from pathlib import Path
argv = sys.argv[1:]
spec = None
if "--bind" in argv:
    spec = argv[argv.index("--bind") + 1]
else:
    conf = Path(__file__).with_name("app.conf")
    if conf.exists():
        spec = conf.read_text().strip()
if spec:
    host, _, port = spec.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(64)
    Path(__file__).with_name("ready").write_text("ok")
    while True:
        c, _ = s.accept()
        c.close()
else:
    Path(__file__).with_name("ready").write_text("ok")  # started, but never gets to listen
    while True:
        time.sleep(60)
'''

def start_app(h: Host, d: Path, name: str, args: list[str], conf: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen:
    """Run the stand-in as `python3 D/NAME ARGS` (the cmdline a pip-installed entry point shows)."""
    script = d / name
    script.write_text(APP)
    script.chmod(0o755)
    if conf is not None:
        (d / "app.conf").write_text(conf + "\n")
    return h.start([sys.executable, str(script), *args], ready_file=d / "ready", env=env)


# =========================================================================== bind scope and family

# the inside of nginx's http block (see servers.nginx_conf)
NGINX_HELLO_80 = """    server {
        listen 80;
        location / { return 200 "hello\\n"; }
    }
"""

# the insides of nginx's http block (see servers.nginx_conf)
NGINX_DIRECT = """    server {
        listen 8080;
        location /api/ {
            proxy_pass http://127.0.0.1:9001/;
        }
        location / {
            proxy_pass http://127.0.0.1:9001;
        }
    }
"""

NGINX_NAMED = """    server {{
        listen {listen};
        location / {{
            proxy_pass {upstream};
        }}
    }}
"""

def start_nginx(s: Host, d: Path, upstream: str, listen: str = "8080", port: int = 8080) -> Path:
    return run_nginx(s, d, NGINX_NAMED.format(upstream=upstream, listen=listen), port=port)

# `ufw reject 8080/tcp` (after `ufw allow 22/tcp`), as ufw writes it (see servers.ufw_rules)
UFW = ufw_rules("-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT\n"
                "-A ufw-user-input -p tcp -m tcp --dport 8080 -j REJECT --reject-with tcp-reset\n", track=True)

FIREWALLD = """table inet firewalld {
  chain filter_INPUT {
    type filter hook input priority filter + 10; policy accept;
    ct state { established, related } accept
    ct status dnat accept
    iifname "lo" accept
    ct state invalid drop
    jump filter_INPUT_ZONES
    reject with icmpx admin-prohibited
  }
  chain filter_INPUT_ZONES {
    iifname "veth1" goto filter_IN_public
    goto filter_IN_public
  }
  chain filter_IN_public {
    jump filter_IN_public_pre
    jump filter_IN_public_allow
    meta l4proto { icmp, ipv6-icmp } accept
  }
  chain filter_IN_public_pre {
  }
  chain filter_IN_public_allow {
    tcp dport 22 accept
    ip6 daddr fe80::/64 udp dport 546 accept
  }
}"""

def mariadb(s: Host, d: Path, cnf: str, port: int) -> Path:
    need("/usr/sbin/mariadbd", "mariadb-install-db")
    shutil.chown(d, "mysql", "mysql")
    s.run(["mariadb-install-db", f"--datadir={d / 'data'}", "--user=mysql", "--skip-test-db",
           "--auth-root-authentication-method=normal"], timeout=120)
    conf = d / "my.cnf"
    conf.write_text(cnf.format(d=d))
    s.start(["/usr/sbin/mariadbd", f"--defaults-file={conf}", "--user=mysql"], ready_port=port, timeout=60)
    return conf

def diagnosed_at(c: Host, s: Host, target: str, err: int, *causes: str, port: int = 8080,
                 src: str = "10.0.0.1", extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Client c connecting to `target`:port gets `err`; diagnose on s --from src gives one of `causes`."""
    # over a veth, TCP takes an ICMPv6 error only for the SYN retransmitted after 1 s
    assert c.connect_errno(target, port, timeout=2.5 if ":" in target else 1) == err
    timeout = ("--timeout", "1") if err == errno.ETIMEDOUT else ()
    t = f"[{target}]:{port}" if ":" in target else f"{target}:{port}"
    doc = diagnose(s, t, "--from", src, *timeout, *extra)
    verdict(doc, *causes)
    return doc

def curl(c: Host, url: str) -> str:
    return c.run(["curl", "-m", "5", "-s", "-o", "/dev/null", "-w", "%{http_code}", url], check=False).stdout

def dnsmasq(h: Host, *extra: str) -> subprocess.Popen:
    """dnsmasq on 127.0.0.1:53 of h with only `extra` records (any other name: NXDOMAIN)."""
    args = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--no-poll", "--listen-address=127.0.0.1", "--bind-interfaces", "--port=53",
            "--pid-file=", "--user=root", "--group=root", *extra, "--address=/#/"]
    return h.start(args, ready_port=53)

def redis(s: Host, d: Path) -> subprocess.Popen:
    """redis-server in s on 0.0.0.0:6379 (protected-mode off, nothing saved, its folder `d`)."""
    return s.start(["redis-server", "--bind", "0.0.0.0", "--port", "6379", "--save", "", "--appendonly", "no",
                    "--dir", str(d), "--protected-mode", "no"], ready_port=6379)


# =========================================================================== IPv6

# binds its port, serves briefly, then crashes with status 1 (a bad config read after bind)
CRASH_AFTER_BIND = ("import socket,sys,time; s=socket.socket(); s.bind(('0.0.0.0',{port})); s.listen(8); "
                    "time.sleep({after}); sys.stderr.write('api: KeyError DATABASE_URL\\\\n'); sys.exit(1)")

HAPROXY = """global
    maxconn 64

defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s

frontend web
    bind {bind}
    default_backend app

backend app
    balance roundrobin
    server app1 127.0.0.1:9001 check inter 300ms fall 1 rise 1
    server app2 127.0.0.1:9002 check inter 300ms fall 1 rise 1
"""

def haproxy(s: Host, d: Path, bind: str = "*:8080", port: int = 8080, addr: str | None = None) -> Path:
    need("haproxy")
    conf = d / "haproxy.cfg"
    conf.write_text(HAPROXY.format(bind=bind))
    s.start(["haproxy", "-db", "-f", str(conf)], ready_port=port, ready_address=addr)
    return conf

# `ufw allow 22/tcp` and `ufw allow from 10.0.0.0/24 to any port 8080 proto tcp` (see servers.ufw_rules)
UFW_ALLOW = ufw_rules("-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT\n"
                      "-A ufw-user-input -s 10.0.0.0/24 -p tcp -m tcp --dport 8080 -j ACCEPT\n")

# python3 -c DNS_QUERY NAME: asks 127.0.0.1 for NAME's A record; prints the rcode, then "CNAME target"
DNS_QUERY = r"""
import socket, struct, sys
name = sys.argv[1]
pkt = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
pkt += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(pkt, ("127.0.0.1", 53))
r = s.recv(512)
out = [str(struct.unpack(">H", r[2:4])[0] & 15)]
rest = r[len(pkt):]
if struct.unpack(">H", r[6:8])[0] and struct.unpack(">H", rest[2:4])[0] == 5:
    rd, labels, i = rest[12:], [], 0
    while rd[i]:
        labels.append(rd[i + 1:i + 1 + rd[i]].decode())
        i += 1 + rd[i]
    out += ["CNAME", ".".join(labels)]
print(" ".join(out))
"""
