"""`portdoctor diagnose` against real faults built in network namespaces.

The server namespace `s` (10.0.0.2, fd00::2) runs the service and portdoctor; the client
namespace `c` (10.0.0.1, fd00::1) is where the failing clients live (`--from 10.0.0.1`).
Every test asserts the verdict a reader would act on, and the evidence behind it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from clients import hold
from netlab import Host


def diagnose(host: Host, *args: str, user: str | None = None) -> tuple[int, dict]:
    """Run diagnose in `host` (with PD_RECORD_DIR set, netlab records the case for replays)."""
    return host.json_of("diagnose", *args, user=user)


def evidence_text(doc: dict) -> str:
    return "\n".join(e for f in doc["findings"] for e in f["evidence"])


def fix_text(doc: dict) -> str:
    return "\n".join(f"{x['description']} {x['command'] or ''}" for f in doc["findings"] for x in f["fix"])


def test_nothing_listening(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    rc, doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    assert rc == 1
    assert doc["schema"] == "portdoctor.diagnosis/1"
    assert doc["probe"]["state"] == "refused"
    assert doc["verdict"]["cause"] == "service_not_running"
    assert "nothing listens on port 8080" in doc["verdict"]["summary"].lower()


def test_working_service_is_ok(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    rc, doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    assert rc == 0, doc
    assert doc["verdict"]["cause"] == "ok"
    # and the client agrees
    rc, probe = c.json_of("probe", "10.0.0.2:8080")
    assert probe["state"] == "open"


def test_service_on_another_port_named_with_service(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.listen(9090, argv0="billing-api")
    rc, doc = diagnose(s, "10.0.0.2:8080", "--service", "billing-api")
    assert rc == 1
    assert doc["verdict"]["cause"] == "wrong_port"
    assert "9090" in doc["verdict"]["summary"] and "billing-api" in doc["verdict"]["summary"]


def test_well_known_service_on_another_port_without_service(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.listen(6380, argv0="redis-server")
    rc, doc = diagnose(s, "10.0.0.2:6379")
    assert doc["verdict"]["cause"] == "wrong_port", doc["verdict"]
    assert "6380" in doc["verdict"]["summary"]


def test_port_env_disagrees_with_socket(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.listen(3000, argv0="node", env={"PORT": "8080"})
    rc, doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    assert doc["verdict"]["cause"] == "wrong_port", doc["verdict"]
    assert "PORT=8080" in doc["verdict"]["summary"]
    assert "3000" in doc["verdict"]["summary"]


def test_loopback_listener_reached_from_outside(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, "127.0.0.1")
    assert c.json_of("probe", "10.0.0.2:8080")[1]["state"] == "refused"  # what the client sees
    rc, doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    assert rc == 1
    assert doc["verdict"]["cause"] == "wrong_interface"
    assert "loopback" in doc["verdict"]["summary"]
    assert "LISTEN 127.0.0.1:8080" in evidence_text(doc)


def test_loopback_listener_with_local_target_and_outside_clients(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.listen(8080, "127.0.0.1")
    # the operator checks :8080 on the server (which works) but says the clients come from outside
    rc, doc = diagnose(s, ":8080", "--from", "10.0.0.1")
    assert doc["verdict"]["cause"] == "wrong_interface", doc["verdict"]


def test_ipv6_loopback_only_reached_via_ipv4(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.listen(8080, "::1")
    rc, doc = diagnose(s, "127.0.0.1:8080")
    assert rc == 1
    assert doc["verdict"]["cause"] == "wrong_interface"
    assert "IPv6" in doc["verdict"]["summary"]
    assert "::1" in fix_text(doc)


def test_listener_on_second_address(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.add_addr("10.0.0.3/24", "veth1" if "veth1" in s.run(["ip", "-br", "link"]).stdout else "lo")
    s.listen(8080, "10.0.0.3")
    rc, doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    assert doc["verdict"]["cause"] == "wrong_interface", doc["verdict"]
    assert "10.0.0.3" in doc["verdict"]["summary"]


def test_accept_queue_full_with_abort_on_overflow(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.sysctl("net.ipv4.tcp_abort_on_overflow", 1)
    s.listen(8080, backlog=2, accept=False)
    hold(c, 6)
    rc, doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1", "--timeout", "1")
    assert rc == 1
    assert doc["probe"]["state"] != "open"
    assert doc["verdict"]["cause"] == "resource_exhaustion", doc["verdict"]
    ev = evidence_text(doc)
    assert "accept queue full" in ev
    assert "tcp_abort_on_overflow" in ev


def test_server_at_fd_limit(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.listen(8080, nofile=64, fill_fds=True, argv0="worker")
    rc, doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1", "--timeout", "1")
    assert rc == 1
    assert doc["verdict"]["cause"] == "resource_exhaustion", doc["verdict"]
    assert "Max open files 64" in evidence_text(doc)


def test_absent_host(pair: tuple[Host, Host]) -> None:
    c, _s = pair
    rc, doc = diagnose(c, "10.0.0.99:80", "--timeout", "5")
    assert rc == 1
    assert doc["probe"]["state"] == "unreachable"
    assert doc["verdict"]["cause"] == "host_unreachable"


def test_unresolvable_name(pair: tuple[Host, Host]) -> None:
    c, _s = pair
    c.dns({"api.lab.test": "10.0.0.2"})
    rc, doc = diagnose(c, "nope.lab.test:80")
    assert rc == 1
    assert doc["probe"]["state"] == "dns_error"
    assert doc["verdict"]["cause"] == "dns"


def test_client_side_run_points_at_the_server(pair: tuple[Host, Host]) -> None:
    c, _s = pair
    rc, doc = diagnose(c, "10.0.0.2:8080")
    assert rc == 1
    assert doc["probe"]["state"] == "refused"
    assert any("run `portdoctor diagnose :8080" in x for x in doc["limitations"]), doc["limitations"]


def test_non_root_run_degrades(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.listen(8080, "127.0.0.1")
    cp = s.portdoctor("diagnose", "10.0.0.2:8080", "--json", user="nobody")
    assert "Traceback" not in cp.stderr
    import json

    doc = json.loads(cp.stdout)
    assert doc["verdict"]["cause"] == "wrong_interface"
    assert doc["limitations"], "a non-root run must say what it could not see"


# --------------------------------------------------------------------------- real servers


def _tmpdir(owner: str | None = None) -> Path:
    d = Path(tempfile.mkdtemp(prefix="pdlab-"))
    os.chmod(d, 0o755)
    if owner:
        shutil.chown(d, owner, owner)
    return d


@pytest.fixture
def tmpdir_cleanup():
    made: list[Path] = []

    def make(owner: str | None = None) -> Path:
        d = _tmpdir(owner)
        made.append(d)
        return d

    yield make
    for d in made:
        shutil.rmtree(d, ignore_errors=True)


def test_redis_bound_to_loopback(pair: tuple[Host, Host], tmpdir_cleanup) -> None:
    redis = shutil.which("redis-server")
    if redis is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    _c, s = pair
    d = tmpdir_cleanup()
    conf = d / "redis.conf"
    # set-proc-title no keeps the config path in /proc/PID/cmdline, as a unit's ExecStart shows it
    conf.write_text("# lab redis\nport 6379\nbind 127.0.0.1 -::1\nprotected-mode yes\ndaemonize no\n"
                    "set-proc-title no\n"
                    f"dir {d}\nsave \"\"\nappendonly no\n")
    s.start([redis, str(conf)], ready_port=6379)
    rc, doc = diagnose(s, "10.0.0.2:6379", "--from", "10.0.0.1")
    assert doc["verdict"]["cause"] == "wrong_interface", doc["verdict"]
    fixes = fix_text(doc)
    assert f"{conf}" in fixes and "line 3" in fixes, fixes


def test_postgres_bound_to_loopback(pair: tuple[Host, Host], tmpdir_cleanup) -> None:
    bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not bindir:
        if os.environ.get("CI") == "true":
            pytest.fail("postgresql is not installed")
        pytest.skip("postgresql is not installed")
    bindir = bindir[-1]
    _c, s = pair
    d = tmpdir_cleanup("postgres")
    data = d / "data"
    subprocess.run(["runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", str(data), "-A", "trust",
                    "--no-sync"], check=True, capture_output=True)
    conf = data / "postgresql.conf"
    with conf.open("a") as fh:
        fh.write("\nlisten_addresses = 'localhost'\nport = 5432\n")
    lineno = len(conf.read_text().splitlines()) - 1
    s.start(["runuser", "-u", "postgres", "--", str(bindir / "postgres"), "-D", str(data), "-k", str(d)],
            ready_port=5432, timeout=30)
    rc, doc = diagnose(s, "10.0.0.2:5432", "--from", "10.0.0.1")
    assert doc["verdict"]["cause"] == "wrong_interface", doc["verdict"]
    fixes = fix_text(doc)
    assert str(conf) in fixes and f"line {lineno}" in fixes, fixes
    assert "listen_addresses = '*'" in fixes
