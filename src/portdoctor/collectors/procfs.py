"""Readers of /proc: socket tables, socket owners, sysctls, kernel counters, process details.

Every reader takes the Host (portdoctor.host) and reads under its proc root (`/proc`, a
recorded tree under tests/data/proc/, or a recorded host), so the parsers run on recorded files
as well as on the live host. Readers return plain data and never raise for a missing or
unreadable file of one process (processes come and go while we read).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from portdoctor.collectors import Facts, Request
from portdoctor.host import Host
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


def read_proc_net_tcp(host: Host) -> tuple[list[Listener], list[Limitation]]:
    """Listeners from <proc_root>/net/tcp and tcp6 (the fallback when netlink fails)."""
    out: list[Listener] = []
    lims: list[Limitation] = []
    for name in ("tcp", "tcp6"):
        path = f"{host.proc_root}/net/{name}"
        try:
            out.extend(parse_proc_net_tcp(host.read_text(path, 1 << 30)))
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


def pids(host: Host) -> list[int]:
    """Process ids under the host's proc root, ascending."""
    try:
        names = host.listdir(host.proc_root)
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def _read(host: Host, path: str) -> bytes | None:
    try:
        return host.read_bytes(path)
    except OSError:
        return None


def read_file(host: Host, path: str) -> bytes | None:
    """A file's bytes through the host, or None when it cannot be read."""
    return _read(host, path)


def ns_id(host: Host, pid: int | str, kind: str = "net") -> int | None:
    """The inode of a process's namespace of `kind` (net, mnt, ...), from its ns link
    ("net:[4026531840]"): equal numbers, same namespace. None if unreadable."""
    try:
        link = host.readlink(f"{host.proc_root}/{pid}/ns/{kind}")
    except OSError:
        return None
    _, _, rest = link.partition("[")
    number = rest.rstrip("]")
    return int(number) if number.isdigit() else None


def netns_inode(host: Host, pid: int | str) -> int | None:
    """Inode of a process's network namespace (equal inodes: same namespace), None if unreadable."""
    return ns_id(host, pid, "net")


def read_state(host: Host, pid: int) -> str | None:
    """The state letter of /proc/PID/stat (R running, S sleeping, D disk, T stopped, t traced, Z zombie)."""
    data = _read(host, f"{host.proc_root}/{pid}/stat")
    if not data:
        return None
    rest = data[data.rfind(b")") + 2:].split()
    return rest[0].decode() if rest else None


def read_ppid(host: Host, pid: int) -> int | None:
    """Parent pid from /proc/PID/stat (the field after the parenthesised comm)."""
    data = _read(host, f"{host.proc_root}/{pid}/stat")
    if not data:
        return None
    rest = data[data.rfind(b")") + 2:].split()
    try:
        return int(rest[1])
    except (IndexError, ValueError):
        return None


def _scan_fds(host: Host, pid: int, wanted: set[int], scan: OwnerScan) -> list[int]:
    """Socket inodes of `wanted` held by pid; records its fd count or that it was denied."""
    found: list[int] = []
    try:
        links = host.read_links(f"{host.proc_root}/{pid}/fd")
    except PermissionError:
        scan.unreadable.append(pid)
        return found
    except OSError:
        return found  # gone, or a recorded tree without fd/
    scan.fd_counts[pid] = len(links)
    for link in links.values():
        if link.startswith("socket:["):
            inode = int(link[8:-1])
            if inode in wanted:
                found.append(inode)
    return found


def scan_socket_owners(inodes: Iterable[int], host: Host, all_holders: bool = True,
                       pids_to_scan: Iterable[int] | None = None) -> OwnerScan:
    """Map socket inodes to the pids holding them, reading /proc/PID/fd only as far as needed.

    Processes are read in pid order until every inode has an owner. A socket is shared by
    fork, so after that only children of a holder are read (one small /proc/PID/stat each),
    unless `all_holders` is False. `pids_to_scan` limits the scan to those processes.
    """
    wanted = {i for i in inodes if i}
    scan = OwnerScan()
    missing = set(wanted)
    holders: set[int] = set()
    all_pids = pids(host) if pids_to_scan is None else sorted(pids_to_scan)
    rest: list[int] = []
    for n, pid in enumerate(all_pids):
        if not missing:
            rest = all_pids[n:]
            break
        for inode in _scan_fds(host, pid, wanted, scan):
            scan.owners.setdefault(inode, []).append(pid)
            missing.discard(inode)
            holders.add(pid)
    else:
        scan.complete = True
        return scan
    if all_holders and holders:
        for pid in rest:
            if read_ppid(host, pid) in holders:
                found = _scan_fds(host, pid, wanted, scan)
                for inode in found:
                    scan.owners.setdefault(inode, []).append(pid)
                if found:
                    holders.add(pid)
    return scan


# --------------------------------------------------------------------------- sysctls, counters


def read_sysctls(host: Host, names: Iterable[str] = SYSCTLS) -> dict[str, str]:
    """Values of the named sysctls as strings (whitespace collapsed); missing ones skipped."""
    out: dict[str, str] = {}
    for name in names:
        path = f"{host.proc_root}/sys/" + "/".join(name.split("."))
        try:
            out[name] = " ".join(host.read_text(path, 4096).split())
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


def read_counters(host: Host) -> dict[str, int]:
    """TcpExt counters (/proc/net/netstat) and Tcp counters (/proc/net/snmp), flat."""
    out: dict[str, int] = {}
    for name, sections in (("netstat", ("TcpExt",)), ("snmp", ("Tcp",))):
        try:
            out.update(parse_snmp_table(host.read_text(f"{host.proc_root}/net/{name}"), sections))
        except OSError:
            continue
    return out


