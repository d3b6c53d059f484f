"""Other network namespaces of this machine: does something listen on the asked port there?

A server started in a container that publishes no port, or with `ip netns exec` in a namespace
of its own, listens where this namespace's clients never arrive. Per namespace one process's
/proc/PID/net/tcp{,6} is read (the whole namespace's sockets), and only for the asked port.
Only gathering: checks/listener.py decides.
"""

from __future__ import annotations

import os

from portdoctor.addresses import is_loopback
from portdoctor.collectors import Facts, Request, procfs
from portdoctor.collectors.containers import ns_addresses
from portdoctor.host import Host
from portdoctor.hostfacts import ForeignListener, NamespaceFacts

NETNS_DIRS = ("/run/netns", "/var/run/docker/netns")
MAX_NAMESPACES = 256


def namespace_names(host: Host) -> dict[int, str]:
    """inode -> name of the namespaces `ip netns` (and Docker) keep a name for."""
    out: dict[int, str] = {}
    for d in NETNS_DIRS:
        try:
            names = host.listdir(d)
        except OSError:
            continue
        for n in names:
            try:
                out.setdefault(host.stat(os.path.join(d, n)).ino, n)
            except OSError:
                continue
    return out


def _program(host: Host, pid: int) -> str:
    argv = procfs.read_cmdline(host, pid)
    first = os.path.basename(argv[0]) if argv else ""
    return first if first and not first.endswith(":") else (procfs.read_comm(host, pid) or "?")


def collect_namespaces(req: Request) -> Facts:
    """Listeners on req.port in the other network namespaces, with their owners."""
    host = req.system
    if req.port <= 0 or not host.live:
        return Facts()
    own = procfs.netns_inode(host, "self")
    members: dict[int, list[int]] = {}
    for pid in procfs.pids(host):
        ino = procfs.netns_inode(host, pid)
        if ino is not None and ino != own:
            members.setdefault(ino, []).append(pid)
    names = namespace_names(host)
    found: list[ForeignListener] = []
    for ino, pids in list(members.items())[:MAX_NAMESPACES]:
        socks = []
        for table in ("tcp", "tcp6"):
            raw = procfs.read_file(host, f"{host.proc_root}/{pids[0]}/net/{table}")
            if raw:
                socks += [x for x in procfs.parse_proc_net_tcp(raw.decode("ascii", "replace")) if x.port == req.port]
        if not socks:
            continue
        scan = procfs.scan_socket_owners([x.inode for x in socks], host, pids_to_scan=pids)
        addrs = tuple(a for a in ns_addresses(host, pids[0]) if not is_loopback(a))
        for x in socks:
            holders = tuple(scan.owners.get(x.inode, ()))
            container = next((c for c in (procfs.read_cgroup(host, p)[1] for p in holders) if c), None)
            # program names only (argv[0] as the process shows itself): a command line may carry a password
            programs = tuple(_program(host, p) for p in holders[:3])
            found.append(ForeignListener(ino, names.get(ino), x.address, x.port, x.family, holders, programs,
                                         container, addrs))
    return Facts(fields={"namespaces": NamespaceFacts(tuple(found), len(members))})
