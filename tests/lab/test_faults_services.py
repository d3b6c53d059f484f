"""Fault catalogue: servers on the wrong port or bound to loopback by their own config or command line, services named with --service, supervisord programs that crash, and full accept or SYN queues.

Each test builds the fault for real in namespaces, checks what a real client saw, then asserts
the verdict an operator should act on and the evidence behind it (helpers: faults.py).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clients import HALF_OPEN, connect_from, held, hold
from netlab import Host
from servers import need, supervisord
from verdicts import brief, diagnose, everything, finding, text_of, verdict
from faults import (  # noqa: F401  (_root and tmpdir are fixtures)
    _root,
    CRASH_AFTER_BIND,
    diagnosed_as,
    diagnosed_at,
    mariadb,
    redis,
    start_app,
    tmpdir,
)

pytestmark = pytest.mark.lab


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

def test_service_named_as_a_systemd_unit_that_is_not_running(pair: tuple[Host, Host]) -> None:
    c, s = pair
    doc = diagnosed_at(c, s, "10.0.0.2", errno.ECONNREFUSED, "service_not_running",
                       extra=("--service", "billing.service"))
    assert "billing" in doc["verdict"]["summary"], brief(doc)

def test_service_named_by_a_cmdline_fragment_on_another_port(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    app = tmpdir / "billing-api"
    app.write_text("import socket,sys\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                   "s.bind(('0.0.0.0',9090))\ns.listen(8)\nprint('ready',flush=True)\n"
                   "while True:\n    s.accept()[0].close()\n")
    p = s.popen([sys.executable, str(app), "--workers", "2"], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    doc = diagnosed_at(c, s, "10.0.0.2", errno.ECONNREFUSED, "wrong_port", extra=("--service", "billing-api"))
    assert "9090" in doc["verdict"]["summary"], brief(doc)

def test_service_named_as_a_unit_running_on_another_port(pair: tuple[Host, Host], tmpdir: Path) -> None:
    """--service redis-server.service (the unit name an operator knows); redis runs on 6379, the client uses 6380."""
    need("redis-server")
    c, s = pair
    redis(s, tmpdir)
    doc = diagnosed_at(c, s, "10.0.0.2", errno.ECONNREFUSED, "wrong_port", port=6380,
                       extra=("--service", "redis-server.service"))
    assert "6379" in doc["verdict"]["summary"] and "redis" in doc["verdict"]["summary"], brief(doc)

def test_service_named_that_is_not_running_while_another_app_listens_nearby(pair: tuple[Host, Host]) -> None:
    """--service worker: the operator's service is absent; an unrelated process sits on 8081."""
    c, s = pair
    s.listen(8081, argv0="metrics-exporter")
    doc = diagnosed_at(c, s, "10.0.0.2", errno.ECONNREFUSED, "service_not_running",
                       extra=("--service", "order-worker"))
    assert "order-worker" in doc["verdict"]["summary"], brief(doc)


# =========================================================================== supervisord

def test_supervisord_program_crashes_after_bind_with_autorestart(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    cmd = CRASH_AFTER_BIND.format(port=8090, after=0.3)
    supervisord(s, tmpdir, f"""
[program:api]
command={sys.executable} -c "{cmd}" --port 8090
startsecs=2
startretries=2
autorestart=true
stderr_logfile={tmpdir}/api.err
""", "FATAL")
    doc = diagnosed_at(c, s, "10.0.0.2", errno.ECONNREFUSED, "service_not_running", port=8090)
    v = doc["verdict"]["summary"]
    assert "api" in v and "FATAL" in v and "exit status 1" in v, brief(doc)
    assert "DATABASE_URL" in everything(doc), brief(doc)

def test_supervisord_program_in_a_restart_loop(pair: tuple[Host, Host], tmpdir: Path) -> None:
    """startretries is large: supervisord keeps restarting (STARTING/BACKOFF), never RUNNING."""
    c, s = pair
    cmd = CRASH_AFTER_BIND.format(port=8091, after=0.05)
    supervisord(s, tmpdir, f"""
[program:api]
command={sys.executable} -c "{cmd}" --port 8091
startsecs=5
startretries=1000
autorestart=true
stderr_logfile={tmpdir}/api.err
""", "BACKOFF")
    time.sleep(0.3)
    doc = diagnosed_at(c, s, "10.0.0.2", errno.ECONNREFUSED, "service_not_running", port=8091)
    t = everything(doc)
    assert "api" in doc["verdict"]["summary"] and any(w in t for w in ("BACKOFF", "STARTING", "restart")), brief(doc)

def test_supervisord_new_version_fails_because_old_holds_the_port(pair: tuple[Host, Host], tmpdir: Path) -> None:
    c, s = pair
    s.listen(8092, "127.0.0.1", argv0="api-old")
    supervisord(s, tmpdir, f"""
[program:api]
command={sys.executable} -c "import socket; s=socket.socket(); s.bind(('0.0.0.0',8092))" --port 8092
startsecs=1
startretries=1
stderr_logfile={tmpdir}/api.err
""", "FATAL")
    doc = diagnosed_at(c, s, "10.0.0.2", errno.ECONNREFUSED, "wrong_interface", "service_not_running", port=8092)
    t = everything(doc)
    # the operator must learn both: api-old holds 127.0.0.1:8092, supervisord's api could not bind
    assert "api-old" in t and "Address already in use" in t, brief(doc)


# =========================================================================== proxies

def test_stopped_redis_fills_its_accept_queue(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("redis-server")
    c, s = pair
    p = s.start(["redis-server", "--bind", "0.0.0.0", "--port", "6379", "--tcp-backlog", "4", "--save", "",
                 "--appendonly", "no", "--dir", str(tmpdir), "--protected-mode", "no"], ready_port=6379)
    # `ip netns exec` execs the daemon in place: this is redis's own pid (pgrep would see every
    # redis on the machine, the namespaces share one pid space)
    pid = p.pid
    assert Path(f"/proc/{pid}/comm").read_text().strip().startswith("redis-server")
    os.kill(pid, signal.SIGSTOP)
    try:
        hold(c, 8, port=6379)
        doc = diagnosed_at(c, s, "10.0.0.2", errno.ETIMEDOUT, "resource_exhaustion", port=6379)
        t = everything(doc)
        assert "accept queue" in t and "redis" in t, brief(doc)
        # the cause behind the full queue: the process is stopped (state T), not slow
        assert "stopped" in t.lower() or "SIGSTOP" in t or "SIGCONT" in t, brief(doc)
    finally:
        os.kill(pid, signal.SIGCONT)
        p.kill()


# =========================================================================== DNS and URL targets

def test_postgres_url_nothing_listens(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.dns({"db.lab.test": "10.0.0.2"})
    c.dns({"db.lab.test": "10.0.0.2"})
    rc, probe = c.json_of("probe", "postgres://app@db.lab.test/app")
    assert probe["state"] == "refused" and probe["target"]["port"] == 5432, probe
    doc = diagnose(s, "postgres://app@db.lab.test/app", "--from", "10.0.0.1")
    verdict(doc, "service_not_running")
    assert "postgres" in everything(doc).lower(), brief(doc)

def test_redis_url_on_the_wrong_port(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("redis-server")
    c, s = pair
    redis(s, tmpdir)
    s.dns({"cache.lab.test": "10.0.0.2"})
    doc = diagnose(s, "redis://cache.lab.test:6380/0", "--from", "10.0.0.1")
    verdict(doc, "wrong_port")
    assert "6379" in doc["verdict"]["summary"] and "redis" in everything(doc), brief(doc)