# --------------------------------------------------------------------------- per process


def read_cmdline(host: Host, pid: int) -> tuple[str, ...]:
    """argv of pid (empty for kernel threads, zombies and vanished processes)."""
    data = _read(host, f"{host.proc_root}/{pid}/cmdline")
    if not data:
        return ()
    parts = data.rstrip(b"\0").split(b"\0")
    if len(parts) == 1 and b" " in parts[0]:
        # a process that rewrote its argv into one string (nginx: "nginx: master process ...")
        return tuple(p.decode(errors="replace") for p in parts[0].split())
    return tuple(p.decode(errors="replace") for p in parts)


def read_comm(host: Host, pid: int) -> str | None:
    """The kernel's 15-character process name."""
    data = _read(host, f"{host.proc_root}/{pid}/comm")
    return data.decode(errors="replace").rstrip("\n") if data is not None else None


def read_uid(host: Host, pid: int) -> int | None:
    """Real uid from /proc/PID/status."""
    data = _read(host, f"{host.proc_root}/{pid}/status")
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


def read_environ(host: Host, pid: int) -> dict[str, str] | None:
    """Environment of pid, or None when it cannot be read (other user's process, no root)."""
    try:
        return parse_environ(host.read_bytes(f"{host.proc_root}/{pid}/environ"))
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


def read_fd_soft_limit(host: Host, pid: int) -> int | None:
    """Soft RLIMIT_NOFILE of pid (None when unreadable or unlimited)."""
    data = _read(host, f"{host.proc_root}/{pid}/limits")
    if not data:
        return None
    soft = parse_limits(data.decode(errors="replace")).get("Max open files", ("", ""))[0]
    return int(soft) if soft.isdigit() else None


def count_fds(host: Host, pid: int) -> int | None:
    """Number of open file descriptors of pid (None when the fd table is not readable)."""
    try:
        return len(host.listdir(f"{host.proc_root}/{pid}/fd"))
    except OSError:
        return None


def read_cwd(host: Host, pid: int) -> str | None:
    """Working directory of pid (None without permission)."""
    try:
        return host.readlink(f"{host.proc_root}/{pid}/cwd")
    except OSError:
        return None


def read_exe(host: Host, pid: int) -> str | None:
    """The program pid runs, as its mount namespace names it (None without permission)."""
    try:
        return host.readlink(f"{host.proc_root}/{pid}/exe").removesuffix(" (deleted)")
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


def read_cgroup(host: Host, pid: int) -> tuple[str | None, str | None]:
    """(systemd unit, container id) of pid."""
    data = _read(host, f"{host.proc_root}/{pid}/cgroup")
    return parse_cgroup(data.decode(errors="replace")) if data else (None, None)


def iter_pids_with_cmdline(host: Host) -> Iterator[tuple[int, tuple[str, ...]]]:
    """(pid, argv) of every user-space process."""
    for pid in pids(host):
        argv = read_cmdline(host, pid)
        if argv:
            yield pid, argv


# --------------------------------------------------------------------------- collectors


def collect_sysctls(req: Request) -> Facts:
    """The sysctls of SYSCTLS that exist here (conntrack ones only when the module is loaded)."""
    values = read_sysctls(req.system)
    lims: list[Limitation] = []
    if not values:
        lims.append(Limitation(f"no sysctl under {req.proc_root}/sys could be read",
                               "mount /proc with /proc/sys readable"))
    return Facts(fields={"sysctls": values}, limitations=lims)


def sample_counters(req: Request) -> dict[str, int]:
    """TCP counters now (called just before the probe)."""
    return read_counters(req.system)


def collect_counters(req: Request) -> Facts:
    """TCP counters sampled before the probe and now, so a rising counter is evidence."""
    before = req.before.get("portdoctor.collectors.procfs:sample_counters", {})
    after = read_counters(req.system)
    lims = []
    if not after:
        lims.append(Limitation(f"{req.proc_root}/net/netstat and snmp could not be read: "
                               "listen queue overflow counters are unknown", "mount /proc"))
    return Facts(fields={"counters_before": before, "counters_after": after}, limitations=lims)


# --------------------------------------------------------------------------- unix sockets

_ACCEPTCON = 0x10000  # __SO_ACCEPTCON in the Flags column: a listening socket


def parse_proc_net_unix(text: str) -> dict[int, str]:
    """inode -> path of each listening unix socket with a name in /proc/net/unix text.

    Columns (include/net/af_unix.h, net/unix/af_unix.c unix_seq_show): Num RefCount Protocol
    Flags Type St Inode Path; abstract names start with '@'.
    """
    out: dict[int, str] = {}
    for line in text.splitlines()[1:]:
        parts = line.split(None, 7)
        if len(parts) < 8:
            continue
        try:
            flags, inode = int(parts[3], 16), int(parts[6])
        except ValueError:
            continue
        if flags & _ACCEPTCON:
            out[inode] = parts[7].strip()
    return out


def unix_listeners_of(host: Host, pid: int, named: dict[int, str]) -> tuple[str, ...]:
    """Paths of the listening unix sockets (from `named`, see parse_proc_net_unix) pid holds."""
    try:
        links = host.read_links(f"{host.proc_root}/{pid}/fd")
    except OSError:
        return ()
    out = {named[int(link[8:-1])] for link in links.values()
           if link.startswith("socket:[") and link[8:-1].isdigit() and int(link[8:-1]) in named}
    return tuple(sorted(out))


def read_unix_listening(host: Host) -> dict[int, str]:
    """Listening, named unix sockets of this network namespace: inode -> path ({} if unreadable)."""
    raw = _read(host, f"{host.proc_root}/self/net/unix")
    return parse_proc_net_unix(raw.decode(errors="replace")) if raw else {}
