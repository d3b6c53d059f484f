"""`portdoctor watch` and `portdoctor history` as a user runs them (loopback targets only)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "portdoctor", *args], capture_output=True, text=True, timeout=60)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_config_lists_every_error_one_per_line_and_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "w.yaml"
    cfg.write_text("targets:\n  - target: 'x:0'\n  - {target: '127.0.0.1:1', colour: red}\nweb: {listen: nope}\n")
    cp = run("watch", str(cfg))
    assert cp.returncode == 2 and cp.stdout == ""
    lines = cp.stderr.splitlines()
    assert lines == [
        f"portdoctor: error: {cfg}:2: targets[0].target: port 0 is out of range (a TCP port is 1 to 65535)",
        f"portdoctor: error: {cfg}:3: targets[1].colour: unknown key",
        f"portdoctor: error: {cfg}:4: web.listen: target 'nope' has no port: write host:port or pass --port",
    ]
    assert run("watch", str(cfg), "--check").returncode == 2
    missing = run("watch", str(tmp_path / "none.yaml"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "cannot read the config" in missing.stderr


def test_once_records_and_reports_and_history_reads_it_back(tmp_path: Path) -> None:
    port = closed_port()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    cfg = tmp_path / "w.yaml"
    cfg.write_text(f"history: {{path: {tmp_path / 'h.db'}}}\ndefaults: {{failures: 2, timeout: 1s}}\ntargets:\n"
                   f"  - {{target: '127.0.0.1:{port}', name: db, diagnose: local}}\n"
                   f"  - {{target: '127.0.0.1:{listener.getsockname()[1]}', name: api}}\n")
    assert run("watch", str(cfg), "--check").stdout == f"{cfg}: valid, 2 targets\n"
    first = run("watch", str(cfg), "--once", "--json")
    doc = json.loads(first.stdout)
    assert doc["schema"] == "portdoctor.watch/1"
    assert {t["name"]: t["status"] for t in doc["targets"]} == {"db": "unknown", "api": "up"}
    assert first.returncode == 1
    second = run("watch", str(cfg), "--once")  # the second failure in a row: down, with its diagnosis
    assert second.returncode == 1
    line = next(x for x in second.stdout.splitlines() if x.startswith("down"))
    assert "db" in line and "service_not_running" in line
    assert "DOWN db" in second.stderr  # the alert, in the log
    md = run("watch", str(cfg), "--once", "--format", "markdown")
    assert md.stdout.startswith("## portdoctor watch --once") and "| **down** | db |" in md.stdout
    listener.close()

    hist = run("history", "db", "--config", str(cfg), "--json")
    assert hist.returncode == 0, hist.stderr
    h = json.loads(hist.stdout)
    assert h["schema"] == "portdoctor.history/1" and h["current"]["status"] == "down"
    assert [e["status"] for e in h["events"]] == ["down"] and h["events"][0]["cause"] == "service_not_running"
    assert h["events"][0]["evidence"]
    text = run("history", f"127.0.0.1:{port}", "--db", str(tmp_path / "h.db"))  # by target as well as name
    assert text.returncode == 0 and "service_not_running" in text.stdout and "availability" in text.stdout
    unknown = run("history", "nope", "--db", str(tmp_path / "h.db"))
    assert unknown.returncode == 2 and "no target 'nope'" in unknown.stderr and "known: api, db" in unknown.stderr
    nodb = run("history", "db", "--db", str(tmp_path / "none.db"))
    assert nodb.returncode == 2 and "no history at" in nodb.stderr
    since = run("history", "db", "--db", str(tmp_path / "h.db"), "--since", "soon")
    assert since.returncode == 2 and "--since" in since.stderr
