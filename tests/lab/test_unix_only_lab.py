"""Servers that run but serve only their unix socket: PostgreSQL with listen_addresses = '',
Redis with `port 0`. The running server, its socket path and the setting that keeps it off TCP
must be named, never "no postgres or postmaster process is running".
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from netlab import Host


def _need(path: str | None, what: str) -> str:
    if path is None or not Path(path).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} is not installed")
        pytest.skip(f"{what} is not installed")
    return path


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="pdlab-unix-"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _text(doc: dict) -> str:
    return "\n".join([doc["verdict"]["summary"], *(e for f in doc["findings"] for e in f["evidence"]),
                      *(f"{x['description']} {x['command'] or ''}" for f in doc["findings"] for x in f["fix"])])


def test_postgres_with_listen_addresses_empty(pair: tuple[Host, Host], workdir: Path) -> None:
    bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    bindir = Path(_need(str(bindirs[-1]) if bindirs else None, "postgresql"))
    c, s = pair
    shutil.chown(workdir, "postgres", "postgres")
    data = workdir / "data"
    s.run(["runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", str(data), "-A", "trust", "--no-sync"],
          timeout=120)
    conf = data / "postgresql.conf"
    with conf.open("a") as fh:
        fh.write("\nlisten_addresses = ''\nport = 5432\n")
    line = len(conf.read_text().splitlines()) - 1
    sock = workdir / ".s.PGSQL.5432"
    s.start(["runuser", "-u", "postgres", "--", str(bindir / "postgres"), "-D", str(data), "-k", str(workdir)],
            ready_file=sock, timeout=30)
    assert c.connect_errno("10.0.0.2", 5432) == 111  # what the client sees: ECONNREFUSED
    _rc, doc = s.json_of("diagnose", "10.0.0.2:5432", "--from", "10.0.0.1")
    assert doc["verdict"]["cause"] == "wrong_interface", doc["verdict"]
    t = _text(doc)
    assert str(sock) in t, t
    assert f"{conf}:{line}" in t and "listen_addresses = ''" in t, t
    assert "listen_addresses = 'localhost'" in t, t
    assert "process is running" not in t, t


def test_redis_started_with_port_0(pair: tuple[Host, Host], workdir: Path) -> None:
    redis = _need(shutil.which("redis-server"), "redis-server")
    c, s = pair
    sock = workdir / "redis.sock"
    s.start([redis, "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no",
             "--dir", str(workdir)], ready_file=sock, timeout=15)
    assert c.connect_errno("10.0.0.2", 6379) == 111
    _rc, doc = s.json_of("diagnose", "10.0.0.2:6379", "--from", "10.0.0.1")
    assert doc["verdict"]["cause"] == "wrong_interface", doc["verdict"]
    t = _text(doc)
    assert str(sock) in t and "redis" in t.lower(), t
