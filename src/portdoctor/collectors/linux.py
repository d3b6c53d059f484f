"""Linux socket and network facts: listeners (sock_diag), addresses and route lookups (rtnetlink).

Listeners are read the way `ss -ltn` reads them: one NETLINK_SOCK_DIAG dump per family (IPv4
and IPv6) with the kernel filtering on the LISTEN state. The request and the reply are a few
fixed C structs (linux/inet_diag.h), so they are packed here with `struct`: decoding ten
thousand replies through pyroute2's generic message classes costs far more than the dump
itself, and importing pyroute2 costs ~0.1 s (measured: 124 ms import, 506 ms to decode 10,000
listeners, against 36 ms here). /proc/net/tcp{,6} is the fallback. Addresses and route lookups
(RTM_GETADDR dump, RTM_GETROUTE per address) are packed the same way.
"""

from __future__ import annotations

import errno as errno_mod
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from portdoctor.collectors import Facts, Request
from portdoctor.collectors.procfs import OwnerScan, read_proc_net_tcp, scan_socket_owners
from portdoctor.host import Host, LocalHost
from portdoctor.model import InterfaceAddress, Limitation, Listener, RouteLookup

# linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
TCP_LISTEN = 10
INET_DIAG_SKV6ONLY = 11

_NLMSGHDR = struct.Struct("=IHHII")
_REQ_V2 = struct.Struct("=BBBxI48x")  # inet_diag_req_v2 with an all-zero inet_diag_sockid
_MSG_TAIL = struct.Struct("=IIIII")  # idiag_expires, rqueue, wqueue, uid, inode
_MSG_LEN = 72  # sizeof(struct inet_diag_msg)


class NetlinkFailure(OSError):
    """The kernel refused or broke a sock_diag dump."""


@dataclass(frozen=True, slots=True)
class RawListener:
    """One LISTEN socket as the kernel reported it, before owners are known."""

    address: str
    port: int
    family: int
    v6only: bool | None
    queue: int
    backlog: int
    inode: int
    uid: int | None = None


def parse_sock_diag(data: bytes | bytearray | memoryview, out: list[RawListener]) -> bool:
    """Decode one recv() of a sock_diag dump into `out`; True once NLMSG_DONE is seen.

    Raises NetlinkFailure for an NLMSG_ERROR reply.
    """
    unpack_hdr = _NLMSGHDR.unpack_from
    unpack_tail = _MSG_TAIL.unpack_from
    ntop = socket.inet_ntop
    off, end = 0, len(data)
    while off + 16 <= end:
        length, mtype, _flags, _seq, _pid = unpack_hdr(data, off)
        if length < 16:
            raise NetlinkFailure("malformed netlink message")
        if mtype == NLMSG_DONE:
            return True
        if mtype == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, off + 16)
            if code:
                raise NetlinkFailure(-code, os.strerror(-code))
        elif mtype == SOCK_DIAG_BY_FAMILY and length >= 16 + _MSG_LEN:
            m = off + 16
            family = data[m]
            port = (data[m + 4] << 8) | data[m + 5]
            if family == socket.AF_INET:
                address, fam = ntop(socket.AF_INET, bytes(data[m + 8:m + 12])), 4
            else:
                address, fam = ntop(socket.AF_INET6, bytes(data[m + 8:m + 24])), 6
            _exp, rq, wq, uid, inode = unpack_tail(data, m + 52)
            v6only: bool | None = None
            a, aend = m + _MSG_LEN, off + length
            while a + 4 <= aend:
                alen, atype = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if atype == INET_DIAG_SKV6ONLY and fam == 6:
                    v6only = bool(data[a + 4])
                a += (alen + 3) & ~3
            out.append(RawListener(address, port, fam, v6only, rq, wq, inode, uid))
        off += (length + 3) & ~3
    return False


