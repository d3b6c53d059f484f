"""The lab itself: what it builds is real, and it leaves nothing behind, even on failure."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from netlab import NETNS_ETC, NETNS_RUN, Host, Lab, LabError

pytestmark = pytest.mark.lab

HERE = Path(__file__).resolve().parent


def _netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _removed(names: set[str]) -> None:
    """The namespaces `names` are gone, and so are their folders under /etc/netns."""
    assert not names & _netns_names()
    assert not any((NETNS_ETC / n).exists() for n in names)


def _lab_script(then: str) -> str:
    """A Python program that builds a lab (a pair, s listening on 8080), prints the pair's two
    namespaces and then runs the statement `then`."""
    return textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(HERE)!r})
        from netlab import Lab
        lab = Lab()
        c, s = lab.pair()
        s.listen(8080)
        print(c.ns, s.ns, flush=True)
        {then}
    """)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --------------------------------------------------------------------------- cleanup


def test_teardown_removes_namespaces_processes_and_folders() -> None:
    lab = Lab()
    c, s = lab.pair()
    proc = s.listen(8080)
    daemon = s.popen(["sleep", "300"])
    names = {c.ns, s.ns}
    assert names <= _netns_names()
    assert (NETNS_ETC / s.ns / "resolv.conf").exists()

    lab.teardown()

    _removed(names)
    assert not _alive(proc.pid) and not _alive(daemon.pid)
    lab.teardown()  # a second teardown finds nothing and does not complain


def test_teardown_runs_when_the_test_body_raised() -> None:
    lab = Lab()
    names: set[str] = set()
    with pytest.raises(ZeroDivisionError):
        with lab:
            h = lab.host("x")
            names.add(h.ns)
            h.popen(["sleep", "300"])
            1 / 0
    assert names
    _removed(names)


def test_teardown_tolerates_things_already_gone() -> None:
    lab = Lab()
    h = lab.host("gone")
    proc = h.popen(["sleep", "300"])
    proc.kill()
    proc.wait()
    subprocess.run(["ip", "netns", "delete", h.ns], check=True)
    (NETNS_ETC / h.ns / "resolv.conf").unlink()
    lab.teardown()
    _removed({h.ns})


def test_teardown_kills_processes_a_daemon_left_in_the_namespace() -> None:
    lab = Lab()
    h = lab.host("fork")
    # a daemon that forks into the background: the lab did not start the grandchild itself
    h.run(["sh", "-c", "setsid sleep 300 >/dev/null 2>&1 < /dev/null &"])
    pids = subprocess.run(["ip", "netns", "pids", h.ns], capture_output=True, text=True).stdout.split()
    assert pids
    lab.teardown()
    assert not any(_alive(int(p)) for p in pids)


@pytest.mark.parametrize("how", ["exception", "exit"])
def test_interpreter_exit_tears_down_an_abandoned_lab(how: str) -> None:
    """A test process that dies without teardown (uncaught error, sys.exit) still cleans up."""
    ending = "raise RuntimeError('boom')" if how == "exception" else "sys.exit(3)"
    cp = subprocess.run([sys.executable, "-c", _lab_script(ending)], capture_output=True, text=True, timeout=60)
    assert cp.returncode != 0
    names = set(cp.stdout.split())
    assert len(names) == 2
    _removed(names)


# --------------------------------------------------------------------------- hosts and links


def test_host_is_isolated_and_resolves_nothing_outside(lab: Lab) -> None:
    h = lab.host("iso")
    assert h.ns == f"pd{os.getpid()}iso"
    assert (NETNS_RUN / h.ns).exists()
    links = h.run(["ip", "-o", "link"]).stdout
    assert "lo:" in links and "UP" in links and "eth0" not in links
    assert h.run(["cat", "/etc/resolv.conf"]).stdout.strip() == "nameserver 127.0.0.1"
    assert h.run(["cat", "/proc/sys/net/ipv6/conf/all/accept_dad"]).stdout.strip() == "0"
    # no route anywhere but loopback
    assert h.run(["ip", "route", "get", "10.0.0.2"], check=False).returncode != 0
    # nothing answers DNS on 127.0.0.1 in a bare host: a lookup fails instead of leaking out
    cp = h.run(["getent", "hosts", "example.invalid"], check=False, timeout=30)
    assert cp.returncode != 0


