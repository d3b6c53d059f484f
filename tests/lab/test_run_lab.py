"""`portdoctor run -- CMD` with real clients in lab namespaces: curl, Python requests, asyncio,
Node, psql and redis-cli against refused ports and a silent drop; a program that succeeds; a
program that forks workers; names from DNS and /etc/hosts; signals and exit status; no strace and
no ptrace.

Each client runs twice, once plain and once under `portdoctor run`, and both runs must print the
same and exit the same. The report is read from a JSON file (--report), never from the program's
output. With PD_RECORD_STRACE=DIR, the raw strace output of every run is kept in DIR (that is how
tests/data/strace/ was recorded).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from netlab import Host, python_for
from servers import need

# Python's own HTTP client stack: requests is in the test environment (the docker SDK needs it)
REQUESTS = """
import sys, requests
try:
    requests.get(sys.argv[1], timeout=3)
except requests.ConnectionError as exc:
    print("requests failed:", type(exc).__name__)
    sys.exit(4)
"""

ASYNCIO = """
import asyncio, sys
async def main():
    try:
        await asyncio.open_connection(sys.argv[1], int(sys.argv[2]))
    except OSError as exc:
        print("asyncio failed:", exc.errno)
        return 5
    return 0
sys.exit(asyncio.run(main()))
"""

NODE = """
const net = require("net");
const s = net.connect(Number(process.argv[2]), process.argv[1]);
s.on("connect", () => { console.log("connected"); s.end(); });
s.on("error", (e) => { console.log("node failed: " + e.code); process.exitCode = 6; });
"""

WORKERS = r"""
import os, socket, sys
port = int(sys.argv[1])
kids = []
for n in range(3):
    pid = os.fork()
    if pid == 0:
        try:
            socket.create_connection(("127.0.0.1", port + n), timeout=2)
        except OSError as exc:
            os.write(1, f"worker {n} failed: {exc.errno}\n".encode())  # one write: lines stay whole
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
os.write(1, b"parent done\n")
"""

# Install a seccomp filter that makes ptrace() fail with EPERM (what Docker's default profile
# does without CAP_SYS_PTRACE), then exec the rest of the command line under it.
NO_PTRACE = r"""
import ctypes, os, struct, sys
def stmt(code, k): return struct.pack("HBBI", code, 0, 0, k)
def jump(code, k, jt, jf): return struct.pack("HBBI", code, jt, jf, k)
LD, JEQ, RET = 0x20, 0x15, 0x06
prog = b"".join([stmt(LD, 4), jump(JEQ, 0xC000003E, 0, 3), stmt(LD, 0), jump(JEQ, 101, 0, 1),
                 stmt(RET, 0x00050000 | 1), stmt(RET, 0x7FFF0000)])
