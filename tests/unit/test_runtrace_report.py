"""The run report: secrets masked, the portdoctor.run/1 document, the text and Markdown forms,
the client-side explanation of a remote target, and the command line end to end."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from portdoctor.model import AddressResult, ProbeResult, State, Target
from portdoctor.render import run as render_run
from portdoctor.runtrace.analyse import explain_remote, group
from portdoctor.runtrace.attempts import Folder
from portdoctor.runtrace.names import hosts_names
from portdoctor.runtrace.report import RunReport, redact
from portdoctor.runtrace.strace import LineReader

DATA = Path(__file__).resolve().parents[1] / "data" / "strace"


def _targets(name: str):  # type: ignore[no-untyped-def]
    folder, reader = Folder(), LineReader()
    for line in (DATA / name).read_text().splitlines():
        if (ev := reader.feed(line)) is not None:
            folder.feed(ev)
    return group(folder.finish(), folder, hosts_names(""), mine=set())


def _drop_report() -> RunReport:
    [t] = _targets("curl_drop.txt")
    target = Target("10.0.0.2:8080", "10.0.0.2", 8080)
    probe = ProbeResult(target, State.TIMEOUT, (AddressResult("10.0.0.2", 4, State.TIMEOUT, None, 1.0),), 1.0)
    t = dataclasses.replace(t, probe=probe, explanation=explain_remote(t, probe))
    return RunReport(("curl", "-sS", "--connect-timeout", "1", "http://db.lab:8080/"), 28, None, True,
                     started_at=1796293256.5, seconds=1.1, processes=1, failures=(t,))


def test_secrets_in_command_lines_are_masked() -> None:
    assert redact(["curl", "https://bob:pw@example.test/x", "-H", "x"]) == [
        "curl", "https://bob:***@example.test/x", "-H", "x"]
    assert redact(["mysql", "-psecret", "-h", "db"]) == ["mysql", "-p***", "-h", "db"]
    assert redact(["app", "--token", "abc", "--api-key=k", "port=5"]) == ["app", "--token", "***", "--api-key=***", "port=5"]
    assert redact(["psql", "-p", "5432"]) == ["psql", "-p", "5432"]  # psql's -p is a port


def test_the_json_document() -> None:
    doc = _drop_report().to_json()
    assert doc["schema"] == "portdoctor.run/1"
    assert doc["exit"] == {"code": 28, "signal": None, "status": 28} and doc["traced"] is True
    [f] = doc["failures"]
    assert {k: f[k] for k in ("target", "kind", "address", "port", "errno", "state", "name", "name_source",
                              "count", "cause", "local")} == {
        "target": "10.0.0.2:8080", "kind": "tcp", "address": "10.0.0.2", "port": 8080, "errno": None,
        "state": "timeout", "name": "db.lab", "name_source": "dns", "count": 1, "cause": "firewall_drop",
        "local": False}
    assert f["probe"]["schema"] == "portdoctor.probe/1" and f["diagnosis"] is None
    assert f["processes"][0]["command"] == "curl -sS --connect-timeout 1 http://db.lab:8080/"
    assert f["first_at"].endswith("Z") and f["attempts"][0]["how"] == "closed"
    json.dumps(doc)  # plain JSON all the way down


def test_a_remote_refusal_points_at_the_server() -> None:
    [t] = _targets("node.txt")
    target = Target("10.0.0.2:3000", "10.0.0.2", 3000)
    now = ProbeResult(target, State.OPEN, (AddressResult("10.0.0.2", 4, State.OPEN, None, 0.001),), 1.0)
    ex = explain_remote(t, now)
    assert ex.cause == "unknown" and "It accepts connections now" in ex.summary
    assert ex.next is not None and ex.next.startswith("on 10.0.0.2: portdoctor diagnose :3000")


def test_text_and_markdown_forms() -> None:
    r = _drop_report()
    buf = io.StringIO()
    render_run.text(r, buf)
    out = buf.getvalue()
    assert out.splitlines()[0] == ("portdoctor run: curl -sS --connect-timeout 1 http://db.lab:8080/ exited with 28; "
                                   "1 failed connection to 1 target (1 process traced, 0 connections made)")
    assert "no answer (gave up after 1.0 s) ×1" in out and "db.lab (DNS answer the program received)" in out
    assert "── 10.0.0.2:8080: firewall_drop (seen from this host; 10.0.0.2 itself was not inspected) ──" in out
    assert "next: on 10.0.0.2: portdoctor diagnose :8080" in out
    md = render_run.markdown(r)
    assert md.startswith("## portdoctor run `curl") and "| `10.0.0.2:8080` |" in md
    assert "### `10.0.0.2:8080`: firewall_drop" in md


def test_headlines_of_quiet_and_untraced_runs() -> None:
    ok = RunReport(("true",), 0, None, True, processes=2, connected=3)
    killed = RunReport(("sleep", "9"), None, 15, True, processes=1)
    untraced = RunReport(("true",), 0, None, False, limitation="strace is not installed")
    assert render_run.headline(ok) == ("portdoctor run: true exited with 0; no failed connections "
                                       "(2 processes traced, 3 connections made)")
    assert render_run.headline(killed).startswith("portdoctor run: sleep 9 was killed by SIGTERM (exit status 143)")
    assert killed.status == 143 and killed.to_json()["exit"]["signal"] == "SIGTERM"
    assert render_run.headline(untraced).endswith("not traced (strace is not installed)")


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_the_command_line_keeps_stdout_and_status() -> None:
    cp = subprocess.run([sys.executable, "-m", "portdoctor", "run", "--json", "--", "sh", "-c", "echo hi; exit 3"],
                        capture_output=True, text=True, timeout=30)
    if "not traced" in cp.stderr:
        pytest.skip("ptrace is not permitted here")
    assert (cp.returncode, cp.stdout) == (3, "hi\n")
    doc = json.loads(cp.stderr)  # the report goes to stderr, the program's stdout stays its own
    assert doc["schema"] == "portdoctor.run/1" and doc["failures"] == [] and doc["exit"]["code"] == 3
    cat = subprocess.run([sys.executable, "-m", "portdoctor", "run", "--report", "-", "--", "cat"],
                         input="from stdin\n", capture_output=True, text=True, timeout=30)
    assert cat.returncode == 0 and cat.stdout.startswith("from stdin\nportdoctor run: cat exited with 0")


def test_the_command_line_without_a_program() -> None:
    cp = subprocess.run([sys.executable, "-m", "portdoctor", "run"], capture_output=True, text=True, timeout=30)
    assert cp.returncode == 2 and "Missing argument" in cp.stderr
    cp = subprocess.run([sys.executable, "-m", "portdoctor", "run", "--", "no-such-program-pd"],
                        capture_output=True, text=True, timeout=30)
    assert (cp.returncode, cp.stderr) == (127, "portdoctor run: no-such-program-pd: command not found\n")
