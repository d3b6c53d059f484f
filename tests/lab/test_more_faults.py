"""Further real faults, built the way operators meet them, diagnosed by `portdoctor diagnose --json`.

These are the "held-out" kinds of issues 4, 5 and 6 (bind scope and family, wrong port, firewall
rules written in other shapes, NAT, resources, DNS, proxies) in shapes the other lab tests do not
build. Client c: 10.0.0.1 / fd00::1; server s: 10.0.0.2 / fd00::2; a third namespace b (10.0.1.2)
behind s where a test needs a backend. Each test first checks what a real client saw, then asserts
the verdict an operator should act on and the evidence words that prove it.
"""

from __future__ import annotations

import errno
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from clients import HALF_OPEN, connect_from, held, hold
from netlab import Host, Lab
from servers import backend, dnat, haproxy_cfg, need, readable_tmpdir, run_nginx, ufw_rules
from verdicts import brief, diagnose, everything, finding, pod_diagnose, text_of, verdict

pytestmark = pytest.mark.lab


@pytest.fixture(autouse=True)
def _root() -> None:
    need("iptables", "nft")


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
    yield from readable_tmpdir("pdmore-")


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


def test_v6only_wildcard_reached_over_ipv4(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, "::", v6only=True, argv0="java")
    assert c.connect_errno("10.0.0.2", 8080) == errno.ECONNREFUSED
    assert c.connect_errno("fd00::2", 8080) == 0
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "wrong_interface")
    t = everything(doc)
    assert "IPv6" in t and ("V6ONLY" in t.upper() or "v6only" in t), t