def test_pair_links_client_and_server_over_ipv4_and_ipv6(pair: tuple[Host, Host]) -> None:
    c, s = pair
    assert c.name == "c" and s.name == "s"
    assert "10.0.0.1/24" in c.run(["ip", "-o", "addr", "show", "veth0"]).stdout
    assert "fd00::2/64" in s.run(["ip", "-o", "addr", "show", "veth1"]).stdout
    assert not s.run(["ip", "-6", "-o", "addr", "show", "tentative"]).stdout.strip()
    s.listen(8080, "::", v6only=False)
    assert c.connect_errno("10.0.0.2", 8080) == 0
    assert c.connect_errno("fd00::2", 8080) == 0
    assert c.connect_errno("10.0.0.2", 8081) == errno.ECONNREFUSED
    assert c.connect_errno("fd00::2", 8081) == errno.ECONNREFUSED


def test_link_adds_a_second_network(lab: Lab) -> None:
    a, b, r = lab.host("a"), lab.host("b"), lab.host("r")
    ia, ir1 = lab.link(a, r, "10.1.0.1/24", "10.1.0.2/24")
    ir2, ib = lab.link(r, b, "10.2.0.1/24", "10.2.0.2/24", "fd00:2::1/64", "fd00:2::2/64")
    assert len({ia, ir1, ir2, ib}) == 4 and all(len(n) <= 15 for n in (ia, ir1, ir2, ib))
    lab.wait_ipv6(a, b, r)
    assert ib in b.run(["ip", "-o", "link"]).stdout
    b.listen(80)
    assert r.connect_errno("10.2.0.2", 80) == 0
    assert a.connect_errno("10.2.0.2", 80) == errno.ENETUNREACH  # a has no route there


def test_host_config_helpers(lab: Lab) -> None:
    h = lab.host("cfg")
    h.add_addr("10.9.9.9/32")
    h.add_addr("fd00:9::9/128")
    addrs = h.run(["ip", "-o", "addr", "show", "lo"]).stdout
    assert "10.9.9.9/32" in addrs and "fd00:9::9/128" in addrs
    h.sysctl("net.ipv4.tcp_abort_on_overflow", 1)
    assert h.run(["sysctl", "-n", "net.ipv4.tcp_abort_on_overflow"]).stdout.strip() == "1"
    h.iptables("-A", "INPUT", "-p", "tcp", "--dport", "81", "-j", "DROP")
    assert "--dport 81 -j DROP" in h.iptables("-S", "INPUT").stdout
    h.ip6tables("-A", "INPUT", "-p", "tcp", "--dport", "82", "-j", "DROP")
    assert "--dport 82 -j DROP" in h.ip6tables("-S", "INPUT").stdout
    h.nft("table inet pdlab {\n chain input {\n  type filter hook input priority 0;\n"
          "  tcp dport 83 drop\n }\n}\n")
    assert "tcp dport 83 drop" in h.run(["nft", "list", "table", "inet", "pdlab"]).stdout
    h.hosts("127.0.0.1 localhost\n10.9.9.9 svc.lab\n")
    assert h.run(["getent", "hosts", "svc.lab"]).stdout.split()[0] == "10.9.9.9"
    with pytest.raises(LabError):
        h.run(["false"])
    assert h.run(["false"], check=False).returncode == 1


def test_root_namespace_is_untouched(lab: Lab) -> None:
    rules = ["iptables", "-w", "-S", "INPUT"]
    before = subprocess.run(rules, capture_output=True, text=True).stdout
    c, s = lab.pair()
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "4242", "-j", "DROP")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert c.ns not in links and s.ns not in links  # no veth end of ours in the root namespace
    after = subprocess.run(rules, capture_output=True, text=True).stdout
    assert "4242" not in after and before == after


# --------------------------------------------------------------------------- listeners