def sock_diag_chunks(family: int, host: Host | None = None) -> Iterator[memoryview]:
    """The raw replies of a TCP LISTEN dump for one family (each valid until the next one)."""
    with (host or LocalHost()).netlink(NETLINK_SOCK_DIAG) as sk:
        sk.settimeout(5.0)
        sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        body = _REQ_V2.pack(family, socket.IPPROTO_TCP, 0, 1 << TCP_LISTEN)
        hdr = _NLMSGHDR.pack(16 + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
        sk.sendto(hdr + body, (0, 0))
        buf = bytearray(1 << 17)
        view = memoryview(buf)
        while True:
            n = sk.recv_into(buf)
            if n == 0:
                raise NetlinkFailure("netlink socket closed during dump")
            yield view[:n]


def sock_diag_listeners(family: int, host: Host | None = None) -> list[RawListener]:
    """Every TCP LISTEN socket of one address family in this network namespace."""
    out: list[RawListener] = []
    for chunk in sock_diag_chunks(family, host):
        if parse_sock_diag(chunk, out):
            break
    return out


def read_listeners(host: Host) -> tuple[list[RawListener], list[Limitation], str]:
    """(listeners, limitations, source): sock_diag for both families, else /proc/net/tcp{,6}.

    A host without a kernel to ask (a recorded one, a recorded /proc tree) goes straight to
    the tables, without a limitation: that is all it has."""
    lims: list[Limitation] = []
    if host.live:
        try:
            raw = sock_diag_listeners(socket.AF_INET, host)
            try:
                raw += sock_diag_listeners(socket.AF_INET6, host)
            except NetlinkFailure as exc:
                if exc.errno not in (errno_mod.ENOENT, errno_mod.EAFNOSUPPORT):
                    raise
            return raw, lims, "sock_diag"
        except (OSError, NetlinkFailure) as exc:
            lims.append(Limitation(
                f"netlink sock_diag failed ({exc}); listeners read from /proc/net/tcp, "
                "without accept-queue capacity (backlog) or IPV6_V6ONLY",
                "load the inet_diag and tcp_diag kernel modules (modprobe tcp_diag)"))
    plain, more = read_proc_net_tcp(host)
    lims.extend(more)
    raw = [RawListener(x.address, x.port, x.family, x.v6only, x.queue, x.backlog, x.inode)
           for x in plain]
    return raw, lims, "procfs"


# --------------------------------------------------------------------------- listeners + owners


@dataclass
class ListenerFacts:
    """Listeners with their owners, computed once per collect() and shared with processes.py."""

    listeners: list[Listener] = field(default_factory=list)
    scan: OwnerScan = field(default_factory=OwnerScan)
    limitations: list[Limitation] = field(default_factory=list)
    source: str = ""


def listener_facts(req: Request) -> ListenerFacts:
    """Listeners and socket owners for this request (read once per collect(): `req.derive`)."""
    return req.derive("linux.listener_facts", lambda: read_listener_facts(req.system))


def read_listener_facts(host: Host) -> ListenerFacts:
    """Listeners and the pids holding them, read now."""
    raw, lims, source = read_listeners(host)
    scan = scan_socket_owners((r.inode for r in raw), host)
    listeners = [
        Listener(address=r.address, port=r.port, family=r.family, v6only=r.v6only, queue=r.queue,
                 backlog=r.backlog, inode=r.inode, pids=tuple(scan.owners.get(r.inode, ())))
        for r in raw
    ]
    listeners.sort(key=lambda x: (x.port, x.family, x.address, x.inode))
    unknown = sum(1 for x in listeners if not x.pids and x.inode)
    if unknown and (scan.unreadable or not host.is_root):
        lims.append(Limitation(f"owners of {unknown} listening sockets are unknown",
                               "run as root (sudo) to see which process holds each port"))
    elif unknown:
        what = "1 listening socket has" if unknown == 1 else f"{unknown} listening sockets have"
        lims.append(Limitation(
            f"{what} no owner among the processes visible here: the kernel's own, or held in "
            "another PID namespace", "run `ss -ltnp` inside the container or PID namespace that owns them"))
    return ListenerFacts(listeners, scan, lims, source)


def collect_listeners(req: Request) -> Facts:
    """Every TCP listening socket (IPv4 and IPv6) with queue, backlog, V6ONLY and owner pids."""
    facts = listener_facts(req)
    return Facts(fields={"listeners": tuple(facts.listeners)}, limitations=list(facts.limitations))


# --------------------------------------------------------------------------- rtnetlink
# linux/rtnetlink.h: a dump of links and addresses, and `ip route get` for a few addresses.
# These are small fixed structs too; packing them here spares the pyroute2 import (~0.14 s,
# ten times the cost of everything else collected for one port).

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
IFLA_IFNAME = 3
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC = 1, 4, 5, 7
RTM_F_FIB_MATCH = 0x2000
IFF_UP = 0x1
ROUTE_KINDS = {0: "none", 1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast",
               6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat"}
# what `ip route get` errors mean when even the FIB match fails
_ROUTE_ERRNO_KINDS = {errno_mod.ENETUNREACH: "none", errno_mod.EHOSTUNREACH: "unreachable",
                      errno_mod.EACCES: "prohibit", errno_mod.EINVAL: "blackhole"}


def _rtattrs(data: memoryview | bytes, off: int, end: int) -> dict[int, bytes]:
    """Netlink attributes (type -> payload) between off and end."""
    out: dict[int, bytes] = {}
    while off + 4 <= end:
        alen, atype = struct.unpack_from("=HH", data, off)
        if alen < 4:
            break
        out[atype & 0x3FFF] = bytes(data[off + 4:off + alen])
        off += (alen + 3) & ~3
    return out


def netlink_request(proto: int, mtype: int, flags: int, body: bytes,
                    host: Host | None = None) -> list[tuple[int, bytes]]:
    """Send one request and return its replies as (type, payload); raises NetlinkFailure."""
    out: list[tuple[int, bytes]] = []
    with (host or LocalHost()).netlink(proto) as sk:
        sk.settimeout(5.0)
        sk.sendto(_NLMSGHDR.pack(16 + len(body), mtype, flags | NLM_F_REQUEST, 1, 0) + body, (0, 0))
        dump = bool(flags & NLM_F_DUMP)
        while True:
            data = sk.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                length, rtype, _f, _s, _p = _NLMSGHDR.unpack_from(data, off)
                if length < 16:
                    raise NetlinkFailure("malformed netlink message")
                if rtype == NLMSG_DONE:
                    return out
                if rtype == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, off + 16)
                    if code:
                        raise NetlinkFailure(-code, os.strerror(-code))
                    return out
                out.append((rtype, data[off + 16:off + length]))
                off += (length + 3) & ~3
            if not dump and out:
                return out


def read_links(host: Host | None = None) -> dict[int, tuple[str, bool]]:
    """ifindex -> (name, administratively up)."""
    out: dict[int, tuple[str, bool]] = {}
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0)
    for rtype, payload in netlink_request(NETLINK_ROUTE, RTM_GETLINK, NLM_F_DUMP, body, host):
        if rtype != RTM_NEWLINK or len(payload) < 16:
            continue
        _fam, _type, index, flags, _change = struct.unpack_from("=BxHiII", payload)
        attrs = _rtattrs(payload, 16, len(payload))
        name = attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(errors="replace")
        out[index] = (name, bool(flags & IFF_UP))
    return out