def test_listener_on_127_0_0_2_reached_via_127_0_0_1(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.listen(8080, "127.0.0.2", argv0="devserver")
    doc = diagnosed_locally_as(s, "127.0.0.1", 8080, errno.ECONNREFUSED, "wrong_interface")
    assert "127.0.0.2" in doc["verdict"]["summary"], brief(doc)


def test_localhost_is_only_ipv6_while_server_is_ipv4_loopback(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.hosts("::1 localhost ip6-localhost\n")
    s.listen(3000, "127.0.0.1", argv0="node")
    assert socket.getaddrinfo  # the client resolves localhost through this host's /etc/hosts
    rc, probe = s.json_of("probe", "localhost:3000")
    assert [a["address"] for a in probe["addresses"]] == ["::1"], probe
    assert probe["state"] == "refused"
    doc = diagnose(s, "localhost:3000")
    verdict(doc, "wrong_interface")
    t = everything(doc)
    assert "::1" in t and "127.0.0.1" in t, t


def test_localhost_tries_ipv6_first_while_server_is_ipv4_loopback(pair: tuple[Host, Host]) -> None:
    """Both addresses resolve; a client that tries only the first (Node < 20, many libraries) fails."""
    _c, s = pair
    s.hosts("::1 localhost\n127.0.0.1 localhost\n")
    s.listen(3000, "127.0.0.1", argv0="node")
    rc, probe = s.json_of("probe", "localhost:3000")
    states = {a["address"]: a["state"] for a in probe["addresses"]}
    assert states == {"::1": "refused", "127.0.0.1": "open"}, probe
    doc = diagnose(s, "localhost:3000")
    # the service answers on one of the two addresses: not a dead service, a family mismatch
    assert doc["verdict"]["cause"] in ("ok", "wrong_interface"), brief(doc)
    t = everything(doc)
    assert "::1" in t and "127.0.0.1" in t, brief(doc)
    assert any(f["cause"] == "wrong_interface" for f in doc["findings"]), brief(doc)


def test_ipv4_only_listener_reached_over_ipv6(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, "0.0.0.0", argv0="app-server")
    assert c.connect_errno("fd00::2", 8080, timeout=2) == errno.ECONNREFUSED
    doc = diagnose(s, "[fd00::2]:8080", "--from", "fd00::1")
    verdict(doc, "wrong_interface")
    t = everything(doc)
    assert "0.0.0.0" in t and "IPv4" in t, t


def test_listener_on_the_external_address_reached_via_loopback(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.listen(8080, "10.0.0.2", argv0="app-server")
    doc = diagnosed_locally_as(s, "127.0.0.1", 8080, errno.ECONNREFUSED, "wrong_interface")
    assert "10.0.0.2" in doc["verdict"]["summary"], brief(doc)


def test_two_specific_listeners_reached_via_a_third_address(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.add_addr("10.0.0.3/24", "veth1")
    s.listen(8080, "127.0.0.1", argv0="app-server")
    s.listen(8080, "10.0.0.2", argv0="app-server")
    assert c.connect_errno("10.0.0.3", 8080) == errno.ECONNREFUSED
    doc = diagnose(s, "10.0.0.3:8080", "--from", "10.0.0.1")
    verdict(doc, "wrong_interface")
    t = everything(doc)
    assert "10.0.0.2" in t and "127.0.0.1" in t, t


def test_gunicorn_bound_to_loopback_on_its_command_line(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    start_app(s, tmpdir, "gunicorn", ["--bind", "127.0.0.1:8000", "--workers", "2", "app:app"])
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "wrong_interface", port=8000)
    f = finding(doc, "wrong_interface")
    t = text_of(f)
    assert "127.0.0.1:8000" in t and "gunicorn" in t, t
    # the bind setting is on the command line: the fix should say which argument to change
    assert "--bind 0.0.0.0:8000" in t, t


def test_redis_bound_to_loopback_by_its_command_line(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("redis-server")
    c, s = pair
    s.start(["redis-server", "--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no",
             "--dir", str(tmpdir), "--protected-mode", "yes"], ready_port=6379)
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "wrong_interface", port=6379)
    f = finding(doc, "wrong_interface")
    t = text_of(f)
    assert "redis" in t and "127.0.0.1" in t, t
    fixes = "\n".join(x["description"] + " " + (x.get("command") or "") for x in f["fix"])
    # protected-mode stays on when bind widens: the fix must warn (or redis still refuses clients)
    assert "protected-mode" in t, t
    # this redis runs without any config file (INFO server: config_file is empty): the bind came
    # from its command line, so the packaged /etc/redis/redis.conf is not the file to edit
    assert "/etc/redis/redis.conf" not in fixes, fixes
    assert "--bind" in fixes or "CONFIG SET bind" in fixes, fixes


def test_redis_with_its_own_config_file_and_the_default_process_title(pair: tuple[Host, Host], tmpdir: Path) -> None:
    """redis rewrites its process title ("redis-server 127.0.0.1:6379"): the config path is not in argv."""
    need("redis-server")
    c, s = pair
    conf = tmpdir / "redis.conf"
    conf.write_text("port 6379\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\n"
                    f"dir {tmpdir}\nsave \"\"\nappendonly no\n")
    s.start(["redis-server", str(conf)], ready_port=6379)
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "wrong_interface", port=6379)
    fixes = "\n".join(x["description"] + " " + (x.get("command") or "") for x in finding(doc, "wrong_interface")["fix"])
    # redis itself says which file it loaded (redis-cli INFO server: config_file)
    assert f"{conf}" in fixes and "line 2" in fixes, fixes


# =========================================================================== wrong port / not running


def test_process_with_port_argument_listening_elsewhere(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    # the app ignores --port (its config file wins) and listens on 3000
    start_app(s, tmpdir, "webapp", ["--port", "8080"], conf="0.0.0.0:3000")
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "wrong_port")
    t = doc["verdict"]["summary"]
    assert "3000" in t and "--port 8080" in everything(doc), brief(doc)


def test_port_env_on_a_process_that_does_not_listen(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    start_app(s, tmpdir, "webapp", [], env={"PORT": "8080"})  # started, stuck before listen()
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "service_not_running")
    t = everything(doc)
    assert "PORT=8080" in t, brief(doc)  # the process meant to serve it is named


# the inside of nginx's http block (see servers.nginx_conf)
NGINX_HELLO_80 = """    server {
        listen 80;
        location / { return 200 "hello\\n"; }
    }
"""


def test_nginx_on_port_80_while_clients_use_8080(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    run_nginx(s, tmpdir, NGINX_HELLO_80, port=80)
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "wrong_port")
    assert "nginx" in doc["verdict"]["summary"] and "80" in doc["verdict"]["summary"], brief(doc)


def test_service_on_the_adjacent_port(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8081, argv0="api-server")
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "wrong_port")
    assert "8081" in doc["verdict"]["summary"], brief(doc)


def test_postgres_on_a_non_standard_port_in_its_config(pair: tuple[Host, Host], tmpdir: Path) -> None:
    bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not bindirs:
        need("/usr/lib/postgresql/NN/bin/postgres")
    bindir = bindirs[-1]
    c, s = pair
    shutil.chown(tmpdir, "postgres", "postgres")
    data = tmpdir / "data"
    subprocess.run(["runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", str(data), "-A", "trust",
                    "--no-sync"], check=True, capture_output=True)
    conf = data / "postgresql.conf"
    with conf.open("a") as fh:
        fh.write("\nlisten_addresses = '*'\nport = 5433\n")
    lineno = len(conf.read_text().splitlines())
    s.start(["runuser", "-u", "postgres", "--", str(bindir / "postgres"), "-D", str(data), "-k", str(tmpdir)],
            ready_port=5433, timeout=30)
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "wrong_port", port=5432)
    assert "5433" in doc["verdict"]["summary"], brief(doc)
    t = everything(doc)
    assert f"{conf}" in t and f"line {lineno}" in t, t


# =========================================================================== resources


def test_accept_queue_full_without_abort_on_overflow(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, backlog=2, accept=False, argv0="stuck-worker")
    hold(c, 5)
    doc = diagnosed_as(c, s, errno.ETIMEDOUT, "resource_exhaustion")
    assert doc["probe"]["state"] == "timeout", brief(doc)
    t = everything(doc)
    assert "accept queue full" in t, t


def test_somaxconn_caps_the_backlog(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.sysctl("net.core.somaxconn", 4)
    s.listen(8080, backlog=4096, accept=False, argv0="api-server")
    hold(c, 8)
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1", "--timeout", "1")
    verdict(doc, "resource_exhaustion")
    t = everything(doc)
    assert "somaxconn" in t, t


def test_listening_socket_with_backlog_zero(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, backlog=0, accept=False, argv0="legacy-daemon")
    hold(c, 3)
    doc = diagnosed_as(c, s, errno.ETIMEDOUT, "resource_exhaustion")
    t = everything(doc)
    assert "backlog 0" in t and "ListenOverflows" in t, t


# =========================================================================== DNS


def test_name_points_at_the_wrong_address(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, argv0="api-server")
    c.dns({"api.lab.test": "10.0.0.1"})  # a stale record: the old server's address, now the client's
    s.dns({"api.lab.test": "10.0.0.1"})
    rc, probe = c.json_of("probe", "api.lab.test:8080")
    assert probe["state"] == "refused"
    doc = diagnose(s, "api.lab.test:8080")
    verdict(doc, "dns")
    t = everything(doc)
    assert "10.0.0.1" in t and "10.0.0.2" in t, t


# =========================================================================== firewall


def test_drop_in_user_chain_for_one_source(pair: tuple[Host, Host]) -> None:
    c, s = pair
    c.add_addr("10.0.0.3/24", "veth0")
    s.listen(8080)
    s.iptables("-N", "BLOCKLIST")
    s.iptables("-A", "INPUT", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
    s.iptables("-A", "INPUT", "-p", "tcp", "-m", "tcp", "--dport", "8080", "-j", "BLOCKLIST")
    s.iptables("-A", "BLOCKLIST", "-s", "10.0.0.0/30", "-j", "DROP")
    assert connect_from(c, "10.0.0.1", "10.0.0.2", 8080) == errno.ETIMEDOUT
    assert connect_from(c, "10.0.0.3", "10.0.0.2", 8080) == errno.ETIMEDOUT
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1", "--timeout", "1")
    verdict(doc, "firewall_drop")
    f = finding(doc, "firewall_drop")
    assert "BLOCKLIST" in f["summary"], brief(doc)
    assert "10.0.0.0/30" in "\n".join(f["evidence"]), text_of(f)


def test_nft_ip_family_set_of_blocked_ports(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.nft("""table ip filter {
  set blocked_ports {
    type inet_service
    elements = { 23, 8080, 9000 }
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iif "lo" accept
    tcp dport @blocked_ports reject with tcp reset
  }
}""")
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "firewall_reject")
    f = finding(doc, "firewall_reject")
    assert "nft ip filter" in f["summary"], text_of(f)
    assert "@blocked_ports" in text_of(f), text_of(f)


def test_nft_verdict_map_drops_the_port(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.nft("""table inet fw {
  chain input {
    type filter hook input priority 0; policy accept;
    ct state established,related accept
    iifname "lo" accept
    tcp dport vmap { 22 : accept, 8080 : drop, 9090 : drop }
  }
}""")
    doc = diagnosed_as(c, s, errno.ETIMEDOUT, "firewall_drop")
    assert "vmap" in text_of(finding(doc, "firewall_drop")), brief(doc)


def test_nft_regular_chain_reject_for_a_source_set(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.nft("""table inet fw {
  set untrusted {
    type ipv4_addr
    flags interval
    elements = { 10.0.0.0/29 }
  }
  chain app {
    ip saddr @untrusted reject with icmpx type port-unreachable
    accept
  }
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 8000-8100 jump app
  }
}""")
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "firewall_reject")
    f = finding(doc, "firewall_reject")
    assert "chain app" in f["summary"], text_of(f)


def test_multiport_reject_on_ip6tables(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, "::")
    s.ip6tables("-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "80,443,8000:8100",
                "-j", "REJECT", "--reject-with", "tcp-reset")
    assert c.connect_errno("fd00::2", 8080, timeout=2) == errno.ECONNREFUSED
    doc = diagnose(s, "[fd00::2]:8080", "--from", "fd00::1")
    verdict(doc, "firewall_reject")
    assert "multiport" in text_of(finding(doc, "firewall_reject")), brief(doc)


def test_reject_in_forward_for_a_dnat_to_a_running_backend(lab: Lab, pair: tuple[Host, Host]) -> None:
    c, s = pair
    b = backend(lab, s)
    b.listen(80, argv0="httpd")
    dnat(s, "10.0.1.2:80")
    s.iptables("-A", "FORWARD", "-d", "10.0.1.2", "-p", "tcp", "--dport", "80", "-j", "REJECT")
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "firewall_reject")
    f = finding(doc, "firewall_reject")
    assert "FORWARD" in f["summary"], text_of(f)
    assert "10.0.1.2:80" in text_of(f), text_of(f)


def test_dnat_to_a_backend_listening_on_its_loopback(lab: Lab, pair: tuple[Host, Host]) -> None:
    c, s = pair
    b = backend(lab, s)
    b.listen(80, "127.0.0.1", argv0="httpd")
    dnat(s, "10.0.1.2:80")
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "port_mapping")
    f = finding(doc, "port_mapping")
    assert "10.0.1.2:80" in f["summary"], text_of(f)


def test_output_chain_reject_on_the_client(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    c.iptables("-A", "OUTPUT", "-d", "10.0.0.2", "-p", "tcp", "--dport", "8080", "-j", "REJECT",
               "--reject-with", "tcp-reset")
    doc = diagnosed_locally_as(c, "10.0.0.2", 8080, errno.ECONNREFUSED, "firewall_reject")
    f = finding(doc, "firewall_reject")
    assert "OUTPUT" in f["summary"], text_of(f)


def test_local_dnat_in_output_to_a_port_where_nothing_listens(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.iptables("-t", "nat", "-A", "OUTPUT", "-d", "127.0.0.1", "-p", "tcp", "--dport", "80",
               "-j", "DNAT", "--to-destination", "127.0.0.1:8080")
    doc = diagnosed_locally_as(s, "127.0.0.1", 80, errno.ECONNREFUSED, "port_mapping")
    assert "127.0.0.1:8080" in finding(doc, "port_mapping")["summary"], brief(doc)


# =========================================================================== proxies


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


def test_nginx_proxy_pass_to_a_dead_port_without_from(pair: tuple[Host, Host], tmpdir: Path) -> None:
    _c, s = pair
    conf = run_nginx(s, tmpdir, NGINX_DIRECT)
    doc = diagnose(s, "10.0.0.2:8080")
    assert doc["probe"]["state"] == "open"
    verdict(doc, "proxy_upstream")
    f = finding(doc, "proxy_upstream")
    assert "127.0.0.1:9001" in f["summary"] and "nothing listens" in f["summary"], text_of(f)
    assert f"{conf}:" in f["summary"], text_of(f)


def test_haproxy_server_named_by_a_hostname(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("haproxy")
    _c, s = pair
    s.dns({"app.lab.test": "127.0.0.1"})
    conf = tmpdir / "haproxy.cfg"
    conf.write_text(haproxy_cfg("app.lab.test:9003"))
    s.start(["haproxy", "-db", "-f", str(conf)], ready_port=8080)
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    assert doc["probe"]["state"] == "open"
    verdict(doc, "proxy_upstream")
    f = finding(doc, "proxy_upstream")
    assert "app.lab.test:9003" in f["summary"] and "nothing listens on port 9003" in f["summary"], text_of(f)


NGINX_NAMED = """    server {{
        listen {listen};
        location / {{
            proxy_pass {upstream};
        }}
    }}
"""


def start_nginx(s: Host, d: Path, upstream: str, listen: str = "8080", port: int = 8080) -> Path:
    return run_nginx(s, d, NGINX_NAMED.format(upstream=upstream, listen=listen), port=port)


def test_nginx_proxy_pass_to_a_hostname(pair: tuple[Host, Host], tmpdir: Path) -> None:
    """A compose-style upstream name, resolved by the proxy (nginx resolves it at start)."""
    _c, s = pair
    s.dns({"backend.lab.test": "127.0.0.1"})
    conf = start_nginx(s, tmpdir, "http://backend.lab.test:9001")
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "proxy_upstream")
    f = finding(doc, "proxy_upstream")
    assert "backend.lab.test" in f["summary"] and "nothing listens on port 9001" in f["summary"], text_of(f)


def test_nginx_upstream_unix_socket_missing(pair: tuple[Host, Host], tmpdir: Path) -> None:
    """gunicorn behind nginx on a unix socket; the app is down, its socket file is gone."""
    c, s = pair
    sock = tmpdir / "app.sock"
    conf = start_nginx(s, tmpdir, f"http://unix:{sock}:")
    out = c.run(["curl", "-m", "5", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://10.0.0.2:8080/"],
                check=False).stdout
    assert out == "502"
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "proxy_upstream")
    f = finding(doc, "proxy_upstream")
    assert str(sock) in f["summary"], text_of(f)
    assert f"{conf}:" in f["summary"], text_of(f)


def test_nginx_listening_on_loopback_by_its_config(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    s.listen(9001, "127.0.0.1", argv0="app-server")
    conf = start_nginx(s, tmpdir, "http://127.0.0.1:9001", listen="127.0.0.1:8080")
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "wrong_interface")
    f = finding(doc, "wrong_interface")
    t = text_of(f)
    assert "nginx" in t and f"{conf}" in t and "listen 127.0.0.1:8080" in t, t


def test_dual_stack_wildcard_reached_over_ipv4_is_ok(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, "::", v6only=False, argv0="java")
    doc = diagnosed_as(c, s, 0, "ok")


def test_name_with_only_an_aaaa_record_and_an_ipv4_only_server(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, "0.0.0.0", argv0="app-server")
    c.dns({"api.lab.test": "fd00::2"})
    rc, probe = c.json_of("probe", "api.lab.test:8080", "--timeout", "2")
    assert probe["state"] == "refused", probe
    s.dns({"api.lab.test": "fd00::2"})
    doc = diagnose(s, "api.lab.test:8080", "--from", "fd00::1")
    verdict(doc, "wrong_interface")
    t = everything(doc)
    assert "fd00::2" in t and "0.0.0.0" in t, t


def test_hosts_file_sends_the_name_to_this_host(pair: tuple[Host, Host]) -> None:
    """Debian's `127.0.1.1 <name>` line in the client's /etc/hosts shadows the DNS record."""
    c, s = pair
    s.listen(8080, argv0="api-server")
    c.dns({"api.lab.test": "10.0.0.2"})
    c.hosts("127.0.0.1 localhost\n127.0.1.1 api.lab.test api\n")
    rc, probe = c.json_of("probe", "api.lab.test:8080")
    assert probe["state"] == "refused" and probe["addresses"][0]["address"] == "127.0.1.1", probe
    doc = diagnose(c, "api.lab.test:8080")
    verdict(doc, "dns")
    t = everything(doc)
    assert "/etc/hosts" in t and "10.0.0.2" in t, t


# --------------------------------------------------------------------------- more firewall shapes


# `ufw reject 8080/tcp` (after `ufw allow 22/tcp`), as ufw writes it (see servers.ufw_rules)
UFW = ufw_rules("-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT\n"
                "-A ufw-user-input -p tcp -m tcp --dport 8080 -j REJECT --reject-with tcp-reset\n", track=True)


def test_ufw_reject_rule(pair: tuple[Host, Host]) -> None:
    """`ufw reject 8080/tcp`, as ufw writes it (a reject rule in ufw-user-input)."""
    c, s = pair
    s.listen(8080)
    s.run(["iptables-restore"], input=UFW)
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "firewall_reject")
    f = finding(doc, "firewall_reject")
    assert "ufw-user-input" in f["summary"], text_of(f)
    assert any((x.get("command") or "").startswith("ufw ") for x in f["fix"]), text_of(f)


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


def test_firewalld_zone_without_the_port(pair: tuple[Host, Host]) -> None:
    """firewalld's public zone: only ssh allowed; the rest is rejected admin-prohibited."""
    c, s = pair
    s.listen(8080)
    s.nft(FIREWALLD)
    doc = diagnosed_as(c, s, errno.EHOSTUNREACH, "firewall_reject")
    f = finding(doc, "firewall_reject")
    assert "admin-prohibited" in f["summary"] and "EHOSTUNREACH" in f["summary"], text_of(f)
    assert any("firewall-cmd" in (x.get("command") or "") and "public" in (x.get("command") or "")
               for x in f["fix"]), text_of(f)


def test_iprange_reject(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-m", "iprange", "--src-range",
               "10.0.0.1-10.0.0.10", "-j", "REJECT")
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "firewall_reject")
    assert "10.0.0.1-10.0.0.10" in text_of(finding(doc, "firewall_reject")), brief(doc)


def test_negated_source_drop_on_a_port_range(pair: tuple[Host, Host]) -> None:
    """"Only the bastion may reach the admin ports": everyone else is dropped."""
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "!", "-s", "10.0.0.100/32", "-p", "tcp", "-m", "tcp", "--dport", "8000:8100",
               "-m", "state", "--state", "NEW", "-j", "DROP")
    doc = diagnosed_as(c, s, errno.ETIMEDOUT, "firewall_drop")
    assert "10.0.0.100" in text_of(finding(doc, "firewall_drop")), brief(doc)


def test_drop_in_the_raw_table(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-t", "raw", "-A", "PREROUTING", "-s", "10.0.0.1", "-p", "tcp", "--dport", "8080", "-j", "DROP")
    doc = diagnosed_as(c, s, errno.ETIMEDOUT, "firewall_drop")
    assert "raw" in finding(doc, "firewall_drop")["summary"], brief(doc)


def test_drop_in_the_mangle_table(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.iptables("-t", "mangle", "-A", "PREROUTING", "-s", "10.0.0.1", "-p", "tcp", "--dport", "8080", "-j", "DROP")
    doc = diagnosed_as(c, s, errno.ETIMEDOUT, "firewall_drop")
    assert "mangle" in finding(doc, "firewall_drop")["summary"], brief(doc)


def test_nft_prerouting_raw_priority_drop(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.nft("""table inet early {
  chain pre {
    type filter hook prerouting priority raw; policy accept;
    ip saddr 10.0.0.1 tcp dport 8080 drop
  }
}""")
    doc = diagnosed_as(c, s, errno.ETIMEDOUT, "firewall_drop")
    assert "chain pre" in finding(doc, "firewall_drop")["summary"], brief(doc)


def test_ip6tables_drop_for_one_source(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, "::")
    s.ip6tables("-A", "INPUT", "-s", "fd00::1/128", "-p", "tcp", "--dport", "8080", "-j", "DROP")
    assert c.connect_errno("fd00::2", 8080, timeout=0.5) == errno.ETIMEDOUT
    doc = diagnose(s, "[fd00::2]:8080", "--from", "fd00::1", "--timeout", "1")
    verdict(doc, "firewall_drop")
    assert "ip6tables" in finding(doc, "firewall_drop")["summary"], brief(doc)


# --------------------------------------------------------------------------- more NAT


def test_nft_dnat_to_a_backend_where_nothing_listens(lab: Lab, pair: tuple[Host, Host]) -> None:
    c, s = pair
    backend(lab, s)
    s.nft("""table ip nat {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "veth1" tcp dport 8080 dnat to 10.0.1.2:80
  }
}""")
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "port_mapping")
    assert "10.0.1.2:80" in finding(doc, "port_mapping")["summary"], brief(doc)


def test_dnat_to_another_host_with_forwarding_off(lab: Lab, pair: tuple[Host, Host]) -> None:
    c, s = pair
    b = backend(lab, s)
    b.listen(80, argv0="httpd")
    s.sysctl("net.ipv4.ip_forward", 0)
    dnat(s, "10.0.1.2:80")
    assert c.connect_errno("10.0.0.2", 8080, timeout=0.5) == errno.ETIMEDOUT
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1", "--timeout", "1")
    # no rule drops it, the mapping leads nowhere because this host does not forward; the client
    # sees a timeout. Either name is fair as long as ip_forward is the evidence and the fix.
    assert doc["verdict"]["cause"] in ("port_mapping", "firewall_drop"), brief(doc)
    t = everything(doc)
    assert "ip_forward" in t and "10.0.1.2:80" in t, t
    assert "sysctl -w net.ipv4.ip_forward=1" in t, t


def test_dnat_to_the_wrong_backend_port(lab: Lab, pair: tuple[Host, Host]) -> None:
    c, s = pair
    b = backend(lab, s)
    b.listen(8080, argv0="httpd")  # the app in the "container" listens on 8080, the mapping says 80
    dnat(s, "10.0.1.2:80")
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "port_mapping")
    assert "10.0.1.2:80" in finding(doc, "port_mapping")["summary"], brief(doc)


def test_iptables_policy_drop_with_only_ssh_open(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    s.run(["iptables-restore"], input="""*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p icmp -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -j ACCEPT
COMMIT
""")
    doc = diagnosed_as(c, s, errno.ETIMEDOUT, "firewall_drop")
    f = finding(doc, "firewall_drop")
    assert "policy DROP of chain INPUT" in f["summary"], text_of(f)
    cmd = next(x["command"] for x in f["fix"] if x.get("command"))
    assert cmd.startswith("iptables ") and "10.0.0.1" in cmd and "8080" in cmd, text_of(f)
    s.run(["sh", "-c", cmd])  # the fix, as given, lets the client in
    assert c.connect_errno("10.0.0.2", 8080) == 0


def test_reject_on_the_external_interface_diagnosed_without_from(pair: tuple[Host, Host]) -> None:
    """Loopback is let through, everything arriving on the network is rejected: a local check passes."""
    c, s = pair
    s.listen(8080)
    s.iptables("-A", "INPUT", "-i", "veth1", "-p", "tcp", "--dport", "8080", "-j", "REJECT")
    assert c.connect_errno("10.0.0.2", 8080) == errno.ECONNREFUSED
    doc = diagnose(s, "10.0.0.2:8080")
    assert doc["probe"]["state"] == "open"
    # clients of 10.0.0.2 come in on veth1 (a local client would use lo): every one is rejected
    verdict(doc, "firewall_reject")
    assert "veth1" in text_of(finding(doc, "firewall_reject")), brief(doc)


def test_nft_output_reject_on_the_client(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    c.nft("""table inet egress {
  chain out {
    type filter hook output priority 0; policy accept;
    ip daddr 10.0.0.0/24 tcp dport { 8080, 8443 } reject with tcp reset
  }
}""")
    doc = diagnosed_locally_as(c, "10.0.0.2", 8080, errno.ECONNREFUSED, "firewall_reject")
    assert "chain out" in finding(doc, "firewall_reject")["summary"], brief(doc)


def test_name_with_a_stale_and_a_current_address(pair: tuple[Host, Host]) -> None:
    """Round-robin record with one stale address: clients that try only the first fail half the time."""
    c, s = pair
    s.listen(8080, argv0="api-server")
    s.dns({"api.lab.test": "10.0.0.1,10.0.0.2"})
    rc, probe = s.json_of("probe", "api.lab.test:8080")
    states = {a["address"]: a["state"] for a in probe["addresses"]}
    assert states == {"10.0.0.1": "refused", "10.0.0.2": "open"}, probe
    doc = diagnose(s, "api.lab.test:8080")
    verdict(doc, "dns")
    assert "10.0.0.1" in finding(doc, "dns")["summary"], brief(doc)


def test_nginx_upstream_over_ipv6_loopback_while_app_is_on_ipv4(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    s.listen(9001, "127.0.0.1", argv0="uvicorn")
    conf = start_nginx(s, tmpdir, "http://[::1]:9001")
    out = c.run(["curl", "-m", "5", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://10.0.0.2:8080/"],
                check=False).stdout
    assert out == "502"
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "proxy_upstream")
    f = finding(doc, "proxy_upstream")
    assert "[::1]:9001" in f["summary"] or "::1" in f["summary"], text_of(f)
    assert "127.0.0.1:9001" in text_of(f), text_of(f)


def test_container_published_on_this_machine_is_not_about_a_remote_target(tmpdir: Path) -> None:
    """A laptop runs a container publishing 18081->8080 and diagnoses a remote server's 8080.

    The container says nothing about the remote host: no finding may blame its mapping.
    """
    from test_container_lab import IMAGE, podman_lab
    with podman_lab("pdm", "pdmorepod") as (p, c, h, _tmp):
        name = p.run("web", "-p", "18081:8080", IMAGE, "/bin/httpd", "-f", "-p", "0.0.0.0:8080")
        p.wait_listening(name, 8080)
        assert h.connect_errno("10.0.0.1", 8080) == errno.ECONNREFUSED  # c: nothing listens
        doc = pod_diagnose(p, h, "10.0.0.1:8080")
        assert doc["probe"]["state"] == "refused"
        assert not [f for f in doc["findings"] if name in f["summary"]], brief(doc)
        verdict(doc, "unknown")


def test_syn_queue_full_without_syncookies(pair: tuple[Host, Host]) -> None:
    """A SYN flood (handshakes never completed) fills the SYN queue; syncookies are off."""
    c, s = pair
    c.add_addr("10.0.0.3/24", "veth0")
    s.sysctl("net.ipv4.tcp_syncookies", 0)
    s.listen(8080, backlog=8, argv0="api-server")
    # the flooding address never answers the SYN-ACKs, so its handshakes stay half-open on s
    c.iptables("-A", "INPUT", "-d", "10.0.0.1", "-p", "tcp", "--sport", "8080", "--tcp-flags", "SYN,ACK", "SYN,ACK",
               "-j", "DROP")
    held(c, HALF_OPEN, "10.0.0.2", "8080", "32", "10.0.0.1")
    assert connect_from(c, "10.0.0.3", "10.0.0.2", 8080) == errno.ETIMEDOUT  # a legitimate client
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.3", "--timeout", "1")
    verdict(doc, "resource_exhaustion")
    t = everything(doc)
    # the accept queue is empty (queued 0): the SYN queue of half-open handshakes is what is full
    assert "syncookies" in t, t
    assert any(w in t for w in ("SYN queue", "half-open", "SYN_RECV", "SYN-RECV", "syn-recv")), t


def mariadb(s: Host, d: Path, cnf: str, port: int) -> Path:
    need("/usr/sbin/mariadbd", "mariadb-install-db")
    shutil.chown(d, "mysql", "mysql")
    s.run(["mariadb-install-db", f"--datadir={d / 'data'}", "--user=mysql", "--skip-test-db",
           "--auth-root-authentication-method=normal"], timeout=120)
    conf = d / "my.cnf"
    conf.write_text(cnf.format(d=d))
    s.start(["/usr/sbin/mariadbd", f"--defaults-file={conf}", "--user=mysql"], ready_port=port, timeout=60)
    return conf


def test_mariadb_on_another_port_by_its_defaults_file(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    conf = mariadb(s, tmpdir, "[mysqld]\ndatadir = {d}/data\nsocket = {d}/sock\npid-file = {d}/pid\n"
                              "port = 3307\nbind-address = 0.0.0.0\nskip-grant-tables\n", 3307)
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "wrong_port", port=3306)
    assert "3307" in doc["verdict"]["summary"], brief(doc)
    t = everything(doc)
    assert f"{conf}" in t and "line 5" in t, t


def test_mariadb_bound_to_loopback_by_its_defaults_file(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    conf = mariadb(s, tmpdir, "[mysqld]\ndatadir = {d}/data\nsocket = {d}/sock\npid-file = {d}/pid\n"
                              "port = 3306\nbind-address = 127.0.0.1\nskip-grant-tables\n", 3306)
    doc = diagnosed_as(c, s, errno.ECONNREFUSED, "wrong_interface", port=3306)
    fixes = "\n".join(x["description"] + " " + (x.get("command") or "") for x in finding(doc, "wrong_interface")["fix"])
    # mariadbd --defaults-file reads that file only: /etc/mysql is not the place to change it
    assert f"{conf}" in fixes and "line 6" in fixes, fixes


def test_container_published_on_another_host_address(tmpdir: Path) -> None:
    """`-p 10.0.0.3:18084:8080`: the mapping exists, but only on an address the clients do not use."""
    from test_container_lab import IMAGE, podman_lab
    with podman_lab("pdn", "pdmorepod") as (p, c, h, _tmp):
        h.add_addr("10.0.0.3/24", "veth1")
        name = p.run("shop", "-p", "10.0.0.3:18084:8080", IMAGE, "/bin/httpd", "-f", "-p", "0.0.0.0:8080")
        p.wait_listening(name, 8080)
        assert c.connect_errno("10.0.0.2", 18084) == errno.ECONNREFUSED
        assert c.connect_errno("10.0.0.3", 18084) == 0
        doc = pod_diagnose(p, h, "10.0.0.2:18084", "--from", "10.0.0.1")
        verdict(doc, "wrong_interface")
        # conmon only holds the port for the container: the answer is about the container's -p
        assert name in doc["verdict"]["summary"] and "10.0.0.3" in doc["verdict"]["summary"], brief(doc)
        fixes = "\n".join(x["description"] + " " + (x.get("command") or "")
                          for f in doc["findings"] if f["cause"] == "wrong_interface" for x in f["fix"])
        assert "-p 18084:8080" in fixes or "-p 10.0.0.2:18084:8080" in fixes, fixes
        assert "--host 0.0.0.0" not in fixes, fixes