buf = ctypes.create_string_buffer(prog)
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fp = Fprog(len(prog) // 8, ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0                      # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(fp), 0, 0) == 0, ctypes.get_errno()   # SECCOMP_MODE_FILTER
os.execvp(sys.argv[1], sys.argv[1:])
"""


def _record_args(name: str) -> list[str]:
    where = os.environ.get("PD_RECORD_STRACE")
    if not where:
        return []
    Path(where).mkdir(parents=True, exist_ok=True)
    return ["--keep-trace", str(Path(where) / f"{name}.txt")]


def traced(h: Host, tmp: Path, cmd: list[str], name: str, timeout: str = "1",
           extra: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run `cmd` under `portdoctor run` in h; return the run and its JSON report."""
    report = tmp / f"{name}.json"
    exe, env = python_for(None)
    argv = [exe, "-m", "portdoctor", "run", "--json", "--report", str(report), "--timeout", timeout,
            *_record_args(name), *extra, "--", *cmd]
    cp = h.run(argv, check=False, timeout=60, env=env)
    assert report.exists(), f"no report: {cp.stderr}"
    return cp, json.loads(report.read_text())


def same_as_plain(h: Host, tmp: Path, cmd: list[str], name: str, **kw: Any) -> dict[str, Any]:
    """Run `cmd` plain and traced: same stdout, same stderr, same exit status; the report."""
    plain = h.run(cmd, check=False, timeout=60)
    cp, doc = traced(h, tmp, cmd, name, **kw)
    assert (cp.returncode, cp.stdout) == (plain.returncode, plain.stdout)
    # the report went to its file, nothing was added (curl prints how many ms it waited)
    assert _ms(cp.stderr) == _ms(plain.stderr)
    assert doc["exit"]["status"] == plain.returncode and doc["traced"] is True
    return doc


def _ms(text: str) -> str:
    """stderr without what differs between two runs of one command: the milliseconds waited, and
    curl's wording of a connect timeout (which of its two messages depends on whether the time
    ran out during the lookup or the handshake: a matter of scheduling, more so under strace)."""
    text = re.sub(r"\d+ ms", "N ms", text)
    return re.sub(r"curl: \(28\) (?:Connection timeout after N ms|Failed to connect to \S+ port \d+ after N ms: "
                  r"Timeout was reached)", "curl: (28) connect timeout after N ms", text)


def only_failure(doc: dict[str, Any]) -> dict[str, Any]:
    assert len(doc["failures"]) == 1, [f["target"] for f in doc["failures"]]
    return doc["failures"][0]


def test_curl_refused_nothing_listens(pair: tuple[Host, Host], tmp_path: Path) -> None:
    need("curl", "strace")
    _c, s = pair
    doc = same_as_plain(s, tmp_path, ["curl", "-sS", "http://10.0.0.2:8080/"], "curl_refused")
    assert doc["exit"]["code"] == 7
    f = only_failure(doc)
    assert (f["target"], f["errno"], f["count"], f["local"]) == ("10.0.0.2:8080", "ECONNREFUSED", 1, True)
    assert f["processes"][0]["command"].startswith("curl -sS")
    assert f["cause"] == "service_not_running" == f["diagnosis"]["verdict"]["cause"]
    assert f["name"] is None  # an address literal: nothing was looked up


def test_requests_to_a_loopback_only_server(pair: tuple[Host, Host], tmp_path: Path) -> None:
    need("strace")
    _c, s = pair
    s.listen(8080, "127.0.0.1")
    doc = same_as_plain(s, tmp_path, [sys.executable, "-c", REQUESTS, "http://10.0.0.2:8080/"], "requests")
    assert doc["exit"]["code"] == 4
    f = only_failure(doc)
    assert (f["target"], f["errno"], f["cause"]) == ("10.0.0.2:8080", "ECONNREFUSED", "wrong_interface")


def test_asyncio_nonblocking_connect_counts(pair: tuple[Host, Host], tmp_path: Path) -> None:
    need("strace")
    _c, s = pair
    doc = same_as_plain(s, tmp_path, [sys.executable, "-c", ASYNCIO, "127.0.0.1", "6399"], "asyncio")
    f = only_failure(doc)
    assert (f["target"], f["errno"], f["cause"]) == ("127.0.0.1:6399", "ECONNREFUSED", "service_not_running")
    assert f["attempts"][0]["how"] == "so_error"  # EINPROGRESS, then SO_ERROR said ECONNREFUSED


def test_node_refused_with_its_exit_code(pair: tuple[Host, Host], tmp_path: Path) -> None:
    need("node", "strace")
    _c, s = pair
    doc = same_as_plain(s, tmp_path, ["node", "-e", NODE, "10.0.0.2", "3000"], "node")
    assert doc["exit"]["code"] == 6
    f = only_failure(doc)
    assert (f["target"], f["errno"], f["cause"]) == ("10.0.0.2:3000", "ECONNREFUSED", "service_not_running")
    assert f["attempts"][0]["how"] == "so_error"


def test_node_refused_by_a_remote_host_points_at_the_server(pair: tuple[Host, Host], tmp_path: Path) -> None:
    need("node", "strace")
    c, _s = pair
    doc = same_as_plain(c, tmp_path, ["node", "-e", NODE, "10.0.0.2", "3000"], "node_remote")
    f = only_failure(doc)
    assert (f["target"], f["errno"], f["local"]) == ("10.0.0.2:3000", "ECONNREFUSED", False)
    assert f["probe"]["state"] == "refused" and f["cause"] == "unknown"  # only the server can tell which
    assert f["explanation"]["next"] == "on 10.0.0.2: portdoctor diagnose :3000 --from 10.0.0.1"
    assert any("portdoctor diagnose :3000 --from 10.0.0.1` on 10.0.0.2" in x for x in f["diagnosis"]["limitations"])


def test_a_drop_in_this_hosts_own_output_chain_is_found(pair: tuple[Host, Host], tmp_path: Path) -> None:
    """The program sees a remote timeout; the cause is a rule on its own host."""
    need("curl", "iptables", "strace")
    c, s = pair
    s.listen(8080)
    c.iptables("-A", "OUTPUT", "-p", "tcp", "--dport", "8080", "-j", "DROP")
    doc = same_as_plain(c, tmp_path, ["curl", "-sS", "--connect-timeout", "1", "http://10.0.0.2:8080/"], "curl_output_drop")
    f = only_failure(doc)
    assert (f["target"], f["errno"], f["state"], f["local"]) == ("10.0.0.2:8080", None, "timeout", False)
    top = f["diagnosis"]["findings"][0]
    assert f["cause"] == "firewall_drop" and "chain OUTPUT" in top["summary"]
    assert any("iptables -A OUTPUT -p tcp -m tcp --dport 8080 -j DROP" in e for e in top["evidence"])


def test_psql_tcp_and_unix_socket(pair: tuple[Host, Host], tmp_path: Path) -> None:
    need("psql", "strace")
    _c, s = pair
    doc = same_as_plain(s, tmp_path, ["psql", "-h", "10.0.0.2", "-p", "5432", "-c", "select 1"], "psql_tcp")
    assert doc["exit"]["code"] == 2
    f = only_failure(doc)
    assert (f["target"], f["errno"], f["cause"]) == ("10.0.0.2:5432", "ECONNREFUSED", "service_not_running")

    sock_dir = tmp_path / "pg"
    sock_dir.mkdir()
    doc = same_as_plain(s, tmp_path, ["psql", "-h", str(sock_dir), "-c", "select 1"], "psql_unix")
    f = only_failure(doc)
    assert (f["kind"], f["path"], f["errno"]) == ("unix", str(sock_dir / ".s.PGSQL.5432"), "ENOENT")
    assert f["cause"] == "service_not_running" and str(sock_dir) in f["explanation"]["summary"]


def test_redis_cli_to_a_loopback_only_server_by_hosts_name(pair: tuple[Host, Host], tmp_path: Path) -> None:
    need("redis-cli", "strace")
    _c, s = pair
    s.hosts("127.0.0.1 localhost\n10.0.0.2 cache.lab\n")
    s.listen(6379, "127.0.0.1")
    doc = same_as_plain(s, tmp_path, ["redis-cli", "-h", "cache.lab", "ping"], "redis_cli")
    f = only_failure(doc)
    assert (f["target"], f["errno"], f["cause"]) == ("10.0.0.2:6379", "ECONNREFUSED", "wrong_interface")
    assert (f["name"], f["name_source"]) == ("cache.lab", "/etc/hosts")


def test_curl_through_dns_to_a_silent_drop(pair: tuple[Host, Host], tmp_path: Path) -> None:
    need("curl", "dnsmasq", "strace")
    c, s = pair
    c.dns({"db.lab": "10.0.0.2"})
    s.listen(8080)
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "DROP")
    started = time.monotonic()
    doc = same_as_plain(c, tmp_path, ["curl", "-sS", "--connect-timeout", "1", "http://db.lab:8080/"], "curl_drop")
    assert time.monotonic() - started < 20
    assert doc["exit"]["code"] == 28
    f = only_failure(doc)
    assert (f["target"], f["errno"], f["state"], f["local"]) == ("10.0.0.2:8080", None, "timeout", False)
    assert 0.8 < f["gave_up_after"] < 3  # curl's own 1 s connect timeout
    assert (f["name"], f["name_source"]) == ("db.lab", "dns")
    assert f["cause"] == "firewall_drop" and f["probe"]["state"] == "timeout"
    assert f["explanation"]["next"] == "on 10.0.0.2: portdoctor diagnose :8080 --from 10.0.0.1"


