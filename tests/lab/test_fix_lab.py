"""`portdoctor fix` on real faults: one per cause with an automatic fix, then the client connects.

One client namespace c (10.0.0.1) and one server namespace s (10.0.0.2) serve the whole module;
after each test everything started in s is killed and its rulesets are emptied. `fix` runs in s
with --from 10.0.0.1 and --yes; the proof is a connection made by the client from its own
namespace. A fix that cannot work is rolled back, and the host is compared byte for byte (config
files, `iptables-save` and `nft list ruleset` without counters, sysctls) with how it was before.
The fix journal goes to a folder of the test's own (PORTDOCTOR_STATE_DIR).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from clients import hold
from netlab import LISTENER, Host, Lab, NETNS_ETC
from faults import haproxy, mariadb
from servers import need, nginx_conf, readable_tmpdir, supervisord
from verdicts import diagnose, verdict

pytestmark = pytest.mark.lab

REDIS_CONF = """# a redis.conf with its comments, as packaged ones have them
# bind: which interfaces to listen on
bind 127.0.0.1 -::1

protected-mode no
port {port}
# where the (disabled) snapshots would go
dir {d}
save ""
appendonly no
"""


@pytest.fixture(scope="module")
def net() -> Iterator[tuple[Host, Host, Path]]:
    need("iptables", "nft")
    lab = Lab()
    state = Path(tempfile.mkdtemp(prefix="pdfix-state-"))
    try:
        c, s = lab.pair()
        s.fix_state = state  # type: ignore[attr-defined]
        yield c, s, state
    finally:
        lab.teardown()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def cs(net: tuple[Host, Host, Path]) -> Iterator[tuple[Host, Host]]:
    """The module's client and server, with s emptied after the test (processes, rules, sysctls)."""
    c, s, state = net
    somaxconn = s.run(["sysctl", "-n", "net.core.somaxconn"]).stdout.strip()
    try:
        yield c, s
    finally:
        for h in (c, s):
            pids = subprocess.run(["ip", "netns", "pids", h.ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        s.run(["nft", "flush", "ruleset"], check=False)
        s.run(["sysctl", "-q", "-w", f"net.core.somaxconn={somaxconn}"], check=False)
        for name in ("ufw", "sysctl.d"):
            shutil.rmtree(s.etc / name, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
        state.mkdir()


@pytest.fixture
def d() -> Iterator[Path]:
    yield from readable_tmpdir("pdfix-")


def fix(s: Host, *args: str, user: str | None = None, timeout: float = 120) -> tuple[int, dict[str, Any]]:
    """`portdoctor fix ARGS --json` in s, journal in the test's state folder."""
    cp = s.portdoctor("fix", *args, "--json", user=user, timeout=timeout, env=_env(s))
    try:
        doc = json.loads(cp.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"fix {' '.join(args)} printed no JSON (exit {cp.returncode})\n"
                             f"stdout: {cp.stdout}\nstderr: {cp.stderr}") from None
    return cp.returncode, doc


def _env(s: Host) -> dict[str, str]:
    return {"PORTDOCTOR_STATE_DIR": str(s.fix_state)}  # type: ignore[attr-defined]


def fixed(s: Host, *args: str) -> dict[str, Any]:
    """`fix ARGS --yes` succeeds (exit 0, status fixed) and says how it checked."""
    rc, doc = fix(s, *args, "--yes")
    assert rc == 0 and doc["status"] == "fixed", json.dumps(doc, indent=1)
    assert doc["result"]["verified"], doc
    return doc


def _no_counters(text: str) -> str:
    text = re.sub(r"\[\d+:\d+\]", "[0:0]", text)
    text = re.sub(r"counter packets \d+ bytes \d+", "counter", text)
    return "\n".join(ln for ln in text.splitlines() if not ln.startswith("#"))


def host_state(s: Host, *files: Path) -> dict[str, str]:
    """What must be byte-identical after a rollback or undo: files, rulesets, sysctls."""
    out = {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    out["iptables"] = _no_counters(s.run(["iptables-save"]).stdout)
    out["nft"] = _no_counters(s.run(["nft", "list", "ruleset"]).stdout)
    out["sysctl"] = s.run(["sysctl", "net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog",
                           "net.ipv4.tcp_syncookies"]).stdout
    return out


def connects(c: Host, port: int, timeout: float = 2.0) -> int:
    return c.connect_errno("10.0.0.2", port, timeout)


def start_redis(s: Host, d: Path, port: int = 6379, wait: int | None = None) -> Path:
    need("redis-server")
    conf = d / "redis.conf"
    conf.write_text(REDIS_CONF.format(port=port, d=d))
    s.start(["redis-server", str(conf)], ready_port=wait or port)
    return conf


# =========================================================================== firewall


def test_iptables_reject_is_fixed_and_undone(cs: tuple[Host, Host]) -> None:
    c, s = cs
    s.listen(8080)
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "REJECT", "--reject-with", "tcp-reset")
    assert connects(c, 8080) == errno.ECONNREFUSED
    before = host_state(s)
    doc = fixed(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    step = doc["plan"]["steps"][0]
    assert step["kind"] == "firewall_rule" and step["tool"] == "iptables", step
    assert "10.0.0.1" in step["exposes"] and "-s 10.0.0.1" in " ".join(step["argv"]), step
    assert connects(c, 8080) == 0
    rc, undo = fix(s, "--undo")
    assert rc == 0 and undo["status"] == "undone", undo
    assert connects(c, 8080) == errno.ECONNREFUSED
    assert host_state(s) == before


def test_nft_drop(cs: tuple[Host, Host]) -> None:
    c, s = cs
    s.listen(8080)
    s.nft("table inet filter {\n chain input {\n  type filter hook input priority 0; policy accept;\n"
          "  ct state established,related accept\n  tcp dport 8080 drop\n }\n}\n")
    assert connects(c, 8080, 1) == errno.ETIMEDOUT
    doc = fixed(s, "10.0.0.2:8080", "--from", "10.0.0.1", "--timeout", "1")
    assert doc["verdict"]["cause"] == "firewall_drop", doc["verdict"]
    assert doc["plan"]["steps"][0]["tool"] == "nft", doc["plan"]
    assert connects(c, 8080) == 0


def test_ufw_reject(cs: tuple[Host, Host]) -> None:
    """Real ufw, on a private copy of /etc/ufw (ip netns exec binds /etc/netns/NS/ufw over it)."""
    need("ufw")
    c, s = cs
    host_conf = Path("/etc/ufw/ufw.conf").read_bytes()
    shutil.copytree("/etc/ufw", s.etc / "ufw", symlinks=True)
    try:
        s.run(["ufw", "--force", "enable"])
        s.run(["ufw", "allow", "22/tcp"])
        s.run(["ufw", "reject", "8080/tcp"])
        s.listen(8080)
        assert connects(c, 8080) == errno.ECONNREFUSED
        doc = fixed(s, "10.0.0.2:8080", "--from", "10.0.0.1")
        assert doc["plan"]["steps"][0]["tool"] == "ufw", doc["plan"]
        assert connects(c, 8080) == 0
        assert "10.0.0.1" in s.run(["ufw", "status"]).stdout
    finally:
        s.run(["ufw", "--force", "disable"], check=False)
        assert Path("/etc/ufw/ufw.conf").read_bytes() == host_conf, "the host's own ufw was touched"


# =========================================================================== bind scope


def test_redis_bound_to_loopback(cs: tuple[Host, Host], d: Path) -> None:
    c, s = cs
    conf = start_redis(s, d)
    assert connects(c, 6379) == errno.ECONNREFUSED
    doc = fixed(s, "10.0.0.2:6379", "--from", "10.0.0.1")
    edit = doc["plan"]["steps"][0]
    assert edit["kind"] == "edit_setting" and edit["path"] == str(conf) and edit["new"] == "* -::*", edit
    assert doc["plan"]["steps"][1]["tool"] == "respawn", doc["plan"]
    assert "+bind * -::*" in doc["preview"][0], doc["preview"]
    text = conf.read_text()
    assert "bind * -::*\n" in text and "# bind: which interfaces to listen on" in text, text
    assert text.replace("bind * -::*", "bind 127.0.0.1 -::1") == REDIS_CONF.format(port=6379, d=d)
    assert connects(c, 6379) == 0
    # restarted with its config file (redis shows only a title in /proc/PID/cmdline): `dir` is from it
    assert s.run(["redis-cli", "CONFIG", "GET", "dir"]).stdout.split() == ["dir", str(d)]
    rc, undo = fix(s, "--undo")
    assert rc == 0 and undo["status"] == "undone", undo
    assert conf.read_text() == REDIS_CONF.format(port=6379, d=d)
    s.wait_port(6379, "127.0.0.1")
    assert connects(c, 6379) == errno.ECONNREFUSED


def test_redis_bound_by_its_command_line_is_changed_at_run_time(cs: tuple[Host, Host], d: Path) -> None:
    need("redis-server", "redis-cli")
    c, s = cs
    s.start(["redis-server", "--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no",
             "--dir", str(d), "--protected-mode", "no"], ready_port=6379)
    assert connects(c, 6379) == errno.ECONNREFUSED
    doc = fixed(s, "10.0.0.2:6379", "--from", "10.0.0.1")
    step = doc["plan"]["steps"][0]
    assert step["tool"] == "redis-cli" and step["persist"].startswith("start redis with --bind"), step
    assert connects(c, 6379) == 0
    rc, undo = fix(s, "--undo")
    assert rc == 0 and undo["status"] == "undone", undo
    assert connects(c, 6379) == errno.ECONNREFUSED


@pytest.mark.parametrize("setting", ["listen_addresses = 'localhost'\t# only here\n", ""],
                         ids=["its-line", "the-default"])
def test_postgres_bound_to_loopback(cs: tuple[Host, Host], d: Path, setting: str) -> None:
    """By its own line, or by the default (no active listen_addresses line: fix adds one)."""
    bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not bindirs:
        need("/usr/lib/postgresql/NN/bin/postgres")
    bindir = bindirs[-1]
    c, s = cs
    shutil.chown(d, "postgres", "postgres")
    data = d / "data"
    subprocess.run(["runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", str(data), "-A", "trust",
                    "--no-sync"], check=True, capture_output=True)
    conf = data / "postgresql.conf"
    with conf.open("a") as fh:
        fh.write(f"\n{setting}port = 5432\n")
    before = conf.read_text()
    s.start(["runuser", "-u", "postgres", "--", str(bindir / "postgres"), "-D", str(data), "-k", str(d)],
            ready_port=5432, timeout=30)
    assert connects(c, 5432) == errno.ECONNREFUSED
    fixed(s, "10.0.0.2:5432", "--from", "10.0.0.1")
    if setting:
        assert conf.read_text() == before.replace("= 'localhost'\t# only here", "= '*'\t# only here")
    else:
        assert conf.read_text() == before + "listen_addresses = '*'\n"
    assert connects(c, 5432) == 0


def test_mariadb_bound_to_loopback(cs: tuple[Host, Host], d: Path) -> None:
    c, s = cs
    conf = mariadb(s, d, "[mysqld]\ndatadir = {d}/data\nsocket = {d}/sock\npid-file = {d}/pid\n"
                         "port = 3306\nbind-address = 127.0.0.1   # local clients only\nskip-grant-tables\n", 3306)
    assert connects(c, 3306) == errno.ECONNREFUSED
    fixed(s, "10.0.0.2:3306", "--from", "10.0.0.1")
    assert "bind-address = 0.0.0.0   # local clients only\n" in conf.read_text()
    assert connects(c, 3306) == 0


NGINX_HELLO = """    server {
        listen 127.0.0.1:8080;   # only here, for now
        location / { return 200 "hello\\n"; }
    }
"""


def test_nginx_bound_to_loopback(cs: tuple[Host, Host], d: Path) -> None:
    need("nginx", "curl")
    c, s = cs
    conf = d / "nginx.conf"
    conf.write_text(nginx_conf(d, NGINX_HELLO))
    s.start(["nginx", "-c", str(conf)], ready_port=8080)
    assert connects(c, 8080) == errno.ECONNREFUSED
    doc = fixed(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    assert [x["tool"] for x in doc["plan"]["steps"] if x["kind"] == "restart"] == ["respawn"], doc["plan"]
    assert "listen 8080;   # only here, for now" in conf.read_text()
    assert c.run(["curl", "-s", "-m", "5", "http://10.0.0.2:8080/"]).stdout == "hello\n"


def test_haproxy_bound_to_loopback(cs: tuple[Host, Host], d: Path) -> None:
    c, s = cs
    conf = haproxy(s, d, bind="127.0.0.1:8080", addr="127.0.0.1")
    assert connects(c, 8080) == errno.ECONNREFUSED
    doc = fixed(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    assert "validated with haproxy" in "\n".join(doc["result"]["log"]), doc["result"]
    assert "    bind *:8080\n" in conf.read_text()
    assert connects(c, 8080) == 0


# =========================================================================== port, service, resources


def test_wrong_port_moved_with_service(cs: tuple[Host, Host], d: Path) -> None:
    c, s = cs
    conf = start_redis(s, d, port=6380)
    s.run(["sed", "-i", "s/^bind .*/bind * -::*/", str(conf)])  # reachable, only the port is wrong
    s.run(["redis-cli", "-p", "6380", "CONFIG", "SET", "bind", "* -::*"])
    assert connects(c, 6379) == errno.ECONNREFUSED
    rc, doc = fix(s, "10.0.0.2:6379", "--from", "10.0.0.1", "--yes")
    assert doc["verdict"]["cause"] == "wrong_port" and doc["status"] == "refused", doc  # no --service: a choice
    doc = fixed(s, "10.0.0.2:6379", "--from", "10.0.0.1", "--service", "redis")
    assert doc["plan"]["steps"][0]["new"] == "6379", doc["plan"]
    assert "port 6379\n" in conf.read_text()
    assert connects(c, 6379) == 0


def test_nginx_on_the_wrong_port_moved_with_service(cs: tuple[Host, Host], d: Path) -> None:
    need("nginx", "curl")
    c, s = cs
    conf = d / "nginx.conf"
    conf.write_text(nginx_conf(d, NGINX_HELLO.replace("127.0.0.1:8080", "8081")))
    s.start(["nginx", "-c", str(conf)], ready_port=8081)
    doc = fixed(s, "10.0.0.2:8080", "--from", "10.0.0.1", "--service", "nginx")
    assert doc["verdict"]["cause"] == "wrong_port" and doc["plan"]["steps"][0]["new"] == "8080", doc["plan"]
    assert c.run(["curl", "-s", "-m", "5", "http://10.0.0.2:8080/"]).stdout == "hello\n"


def test_stopped_supervisord_program(cs: tuple[Host, Host], d: Path) -> None:
    c, s = cs
    supervisord(s, d, f"\n[program:api]\ncommand={sys.executable} {LISTENER} --port 8080 --addr 0.0.0.0\n"
                      "autostart=false\n", "STOPPED")
    assert connects(c, 8080) == errno.ECONNREFUSED
    doc = fixed(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    assert doc["plan"]["steps"][0]["kind"] == "start", doc["plan"]
    assert connects(c, 8080) == 0


def test_full_accept_queue(cs: tuple[Host, Host], d: Path) -> None:
    """somaxconn 4 caps a server asking for 128; fix raises it (kept in this namespace's own
    /etc/sysctl.d) and restarts the program through supervisord so the new backlog applies."""
    c, s = cs
    (s.etc / "sysctl.d").mkdir(parents=True, exist_ok=True)
    s.sysctl("net.core.somaxconn", 4)
    supervisord(s, d, f"\n[program:api]\ncommand={sys.executable} {LISTENER} --port 8080 --addr 0.0.0.0 "
                      "--backlog 128 --no-accept\n", "RUNNING")
    s.wait_port(8080)
    hold(c, 8)
    assert connects(c, 8080, 1) == errno.ETIMEDOUT
    doc = fixed(s, "10.0.0.2:8080", "--from", "10.0.0.1", "--timeout", "1")
    kinds = [x["kind"] for x in doc["plan"]["steps"]]
    assert kinds[0] == "sysctl" and kinds[-1] == "restart", doc["plan"]
    assert "net.core.somaxconn = 4096" in (s.etc / "sysctl.d" / "60-portdoctor.conf").read_text()
    assert connects(c, 8080) == 0


def test_server_at_its_open_files_limit(cs: tuple[Host, Host]) -> None:
    """A server whose descriptors are used up cannot accept(); raising its soft limit (to the hard
    one, while it runs) lets it take the waiting connections, and new ones get in."""
    c, s = cs
    s.listen(8080, backlog=2, nofile=32, fill_fds=True, argv0="worker")
    hold(c, 6)
    assert connects(c, 8080, 1) == errno.ETIMEDOUT
    doc = fixed(s, "10.0.0.2:8080", "--from", "10.0.0.1", "--timeout", "1")
    assert doc["plan"]["steps"][0]["kind"] == "fd_limit", doc["plan"]
    assert connects(c, 8080) == 0


def test_dead_nginx_upstream(cs: tuple[Host, Host], d: Path) -> None:
    """nginx passes to 127.0.0.1:9001, a supervisord program that is stopped: fix starts it."""
    need("nginx", "curl")
    c, s = cs
    (d / "www").mkdir()
    (d / "www" / "index.html").write_text("upstream\n")
    supervisord(s, d, f"\n[program:app]\ncommand={sys.executable} -m http.server 9001 --bind 127.0.0.1 "
                      f"--directory {d / 'www'}\nautostart=false\n", "STOPPED")
    conf = d / "nginx.conf"
    conf.write_text(nginx_conf(d, "    server {\n        listen 8080;\n"
                                  "        location / { proxy_pass http://127.0.0.1:9001; }\n    }\n"))
    s.start(["nginx", "-c", str(conf)], ready_port=8080)
    assert c.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5",
                  "http://10.0.0.2:8080/"]).stdout == "502"
    doc = fixed(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    assert doc["verdict"]["cause"] == "proxy_upstream", doc["verdict"]
    assert doc["plan"]["upstream"]["steps"][0]["kind"] == "start", doc["plan"]
    assert c.run(["curl", "-s", "-m", "5", "http://10.0.0.2:8080/"]).stdout == "upstream\n"


def test_proxy_pointed_at_the_address_its_upstream_listens_on(cs: tuple[Host, Host], d: Path) -> None:
    """nginx passes to 10.0.0.2:9001, the app listens on 127.0.0.1:9001 only: the proxy's line is
    the mistake (pointing it at loopback exposes nothing new), so fix edits it and restarts nginx."""
    need("nginx", "curl")
    c, s = cs
    (d / "www").mkdir()
    (d / "www" / "index.html").write_text("app\n")
    s.start([sys.executable, "-m", "http.server", "9001", "--bind", "127.0.0.1", "--directory", str(d / "www")],
            ready_port=9001)
    conf = d / "nginx.conf"
    conf.write_text(nginx_conf(d, "    server {\n        listen 8080;\n"
                                  "        location / { proxy_pass http://10.0.0.2:9001; }\n    }\n"))
    s.start(["nginx", "-c", str(conf)], ready_port=8080)
    doc = fixed(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    assert doc["plan"]["steps"][0]["new"] == "127.0.0.1:9001", doc["plan"]
    assert "proxy_pass http://127.0.0.1:9001;" in conf.read_text()
    assert c.run(["curl", "-s", "-m", "5", "http://10.0.0.2:8080/"]).stdout == "app\n"


# =========================================================================== safety


def test_sabotaged_restart_is_rolled_back(cs: tuple[Host, Host], d: Path) -> None:
    """Another process holds 10.0.0.5:6379, so redis cannot bind `*` after the edit: the restart
    fails, the config is restored and redis runs again as before; nothing else changed."""
    c, s = cs
    s.add_addr("10.0.0.5/32")
    try:
        s.listen(6379, "10.0.0.5")
        conf = start_redis(s, d)
        before = host_state(s, conf)
        rc, doc = fix(s, "10.0.0.2:6379", "--from", "10.0.0.1", "--yes")
        assert rc == 1 and doc["status"] == "rolled_back", json.dumps(doc, indent=1)
        assert "Address already in use" in "\n".join(doc["result"]["service_log"]), doc["result"]
        assert host_state(s, conf) == before
        s.wait_port(6379, "127.0.0.1", timeout=10)
    finally:
        s.run(["ip", "addr", "del", "10.0.0.5/32", "dev", "lo"], check=False)


def test_dry_run_and_declined_change_nothing(cs: tuple[Host, Host]) -> None:
    c, s = cs
    s.listen(8080)
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "REJECT")
    before = host_state(s)
    rc, doc = fix(s, "10.0.0.2:8080", "--from", "10.0.0.1", "--dry-run")
    assert rc == 1 and doc["status"] == "dry_run" and doc["plan"]["steps"], doc
    assert host_state(s) == before
    exe = sys.executable
    cp = s.run([exe, "-m", "portdoctor", "fix", "10.0.0.2:8080", "--from", "10.0.0.1"], check=False,
               input="n\n", env=_env(s))
    assert cp.returncode == 1 and "declined" in cp.stdout, cp.stdout + cp.stderr
    assert "iptables -w -I INPUT 1 -p tcp -s 10.0.0.1 --dport 8080 -j ACCEPT" in cp.stdout, cp.stdout
    assert host_state(s) == before
    assert connects(c, 8080) == errno.ECONNREFUSED


def test_without_root_the_plan_says_sudo(cs: tuple[Host, Host], d: Path) -> None:
    c, s = cs
    shutil.chown(d, "nobody", "nogroup")
    conf = d / "redis.conf"
    conf.write_text(REDIS_CONF.format(port=6379, d=d))
    s.start(["redis-server", str(conf)], ready_port=6379, user="nobody")
    before = host_state(s, conf)
    cp = s.portdoctor("fix", "10.0.0.2:6379", "--from", "10.0.0.1", "--yes", user="nobody",
                      env={"PORTDOCTOR_STATE_DIR": str(d / "state")})
    assert cp.returncode == 3, cp.stdout + cp.stderr
    assert "sudo kill -TERM" in cp.stdout and "+bind * -::*" in cp.stdout, cp.stdout
    assert host_state(s, conf) == before
    assert connects(c, 6379) == errno.ECONNREFUSED
