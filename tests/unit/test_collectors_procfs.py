"""procfs readers on a recorded proc tree (tests/data/proc/lab1, made by capture.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from portdoctor.collectors import Request, procfs
from portdoctor.host import LocalHost

DATA = Path(__file__).resolve().parents[1] / "data" / "proc"
TREE = str(DATA / "lab1")
EXPECTED = json.loads((DATA / "lab1.expected.json").read_text())


def ss_rows(lines: list[str]) -> dict[int, dict]:
    """`ss -ltnHe` / `ss -ltnpH` lines -> inode-less rows keyed by port (one listener per port here)."""
    rows: dict[int, dict] = {}
    for line in lines:
        parts = line.split()
        local = parts[3]
        addr, _, port = local.rpartition(":")
        addr = addr.strip("[]")
        row = {"address": "::" if addr == "*" else addr, "port": int(port),
               "queue": int(parts[1]), "backlog": int(parts[2])}
        for p in parts[5:]:
            if p.startswith("ino:"):
                row["inode"] = int(p[4:])
            elif p.startswith("v6only:"):
                row["v6only"] = p.endswith("1")
            elif p.startswith("users:"):
                row["pids"] = sorted(int(x.split("=")[1]) for x in p.split(",") if x.startswith("pid="))
        rows[int(port)] = row
    return rows


SS_E = ss_rows(EXPECTED["ss_ltnHe"])
SS_P = ss_rows(EXPECTED["ss_ltnpH"])


def test_proc_net_tcp_lists_what_ss_lists() -> None:
    listeners, lims = procfs.read_proc_net_tcp(LocalHost(proc_root=TREE))
    assert lims == []
    got = {x.port: x for x in listeners}
    assert set(got) == set(SS_E)
    for port, row in SS_E.items():
        x = got[port]
        assert (x.address, x.queue, x.inode) == (row["address"], row["queue"], row["inode"])
        assert x.family == (6 if ":" in row["address"] else 4)
        assert x.v6only is None and x.backlog == 0  # not in /proc/net/tcp


def test_proc_net_tcp_decodes_mapped_and_specific_addresses() -> None:
    text = (DATA / "lab1" / "net" / "tcp6").read_text()
    addrs = {x.address for x in procfs.parse_proc_net_tcp(text)}
    assert {"::1", "::ffff:127.0.0.1", "::"} <= addrs
    text4 = (DATA / "lab1" / "net" / "tcp").read_text()
    four = {(x.address, x.port): x for x in procfs.parse_proc_net_tcp(text4)}
    assert four[("10.0.0.2", 3000)].queue == 3  # three connections wait in the full queue
    assert all(x.family == 4 for x in four.values())


def test_proc_net_tcp_missing_file_is_a_limitation(tmp_path: Path) -> None:
    listeners, lims = procfs.read_proc_net_tcp(LocalHost(proc_root=str(tmp_path)))
    assert listeners == [] and len(lims) == 1 and "net/tcp" in lims[0].what


def test_owner_scan_matches_ss_p() -> None:
    inodes = [row["inode"] for row in SS_E.values()]
    scan = procfs.scan_socket_owners(inodes, LocalHost(proc_root=TREE))
    by_inode = {row["inode"]: port for port, row in SS_E.items()}
    got = {by_inode[i]: sorted(p) for i, p in scan.owners.items()}
    assert got == {port: row["pids"] for port, row in SS_P.items()}
    assert scan.unreadable == []
    assert all(n > 0 for n in scan.fd_counts.values())


def _fake_proc(root: Path, pid: int, ppid: int, sockets: list[int]) -> None:
    d = root / str(pid)
    (d / "fd").mkdir(parents=True)
    (d / "stat").write_text(f"{pid} (x y) S {ppid} {pid} {pid} 0 -1\n")
    os.symlink("/dev/null", d / "fd" / "0")
    for n, inode in enumerate(sockets, 3):
        os.symlink(f"socket:[{inode}]", d / "fd" / str(n))


def test_owner_scan_stops_early_but_follows_forked_children(tmp_path: Path) -> None:
    _fake_proc(tmp_path, 10, 1, [100, 101])  # the server
    _fake_proc(tmp_path, 11, 10, [100])  # its forked worker shares the listener
    _fake_proc(tmp_path, 12, 1, [100])  # unrelated (passed by SCM_RIGHTS): not read
    _fake_proc(tmp_path, 13, 11, [101])  # grandchild
    scan = procfs.scan_socket_owners([100, 101], LocalHost(proc_root=str(tmp_path)))
    assert scan.owners == {100: [10, 11], 101: [10, 13]}
    assert 12 not in scan.fd_counts and not scan.complete
    full = procfs.scan_socket_owners([100, 999], LocalHost(proc_root=str(tmp_path)))  # 999 never found: read all
    assert full.complete and full.owners == {100: [10, 11, 12]}


def test_sysctls_from_tree() -> None:
    values = procfs.read_sysctls(LocalHost(proc_root=TREE))
    assert values["net.core.somaxconn"].isdigit()
    assert len(values["net.ipv4.ip_local_port_range"].split()) == 2
    assert "fs.file-max" not in values or values["fs.file-max"].isdigit()
    facts = procfs.collect_sysctls(Request(port=1, proc_root=TREE))
    assert facts.fields["sysctls"] == values and facts.limitations == []


def test_sysctls_none_readable_is_a_limitation(tmp_path: Path) -> None:
    facts = procfs.collect_sysctls(Request(port=1, proc_root=str(tmp_path)))
    assert facts.fields["sysctls"] == {} and facts.limitations


def test_counters_parse_netstat_and_snmp() -> None:
    counters = procfs.read_counters(LocalHost(proc_root=TREE))
    assert counters["TcpExt.ListenOverflows"] > 0  # the full queue of slowapp overflowed
    assert counters["TcpExt.ListenDrops"] >= counters["TcpExt.ListenOverflows"]
    assert "TcpExt.TCPReqQFullDrop" in counters
    assert counters["Tcp.CurrEstab"] >= 2 and "Tcp.ActiveOpens" in counters
    assert not any(k.startswith(("IpExt.", "Ip.", "Udp")) for k in counters)


def test_parse_snmp_table_pairs_headers_with_values() -> None:
    text = "TcpExt: A B C\nTcpExt: 1 2 3\nIpExt: X\nIpExt: 9\n"
    assert procfs.parse_snmp_table(text) == {"TcpExt.A": 1, "TcpExt.B": 2, "TcpExt.C": 3, "IpExt.X": 9}
    assert procfs.parse_snmp_table(text, ["IpExt"]) == {"IpExt.X": 9}


def test_collect_counters_pairs_before_and_after() -> None:
    req0 = Request(port=1, proc_root=TREE)
    before = procfs.sample_counters(req0)
    req = Request(port=1, proc_root=TREE, before={"portdoctor.collectors.procfs:sample_counters": before})
    facts = procfs.collect_counters(req)
    assert facts.fields["counters_before"] == before == facts.fields["counters_after"]
    assert procfs.collect_counters(req0).fields["counters_before"] == {}


def test_limits_and_fd_soft_limit() -> None:
    pid = EXPECTED["pids"]["webapp"]
    text = (DATA / "lab1" / str(pid) / "limits").read_text()
    limits = procfs.parse_limits(text)
    assert limits["Max open files"][0].isdigit()
    assert limits["Max cpu time"] == ("unlimited", "unlimited")
    assert procfs.read_fd_soft_limit(LocalHost(proc_root=TREE), pid) == int(limits["Max open files"][0])


def test_environ_cmdline_comm_uid_cwd() -> None:
    pid = EXPECTED["pids"]["webapp"]
    env = procfs.read_environ(LocalHost(proc_root=TREE), pid)
    assert env is not None and env["PORT"] == "8080" and env["BIND_ADDR"] == "0.0.0.0"
    argv = procfs.read_cmdline(LocalHost(proc_root=TREE), pid)
    assert argv[0] == "webapp" and argv[1] == "-c"
    assert procfs.read_comm(LocalHost(proc_root=TREE), pid)
    assert procfs.read_uid(LocalHost(proc_root=TREE), pid) == 0
    assert procfs.read_cwd(LocalHost(proc_root=TREE), pid)
    assert procfs.count_fds(LocalHost(proc_root=TREE), pid) >= 4
    assert procfs.read_ppid(LocalHost(proc_root=TREE), pid) is not None


def test_cmdline_rewritten_as_one_string(tmp_path: Path) -> None:
    (tmp_path / "5").mkdir()
    (tmp_path / "5" / "cmdline").write_bytes(b"nginx: master process /usr/sbin/nginx -g daemon off;\0")
    assert procfs.read_cmdline(LocalHost(proc_root=str(tmp_path)), 5)[:3] == ("nginx:", "master", "process")
    assert procfs.read_cmdline(LocalHost(proc_root=str(tmp_path)), 6) == ()


def test_cgroup_of_recorded_process_has_no_unit() -> None:
    pid = EXPECTED["pids"]["webapp"]
    assert procfs.read_cgroup(LocalHost(proc_root=TREE), pid) == (None, None)


@pytest.mark.parametrize("text, expected", [
    ("0::/system.slice/redis-server.service\n", ("redis-server.service", None)),
    ("0::/system.slice/postgresql@15-main.service\n", ("postgresql@15-main.service", None)),
    ("0::/user.slice/user-1000.slice/user@1000.service/app.slice/dev.service\n", ("dev.service", None)),
    ("0::/user.slice/user-1000.slice/session-2.scope\n", (None, None)),
    ("0::/system.slice/docker-" + "a" * 64 + ".scope\n", (None, "a" * 64)),
    ("0::/user.slice/user-1000.slice/user@1000.service/init.scope\n", (None, None)),
    ("0::/machine.slice/libpod-" + "b" * 64 + ".scope/container\n", (None, "b" * 64)),
    ("0::/machine.slice/libpod-conmon-" + "b" * 64 + ".scope\n", (None, None)),
    ("12:memory:/docker/" + "c" * 64 + "\n1:name=systemd:/docker/" + "c" * 64 + "\n", (None, "c" * 64)),
    ("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-"
     + "d" * 64 + ".scope\n", (None, "d" * 64)),
    ("4:memory:/process_api/2a8282f944eb72269da06962327e1ab2\n0::/\n", (None, None)),
])
def test_parse_cgroup(text: str, expected: tuple[str | None, str | None]) -> None:
    assert procfs.parse_cgroup(text) == expected


def test_cgroup_of_a_real_podman_container() -> None:
    """Recorded from `podman --runtime runc run` with cgroup_manager = "cgroupfs" (cgroup v1)."""
    text = (DATA / "cgroup" / "podman-runc-cgroupfs.txt").read_text()
    assert procfs.parse_cgroup(text) == (None, "2c5b47fc3e1de1b692b3da188d1e5bfb99b927a132b0eef4f223f2136666861d")
    host = (DATA / "cgroup" / "host-v1-hybrid.txt").read_text()
    assert procfs.parse_cgroup(host) == (None, None)
