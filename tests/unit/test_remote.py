"""`diagnose --ssh` pieces that need no SSH server: host and inventory parsing, the package sent to
the server and its boot code (run here by a real python3 without site-packages), exit codes and
the one-line errors. The SSH runs themselves are in tests/lab/test_ssh_lab.py."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from portdoctor import remote
from portdoctor.cli import main
from portdoctor.errors import BadInput, ExitCode
from portdoctor.remote import RemoteResult, SshHost, SshOptions, parse_ssh_host, read_inventory
from portdoctor.snapshot import Snapshot
from portdoctor.sshboot import READY
from portdoctor.target import parse_target


@pytest.mark.parametrize("text,host,user,port", [
    ("db1", "db1", None, None),
    ("root@10.0.0.2", "10.0.0.2", "root", None),
    ("deploy@db1.example:2222", "db1.example", "deploy", 2222),
    ("fd00::2", "fd00::2", None, None),
    ("ops@[fd00::2]:22", "fd00::2", "ops", 22),
    ("[fd00::2]", "fd00::2", None, None),
    ("a.b@c@host", "host", "a.b@c", None),
])
def test_ssh_host_forms(text: str, host: str, user: str | None, port: int | None) -> None:
    got = parse_ssh_host(text)
    assert (got.host, got.user, got.port) == (host, user, port)
    assert parse_ssh_host(str(got)) == got


@pytest.mark.parametrize("text", ["", "@db1", "db1:0", "db1:70000", "db1:ssh", "[fd00::2", "[fd00::2]x",
                                  "-oProxyCommand=x", "db 1", "a;b", "us er@db1"])
def test_malformed_ssh_hosts_are_bad_input(text: str) -> None:
    with pytest.raises(BadInput):
        parse_ssh_host(text)


def test_inventory_skips_comments_and_groups_and_names_the_bad_line(tmp_path: Path) -> None:
    inv = tmp_path / "hosts"
    inv.write_text("# databases\n[db]\nroot@10.0.0.2   # primary\n\n[fd00::3]:2222 extra-field\ndb3\n")
    assert read_inventory(str(inv)) == [SshHost("10.0.0.2", "root"), SshHost("fd00::3", None, 2222), SshHost("db3")]
    inv.write_text("db1\nroot@db2:x\n")
    with pytest.raises(BadInput, match=r"hosts:2: 'root@db2:x'"):
        read_inventory(str(inv))
    inv.write_text("# nothing\n")
    with pytest.raises(BadInput, match="names no host"):
        read_inventory(str(inv))
    with pytest.raises(BadInput, match="cannot read the inventory"):
        read_inventory(str(tmp_path / "missing"))


def test_the_archive_holds_the_package_sources_only() -> None:
    names = zipfile.ZipFile(BytesIO(remote.package_archive())).namelist()
    assert "portdoctor/__init__.py" in names and "portdoctor/diagnose.py" in names
    assert "portdoctor/collectors/linux.py" in names and "portdoctor/firewall/iptables.py" in names
    assert all(n.endswith(".py") and "__pycache__" not in n for n in names)


def test_the_boot_code_takes_a_snapshot_from_the_sent_package_alone() -> None:
    """What the server's python3 runs, run here with -S (no site-packages: no portdoctor, psutil,
    dnspython installed), fed the same stdin protocol the SSH channel carries."""
    import os

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    request = {"target": f"127.0.0.1:{port}", "from_addr": "127.0.0.1", "service": None, "timeout": 1.0}
    arg = base64.b64encode(json.dumps(request).encode()).decode()
    boot = Path(remote.__file__).with_name("sshboot.py").read_bytes()
    archive = remote.package_archive()
    try:
        proc = subprocess.Popen([sys.executable, "-S", "-c", remote.BOOT, arg], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"%d\n" % len(boot) + boot + b"%d\n" % len(archive) + archive)
        proc.stdin.flush()
        assert proc.stdout.readline().decode().strip() == READY
        out, err = proc.communicate(b"probed\n", timeout=60)
    finally:
        server.close()
    assert proc.returncode == 0, err.decode()
    snap = Snapshot.from_json(json.loads(out))
    assert snap.observer_pid == proc.pid
    mine = [x for x in snap.listeners if x.port == port]
    assert [(x.address, x.family) for x in mine] == [("127.0.0.1", 4)], snap.listeners
    if sys.platform.startswith("linux"):
        assert os.getpid() in mine[0].pids


def test_the_boot_line_refuses_a_python_too_old_in_one_line() -> None:
    """BOOT run by an interpreter that says it is 3.9: it stops before reading stdin, and the
    stderr line is the one remote.py turns into its message."""
    cp = subprocess.run([sys.executable, "-c", "import sys;sys.version_info=(3,9,2,'final',0)\n" + remote.BOOT],
                        input=b"", capture_output=True, timeout=30)
    assert cp.returncode == 1 and cp.stderr.decode().strip() == remote.TOO_OLD + "3.9"


def _result(cause: str | None) -> RemoteResult:
    from portdoctor.model import Cause, Diagnosis, ProbeResult, State, Verdict

    target = parse_target("127.0.0.1:9")
    if cause is None:
        return RemoteResult(SshHost("h"), target, error="h: no answer")
    probe = ProbeResult(target=target, state=State.OPEN if cause == "ok" else State.REFUSED, addresses=(),
                        timeout=1.0)
    d = Diagnosis(target, probe, Verdict(Cause(cause), 0.9, "said"), ())
    return RemoteResult(SshHost("h"), target, d, from_addr="10.0.0.1", via="sent")


def test_exit_code_a_problem_outranks_a_host_not_inspected() -> None:
    ok, bad, gone = _result("ok"), _result("service_not_running"), _result(None)
    assert remote.exit_code([ok]) == ExitCode.OK
    assert remote.exit_code([ok, gone]) == ExitCode.INCOMPLETE
    assert remote.exit_code([ok, gone, bad]) == ExitCode.PROBLEM
    assert gone.to_json()["error"] == "h: no answer" and bad.to_json()["ssh"]["from"] == "10.0.0.1"


def test_ssh_errors_in_one_line() -> None:
    import asyncssh

    h, opts = SshHost("10.0.0.2", "root", 2222), SshOptions(known_hosts="/tmp/kh", keys=("/tmp/k",))
    lines = [remote.ssh_error_line(h, opts, exc) for exc in (
        asyncssh.HostKeyNotVerifiable("Host key is not trusted"),
        asyncssh.PermissionDenied("Permission denied"),
        ConnectionRefusedError(111, "Connect call failed"),
        OSError(113, "Connect call failed ('10.0.0.2', 2222)"),
    )]
    assert "host key is not trusted" in lines[0] and "/tmp/kh" in lines[0] and "-p 2222 10.0.0.2" in lines[0]
    assert "authentication failed" in lines[1] and "/tmp/k" in lines[1] and "never a password" in lines[1]
    assert "no sshd listens" in lines[2] and "No route to host" in lines[3]
    assert all("\n" not in x and x.startswith("root@10.0.0.2:2222")
               for x in lines)


@pytest.mark.parametrize("args,words", [
    (["--ssh", "bad host"], "not a host name"),
    (["--ssh", "root@10.0.0.2", "--replay", __file__], "not with --snapshot"),
    (["--ssh", "root@10.0.0.2", "--ssh-code", "never"], "Invalid value"),
])
def test_bad_ssh_usage_is_one_line_exit_2(args: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["diagnose", "127.0.0.1:9", *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and words in err and len(err.strip().splitlines()) == 1, err


def test_the_table_keeps_the_hosts_order_and_says_why_a_host_was_not_inspected() -> None:
    from portdoctor.render import ssh as render_ssh

    ok, gone = _result("ok"), _result(None)
    text = render_ssh.text([ok, gone], as_table=True)
    rows = text.splitlines()
    assert rows[0].split() == ["ssh", "host", "target", "client", "sees", "cause", "why"]
    assert rows[1].split()[:4] == ["h", "127.0.0.1:9", "open", "ok"]
    assert rows[2].split() == ["h", "127.0.0.1:9", "-", "not", "inspected", "no", "answer"]
    assert rows[-1] == "2 hosts: 1 ok, 0 with a problem, 1 not inspected"
    md = render_ssh.markdown([ok, gone], as_table=True).splitlines()
    assert md[2] == "| h | 127.0.0.1:9 | open | ok | said |" and md[3].endswith("| not inspected | no answer |")
    docs = json.loads(render_ssh.json_text([ok, gone], as_list=True))
    assert [d["ssh"]["error"] for d in docs] == [None, "h: no answer"]
