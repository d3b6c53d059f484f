"""Readers of /proc: socket tables, socket owners, sysctls, kernel counters, process details.

Every reader takes the proc root (`/proc`, or a recorded tree under tests/data/proc/), so the
parsers run on recorded files as well as on the live host. Readers return plain data and never
raise for a missing or unreadable file of one process (processes come and go while we read).
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from portdoctor.collectors import Facts, Request
from portdoctor.model import Limitation, Listener

TCP_LISTEN = 0x0A  # include/net/tcp_states.h: TCP_LISTEN = 10

# The sysctls a check may quote, as (dotted name, path below /proc/sys).
SYSCTLS: tuple[str, ...] = (
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_abort_on_overflow",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_nonlocal_bind",
    "net.ipv6.bindv6only",
    "net.netfilter.nf_conntrack_count",
    "net.netfilter.nf_conntrack_max",
    "fs.file-max",
    "fs.nr_open",
)


# --------------------------------------------------------------------------- /proc/net/tcp


def _hex_addr(text: str) -> tuple[str, int]:
    """Decode the kernel's hex address ("0100007F" or 32 hex digits) -> (address, family).

    The kernel prints each 32-bit word of the address in host byte order.
    """
    raw = bytes.fromhex(text)
    words = struct.unpack(f"={len(raw) // 4}I", raw)
    packed = struct.pack(f">{len(words)}I", *words)
    if len(packed) == 4:
        return socket.inet_ntop(socket.AF_INET, packed), 4
    return socket.inet_ntop(socket.AF_INET6, packed), 6


def _swap_words(raw: bytes) -> bytes:
    """Host-order words -> network order (see `_hex_addr`)."""
    words = struct.unpack(f"={len(raw) // 4}I", raw)
    return struct.pack(f">{len(words)}I", *words)


def parse_proc_net_tcp(text: str, problems: list[str] | None = None) -> list[Listener]:
    """LISTEN sockets of a /proc/net/tcp or /proc/net/tcp6 table.

    For a listener the kernel prints the accept queue length as rx_queue; the backlog is not
    in the table (tx_queue is the unacked send bytes), so `backlog` stays 0 and v6only None.
    A LISTEN line that cannot be read is left out, the others kept; it is noted in `problems`
    ("could not read socket line N: ...") when a list is given.
    """
    out: list[Listener] = []
    for n, line in enumerate(text.splitlines()[1:], 2):
        parts = line.split()
        if len(parts) < 10 or parts[3] != "0A":
            continue
        try:
            addr_hex, _, port_hex = parts[1].partition(":")
            address, family = _hex_addr(addr_hex)
            _tx, _, rx = parts[4].partition(":")
            out.append(Listener(address=address, port=int(port_hex, 16), family=family,
                                v6only=None, queue=int(rx, 16), backlog=0, inode=int(parts[9])))
        except (ValueError, struct.error) as exc:
            if problems is not None:
                problems.append(f"could not read socket line {n}: {line.strip()} ({exc})")
    return out


def read_proc_net_tcp(proc_root: str = "/proc") -> tuple[list[Listener], list[Limitation]]:
    """Listeners from <proc_root>/net/tcp and tcp6 (the fallback when netlink fails)."""
    out: list[Listener] = []
    lims: list[Limitation] = []
    for name in ("tcp", "tcp6"):
        path = os.path.join(proc_root, "net", name)
        try:
            with open(path, encoding="ascii") as fh:
                out.extend(parse_proc_net_tcp(fh.read()))
        except FileNotFoundError:
            if name == "tcp6":
                continue  # IPv6 disabled: nothing to list
            lims.append(Limitation(f"{path} is missing: listening sockets are unknown",
                                   "mount /proc (proc filesystem) or run on the host itself"))
        except PermissionError:
            lims.append(Limitation(f"{path} is not readable: listening sockets are unknown",
                                   "run as root (sudo)"))
    return out, lims


# --------------------------------------------------------------------------- socket owners


@dataclass
class OwnerScan:
    """Which pids hold which socket inodes, and what the scan could not read."""

    owners: dict[int, list[int]] = field(default_factory=dict)  # inode -> pids
    fd_counts: dict[int, int] = field(default_factory=dict)  # pid -> open fds (scanned pids)
    unreadable: list[int] = field(default_factory=list)  # pids whose fd table was denied
    complete: bool = False  # True when every process was scanned


def pids(proc_root: str = "/proc") -> list[int]:
    """Process ids under proc_root, ascending."""
    try:
        names = os.listdir(proc_root)
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def netns_inode(proc_root: str, pid: int | str) -> int | None:
    """Inode of a process's network namespace (equal inodes: same namespace), None if unreadable."""
    try:
        return os.stat(f"{proc_root}/{pid}/ns/net").st_ino
    except OSError:
        return None