def test_a_name_that_does_not_resolve(pair: tuple[Host, Host], tmp_path: Path) -> None:
    need("curl", "dnsmasq", "strace")
    c, _s = pair
    c.dns({"db.lab": "10.0.0.2"})
    doc = same_as_plain(c, tmp_path, ["curl", "-sS", "http://nosuch.lab:8080/"], "curl_nxdomain")
    assert doc["exit"]["code"] == 6 and doc["failures"] == []
    [x] = doc["failed_lookups"]
    assert (x["name"], x["rcode"], x["cause"]) == ("nosuch.lab", "NXDOMAIN", "dns")
    assert x["processes"][0]["command"] == "curl -sS http://nosuch.lab:8080/"


def test_a_program_that_succeeds_has_no_findings(pair: tuple[Host, Host], tmp_path: Path) -> None:
    need("curl", "strace")
    _c, s = pair
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("hello from the lab\n")
    s.start([sys.executable, "-m", "http.server", "8081", "--bind", "10.0.0.2", "--directory", str(site)],
            ready_port=8081, ready_address="10.0.0.2")
    doc = same_as_plain(s, tmp_path, ["curl", "-sS", "http://10.0.0.2:8081/"], "curl_ok")
    assert doc["exit"]["code"] == 0 and doc["failures"] == [] and doc["connected"] >= 1
    assert doc["failed_lookups"] == []


