"""Listeners and addresses through psutil alone: the collectors for macOS and the BSDs.

psutil reports no accept queue, backlog or IPV6_V6ONLY, and on macOS needs root to see other
users' sockets; what it cannot see becomes a Limitation. Processes are filled for the owners.
psutil reads the machine portdoctor runs on: these collectors are the documented exception to
the Host seam (portdoctor.host), for platforms without /proc; command lines are redacted.
"""

from __future__ import annotations

import socket
from typing import Any

from portdoctor import redact
from portdoctor.collectors import Facts, Request
from portdoctor.model import InterfaceAddress, Limitation, Listener, Process

_HOW_ROOT = "run as root (sudo) to see every process's sockets"


def _process(pid: int) -> Process | None:
    import psutil

    try:
        p = psutil.Process(pid)
        with p.oneshot():
            name = p.name()
            try:
                cmdline = tuple(p.cmdline())
            except psutil.Error:
                cmdline = ()
            try:
                user = p.username()
            except psutil.Error:
                user = None
            try:
                open_fds = p.num_fds() if hasattr(p, "num_fds") else None
            except psutil.Error:
                open_fds = None
            try:
                cwd = p.cwd()
            except psutil.Error:
                cwd = None
        limit = None
        try:
            import resource

            if hasattr(p, "rlimit"):
                limit = p.rlimit(resource.RLIMIT_NOFILE)[0]
        except (psutil.Error, ImportError, OSError):
            limit = None
        return Process(pid=pid, name=name, cmdline=redact.argv(cmdline), user=user, open_fds=open_fds,
                       fd_soft_limit=limit if limit and limit > 0 else None, cwd=cwd)
    except psutil.Error:
        return None


def collect_listeners(req: Request) -> Facts:
    """TCP listening sockets from psutil.net_connections, with their owning processes."""
    import psutil

    lims: list[Limitation] = []
    pairs: list[tuple[Any, int | None]] = []  # (psutil connection tuple, pid)
    try:
        pairs = [(c, c.pid) for c in psutil.net_connections(kind="tcp")]
    except psutil.AccessDenied:
        # macOS: without root only this user's processes can be asked, one by one
        for proc in psutil.process_iter():
            try:
                pairs.extend((c, proc.pid) for c in proc.net_connections(kind="tcp"))
            except psutil.Error:
                continue
        lims.append(Limitation("listening sockets of other users' processes are not seen", _HOW_ROOT))
    by_key: dict[tuple[str, int, int], set[int]] = {}
    for c, pid in pairs:
        if c.status != psutil.CONN_LISTEN or not c.laddr:
            continue
        family = 6 if c.family == socket.AF_INET6 else 4
        key = (c.laddr.ip.split("%")[0], c.laddr.port, family)
        pids = by_key.setdefault(key, set())
        if pid:
            pids.add(pid)
    listeners = tuple(
        Listener(address=addr, port=port, family=fam, v6only=None, pids=tuple(sorted(pids)))
        for (addr, port, fam), pids in sorted(by_key.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0]))
    )
    unknown = sum(1 for x in listeners if not x.pids)
    if unknown:
        lims.append(Limitation(f"owners of {unknown} listening sockets are unknown", _HOW_ROOT))
    lims.append(Limitation("accept-queue length, backlog and IPV6_V6ONLY are not visible on this platform",
                           "run `netstat -Lan` (macOS, BSD) to see listen queues"))
    procs: dict[int, Process] = {}
    for pid in sorted({p for x in listeners for p in x.pids}):
        proc = _process(pid)
        if proc is not None:
            procs[pid] = proc
    return Facts(fields={"listeners": listeners, "processes": procs}, limitations=lims)


def collect_addresses(req: Request) -> Facts:
    """Interface addresses from psutil.net_if_addrs, with up state from net_if_stats."""
    import psutil

    stats = psutil.net_if_stats()
    out: list[InterfaceAddress] = []
    for ifname, addrs in psutil.net_if_addrs().items():
        up = stats[ifname].isup if ifname in stats else True
        for a in addrs:
            if a.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = a.address.split("%")[0]
            out.append(InterfaceAddress(address=address, prefixlen=_prefixlen(a.netmask, a.family),
                                        family=6 if a.family == socket.AF_INET6 else 4,
                                        ifname=ifname, up=up))
    return Facts(fields={"addresses": tuple(out)})


def _prefixlen(netmask: str | None, family: int) -> int:
    """Prefix length of a dotted or colon netmask ("255.255.255.0" -> 24)."""
    full = 32 if family == socket.AF_INET else 128
    if not netmask:
        return full
    try:
        packed = socket.inet_pton(family, netmask.split("/")[0])
    except OSError:
        return full
    return sum(bin(b).count("1") for b in packed)