def read_addresses(host: Host | None = None) -> list[InterfaceAddress]:
    """Every IPv4 and IPv6 address on this namespace's interfaces."""
    links = read_links(host)
    out: list[InterfaceAddress] = []
    body = struct.pack("=BBBBI", socket.AF_UNSPEC, 0, 0, 0, 0)
    for rtype, payload in netlink_request(NETLINK_ROUTE, RTM_GETADDR, NLM_F_DUMP, body, host):
        if rtype != RTM_NEWADDR or len(payload) < 8:
            continue
        family, prefixlen, _flags, _scope, index = struct.unpack_from("=BBBBI", payload)
        attrs = _rtattrs(payload, 8, len(payload))
        raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
        if raw is None or family not in (socket.AF_INET, socket.AF_INET6):
            continue
        name, up = links.get(index, (str(index), True))
        out.append(InterfaceAddress(address=socket.inet_ntop(family, raw), prefixlen=prefixlen,
                                    family=4 if family == socket.AF_INET else 6, ifname=name, up=up))
    return out


def _route_get(family: int, packed: bytes, flags: int, host: Host | None = None) -> tuple[int, dict[int, bytes]]:
    body = struct.pack("=BBBBBBBBI", family, len(packed) * 8, 0, 0, 0, 0, 0, 0, flags)
    body += struct.pack("=HH", 4 + len(packed), RTA_DST) + packed
    for rtype, payload in netlink_request(NETLINK_ROUTE, RTM_GETROUTE, 0, body, host):
        if rtype == RTM_NEWROUTE and len(payload) >= 12:
            rtm_type = payload[7]
            return rtm_type, _rtattrs(payload, 12, len(payload))
    raise NetlinkFailure(errno_mod.ENOENT, "no route message in the reply")


