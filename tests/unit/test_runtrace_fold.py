"""Folding recorded strace outputs (tests/data/strace/, recorded by tests/lab/test_run_lab.py with
PD_RECORD_STRACE) into failed connections: target, errno, how it was learnt, process, name."""

from __future__ import annotations

from pathlib import Path

from portdoctor.runtrace.analyse import explain_unix, group
from portdoctor.runtrace.attempts import Endpoint, Folded, Folder
from portdoctor.runtrace.names import hosts_names, parse_dns_answer
from portdoctor.runtrace.report import FailedTarget
from portdoctor.runtrace.strace import LineReader

DATA = Path(__file__).resolve().parents[1] / "data" / "strace"


def fold(name: str, lines: list[str] | None = None) -> tuple[Folded, Folder]:
    folder = Folder()
    reader = LineReader()
    for line in lines if lines is not None else (DATA / name).read_text().splitlines():
        ev = reader.feed(line)
        if ev is not None:
            folder.feed(ev)
    return folder.finish(reader.bad_lines), folder


def targets(name: str, hosts: str = "") -> list[FailedTarget]:
    folded, folder = fold(name)
    return group(folded, folder, hosts_names(hosts), mine=set())


def test_curl_refused_at_once_through_so_error() -> None:
    folded, _ = fold("curl_refused.txt")
    [t] = targets("curl_refused.txt")
    assert (str(t.endpoint), t.errno, t.count, t.state) == ("10.0.0.2:8080", "ECONNREFUSED", 1, "refused")
    assert t.attempts[0].how == "so_error" and t.attempts[0].waited < 0.01
    assert t.processes[0].command == ("curl", "-sS", "http://10.0.0.2:8080/")
    assert (folded.exit_code, folded.exit_signal) == (7, None)
    assert folded.ignored == {"/var/run/nscd/socket": 2}  # glibc's nscd probe is not a failure


def test_asyncio_and_node_nonblocking_connects() -> None:
    [a] = targets("asyncio.txt")
    [n] = targets("node.txt")
    assert (str(a.endpoint), a.errno, a.attempts[0].how) == ("127.0.0.1:6399", "ECONNREFUSED", "so_error")
    assert a.local is True and n.local is False  # loopback is this host; 10.0.0.2 is none of `mine`
    assert (str(n.endpoint), n.errno, n.attempts[0].how) == ("10.0.0.2:3000", "ECONNREFUSED", "so_error")
    assert n.processes[0].command[0] == "node"
    folded, _ = fold("node.txt")
    assert folded.exit_code == 6


def test_requests_through_urllib3() -> None:
    [t] = targets("requests.txt")
    assert (str(t.endpoint), t.errno) == ("10.0.0.2:8080", "ECONNREFUSED")


def test_redis_cli_reconnects_and_the_name_comes_from_etc_hosts() -> None:
    # redis-cli connects non-blocking, then calls connect() again to learn the outcome
    [t] = targets("redis_cli.txt", hosts="127.0.0.1 localhost\n10.0.0.2 cache.lab\n")
    assert (str(t.endpoint), t.errno, t.count) == ("10.0.0.2:6379", "ECONNREFUSED", 2)
    assert {a.how for a in t.attempts} == {"reconnect"}
    assert (t.name, t.name_source) == ("cache.lab", "/etc/hosts")
    [unnamed] = targets("redis_cli.txt", hosts="127.0.0.1 localhost\n")
    assert unnamed.name is None  # the hosts file was read, but it has no name for 10.0.0.2


def test_psql_over_tcp_and_over_a_missing_unix_socket() -> None:
    [tcp] = targets("psql_tcp.txt")
    assert (str(tcp.endpoint), tcp.errno) == ("10.0.0.2:5432", "ECONNREFUSED")
    [unix] = targets("psql_unix.txt")
    assert unix.endpoint.kind == "unix" and unix.endpoint.address.endswith("/pg/.s.PGSQL.5432")
    assert unix.errno == "ENOENT" and unix.local is None
    ex = explain_unix(unix)
    assert ex.cause == "service_not_running" and "does not exist" in ex.summary


