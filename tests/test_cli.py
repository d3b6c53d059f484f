"""The command line as a user meets it: a real subprocess, exit codes, one-line errors, JSON."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import click
import pytest

from portdoctor import __version__
from portdoctor.cli import app

SCRIPT = Path(sys.executable).with_name("portdoctor")


def run(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `python -m portdoctor ARGS` the way a user would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return subprocess.run([sys.executable, "-m", "portdoctor", *args], capture_output=True, text=True,
                          timeout=timeout, input=stdin, env=env)


def one_error_line(cp: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command printed on stderr (and nothing on stdout)."""
    assert "Traceback" not in cp.stderr
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1, cp.stderr
    assert cp.stdout == ""
    return lines[0]


@pytest.fixture
def open_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- version and help


def test_version() -> None:
    cp = run("--version")
    assert cp.returncode == 0
    assert cp.stdout.strip() == f"portdoctor, version {__version__}"


def test_console_script_is_installed() -> None:
    if not SCRIPT.exists():
        pytest.skip("no console script next to this interpreter")
    cp = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0 and __version__ in cp.stdout


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_top_level_help_lists_every_command(flag: str) -> None:
    cp = run(flag)
    assert cp.returncode == 0
    assert cp.stdout.startswith("Usage: portdoctor")
    for name in app.list_commands(click.Context(app)):
        assert f"  {name}" in cp.stdout
    assert "Exit codes" in cp.stdout


def test_no_arguments_shows_usage() -> None:
    cp = run()
    assert cp.returncode == 2
    assert cp.stderr.startswith("Usage: portdoctor") and "Commands:" in cp.stderr
    assert "error" not in cp.stderr.splitlines()[0] and cp.stdout == ""


@pytest.mark.parametrize("command", sorted(app.list_commands(click.Context(app))))
def test_help_of_each_command(command: str) -> None:
    cp = run(command, "--help")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.startswith(f"Usage: portdoctor {command}")
    assert "--format" in cp.stdout and "--json" in cp.stdout
    assert "Example" in cp.stdout
    assert cp.stderr == ""


def test_the_spec_commands_present_today_are_probe_diagnose_explain() -> None:
    assert {"probe", "diagnose", "explain"} <= set(app.list_commands(click.Context(app)))


# --------------------------------------------------------------------------- bad input: exit 2, one line


