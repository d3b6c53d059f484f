"""processes.py: which processes are kept, and what is read about each (recorded tree)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from portdoctor.collectors import Request, processes
from portdoctor.host import LocalHost

DATA = Path(__file__).resolve().parents[1] / "data" / "proc"
TREE = str(DATA / "lab1")
PIDS = json.loads((DATA / "lab1.expected.json").read_text())["pids"]


@pytest.mark.parametrize("argv, port, hit", [
    (["redis-server", "--port", "6380"], 6380, True),
    (["app", "-p", "8080"], 8080, True),
    (["app", "-p8080"], 8080, True),
    (["app", "--port=8080"], 8080, True),
    (["app", "--listen=0.0.0.0:8080"], 8080, True),
    (["gunicorn", "-b", "127.0.0.1:8000", "app:app"], 8000, True),
    (["python3", "-m", "http.server", "8000"], 8000, True),
    (["node", "server.js", "http://localhost:3000/"], 3000, True),
    (["app", "--workers", "80800"], 8080, False),
    (["app", "--port", "18080"], 8080, False),
    (["nginx", "-g", "daemon off;"], 80, False),
    (["app", "v8080"], 8080, False),
])
def test_mentions_port(argv: list[str], port: int, hit: bool) -> None:
    assert processes.mentions_port(argv, port) is hit


def test_env_filters_and_port_match() -> None:
    env = {"PORT": "8080", "PATH": "/usr/bin", "DATABASE_HOST": "db", "LISTEN_ADDR": "0.0.0.0:9000",
           "HOSTNAME": "box", "REDIS_URL": "redis://x:6379", "BIND": "::"}
    assert processes.port_env(env) == {"PORT": "8080", "DATABASE_HOST": "db", "LISTEN_ADDR": "0.0.0.0:9000",
                                       "BIND": "::"}
    assert processes.env_mentions_port(env, 8080) and processes.env_mentions_port(env, 9000)
    assert not processes.env_mentions_port(env, 6379)  # REDIS_URL is no port/address name


def test_owners_have_every_field() -> None:
    facts = processes.collect_processes(Request(port=1, proc_root=TREE))
    procs = facts.fields["processes"]
    assert set(PIDS.values()) <= set(procs)
    web = procs[PIDS["webapp"]]
    assert web.cmdline[0] == "webapp" and web.name
    assert web.user == "root" and web.unit is None and web.container is None
    assert web.env == {"PORT": "8080", "BIND_ADDR": "0.0.0.0"}
    assert web.open_fds and web.fd_soft_limit and web.open_fds < web.fd_soft_limit
    assert web.cwd
    assert procs[PIDS["postgres"]].env == {}  # PGDATA is no port/address variable
    assert procs[PIDS["slowapp"]].env == {"PORT": "3001"}


def test_candidates_by_port_env_service_and_known_server() -> None:
    req = Request(port=3001, proc_root=TREE)
    cands, hidden = processes.find_candidates(req, exclude=set())
    assert hidden == 0
    assert PIDS["slowapp"] in cands  # PORT=3001 in its environment, listens on 3000
    assert PIDS["webapp"] not in cands
    # argv0 "postgres" and "redis-server" are known servers: always candidates
    assert {PIDS["postgres"], PIDS["redis-server"]} <= set(cands)
    by_service, _ = processes.find_candidates(Request(port=1, service="tlsproxy", proc_root=TREE), set())
    assert PIDS["tlsproxy"] in by_service
    by_port, _ = processes.find_candidates(Request(port=8080, proc_root=TREE), set())
    assert PIDS["webapp"] in by_port  # PORT=8080


def test_processes_computed_once_per_request() -> None:
    req = Request(port=1, proc_root=TREE)
    assert processes.processes_for(req)[0] is processes.processes_for(req)[0]


def test_user_name_of_unknown_uid() -> None:
    host = LocalHost()
    assert processes.user_name(host, 0) == "root"
    assert processes.user_name(host, 4_000_000) == "4000000"
    assert processes.user_name(host, None) is None


def test_portdoctor_and_its_parents_are_no_candidates() -> None:
    # a child that names the port is a candidate; we (and our parents) are not
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "--port", "47123"])
    try:
        time.sleep(0.2)
        cands, _ = processes.find_candidates(Request(port=47123), exclude=set())
        assert child.pid in cands
        assert os.getpid() not in cands and os.getppid() not in cands
    finally:
        child.kill()
        child.wait()