def test_a_connect_given_up_by_the_client_is_a_timeout_with_its_name_from_dns() -> None:
    [t] = targets("curl_drop.txt")
    assert (str(t.endpoint), t.errno, t.state) == ("10.0.0.2:8080", None, "timeout")
    assert t.attempts[0].how == "closed" and 0.9 < (t.gave_up_after or 0) < 1.2
    assert (t.name, t.name_source) == ("db.lab", "dns")


def test_a_working_program_has_no_failures_and_counts_its_connections() -> None:
    folded, _ = fold("curl_ok.txt")
    assert folded.attempts == [] and folded.exit_code == 0
    assert folded.successes == {Endpoint("tcp", "10.0.0.2", 8081, 4): 1}


def test_forked_workers_keep_their_own_pids_and_their_parent() -> None:
    found = targets("workers.txt")
    assert sorted(str(t.endpoint) for t in found) == ["127.0.0.1:7100", "127.0.0.1:7101", "127.0.0.1:7102"]
    procs = [t.processes[0] for t in found]
    parents = {p.ppid for p in procs}
    assert len({p.pid for p in procs}) == 3 and len(parents) == 1 and None not in parents
    assert all(p.command[0].endswith("python") and p.command[1] == "-c" for p in procs)  # forked, not exec'd
    folded, _ = fold("workers.txt")
    assert folded.processes_seen == 3 and folded.root_pid in parents


def test_threads_belong_to_their_process() -> None:
    lines = [
        '100<app> 1.000 execve("/bin/app", ["app"], 0x1 /* 1 vars */) = 0 <0.1>',
        "100<app> 1.100 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM, "
        "exit_signal=0} => {parent_tid=[101<app>]}, 88) = 101<app> <0.0001>",
        "101<app> 1.200 socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_TCP) = 3<socket:[55]> <0.0001>",
        '101<app> 1.300 connect(3<socket:[55]>, {sa_family=AF_INET, sin_port=htons(5), '
        'sin_addr=inet_addr("127.0.0.1")}, 16) = -1 ECONNREFUSED (Connection refused) <0.0001>',
    ]
    folded, folder = fold("", lines)
    [t] = group(folded, folder, {}, mine=set())
    assert (t.processes[0].pid, t.processes[0].command, t.attempts[0].how) == (100, ("app",), "connect")


def test_udp_connects_and_a_later_success_on_the_same_socket() -> None:
    lines = [
        '1<a> 1.0 execve("/bin/a", ["a"], 0x1 /* 1 vars */) = 0 <0.1>',
        "1<a> 1.1 socket(AF_INET6, SOCK_DGRAM|SOCK_CLOEXEC, IPPROTO_IP) = 3<socket:[7]> <0.0001>",
        '1<a> 1.2 connect(3<socket:[7]>, {sa_family=AF_INET6, sin6_port=htons(0), sin6_flowinfo=htonl(0), '
        'inet_pton(AF_INET6, "fd00::9", &sin6_addr), sin6_scope_id=0}, 28) = -1 ENETUNREACH (Network is unreachable)',
        "1<a> 1.3 socket(AF_INET, SOCK_STREAM|SOCK_NONBLOCK, IPPROTO_TCP) = 4<socket:[8]> <0.0001>",
        '1<a> 1.4 connect(4<socket:[8]>, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("10.1.1.1")}, 16)'
        ' = -1 EINPROGRESS (Operation now in progress) <0.0001>',
        '1<a> 1.5 sendto(4<socket:[8]>, "GET / HTTP/1.1\\r\\n", 16, MSG_NOSIGNAL, NULL, 0) = 16 <0.0001>',
        "1<a> 1.6 close(4<socket:[8]>) = 0 <0.0001>",
    ]
    folded, _ = fold("", lines)
    assert folded.attempts == []  # a datagram connect is route selection, not a connection
    assert folded.successes == {Endpoint("tcp", "10.1.1.1", 80, 4): 1}