def test_listen_names_the_process_and_its_environment(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    p = s.listen(8080, argv0="myapp-server", env={"PORT": "8080", "BIND": "0.0.0.0"})
    cmdline = Path(f"/proc/{p.pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[0] == b"myapp-server"
    assert b"--port" in cmdline
    environ = Path(f"/proc/{p.pid}/environ").read_bytes().split(b"\0")
    assert b"PORT=8080" in environ and b"BIND=0.0.0.0" in environ
    assert os.stat(f"/proc/{p.pid}/ns/net").st_ino == os.stat(NETNS_RUN / s.ns).st_ino
    ss = s.run(["ss", "-Hltnp", "sport", "= :8080"]).stdout
    assert "myapp-server" in ss or str(p.pid) in ss


def test_listen_without_accept_fills_the_backlog(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, backlog=1, accept=False)
    results = [c.connect_errno("10.0.0.2", 8080, timeout=0.3) for _ in range(4)]
    # the queue takes backlog+1 connections, then the server drops new SYNs
    assert results[:2] == [0, 0]
    assert results[-1] == errno.ETIMEDOUT
    queue = s.run(["ss", "-Hltn", "sport", "= :8080"]).stdout.split()
    assert queue[1] == "2" and queue[2] == "1"  # Recv-Q (queued) and Send-Q (backlog)


def test_listen_at_the_fd_limit(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    p = s.listen(8080, nofile=64, fill_fds=True)
    limits = Path(f"/proc/{p.pid}/limits").read_text()
    soft = next(line for line in limits.splitlines() if line.startswith("Max open files")).split()[3]
    assert soft == "64"
    assert len(os.listdir(f"/proc/{p.pid}/fd")) == 64


def test_listen_v6only_and_as_another_user(pair: tuple[Host, Host]) -> None:
    c, s = pair
    p = s.listen(8080, "::", v6only=True, user="nobody")
    assert c.connect_errno("fd00::2", 8080) == 0
    assert c.connect_errno("10.0.0.2", 8080) == errno.ECONNREFUSED
    status = Path(f"/proc/{p.pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1] == "65534"
    assert s.run(["id", "-u"], user="nobody").stdout.strip() == "65534"


def test_listen_reports_a_bind_failure(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.listen(8080)
    with pytest.raises(LabError, match="Address already in use"):
        s.listen(8080)


# --------------------------------------------------------------------------- daemons and DNS


def test_dns_answers_only_its_records(pair: tuple[Host, Host]) -> None:
    c, _s = pair
    c.dns({"server.lab": "10.0.0.2", "both.lab": "10.0.0.2,fd00::2"})
    assert c.run(["getent", "ahostsv4", "server.lab"]).stdout.split()[0] == "10.0.0.2"
    both = c.run(["getent", "ahosts", "both.lab"]).stdout
    assert "10.0.0.2" in both and "fd00::2" in both
    missing = c.run(["getent", "hosts", "nosuch.lab"], check=False)
    assert missing.returncode == 2  # not found (NXDOMAIN), not a resolver failure
    dig = c.run(["python3", "-c", "import socket\ntry:\n socket.getaddrinfo('nosuch.lab', 80)\n"
                 "except socket.gaierror as e: print(e.args[0])"], check=False).stdout.strip()
    assert dig == str(int(__import__("socket").EAI_NONAME))


def test_start_waits_for_a_real_daemon(pair: tuple[Host, Host], tmp_path: Path) -> None:
    c, s = pair
    redis = "/usr/bin/redis-server"
    if not os.path.exists(redis):
        pytest.skip("redis-server is not installed")
    # bound to the link address only: readiness must not assume loopback
    proc = s.start([redis, "--port", "6390", "--bind", "10.0.0.2", "--save", "", "--appendonly", "no",
                    "--dir", str(tmp_path), "--protected-mode", "no"], ready_port=6390)
    assert proc.poll() is None
    assert s.listening(6390) == ["10.0.0.2"]
    assert c.connect_errno("10.0.0.2", 6390) == 0
    assert s.connect_errno("127.0.0.1", 6390) == errno.ECONNREFUSED


def test_listening_reads_the_namespace_socket_table(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.listen(8080, "10.0.0.2")
    s.listen(8081, "::", v6only=True)
    s.listen(8082, "fd00::2")
    assert s.listening(8080) == ["10.0.0.2"]
    assert s.listening(8081) == ["::"]
    assert s.listening(8082) == ["fd00::2"]
    assert s.listening(8083) == []


def test_start_fails_fast_when_the_daemon_dies(lab: Lab) -> None:
    h = lab.host("die")
    with pytest.raises(LabError, match="exited"):
        h.start(["sh", "-c", "echo cannot start >&2; exit 4"], ready_port=9999, timeout=10)


def test_start_waits_for_a_ready_file(lab: Lab, tmp_path: Path) -> None:
    h = lab.host("rf")
    flag = tmp_path / "ready"
    h.start(["sh", "-c", f"sleep 0.2; touch {flag}; exec sleep 300"], ready_file=flag)
    assert flag.exists()


def test_portdoctor_runs_inside_the_namespace(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    code, doc = c.json_of("probe", "10.0.0.2:8080")
    assert code == 0 and doc["state"] == "open"
    as_nobody = c.portdoctor("probe", "10.0.0.2:8080", user="nobody")
    assert as_nobody.returncode == 0, as_nobody.stderr


# --------------------------------------------------------------------------- safety nets and policy


def test_sigterm_tears_down_the_lab() -> None:
    """A test run killed with SIGTERM (a CI timeout) still removes its namespaces."""
    proc = subprocess.Popen([sys.executable, "-c", _lab_script("time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        names = set(proc.stdout.readline().split())
        assert len(names) == 2 and names <= _netns_names()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == -signal.SIGTERM  # it still dies of the signal
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _removed(names)


def test_two_labs_of_one_process_cannot_share_a_host_name(lab: Lab) -> None:
    mine = lab.host("dup")
    other = Lab()
    try:
        with pytest.raises(LabError, match="another live Lab"):
            other.host("dup")
        assert other.host("dup2").ns != mine.ns
    finally:
        other.teardown()
    assert mine.ns in _netns_names()  # the refused attempt did not delete the first lab's host


@pytest.mark.parametrize("ci, outcome, code", [("true", "1 error", 1), ("", "1 skipped", 0)])
def test_lab_tests_without_root_fail_under_ci_and_skip_otherwise(ci: str, outcome: str, code: int) -> None:
    """Run one lab test as an unprivileged user: CI=true must turn the skip into a failure."""
    from netlab import python_for

    exe, env = python_for("nobody")
    env.update(CI=ci, PYTHONDONTWRITEBYTECODE="1", HOME="/tmp")
    root = HERE.parent.parent
    cp = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", exe, "-m", "pytest",
         "-p", "no:cacheprovider", "-q", "-rfs", f"{HERE}/test_netlab.py::test_host_config_helpers"],
        capture_output=True, text=True, cwd=root, timeout=120,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
    )
    assert outcome in cp.stdout, cp.stdout + cp.stderr
    assert cp.returncode == code
    assert "need root" in cp.stdout


def test_leftovers_finds_and_removes_what_a_lab_forgot(lab: Lab) -> None:
    import netlab

    h = lab.host("left")
    # simulate a crash between creating and registering: unknown to any Lab
    stray = f"pd{os.getpid()}stray"
    subprocess.run(["ip", "netns", "add", stray], check=True)
    (NETNS_ETC / stray).mkdir(parents=True, exist_ok=True)
    assert {h.ns, stray} <= set(netlab.leftovers())
    assert stray in netlab.remove_leftovers(stray)
    assert stray not in _netns_names() and not (NETNS_ETC / stray).exists()
    assert h.ns in _netns_names()  # only what the prefix named was removed
    other_pid = f"pd{os.getpid()}7x"  # what process <our pid>7 would name its host "x"
    subprocess.run(["ip", "netns", "add", other_pid], check=True)
    try:
        assert other_pid not in netlab.leftovers()
    finally:
        subprocess.run(["ip", "netns", "delete", other_pid], check=True)
    with pytest.raises(LabError, match="digit"):
        lab.host("7x")


def test_json_flag_goes_before_a_double_dash(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080)
    # after "--" every word is an argument: "--json" appended there would be a second TARGET
    code, doc = c.json_of("probe", "--", "10.0.0.2:8080")
    assert code == 0 and doc["state"] == "open"