def test_forked_workers_failures_are_theirs(pair: tuple[Host, Host], tmp_path: Path) -> None:
    need("strace")
    _c, s = pair
    plain = s.run([sys.executable, "-c", WORKERS, "7100"], check=False)
    cp, doc = traced(s, tmp_path, [sys.executable, "-c", WORKERS, "7100"], "workers")
    assert cp.returncode == plain.returncode == 0
    assert sorted(cp.stdout.splitlines()) == sorted(plain.stdout.splitlines())  # workers race: any order
    fails = {f["target"]: f for f in doc["failures"]}
    assert sorted(fails) == ["127.0.0.1:7100", "127.0.0.1:7101", "127.0.0.1:7102"]
    root = {p["ppid"] for f in fails.values() for p in f["processes"]}
    pids = {p["pid"] for f in fails.values() for p in f["processes"]}
    assert len(root) == 1 and len(pids) == 3 and not root & pids  # three children of one parent
    assert doc["processes"] == 4


def test_signals_reach_the_program_and_its_status_is_kept(tmp_path: Path) -> None:
    need("strace")
    exe, env = python_for(None)
    prog = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: (print('got TERM', flush=True), sys.exit(7)))\n"
            "print('ready', flush=True)\ntime.sleep(30)\n")
    p = subprocess.Popen([exe, "-m", "portdoctor", "run", "--", sys.executable, "-c", prog],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        p.send_signal(signal.SIGTERM)  # to portdoctor: forwarded to the program
        out, _err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
    assert out.strip() == "got TERM" and p.returncode == 7
    killed = subprocess.run([exe, "-m", "portdoctor", "run", "--", "sh", "-c", "kill -KILL $$"],
                            capture_output=True, text=True, timeout=30, env={**os.environ, **env})
    assert killed.returncode == 128 + 9 and "killed by SIGKILL" in killed.stderr


def test_without_ptrace_one_line_and_the_program_runs(tmp_path: Path) -> None:
    need("strace")
    exe, env = python_for(None)
    cmd = [exe, "-c", NO_PTRACE, exe, "-m", "portdoctor", "run", "--", "sh", "-c", "echo out; echo err >&2; exit 5"]
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env={**os.environ, **env})
    assert cp.returncode == 5 and cp.stdout == "out\n"
    lines = cp.stderr.splitlines()
    assert lines[1:] == ["err"] and len(lines) == 2
    assert lines[0] == ("portdoctor run: not traced: ptrace is not permitted: a seccomp filter forbids it "
                        "(a container without CAP_SYS_PTRACE, e.g. docker run --cap-add SYS_PTRACE allows it); "
                        "running the program without tracing")


