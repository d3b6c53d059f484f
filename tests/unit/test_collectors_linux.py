"""linux.py: sock_diag decoding on a recorded dump, the /proc fallback, live loopback checks."""

from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path

import pytest

from portdoctor.collectors import Request, collect, linux
from portdoctor.host import LocalHost
from portdoctor.snapshot import Snapshot

DATA = Path(__file__).resolve().parents[1] / "data" / "proc"
TREE = str(DATA / "lab1")
EXPECTED = json.loads((DATA / "lab1.expected.json").read_text())

from test_collectors_procfs import SS_E, SS_P  # noqa: E402  (same recorded namespace)

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_NETLINK"), reason="Linux only")


def recorded_dump() -> list[linux.RawListener]:
    out: list[linux.RawListener] = []
    for line in (DATA / "lab1.sock_diag.hex").read_text().split():
        linux.parse_sock_diag(bytes.fromhex(line), out)
    return out


def test_sock_diag_dump_decodes_to_what_ss_shows() -> None:
    got = {x.port: x for x in recorded_dump()}
    assert set(got) == set(SS_E)
    for port, row in SS_E.items():
        x = got[port]
        assert (x.address, x.queue, x.backlog, x.inode) == (row["address"], row["queue"], row["backlog"], row["inode"])
        assert x.v6only == row.get("v6only")  # ss prints v6only only for IPv6 sockets
        assert x.family == (6 if ":" in x.address else 4)


def test_sock_diag_v6only_kinds() -> None:
    got = {x.port: x for x in recorded_dump()}
    assert got[80].address == "::" and got[80].v6only is False  # dual-stack wildcard
    assert got[443].v6only is True  # IPV6_V6ONLY set
    assert got[6379].v6only is True  # the kernel sets it when binding ::1
    assert got[9000].address == "::ffff:127.0.0.1" and got[9000].v6only is False
    assert got[8080].v6only is None


def test_sock_diag_error_reply_raises() -> None:
    msg = struct.pack("=IHHII", 36, linux.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -2) + bytes(16)
    with pytest.raises(linux.NetlinkFailure) as info:
        linux.parse_sock_diag(msg, [])
    assert info.value.errno == 2


def test_sock_diag_done_ends_the_dump() -> None:
    done = struct.pack("=IHHII", 20, linux.NLMSG_DONE, 2, 1, 0) + bytes(4)
    assert linux.parse_sock_diag(done, []) is True


def test_recorded_tree_listeners_and_owners() -> None:
    facts = linux.collect_listeners(Request(port=8080, proc_root=TREE))
    got = {x.port: x for x in facts.fields["listeners"]}
    assert {p: list(x.pids) for p, x in got.items()} == {p: r["pids"] for p, r in SS_P.items()}
    assert facts.limitations == []


def test_live_listeners_both_families_with_owner() -> None:
    four = socket.socket()
    four.bind(("127.0.0.1", 0))
    four.listen(7)
    six = socket.socket(socket.AF_INET6)
    six.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    six.bind(("::1", 0))
    six.listen(9)
    try:
        req = Request(port=four.getsockname()[1])
        facts = linux.collect_listeners(req)
        got = {(x.address, x.port): x for x in facts.fields["listeners"]}
        a = got[("127.0.0.1", four.getsockname()[1])]
        b = got[("::1", six.getsockname()[1])]
        assert (a.family, a.backlog, a.v6only, a.pids) == (4, 7, None, (os.getpid(),))
        assert (b.family, b.backlog, b.v6only, b.pids) == (6, 9, True, (os.getpid(),))
        assert a.inode == os.fstat(four.fileno()).st_ino
        # same request: computed once, shared with processes.py
        assert linux.listener_facts(req) is linux.listener_facts(req)
    finally:
        four.close()
        six.close()


def test_netlink_failure_falls_back_to_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(family: int, host: object = None) -> list:
        raise linux.NetlinkFailure(93, "Protocol not supported")

    monkeypatch.setattr(linux, "sock_diag_listeners", broken)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(3)
    try:
        raw, lims, source = linux.read_listeners(LocalHost())
        assert source == "procfs"
        assert any(x.port == s.getsockname()[1] and x.backlog == 0 for x in raw)
        assert len(lims) == 1 and "sock_diag" in lims[0].what and lims[0].how
    finally:
        s.close()


def test_route_lookups_and_addresses() -> None:
    facts = linux.collect_routes(Request(port=1, addresses=("127.0.0.1", "::1"), from_addr="127.0.0.2"))
    routes = {r.destination: r for r in facts.fields["routes"]}
    assert routes["127.0.0.1"].kind == "local" and routes["127.0.0.1"].ifname == "lo"
    assert routes["::1"].kind == "local"
    assert routes["127.0.0.2"].kind == "local" and routes["127.0.0.2"].source == "127.0.0.1"
    assert linux.collect_routes(Request(port=1)).fields["routes"] == ()
    assert linux.route_lookup("not-an-address").kind == "none"
    addrs = linux.collect_addresses(Request(port=1)).fields["addresses"]
    lo = [a for a in addrs if a.address == "127.0.0.1"]
    assert lo and lo[0].ifname == "lo" and lo[0].prefixlen == 8 and lo[0].family == 4


MINE = [
    "portdoctor.collectors.linux:collect_listeners",
    "portdoctor.collectors.processes:collect_processes",
    "portdoctor.collectors.linux:collect_addresses",
    "portdoctor.collectors.linux:collect_routes",
    "portdoctor.collectors.procfs:collect_sysctls",
    "portdoctor.collectors.procfs:collect_counters",
    "portdoctor.collectors.configs:collect_configs",
]


def test_whole_snapshot_round_trips_through_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from portdoctor import collectors

    assert set(MINE) <= set(collectors.COLLECTORS["linux"])
    monkeypatch.setitem(collectors.COLLECTORS, "linux", MINE)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        port = s.getsockname()[1]
        snap = collect(Request(port=port, addresses=("127.0.0.1",)))
        assert any(x.port == port for x in snap.listeners)
        assert os.getpid() in snap.processes
        assert snap.sysctls and snap.counters_after and snap.routes and snap.addresses
        assert Snapshot.from_json(json.loads(json.dumps(snap.to_json()))) == snap
    finally:
        s.close()


def test_listener_without_visible_owner(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    tcp = (DATA / "lab1" / "net" / "tcp").read_text().splitlines()
    (tmp_path / "net" / "tcp").write_text("\n".join(tcp[:2]) + "\n")  # header + 0.0.0.0:8080
    root = LocalHost(proc_root=str(tmp_path), is_root=True)
    lims = linux.collect_listeners(Request(port=8080, system=root)).limitations
    assert [x.what for x in lims] == ["1 listening socket has no owner among the processes visible here: "
                                      "the kernel's own, or held in another PID namespace"]
    user = LocalHost(proc_root=str(tmp_path), is_root=False)
    lims = linux.collect_listeners(Request(port=8080, system=user)).limitations
    assert [(x.what, x.how) for x in lims] == [("owners of 1 listening sockets are unknown",
                                                "run as root (sudo) to see which process holds each port")]


def test_addresses_fall_back_to_psutil(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(host: object = None) -> list:
        raise linux.NetlinkFailure(1, "Operation not permitted")

    monkeypatch.setattr(linux, "read_addresses", broken)
    facts = linux.collect_addresses(Request(port=1))
    assert any(a.address == "127.0.0.1" for a in facts.fields["addresses"])
    assert len(facts.limitations) == 1 and "psutil" in facts.limitations[0].what