@pytest.mark.parametrize(
    "args, words",
    [
        (("probe", "localhost"), "no port"),
        (("probe", "host:0"), "out of range"),
        (("probe", "host:70000"), "out of range"),
        (("probe", "!!!:80"), "neither a host name"),
        (("probe", ""), "empty"),
        (("probe", "::1:8080"), "[address]:port"),
        (("probe", "unknown://x"), "implies no port"),
        (("probe", "localhost", "--port", "0"), "--port 0"),
        (("diagnose", "host:99999"), "out of range"),
        (("diagnose", "10.0.0.2:80", "--from", "not-an-ip"), "not an IP address"),
        (("explain", "   "), "empty"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], words: str) -> None:
    cp = run(*args)
    assert cp.returncode == 2, (cp.stdout, cp.stderr)
    line = one_error_line(cp)
    assert line.startswith("portdoctor: error: ")
    assert words in line


@pytest.mark.parametrize(
    "args",
    [
        ("nosuch",),
        ("probe",),
        ("probe", "127.0.0.1:1", "--timeout", "0"),
        ("probe", "127.0.0.1:1", "--timeout", "abc"),
        ("probe", "127.0.0.1:1", "--attempts", "0"),
        ("probe", "127.0.0.1:1", "--format", "yaml"),
        ("probe", "127.0.0.1:1", "--bogus"),
    ],
)
def test_usage_errors_exit_2_without_traceback(args: tuple[str, ...]) -> None:
    cp = run(*args)
    assert cp.returncode == 2
    assert "Traceback" not in cp.stderr
    # one line, like every other bad input
    assert cp.stderr.startswith("portdoctor: error: ") and cp.stderr.count("\n") == 1, cp.stderr
    assert cp.stdout == ""


def test_debug_shows_the_traceback() -> None:
    cp = run("--debug", "probe", "localhost")
    assert cp.returncode != 0
    assert "Traceback" in cp.stderr and "BadInput" in cp.stderr


# --------------------------------------------------------------------------- probe


def test_probe_closed_loopback_port_exit_1_and_json_contract() -> None:
    cp = run("probe", "127.0.0.1:1", "--json")
    assert cp.returncode == 1, cp.stderr
    doc = json.loads(cp.stdout)
    assert set(doc) == {"schema", "target", "state", "addresses"}
    assert doc["schema"] == "portdoctor.probe/1"
    assert doc["target"] == {"input": "127.0.0.1:1", "host": "127.0.0.1", "port": 1}
    assert doc["state"] == "refused"
    (a,) = doc["addresses"]
    # SPEC's keys, plus the additive errno_number (this platform's number for the errno)
    assert set(a) == {"address", "family", "state", "errno", "seconds", "errno_number"}
    assert a == {**a, "address": "127.0.0.1", "family": 4, "state": "refused", "errno": "ECONNREFUSED"}
    assert a["errno_number"] == errno.ECONNREFUSED
    assert isinstance(a["seconds"], float) and 0 <= a["seconds"] < 1
    assert cp.stderr == ""


def test_probe_open_loopback_port_exit_0(open_port: int) -> None:
    cp = run("probe", f"127.0.0.1:{open_port}", "--json")
    assert cp.returncode == 0
    doc = json.loads(cp.stdout)
    assert doc["state"] == "open"
    assert doc["addresses"][0]["errno"] is None


def test_probe_text_output(closed_port: int) -> None:
    cp = run("probe", f"127.0.0.1:{closed_port}")
    assert cp.returncode == 1
    assert "refused" in cp.stdout and f"127.0.0.1:{closed_port}" in cp.stdout


def test_probe_format_json_equals_json_flag(closed_port: int) -> None:
    a = json.loads(run("probe", f"127.0.0.1:{closed_port}", "--json").stdout)
    b = json.loads(run("probe", f"127.0.0.1:{closed_port}", "--format", "json").stdout)
    for doc in (a, b):
        for entry in doc["addresses"]:
            entry.pop("seconds")
    assert a == b


def test_probe_markdown(closed_port: int) -> None:
    cp = run("probe", f"127.0.0.1:{closed_port}", "--format", "markdown")
    assert cp.returncode == 1
    assert "refused" in cp.stdout and "Traceback" not in cp.stderr


def test_probe_this_host_form_and_attempts(closed_port: int) -> None:
    cp = run("probe", f"127.0.0.1:{closed_port}", "--attempts", "3", "--json")
    assert cp.returncode == 1
    (a,) = json.loads(cp.stdout)["addresses"]
    assert a["attempts"] == {"refused": 3}
    cp = run("probe", f":{closed_port}", "--json")
    assert cp.returncode == 1
    assert json.loads(cp.stdout)["target"]["host"] == "localhost"


def test_probe_ipv6_loopback(closed_port: int) -> None:
    cp = run("probe", "::1", "--port", str(closed_port), "--json")
    assert cp.returncode == 1, cp.stderr
    doc = json.loads(cp.stdout)
    assert doc["target"]["host"] == "::1"
    assert doc["addresses"][0]["family"] == 6


def test_broken_pipe_is_quiet(closed_port: int) -> None:
    cp = subprocess.run(f"{sys.executable} -m portdoctor probe 127.0.0.1:{closed_port} --json | head -c 1",
                        shell=True, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in cp.stderr


# --------------------------------------------------------------------------- diagnose and ports


def test_diagnose_closed_loopback_port_exit_1_and_json_contract(closed_port: int) -> None:
    cp = run("diagnose", f"127.0.0.1:{closed_port}", "--json", "--timeout", "1")
    assert cp.returncode == 1, cp.stderr
    doc = json.loads(cp.stdout)
    assert doc["schema"] == "portdoctor.diagnosis/1"
    assert doc["target"] == {"input": f"127.0.0.1:{closed_port}", "host": "127.0.0.1", "port": closed_port}
    assert doc["probe"]["state"] == "refused"
    assert doc["verdict"]["cause"] == "service_not_running" and 0 < doc["verdict"]["confidence"] <= 1
    top = doc["findings"][0]
    assert set(top) == {"cause", "check", "severity", "summary", "evidence", "fix"}
    assert top["evidence"] and top["fix"] and isinstance(doc["limitations"], list)


def test_diagnose_open_port_exit_0_in_text_and_markdown(open_port: int) -> None:
    cp = run("diagnose", f":{open_port}", "--timeout", "1")
    assert cp.returncode == 0, cp.stderr
    assert f"localhost:{open_port}" in cp.stdout and "ok" in cp.stdout.splitlines()[0]
    md = run("diagnose", f":{open_port}", "--format", "markdown", "--timeout", "1")
    assert md.returncode == 0 and md.stdout.lstrip().startswith("#")


def test_diagnose_record_replays_the_same_verdict(closed_port: int, tmp_path: Path) -> None:
    rec = tmp_path / "case.json"
    cp = run("diagnose", f"127.0.0.1:{closed_port}", "--json", "--timeout", "1", "--record", str(rec))
    assert cp.returncode == 1
    doc = json.loads(rec.read_text())
    assert doc["schema"] == "portdoctor.recording/2" and doc["snapshot"]["schema"] == "portdoctor.snapshot/2"
    from portdoctor.diagnose import replay_recording

    assert replay_recording(doc).verdict.cause.value == json.loads(cp.stdout)["verdict"]["cause"]


def test_ports_lists_an_open_listener(open_port: int) -> None:
    cp = run("ports", "--json")
    assert cp.returncode == 0, cp.stderr
    doc = json.loads(cp.stdout)
    assert doc["schema"] == "portdoctor.ports/1"
    mine = [e for e in doc["listeners"] if e["port"] == open_port]
    assert [(e["address"], e["scope"], e["exposed"]) for e in mine] == [("127.0.0.1", "loopback", False)]
    assert any(p["pid"] == os.getpid() for p in mine[0]["processes"])
    text = run("ports")
    assert text.returncode == 0 and str(open_port) in text.stdout and "127.0.0.1" in text.stdout
    md = run("ports", "--format", "markdown")
    assert md.returncode == 0 and f"| {open_port} | `127.0.0.1` |" in md.stdout


def test_explain_of_a_unix_socket_client_names_the_socket_not_a_port() -> None:
    cp = run("explain", "--no-probe",
             "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?")
    assert "target: the unix socket /var/run/docker.sock" in cp.stdout, cp.stdout
    assert "HOST:PORT" not in cp.stdout


@pytest.mark.parametrize("args", [
    ("snapshot", ":80", "-o", "{missing}/snap.json"),
    ("diagnose", "127.0.0.1:1", "--record", "{missing}/rec.json"),
    ("verify", "{spec}", "--junit", "{missing}/verify.xml"),
    ("verify", "--generate", "{missing}/spec.yaml"),
    ("audit", "--save", "{missing}/exposure.json"),
    ("run", "--report", "{missing}/run.json", "--", "true"),
])
def test_an_output_file_that_cannot_be_written_is_bad_input(args: tuple[str, ...], tmp_path: Path) -> None:
    """Checked before the work: one line and exit 2, not an internal error after a whole run."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("checks:\n  - port: 1\n    listening: false\n")
    missing = tmp_path / "no" / "such" / "dir"
    cp = run(*(a.format(missing=missing, spec=spec) for a in args))
    assert cp.returncode == 2, cp.stderr
    assert f"no directory {missing}" in one_error_line(cp)