def test_an_untrusted_strace_is_not_run(tmp_path: Path) -> None:
    """A strace another user could have replaced (here: not owned by root) is refused."""
    need("strace", "unshare")
    exe, env = python_for(None)
    fake = tmp_path / "strace"
    fake.write_text("#!/bin/sh\necho fake strace ran >&2\nexit 99\n")
    fake.chmod(0o755)
    os.chown(fake, 65534, 65534)
    script = (f"mount --bind {fake} /usr/bin/strace && exec {exe} -m portdoctor run -- sh -c 'echo out; exit 3'")
    cp = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                        capture_output=True, text=True, timeout=30, env={**os.environ, **env})
    assert cp.returncode == 3 and cp.stdout == "out\n"
    assert "fake strace ran" not in cp.stderr
    assert cp.stderr.splitlines() == [
        "portdoctor run: not traced: /usr/bin/strace is not trusted (/usr/bin/strace is owned by uid 65534, "
        "not root), so it was not run; running the program without tracing"]


def test_without_strace_the_library_runs_the_program(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from portdoctor.runtrace import run_traced

    said: list[str] = []
    report = run_traced(["sh", "-c", "echo out; exit 4"], strace_path=str(tmp_path), on_untraced=said.append)
    assert capfd.readouterr().out == "out\n"
    assert report.status == 4 and not report.traced
    assert said == [f"strace is not installed (not found in {tmp_path}; apt-get install strace)"]
    assert report.to_json()["limitation"] == said[0]


COUNT_SIGINTS = """
import signal, sys, time
got = []
signal.signal(signal.SIGINT, lambda *a: got.append(1))
print("ready", flush=True)
end = time.time() + 1.5
while time.time() < end:
    time.sleep(0.05)
print("sigints", len(got), flush=True)
sys.exit(3)
"""


def test_ctrl_c_on_the_terminal_reaches_the_program_once(tmp_path: Path) -> None:
    """^C typed on the program's terminal: the tty sends SIGINT to the foreground process group
    (portdoctor, strace and the program); portdoctor must not send it a second time."""
    import pty
    import select

    need("strace", "setsid")
    exe, env = python_for(None)
    master, slave = pty.openpty()
    p = subprocess.Popen(["setsid", "-c", exe, "-m", "portdoctor", "run", "--", sys.executable, "-c", COUNT_SIGINTS],
                         stdin=slave, stdout=slave, stderr=slave, env={**os.environ, **env})
    os.close(slave)
    seen = b""

    def read_for(seconds: float, until: bytes | None = None) -> None:
        nonlocal seen
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (until and until in seen):
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # the terminal's last process is gone
                    return

    try:
        read_for(15, b"ready")
        os.write(master, b"\x03")
        read_for(15, b"no failed connections")
        assert p.wait(timeout=15) == 3
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
    assert b"sigints 1" in seen, seen.decode(errors="replace")


def test_live_lines_come_while_the_program_runs(pair: tuple[Host, Host]) -> None:
    need("curl", "strace")
    _c, s = pair
    exe, env = python_for(None)
    script = "curl -sS http://127.0.0.1:9/ 2>/dev/null; echo between >&2; curl -sS http://127.0.0.1:9/ 2>/dev/null; exit 0"
    cp = s.run([exe, "-m", "portdoctor", "run", "--live", "--no-diagnose", "--", "sh", "-c", script],
               check=False, env=env)
    lines = cp.stderr.splitlines()
    assert cp.returncode == 0
    live = [n for n, line in enumerate(lines) if line.endswith("could not connect to 127.0.0.1:9: ECONNREFUSED")]
    assert len(live) == 2 and live[0] < lines.index("between") < live[1]
    assert "(pid " in lines[live[0]] and "curl -sS http://127.0.0.1:9/" in lines[live[0]]
    assert lines[live[1] + 1].startswith("portdoctor run: sh -c ") and "2 failed connections" in lines[live[1] + 1]