def route_lookup(address: str, links: dict[int, tuple[str, bool]] | None = None,
                 host: Host | None = None) -> RouteLookup:
    """How this host would send to `address` (`ip route get`; sends no packet)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        packed = socket.inet_pton(family, address.split("%")[0])
    except OSError:
        return RouteLookup(destination=address, kind="none")
    try:
        rtm_type, attrs = _route_get(family, packed, 0, host)
    except NetlinkFailure as exc:
        # unreachable/prohibit/blackhole routes fail the lookup: ask which route matched
        try:
            rtm_type, attrs = _route_get(family, packed, RTM_F_FIB_MATCH, host)
        except NetlinkFailure:
            return RouteLookup(destination=address, kind=_ROUTE_ERRNO_KINDS.get(exc.errno or 0, "none"))
    links = links if links is not None else {}
    ifname = None
    if RTA_OIF in attrs:
        index = struct.unpack("=i", attrs[RTA_OIF][:4])[0]
        ifname = links.get(index, (str(index), True))[0]
    gateway = socket.inet_ntop(family, attrs[RTA_GATEWAY]) if RTA_GATEWAY in attrs else None
    source = socket.inet_ntop(family, attrs[RTA_PREFSRC]) if RTA_PREFSRC in attrs else None
    return RouteLookup(destination=address, kind=ROUTE_KINDS.get(rtm_type, str(rtm_type)),
                       ifname=ifname, gateway=gateway, source=source)


def collect_addresses(req: Request) -> Facts:
    """Every interface address of this network namespace, with interface name and up state."""
    try:
        return Facts(fields={"addresses": tuple(read_addresses(req.system))})
    except (OSError, NetlinkFailure) as exc:
        facts = Facts()
        if req.system.live:  # psutil reads this machine only (ioctls and /proc)
            try:
                from portdoctor.collectors import generic

                facts = generic.collect_addresses(req)
            except Exception:  # noqa: BLE001 - any failure here only means "not seen"
                facts = Facts()
        facts.limitations.append(Limitation(
            f"interface addresses could not be read over netlink ({exc})"
            + ("; psutil's view is used" if facts.fields else ""), "run `ip -br addr` to see them"))
        return facts


def collect_routes(req: Request) -> Facts:
    """A route lookup for each target address and for --from (which local address answers)."""
    wanted = list(dict.fromkeys([*req.addresses, *([req.from_addr] if req.from_addr else [])]))
    if not wanted:
        return Facts(fields={"routes": ()})
    try:
        links = read_links(req.system)
        routes = tuple(route_lookup(a, links, req.system) for a in wanted)
    except (OSError, NetlinkFailure) as exc:
        return Facts(limitations=[Limitation(f"route lookups failed over netlink ({exc})",
                                             "run `ip route get ADDRESS` to see the route")])
    return Facts(fields={"routes": routes})