def read_state(proc_root: str, pid: int) -> str | None:
    """The state letter of /proc/PID/stat (R running, S sleeping, D disk, T stopped, t traced, Z zombie)."""
    data = _read(f"{proc_root}/{pid}/stat")
    if not data:
        return None
    rest = data[data.rfind(b")") + 2:].split()
    return rest[0].decode() if rest else None


def read_ppid(proc_root: str, pid: int) -> int | None:
    """Parent pid from /proc/PID/stat (the field after the parenthesised comm)."""
    data = _read(f"{proc_root}/{pid}/stat")
    if not data:
        return None
    rest = data[data.rfind(b")") + 2:].split()
    try:
        return int(rest[1])
    except (IndexError, ValueError):
        return None


def _scan_fds(proc_root: str, pid: int, wanted: set[int], scan: OwnerScan) -> list[int]:
    """Socket inodes of `wanted` held by pid; records its fd count or that it was denied."""
    found: list[int] = []
    try:
        dfd = os.open(f"{proc_root}/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY)
    except PermissionError:
        scan.unreadable.append(pid)
        return found
    except OSError:
        return found  # gone, or a recorded tree without fd/
    try:
        try:
            names = os.listdir(dfd)
        except PermissionError:
            scan.unreadable.append(pid)
            return found
        scan.fd_counts[pid] = len(names)
        readlink = os.readlink
        for name in names:
            try:
                link = readlink(name, dir_fd=dfd)
            except OSError:
                continue
            if link.startswith("socket:["):
                inode = int(link[8:-1])
                if inode in wanted:
                    found.append(inode)
    finally:
        os.close(dfd)
    return found


def scan_socket_owners(inodes: Iterable[int], proc_root: str = "/proc",
                       all_holders: bool = True) -> OwnerScan:
    """Map socket inodes to the pids holding them, reading /proc/PID/fd only as far as needed.

    Processes are read in pid order until every inode has an owner. A socket is shared by
    fork, so after that only children of a holder are read (one small /proc/PID/stat each),
    unless `all_holders` is False.
    """
    wanted = {i for i in inodes if i}
    scan = OwnerScan()
    missing = set(wanted)
    holders: set[int] = set()
    all_pids = pids(proc_root)
    rest: list[int] = []
    for n, pid in enumerate(all_pids):
        if not missing:
            rest = all_pids[n:]
            break
        for inode in _scan_fds(proc_root, pid, wanted, scan):
            scan.owners.setdefault(inode, []).append(pid)
            missing.discard(inode)
            holders.add(pid)
    else:
        scan.complete = True
        return scan
    if all_holders and holders:
        for pid in rest:
            if read_ppid(proc_root, pid) in holders:
                found = _scan_fds(proc_root, pid, wanted, scan)
                for inode in found:
                    scan.owners.setdefault(inode, []).append(pid)
                if found:
                    holders.add(pid)
    return scan


# --------------------------------------------------------------------------- sysctls, counters


def read_sysctls(proc_root: str = "/proc", names: Iterable[str] = SYSCTLS) -> dict[str, str]:
    """Values of the named sysctls as strings (whitespace collapsed); missing ones skipped."""
    out: dict[str, str] = {}
    for name in names:
        path = os.path.join(proc_root, "sys", *name.split("."))
        try:
            with open(path, encoding="ascii", errors="replace") as fh:
                out[name] = " ".join(fh.read().split())
        except OSError:
            continue
    return out


def parse_snmp_table(text: str, only: Iterable[str] | None = None) -> dict[str, int]:
    """Counters of /proc/net/netstat or /proc/net/snmp as {"TcpExt.ListenOverflows": n, ...}.

    Both files alternate a header line and a value line per section ("TcpExt: A B" / "TcpExt: 1 2").
    """
    keep = set(only) if only is not None else None
    out: dict[str, int] = {}
    lines = text.splitlines()
    for head, values in zip(lines[0::2], lines[1::2], strict=False):
        hname, _, hrest = head.partition(":")
        vname, _, vrest = values.partition(":")
        if hname != vname or (keep is not None and hname not in keep):
            continue
        for key, val in zip(hrest.split(), vrest.split(), strict=False):
            try:
                out[f"{hname}.{key}"] = int(val)
            except ValueError:
                continue
    return out


def read_counters(proc_root: str = "/proc") -> dict[str, int]:
    """TcpExt counters (/proc/net/netstat) and Tcp counters (/proc/net/snmp), flat."""
    out: dict[str, int] = {}
    for name, sections in (("netstat", ("TcpExt",)), ("snmp", ("Tcp",))):
        try:
            with open(os.path.join(proc_root, "net", name), encoding="ascii") as fh:
                out.update(parse_snmp_table(fh.read(), sections))
        except OSError:
            continue
    return out


# --------------------------------------------------------------------------- per process


def read_cmdline(proc_root: str, pid: int) -> tuple[str, ...]:
    """argv of pid (empty for kernel threads, zombies and vanished processes)."""
    data = _read(f"{proc_root}/{pid}/cmdline")
    if not data:
        return ()
    parts = data.rstrip(b"\0").split(b"\0")
    if len(parts) == 1 and b" " in parts[0]:
        # a process that rewrote its argv into one string (nginx: "nginx: master process ...")
        return tuple(p.decode(errors="replace") for p in parts[0].split())
    return tuple(p.decode(errors="replace") for p in parts)


def read_comm(proc_root: str, pid: int) -> str | None:
    """The kernel's 15-character process name."""
    data = _read(f"{proc_root}/{pid}/comm")
    return data.decode(errors="replace").rstrip("\n") if data is not None else None


def read_uid(proc_root: str, pid: int) -> int | None:
    """Real uid from /proc/PID/status."""
    data = _read(f"{proc_root}/{pid}/status")
    if not data:
        return None
    for line in data.splitlines():
        if line.startswith(b"Uid:"):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def parse_environ(data: bytes) -> dict[str, str]:
    """NUL-separated environment block -> dict."""
    out: dict[str, str] = {}
    for item in data.split(b"\0"):
        key, sep, val = item.partition(b"=")
        if sep and key:
            out[key.decode(errors="replace")] = val.decode(errors="replace")
    return out


def read_environ(proc_root: str, pid: int) -> dict[str, str] | None:
    """Environment of pid, or None when it cannot be read (other user's process, no root)."""
    try:
        with open(f"{proc_root}/{pid}/environ", "rb") as fh:
            return parse_environ(fh.read())
    except OSError:
        return None


def parse_limits(text: str) -> dict[str, tuple[str, str]]:
    """/proc/PID/limits -> {"Max open files": ("1024", "1048576"), ...} (soft, hard)."""
    out: dict[str, tuple[str, str]] = {}
    for line in text.splitlines()[1:]:
        # columns are aligned: the name ends where two spaces begin
        name, _, rest = line.partition("  ")
        fields = rest.split()
        if len(fields) >= 2:
            out[name.strip()] = (fields[0], fields[1])
    return out


def read_fd_soft_limit(proc_root: str, pid: int) -> int | None:
    """Soft RLIMIT_NOFILE of pid (None when unreadable or unlimited)."""
    data = _read(f"{proc_root}/{pid}/limits")
    if not data:
        return None
    soft = parse_limits(data.decode(errors="replace")).get("Max open files", ("", ""))[0]
    return int(soft) if soft.isdigit() else None


def count_fds(proc_root: str, pid: int) -> int | None:
    """Number of open file descriptors of pid (None when the fd table is not readable)."""
    try:
        return len(os.listdir(f"{proc_root}/{pid}/fd"))
    except OSError:
        return None


def read_cwd(proc_root: str, pid: int) -> str | None:
    """Working directory of pid (None without permission)."""
    try:
        return os.readlink(f"{proc_root}/{pid}/cwd")
    except OSError:
        return None


def parse_cgroup(text: str) -> tuple[str | None, str | None]:
    """(systemd unit, container id) from the lines of /proc/PID/cgroup.

    Units are the last path element ending in .service; container ids come from
    docker-<id>.scope, libpod-<id>(.scope), crio-<id>, /docker/<id> and kubepods paths.
    """
    unit: str | None = None
    container: str | None = None
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        for part in reversed(path.split("/")):
            if not part:
                continue
            if container is None:
                container = _container_id(part, path)
            if unit is None and part.endswith(".service") and not part.startswith("user@"):
                unit = part
        if unit and container:
            break
    return unit, container


def _container_id(part: str, path: str) -> str | None:
    for prefix in ("docker-", "libpod-", "crio-", "cri-containerd-"):
        if part.startswith(prefix):
            cid = part[len(prefix):].removesuffix(".scope")
            if cid.startswith("conmon-"):
                return None
            return cid if _looks_like_id(cid) else None
    if _looks_like_id(part) and ("/docker/" in path or "/kubepods" in path or "/libpod" in path
                                 or "/machine.slice" in path or "/containerd/" in path):
        return part
    return None


def _looks_like_id(text: str) -> bool:
    return len(text) >= 12 and all(c in "0123456789abcdef" for c in text)


def read_cgroup(proc_root: str, pid: int) -> tuple[str | None, str | None]:
    """(systemd unit, container id) of pid."""
    data = _read(f"{proc_root}/{pid}/cgroup")
    return parse_cgroup(data.decode(errors="replace")) if data else (None, None)


def iter_pids_with_cmdline(proc_root: str = "/proc") -> Iterator[tuple[int, tuple[str, ...]]]:
    """(pid, argv) of every user-space process."""
    for pid in pids(proc_root):
        argv = read_cmdline(proc_root, pid)
        if argv:
            yield pid, argv


# --------------------------------------------------------------------------- collectors


def collect_sysctls(req: Request) -> Facts:
    """The sysctls of SYSCTLS that exist here (conntrack ones only when the module is loaded)."""
    values = read_sysctls(req.proc_root)
    lims: list[Limitation] = []
    if not values:
        lims.append(Limitation(f"no sysctl under {req.proc_root}/sys could be read",
                               "mount /proc with /proc/sys readable"))
    return Facts(fields={"sysctls": values}, limitations=lims)


def sample_counters(req: Request) -> dict[str, int]:
    """TCP counters now (called just before the probe)."""
    return read_counters(req.proc_root)


def collect_counters(req: Request) -> Facts:
    """TCP counters sampled before the probe and now, so a rising counter is evidence."""
    before = req.before.get("portdoctor.collectors.procfs:sample_counters", {})
    after = read_counters(req.proc_root)
    lims = []
    if not after:
        lims.append(Limitation(f"{req.proc_root}/net/netstat and snmp could not be read: "
                               "listen queue overflow counters are unknown", "mount /proc"))
    return Facts(fields={"counters_before": before, "counters_after": after}, limitations=lims)
