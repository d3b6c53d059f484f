"""Linux collectors against real sockets in lab namespaces, cross-checked with `ss`.

Each test runs the collectors inside the server namespace `s` (a small `python -c` printing
JSON), so sock_diag, rtnetlink and /proc/net see that namespace, and compares with what
`ss -ltnHe` / `ss -ltnpH` print there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from netlab import Host, python_for

SNAPSHOT = r"""
import json, sys
from portdoctor.collectors import Request, Facts
from portdoctor.collectors import linux, processes, procfs, configs
from portdoctor.plain import to_plain
args = json.loads(sys.argv[1])
req = Request(port=args["port"], addresses=tuple(args.get("addresses", ())), service=args.get("service"),
              from_addr=args.get("from_addr"))
out = {"limitations": []}
for fn in (linux.collect_listeners, processes.collect_processes, linux.collect_addresses,
           linux.collect_routes, procfs.collect_sysctls, procfs.collect_counters, configs.collect_configs):
    facts = fn(req)
    out.update(to_plain(facts.fields))
    out["limitations"] += [str(x) for x in facts.limitations]
print(json.dumps(out))
"""


def snapshot(host: Host, port: int, user: str | None = None, **kw: object) -> dict:
    """Run the collectors inside `host` (as `user`) and return their fields as JSON data."""
    exe, env = python_for(user)
    cp = host.run([exe, "-c", SNAPSHOT, json.dumps({"port": port, **kw})], env=env, user=user,
                  cwd="/" if user else None)
    return json.loads(cp.stdout)


def ss_listeners(host: Host) -> dict[tuple[str, int], dict]:
    """`ss -ltnHe` and `ss -ltnpH` in `host`, as rows keyed by (address, port)."""
    rows: dict[tuple[str, int], dict] = {}
    for opts in ("-ltnHe", "-ltnpH"):
        for line in host.run(["ss", opts]).stdout.splitlines():
            parts = line.split()
            addr, _, port = parts[3].rpartition(":")
            addr = addr.strip("[]")
            addr = "::" if addr == "*" else addr
            row = rows.setdefault((addr, int(port)), {"queue": int(parts[1]), "backlog": int(parts[2])})
            for p in parts[5:]:
                if p.startswith("ino:"):
                    row["inode"] = int(p[4:])
                elif p.startswith("v6only:"):
                    row["v6only"] = p.endswith("1")
                elif p.startswith("users:"):
                    row["pids"] = sorted(int(x.split("=")[1]) for x in p.split(",") if x.startswith("pid="))
    return rows


def hold_connections(host: Host, address: str, port: int, count: int) -> subprocess.Popen:
    """Open `count` connections to address:port from `host` and keep them open (until teardown)."""
    code = ("import socket, sys, time\n"
            f"h = [socket.create_connection(({address!r}, {port}), timeout=5) for _ in range({count})]\n"
            "print('ready', flush=True)\ntime.sleep(600)\n")
    proc = host.popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_listeners_match_ss(pair: tuple[Host, Host]) -> None:
    c, s = pair
    procs = {
        ("0.0.0.0", 8080): s.listen(8080, "0.0.0.0"),
        ("127.0.0.1", 8081): s.listen(8081, "127.0.0.1", backlog=5),
        ("10.0.0.2", 3000): s.listen(3000, "10.0.0.2", backlog=2, accept=False),
        ("::", 8443): s.listen(8443, "::", v6only=True),
        ("::", 9000): s.listen(9000, "::", v6only=False),
        ("::1", 6379): s.listen(6379, "::1"),
        ("fd00::2", 5000): s.listen(5000, "fd00::2", backlog=64),
        ("::ffff:127.0.0.1", 7000): s.listen(7000, "::ffff:127.0.0.1"),
    }
    hold_connections(c, "10.0.0.2", 3000, 3)  # the accept queue of a server that never accepts
    deadline = time.monotonic() + 5
    while ss_listeners(s)[("10.0.0.2", 3000)]["queue"] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    snap = snapshot(s, 8080)
    want = ss_listeners(s)
    got = {(x["address"], x["port"]): x for x in snap["listeners"]}
    assert set(got) == set(want) == set(procs)
    for key, row in want.items():
        x = got[key]
        assert (x["queue"], x["backlog"], x["inode"]) == (row["queue"], row["backlog"], row["inode"]), key
        assert x["v6only"] == row.get("v6only"), key  # ss prints v6only for IPv6 sockets only
        assert x["pids"] == row["pids"] == [procs[key].pid], key
        assert x["family"] == (6 if ":" in key[0] else 4)
    assert got[("10.0.0.2", 3000)]["queue"] == 3 and got[("10.0.0.2", 3000)]["backlog"] == 2
    assert got[("::", 9000)]["v6only"] is False and got[("::", 8443)]["v6only"] is True
    assert snap["limitations"] == []


def test_owner_details_and_candidates(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    app = s.listen(8080, "127.0.0.1", env={"PORT": "8080", "DATABASE_URL": "x"}, argv0="myapp", nofile=256)
    # configured for 9090 but not listening: a candidate for port 9090 through its environment
    idle = s.popen(["sleep", "600"], env={"PORT": "9090"})
    flagged = s.popen(["sh", "-c", "sleep 600; true", "devserver", "--port", "9090"])
    time.sleep(0.2)
    snap = snapshot(s, 9090)
    procs = {int(k): v for k, v in snap["processes"].items()}
    owner = procs[app.pid]
    assert owner["cmdline"][0] == "myapp" and owner["env"] == {"PORT": "8080"}
    assert owner["fd_soft_limit"] == 256 and 3 <= owner["open_fds"] < 256
    assert owner["user"] == "root" and owner["cwd"]
    assert procs[idle.pid]["env"] == {"PORT": "9090"}
    assert procs[flagged.pid]["cmdline"][-2:] == ["--port", "9090"]
    listener = [x for x in snap["listeners"] if x["port"] == 8080][0]
    assert listener["pids"] == [app.pid]


def test_non_root_run_reports_limitations(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    root_app = s.listen(8080, "0.0.0.0", env={"PORT": "8080"})
    mine = s.listen(8081, "127.0.0.1", user="nobody")
    snap = snapshot(s, 8080, user="nobody", addresses=["10.0.0.2"])
    got = {x["port"]: x for x in snap["listeners"]}
    assert set(got) == {8080, 8081}  # sock_diag needs no privilege
    assert got[8080]["pids"] == [] and got[8081]["pids"] == [mine.pid]
    assert got[8080]["backlog"] == 128  # still read over netlink
    assert any("owners of 1 listening sockets are unknown" in x and "root" in x for x in snap["limitations"])
    assert any("environments of" in x for x in snap["limitations"])
    # root's listener is still a candidate (its argv says --port 8080, and argv is public),
    # but its environment, fd table and cwd are not readable
    other = snap["processes"][str(root_app.pid)]
    assert "8080" in other["cmdline"]
    assert (other["env"], other["open_fds"], other["cwd"]) == ({}, None, None)
    assert other["fd_soft_limit"] and other["user"] == "root"
    assert snap["processes"][str(mine.pid)]["user"] == "nobody"
    assert snap["routes"][0]["kind"] == "local" and snap["sysctls"] and snap["counters_after"]


def test_routes_and_addresses(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.run(["ip", "route", "add", "unreachable", "10.8.0.0/16"])
    s.run(["ip", "route", "add", "prohibit", "10.7.0.0/16"])
    s.run(["ip", "route", "add", "blackhole", "10.6.0.0/16"])
    s.add_addr("10.0.0.5/32")
    targets = ["10.0.0.2", "10.0.0.5", "127.0.0.1", "10.8.1.1", "10.7.1.1", "10.6.1.1", "192.0.2.9",
               "fd00::2", "fd00::1"]
    snap = snapshot(s, 1, addresses=targets, from_addr="10.0.0.1")
    routes = {r["destination"]: r for r in snap["routes"]}
    assert [r["destination"] for r in snap["routes"]] == [*targets, "10.0.0.1"]
    assert routes["10.0.0.2"]["kind"] == "local" and routes["10.0.0.5"]["kind"] == "local"
    assert routes["127.0.0.1"]["kind"] == "local"
    assert routes["10.8.1.1"]["kind"] == "unreachable"
    assert routes["10.7.1.1"]["kind"] == "prohibit"
    assert routes["10.6.1.1"]["kind"] == "blackhole"
    assert routes["192.0.2.9"]["kind"] == "none"  # no default route in the namespace
    assert routes["fd00::1"]["kind"] == "unicast" and routes["fd00::1"]["source"] == "fd00::2"
    client = routes["10.0.0.1"]
    assert client["kind"] == "unicast" and client["source"] == "10.0.0.2" and client["ifname"].startswith("veth")
    addrs = {(a["address"], a["ifname"]) for a in snap["addresses"]}
    assert ("10.0.0.5", "lo") in addrs and ("127.0.0.1", "lo") in addrs
    assert any(a == "10.0.0.2" and i.startswith("veth") for a, i in addrs)
    assert any(a == "fd00::2" for a, _ in addrs)
    # `ip route get` agrees on the local address that answers the client
    assert "src 10.0.0.2" in s.run(["ip", "route", "get", "10.0.0.1"]).stdout


def test_counters_rise_when_the_queue_overflows(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(3000, "10.0.0.2", backlog=1, accept=False)
    before = snapshot(s, 3000)["counters_after"]
    code = ("import socket, time\n"
            "h = []\n"
            "for _ in range(6):\n"
            "    x = socket.socket(); x.setblocking(False); x.connect_ex(('10.0.0.2', 3000)); h.append(x)\n"
            "time.sleep(1.5)\n")
    c.run([sys.executable, "-c", code])
    after = snapshot(s, 3000)["counters_after"]
    assert after["TcpExt.ListenOverflows"] > before["TcpExt.ListenOverflows"]
    assert after["TcpExt.ListenDrops"] > before["TcpExt.ListenDrops"]
    snap = snapshot(s, 3000)
    assert {"net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_syncookies",
            "net.ipv4.ip_local_port_range", "net.ipv4.tcp_abort_on_overflow"} <= set(snap["sysctls"])
    s.sysctl("net.core.somaxconn", 77)
    assert snapshot(s, 3000)["sysctls"]["net.core.somaxconn"] == "77"


def test_redis_config_read_through_its_mount_namespace(pair: tuple[Host, Host], tmp_path: Path) -> None:
    """A real redis-server whose /etc/redis is private to its mount namespace (as in a container)."""
    _c, s = pair
    etc = tmp_path / "etc-redis"
    etc.mkdir()
    (etc / "redis.conf").write_text("# private\nbind 127.0.0.1\nport 6390\nprotected-mode yes\n"
                                    "daemonize no\nsave \"\"\nappendonly no\n")
    cmd = f"mount --bind {etc} /etc/redis && exec redis-server /etc/redis/redis.conf --dir {tmp_path}"
    redis = s.start(["unshare", "--mount", "--propagation", "private", "sh", "-c", cmd],
                    ready_port=6390, ready_address="127.0.0.1")
    snap = snapshot(s, 6390)
    found = [(c["path"], c["line"], c["key"], c["value"]) for c in snap["configs"] if c["service"] == "redis"]
    # redis rewrites its argv ("redis-server 127.0.0.1:6390"), so the packaged path is used,
    # read through /proc/PID/root: the host's own /etc/redis/redis.conf says port 6379
    assert ("/etc/redis/redis.conf", 3, "port", "6390") in found
    assert ("/etc/redis/redis.conf", 2, "bind", "127.0.0.1") in found
    assert ("/etc/redis/redis.conf", 4, "protected-mode", "yes") in found
    owner = [x for x in snap["listeners"] if x["port"] == 6390][0]["pids"]
    assert owner == [redis.pid]


PG_BIN = Path("/usr/lib/postgresql/15/bin")


def test_postgres_settings_from_its_data_directory(pair: tuple[Host, Host]) -> None:
    """A real postgres: postgresql.conf, then postgresql.auto.conf (read last), then its argv."""
    _c, s = pair
    if not (PG_BIN / "postgres").exists():
        pytest.fail("postgresql-15 is not installed (apt-get install postgresql)")
    top = Path(tempfile.mkdtemp(prefix="pd-pglab-"))
    try:
        os.chmod(top, 0o755)
        shutil.chown(top, "postgres")
        data = top / "data"
        s.run([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"], user="postgres",
              timeout=60)
        with open(data / "postgresql.conf", "a") as fh:
            fh.write("listen_addresses = '127.0.0.1'\nport = 5499\n")
        (data / "postgresql.auto.conf").write_text("# Do not edit this file manually!\nport = '5498'\n")
        pg = s.start([str(PG_BIN / "postgres"), "-D", str(data), "-k", str(top), "-c", "listen_addresses=10.0.0.2"],
                     user="postgres", ready_port=5498, ready_address="10.0.0.2", timeout=30)
        snap = snapshot(s, 5498, service="postgres")
        conf = str(data / "postgresql.conf")
        found = [(c["path"], c["key"], c["value"]) for c in snap["configs"] if c["service"] == "postgresql"]
        assert found == [(conf, "listen_addresses", "127.0.0.1"), (conf, "port", "5499"),
                         (str(data / "postgresql.auto.conf"), "port", "5498"),
                         ("(command line)", "listen_addresses", "10.0.0.2")]
        conf_lines = (data / "postgresql.conf").read_text().splitlines()
        for c in snap["configs"]:
            if c["path"] == conf:
                assert conf_lines[c["line"] - 1] == c["text"]
        listener = [x for x in snap["listeners"] if x["port"] == 5498]
        assert [x["address"] for x in listener] == ["10.0.0.2"] and listener[0]["pids"] == [pg.pid]
        postmaster = snap["processes"][str(pg.pid)]
        assert postmaster["user"] == "postgres" and postmaster["cmdline"][0].endswith("postgres")
        # its forked workers are candidates (service postgres) but add no duplicate settings
        assert len(snap["processes"]) > 2
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_mariadb_settings_from_the_packaged_files(pair: tuple[Host, Host]) -> None:
    """A real mariadbd reads /etc/mysql/my.cnf and its !includedir files; argv overrides them."""
    _c, s = pair
    server = Path("/etc/mysql/mariadb.conf.d/50-server.cnf")
    if not Path("/usr/sbin/mariadbd").exists() or not server.exists():
        pytest.fail("mariadb-server is not installed (apt-get install mariadb-server)")
    top = Path(tempfile.mkdtemp(prefix="pd-mylab-"))
    try:
        os.chmod(top, 0o755)
        shutil.chown(top, "mysql")
        s.run(["mariadb-install-db", f"--datadir={top / 'data'}", "--user=mysql", "--skip-test-db",
               "--auth-root-authentication-method=normal"], timeout=120)
        md = s.start(["/usr/sbin/mariadbd", f"--datadir={top / 'data'}", f"--socket={top / 'sock'}",
                      f"--pid-file={top / 'pid'}", "--port=3307", "--bind-address=10.0.0.2", "--user=mysql",
                      "--skip-grant-tables"], ready_port=3307, ready_address="10.0.0.2", timeout=60)
        snap = snapshot(s, 3307, service="mysql")
        found = [(c["path"], c["line"], c["key"], c["value"]) for c in snap["configs"] if c["service"] == "mysql"]
        packaged = [(str(server), n, "bind-address", line.split("=", 1)[1].strip())
                    for n, line in enumerate(server.read_text().splitlines(), 1)
                    if line.replace("_", "-").startswith("bind-address")]
        assert packaged and found[:len(packaged)] == packaged
        assert found[-2:] == [("(command line)", 0, "port", "3307"),
                              ("(command line)", 0, "bind-address", "10.0.0.2")]
        listener = [x for x in snap["listeners"] if x["port"] == 3307]
        assert [x["address"] for x in listener] == ["10.0.0.2"] and listener[0]["pids"] == [md.pid]
        assert snap["processes"][str(md.pid)]["user"] == "mysql"
    finally:
        shutil.rmtree(top, ignore_errors=True)
