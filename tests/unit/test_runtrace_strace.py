"""strace output lines and argument texts (runtrace.strace), the trusted-path check and the
ptrace-denied reasons. Lines are taken from the recordings in tests/data/strace/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from portdoctor.runtrace.attempts import Endpoint, parse_sockaddr
from portdoctor.runtrace.strace import (LineReader, TraceUnavailable, command, find_strace, first_fd,
                                        ptrace_denied_reason, socket_inode, strings, unescape, untrusted)

DATA = Path(__file__).resolve().parents[1] / "data" / "strace"


def test_a_plain_line() -> None:
    line = ('8245<curl> 1796293256.612833 connect(5<socket:[838978]>, {sa_family=AF_INET, sin_port=htons(8080), '
            'sin_addr=inet_addr("10.0.0.2")}, 16) = -1 EINPROGRESS (Operation now in progress) <0.000034>')
    e = LineReader().feed(line)
    assert e is not None
    assert (e.pid, e.comm, e.ts, e.name, e.ret, e.errno, e.duration) == (
        8245, "curl", 1796293256.612833, "connect", -1, "EINPROGRESS", 0.000034)
    assert first_fd(e.args) == (5, "socket:[838978]") and socket_inode(first_fd(e.args)[1]) == 838978
    assert parse_sockaddr(e.args) == Endpoint("tcp", "10.0.0.2", 8080, 4)


def test_unfinished_and_resumed_halves_of_two_threads_are_joined() -> None:
    r = LineReader()
    lines = [
        '8446<python> 1796293260.023122 connect(3<socket:[839851]>, {sa_family=AF_INET, sin_port=htons(7102), '
        'sin_addr=inet_addr("127.0.0.1")}, 16 <unfinished ...>',
        '8444<python> 1796293260.023337 getsockopt(3<socket:[839852]>, SOL_SOCKET, SO_ERROR,  <unfinished ...>',
        '8446<python> 1796293260.023200 <... connect resumed>) = -1 EINPROGRESS (Operation now in progress) <0.000070>',
        '8444<python> 1796293260.023400 <... getsockopt resumed>[ECONNREFUSED], [4]) = 0 <0.000050>',
    ]
    events = [r.feed(x) for x in lines]
    assert events[:2] == [None, None]
    connect, sockopt = events[2], events[3]
    assert connect is not None and sockopt is not None
    assert (connect.pid, connect.name, connect.ts, connect.errno) == (8446, "connect", 1796293260.023122, "EINPROGRESS")
    assert parse_sockaddr(connect.args) == Endpoint("tcp", "127.0.0.1", 7102, 4)
    assert (sockopt.pid, sockopt.name, sockopt.ret) == (8444, "getsockopt", 0)
    assert sockopt.args.endswith("SO_ERROR, [ECONNREFUSED], [4]")


def test_a_resumed_half_without_its_start_is_dropped() -> None:
    r = LineReader()
    assert r.feed("12<x> 1.0 <... connect resumed>) = -1 ECONNREFUSED (Connection refused) <0.1>") is None


def test_exit_and_kill_lines() -> None:
    r = LineReader()
    ex = r.feed("8443<python> 1796293260.030371 +++ exited with 3 +++")
    kill = r.feed("9<sh> 2.0 +++ killed by SIGKILL +++")
    core = r.feed("9<sh> 2.0 +++ killed by SIGSEGV (core dumped) +++")
    assert ex is not None and (ex.name, ex.exit_code, ex.signal) == ("+++", 3, None)
    assert kill is not None and (kill.exit_code, kill.signal) == (None, "SIGKILL")
    assert core is not None and core.signal == "SIGSEGV"
    assert r.feed("9<sh> 2.0 +++ superseded by execve in pid 8 +++") is None


def test_a_return_separator_inside_a_data_string_is_not_the_return_value() -> None:
    line = '5<x> 1.0 sendto(3<socket:[7]>, "a) = 99 b", 9, MSG_NOSIGNAL, NULL, 0) = 9 <0.000010>'
    e = LineReader().feed(line)
    assert e is not None and e.ret == 9 and strings(e.args) == [(b"a) = 99 b", False)]


def test_garbage_and_unknown_returns() -> None:
    r = LineReader()
    assert r.feed("strace: Process 12 attached") is None
    assert r.feed("not a line at all") is None
    assert r.bad_lines == 2
    e = r.feed("7<x> 1.0 exit_group(0) = ?")
    assert e is not None and e.ret is None and e.name == "exit_group"


def test_unescape_octal_hex_and_c_escapes() -> None:
    assert unescape(r"\x71\x03\1\0012\n\t\\\"") == b"\x71\x03\x01\x012\n\t\\\""
    assert strings(r'x, "ab"..., "c\x00"') == [(b"ab", True), (b"c\x00", False)]


def test_sockaddr_forms() -> None:
    six = ('3<socket:[1]>, {sa_family=AF_INET6, sin6_port=htons(5432), sin6_flowinfo=htonl(0), '
           'inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28')
    mapped = six.replace('"::1"', '"::ffff:10.0.0.2"')
    assert parse_sockaddr(six) == Endpoint("tcp", "::1", 5432, 6)
    assert parse_sockaddr(mapped) == Endpoint("tcp", "10.0.0.2", 5432, 4)
    assert parse_sockaddr('3<socket:[1]>, {sa_family=AF_UNIX, sun_path=@"/tmp/.X11-unix/X0"}, 20') == \
        Endpoint("unix", "@/tmp/.X11-unix/X0")
    assert parse_sockaddr("3<socket:[1]>, {sa_family=AF_UNSPEC, sa_data=\"\"}, 16") is None
    assert str(Endpoint("tcp", "fd00::2", 80, 6)) == "[fd00::2]:80"


def test_every_recorded_line_parses() -> None:
    for path in sorted(DATA.glob("*.txt")):
        r = LineReader()
        events = [e for line in path.read_text().splitlines() if (e := r.feed(line)) is not None]
        assert r.bad_lines == 0, path.name
        assert events and events[0].name == "execve", path.name


def test_the_command_line() -> None:
    argv = command("/usr/bin/strace", "/tmp/x/trace", ["curl", "-s", "--", "u"])
    assert argv[:2] == ["/usr/bin/strace", "-f"]
    assert argv[argv.index("-o") + 1] == "/tmp/x/trace"
    assert argv[-5:] == ["--", "curl", "-s", "--", "u"] and "--seccomp-bpf" in argv
    trace = argv[argv.index("-e", argv.index("-e") + 1) + 1]
    assert trace.startswith("trace=") and "connect" in trace and "getsockopt" in trace
    assert "--seccomp-bpf" not in command("/s", "/o", ["x"], seccomp=False)


# --------------------------------------------------------------------------- trust


def test_only_root_owned_unwritable_paths_are_trusted(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create root-owned files elsewhere than /")
    d = tmp_path / "bin"
    d.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(d, 0o755)
    tool = d / "strace"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    parents_ok = untrusted(str(tmp_path)) is None
    if not parents_ok:  # /tmp itself is world-writable (sticky): the whole tree is untrusted
        assert "writable by group or others" in (untrusted(str(tool)) or "")
        return
    assert untrusted(str(tool)) is None
    os.chmod(d, 0o775)
    assert untrusted(str(tool)) == f"{d} is writable by group or others"
    os.chmod(d, 0o755)
    os.chown(tool, 65534, 65534)
    assert untrusted(str(tool)) == f"{tool} is owned by uid 65534, not root"


def test_a_strace_in_a_world_writable_folder_is_refused(tmp_path: Path) -> None:
    tool = tmp_path / "strace"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    os.chmod(tmp_path, 0o777)
    with pytest.raises(TraceUnavailable, match="is not trusted"):
        find_strace(str(tmp_path))


def test_no_strace_on_the_path(tmp_path: Path) -> None:
    with pytest.raises(TraceUnavailable) as exc:
        find_strace(str(tmp_path))
    assert str(exc.value) == f"strace is not installed (not found in {tmp_path}; apt-get install strace)"


def test_the_system_strace_is_trusted() -> None:
    path = find_strace() if os.path.exists("/usr/bin/strace") else None
    if path is None:
        pytest.skip("strace is not installed")
    assert path == "/usr/bin/strace" and untrusted(path) is None


@pytest.mark.parametrize("scope,seccomp,capeff,expected", [
    ("3", "0", "000001ffffffffff", "ptrace is disabled on this host (Yama kernel.yama.ptrace_scope = 3)"),
    ("2", "0", "0000000000000000", "ptrace needs CAP_SYS_PTRACE here (Yama kernel.yama.ptrace_scope = 2) "
                                   "and this process does not have it"),
    (None, "2", "000001ffffffffff", "ptrace is not permitted: a seccomp filter forbids it (a container without "
                                    "CAP_SYS_PTRACE, e.g. docker run --cap-add SYS_PTRACE allows it)"),
    ("1", "0", "000001ffffffffff", "ptrace is not permitted for this process (a container or security policy "
                                   "forbids it)"),
])
def test_why_ptrace_was_denied(tmp_path: Path, scope: str | None, seccomp: str, capeff: str, expected: str) -> None:
    # strace's own words when ptrace fails (recorded under a seccomp filter that denies ptrace)
    stderr = ("strace: test_ptrace_get_syscall_info: PTRACE_TRACEME: Operation not permitted\n"
              "strace: ptrace(PTRACE_TRACEME, ...): Operation not permitted\n")
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "status").write_text(f"Name:\tx\nCapEff:\t{capeff}\nSeccomp:\t{seccomp}\n")
    if scope is not None:
        (proc / "sys/kernel/yama").mkdir(parents=True)
        (proc / "sys/kernel/yama/ptrace_scope").write_text(scope + "\n")
    assert ptrace_denied_reason(stderr, str(proc)) == expected
    assert ptrace_denied_reason("strace: something odd\n", str(proc)) == "strace could not trace (strace: something odd)"
