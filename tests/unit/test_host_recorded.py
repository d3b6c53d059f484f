"""The Linux collectors on a recorded host (tests/data/hosts/lab1, made by record.py there),
with the real machine out of reach: every subprocess, socket and open/listdir/readlink/stat of
/proc, /sys or /etc raises while they run, so what they report can only come through the Host.
"""

from __future__ import annotations

import builtins
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from portdoctor.collectors import COLLECTORS, Request, collect
from portdoctor.host import RecordedHost
from portdoctor.plain import to_plain

HOSTS = Path(__file__).resolve().parents[1] / "data" / "hosts"
LAB1 = HOSTS / "lab1"
EXPECTED = json.loads((LAB1 / "expected.json").read_text())


class ReachedTheMachine(AssertionError):
    """A collector went around the Host seam."""


def _forbidden(path: object) -> bool:
    if isinstance(path, int):
        return False  # an fd the Host opened inside the recording
    text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else ""
    return text.startswith(("/proc", "/sys", "/etc", "/run", "/var/run", "/usr/sbin", "/sbin"))


@contextmanager
def machine_out_of_reach(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Make every direct way to the machine raise (and note it) while the block runs."""
    seen: list[str] = []

    def refuse(what: str):
        seen.append(what)
        raise ReachedTheMachine(what)

    def guard(fn, name):
        def wrapped(path, *args, **kw):
            if _forbidden(path):
                refuse(f"{name}({path!r})")
            return fn(path, *args, **kw)
        return wrapped

    with monkeypatch.context() as m:
        m.setattr(builtins, "open", guard(builtins.open, "open"))
        for name in ("listdir", "readlink", "stat", "lstat", "scandir"):
            m.setattr(os, name, guard(getattr(os, name), f"os.{name}"))
        m.setattr(subprocess, "Popen", lambda *a, **k: refuse(f"subprocess.Popen{a[:1]}"))
        m.setattr(subprocess, "run", lambda *a, **k: refuse(f"subprocess.run{a[:1]}"))

        class NoSocket(socket.socket):  # a class still, so modules imported meanwhile can subclass it
            def __init__(self, *a: object, **k: object) -> None:
                refuse(f"socket.socket{a}")

        m.setattr(socket, "socket", NoSocket)
        yield seen


def test_the_guard_catches_a_direct_read(monkeypatch: pytest.MonkeyPatch) -> None:
    with machine_out_of_reach(monkeypatch) as seen, pytest.raises(ReachedTheMachine):
        open("/proc/self/comm").close()
    assert seen == ["open('/proc/self/comm')"]


def _collect_recorded(monkeypatch: pytest.MonkeyPatch, port: int = 8080):
    host = RecordedHost(LAB1)
    with machine_out_of_reach(monkeypatch) as seen:
        snap = collect(Request(port=port, system=host))
    # a collector that reached the machine failed into a limitation; none may have
    assert seen == []
    assert not [x for x in snap.limitations if "could not be read (" in x.what]
    return snap


def test_linux_collectors_on_a_recorded_host(monkeypatch: pytest.MonkeyPatch) -> None:
    snap = _collect_recorded(monkeypatch)
    # listeners from the recorded /proc/net/tcp, their owner from the recorded fd links
    (web,) = [x for x in snap.listeners if x.port == 8080]
    assert (web.address, web.family) == ("0.0.0.0", 4)
    (pid,) = web.pids
    proc = snap.processes[pid]
    assert proc.cmdline[0] == "webapp" and proc.user == "root" and proc.open_fds == 4
    # its secrets were in the recording, not in the facts
    assert proc.cmdline[-3:] == ("--requirepass", "<redacted>", "--db=postgres://app:<redacted>@db:5432/app")
    assert proc.env == {"PORT": "8080", "HOST_URL": "redis://:<redacted>@cache:6379", "BIND_PASSWORD": "<redacted>"}
    assert "hunter2" not in json.dumps(snap.to_json())
    # the firewall from the recorded iptables-save / nft output
    fw = snap.to_json()["firewall"]
    rules = [r for t in fw["ruleset"]["tables"] for c in t["chains"] for r in c.get("rules", [])]
    assert [(r["action"], r["matches"][-1]) for r in rules if "9090" in r["text"]] == [
        ({"arg": "tcp-reset", "kind": "reject"}, {"kind": "dport", "values": ["9090"]})]
    assert fw["forwarding"] == {"4": False, "6": False}
    assert snap.sysctls["net.core.somaxconn"] == EXPECTED["sysctls"]["net.core.somaxconn"]
    assert snap.counters_after["TcpExt.ListenOverflows"] >= 0
    assert snap.init == (LAB1 / "files/proc/1/comm").read_text().strip()
    # no kernel to ask: said once, for addresses and routes only
    assert [x.what for x in snap.limitations if "netlink" in x.what] == [
        "interface addresses could not be read over netlink ([Errno 95] netlink: not possible on a recorded host)"]


def test_recorded_host_says_what_the_live_host_said(monkeypatch: pytest.MonkeyPatch) -> None:
    """expected.json is what the same collectors saw live while recording."""
    snap = _collect_recorded(monkeypatch, EXPECTED["port"])
    plain = snap.to_json()
    for key in ("listeners", "sysctls", "counters_after", "configs"):
        assert plain[key] == EXPECTED[key], key
    # fields added to Process since the recording (unix_listeners) are left out of the comparison
    assert {pid: {k: v for k, v in p.items() if k in EXPECTED["processes"][pid]}
            for pid, p in plain["processes"].items()} == EXPECTED["processes"]
    assert plain["firewall"]["ruleset"] == EXPECTED["firewall_ruleset"]


def test_every_linux_collector_ran_through_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each collector on its own, so one that went around the seam is named."""
    from portdoctor.collectors import load_entry

    host = RecordedHost(LAB1)
    for spec in COLLECTORS["linux"]:
        with machine_out_of_reach(monkeypatch) as seen:
            try:
                load_entry(spec)(Request(port=8080, system=host))
            except ReachedTheMachine:
                pass
        assert seen == [], spec


def test_a_command_that_was_not_recorded_is_missing() -> None:
    host = RecordedHost(LAB1)
    r = host.run(["iptables-legacy-save", "-c"])
    assert r.missing and not r.ok
    assert host.run(["iptables-nft-save", "-c"]).ok  # found through the recorded `which`
    with pytest.raises(OSError):
        host.read_text("/proc/../../../../etc/shadow")
    with pytest.raises(OSError):
        host.connect(socket.AF_INET, ("127.0.0.1", 1), 1)
    assert host.trusted_executable("/usr/sbin/nft") == (False, "a recorded host runs no program")


def test_collect_keeps_no_state_between_runs() -> None:
    """What collectors share lives on the Request of one collect(): a stale memo is ignored."""
    from portdoctor.collectors.linux import ListenerFacts

    host = RecordedHost(LAB1)
    req = Request(port=8080, system=host)
    req.memo["linux.listener_facts"] = ListenerFacts()  # as if an earlier run had seen nothing
    snap = collect(req)
    assert [x.port for x in snap.listeners] == [8080]
    assert to_plain(collect(req).listeners) == to_plain(snap.listeners)