def test_a_connect_still_pending_when_the_program_exits() -> None:
    lines = [
        '1<a> 1.0 execve("/bin/a", ["a"], 0x1 /* 1 vars */) = 0 <0.1>',
        "1<a> 1.1 socket(AF_INET, SOCK_STREAM|SOCK_NONBLOCK, IPPROTO_TCP) = 4<socket:[8]> <0.0001>",
        '1<a> 1.2 connect(4<socket:[8]>, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("10.1.1.1")}, 16)'
        ' = -1 EINPROGRESS (Operation now in progress) <0.0001>',
        "1<a> 6.2 +++ killed by SIGINT +++",
    ]
    folded, folder = fold("", lines)
    [t] = group(folded, folder, {}, mine=set())
    assert (t.errno, t.attempts[0].how, round(t.attempts[0].waited, 3)) == (None, "exit", 5.0)
    assert folded.exit_signal == "SIGINT"


def test_dns_answers_recorded_by_curl() -> None:
    # the A answer for db.lab that curl read (tests/data/strace/curl_drop.txt)
    wire = bytes.fromhex("710385800001000100000000026462036c61620000010001c00c000100010000000000040a000002")
    assert parse_dns_answer(wire) == ("db.lab", ["10.0.0.2"], "NOERROR")
    assert parse_dns_answer(wire[:24]) == ("db.lab", [], "NOERROR")  # cut short: the question survives
    query = bytes.fromhex("710301000001000000000000026462036c61620000010001")
    assert parse_dns_answer(query) is None  # a question, not an answer
    assert parse_dns_answer(b"\x00\x01") is None


def test_hosts_file_names() -> None:
    names = hosts_names("# c\n127.0.0.1\tlocalhost   app\n::ffff:10.0.0.9 nine\nbogus line\n127.0.0.1 again\n")
    assert names == {"127.0.0.1": ["localhost", "app", "again"], "10.0.0.9": ["nine"]}


def test_a_name_that_never_resolved_and_one_that_did() -> None:
    from portdoctor.runtrace.analyse import group_lookups

    folded, folder = fold("curl_nxdomain.txt")
    [x] = group_lookups(folded, folder)
    assert (x.name, x.rcode, x.count) == ("nosuch.lab", "NXDOMAIN", 2)  # the A and the AAAA question
    assert x.processes[0].command == ("curl", "-sS", "http://nosuch.lab:8080/")
    assert folded.attempts == []
    # db.lab: its AAAA question got NXDOMAIN, but the A answer gave an address, so it resolved
    folded, folder = fold("curl_drop.txt")
    assert [a[2:] for a in folder.answers] == [("db.lab", "NOERROR", 1), ("db.lab", "NXDOMAIN", 0)]
    assert group_lookups(folded, folder) == []


def test_an_interrupted_blocking_connect_waits_for_its_outcome() -> None:
    lines = [
        '1<a> 1.0 execve("/bin/a", ["a"], 0x1 /* 1 vars */) = 0 <0.1>',
        "1<a> 1.1 socket(AF_INET, SOCK_STREAM, IPPROTO_TCP) = 4<socket:[8]> <0.0001>",
        '1<a> 1.2 connect(4<socket:[8]>, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("10.1.1.1")}, 16)'
        " = ? ERESTARTSYS (To be restarted if SA_RESTART is set) <2.0>",
        "1<a> 3.3 close(4<socket:[8]>) = 0 <0.0001>",
    ]
    folded, folder = fold("", lines)
    [t] = group(folded, folder, {}, mine=set())
    assert (t.errno, t.attempts[0].how, round(t.attempts[0].waited, 3)) == (None, "closed", 2.1)
