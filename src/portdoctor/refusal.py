"""Who sent the refusal: read the packet that answered the probe's own SYN, and place its sender.

A refused connect() says only ECONNREFUSED. The packet behind it says more:

- An ICMP error (port-unreachable, admin-prohibited, host-prohibited) carries the address of the
  device that sent it. The kernel queues it on the connecting socket's error queue when the socket
  asked for IP_RECVERR / IPV6_RECVERR (`struct sock_extended_err`, the sender in SO_EE_OFFENDER),
  with the ICMP packet's TTL when IP_RECVTTL is set too: no privilege needed. A Linux host never
  answers a SYN to a closed port with ICMP, so an ICMP refusal always comes from a firewall rule:
  the target's own (the sender is the target) or one in the path (the sender is a router).
- A TCP reset carries the target's address whatever sent it, so its IP header must speak: read
  on a raw socket (CAP_NET_RAW, i.e. root) with a BPF filter on the probe's own addresses and
  ports. Linux's TCP stack copies the SYN's TOS byte into the reset it answers with
  (tcp_v4_send_reset, ip_send_unicast_reply); netfilter's `REJECT --reject-with tcp-reset`
  (nf_send_reset) writes TOS 0. The probe sets a TOS mark, so a reset that echoes it came from a
  TCP stack and one that does not came from a firewall rule. Its TTL against the target's own
  packets (the SYN-ACK of an open port of the same address, or the reset of a closed port that
  echoed the mark) tells where: the same TTL is the target host; a higher one was sent that many
  routers closer, and a SYN with that TTL limit names the router (ICMP time-exceeded).

Nothing here probes any address but the target's, and nothing but TCP SYNs to its ports.
"""

from __future__ import annotations

import errno as errno_mod
import select
import socket
import struct
import time
from dataclasses import dataclass

from portdoctor.addresses import endpoint
from portdoctor.model import RefusalOrigin

TOS_MARK = 0x28  # DSCP AF11: a mark a Linux TCP stack echoes in its reset and a REJECT rule does not

# Linux uapi values the socket module may lack
SOL_IP = 0
SOL_IPV6 = 41
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
IP_TTL_CMSG = 2  # IP_TTL
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)
IPV6_TCLASS = getattr(socket, "IPV6_TCLASS", 67)
IPV6_RECVTCLASS = getattr(socket, "IPV6_RECVTCLASS", 66)
ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3

# (type, code) -> name, as nmap's reasons and iptables' --reject-with name them
ICMP4_NAMES: dict[tuple[int, int], str] = {
    (3, 0): "net-unreachable", (3, 1): "host-unreachable", (3, 2): "protocol-unreachable",
    (3, 3): "port-unreachable", (3, 9): "net-prohibited", (3, 10): "host-prohibited",
    (3, 13): "admin-prohibited", (11, 0): "ttl-exceeded",
}
ICMP6_NAMES: dict[tuple[int, int], str] = {
    (1, 0): "no-route", (1, 1): "adm-prohibited", (1, 3): "addr-unreachable", (1, 4): "port-unreachable",
    (1, 5): "policy-fail", (1, 6): "reject-route", (3, 0): "hop-limit-exceeded",
}
_TIME_EXCEEDED = {("icmp", 11), ("icmp6", 3)}
_RAW_NEEDS = ("reading the reset's TTL and TOS needs a raw socket (CAP_NET_RAW): run as root to learn "
              "whether the target's TCP stack or a firewall rule sent it")


@dataclass(frozen=True, slots=True)
class Answer:
    """The packet that answered one SYN, as far as it could be read."""

    kind: str  # "syn-ack" | "tcp-reset" | "icmp" | "none"
    errno: str | None = None
    src: str | None = None  # source address of the answer (the offender for ICMP)
    ttl: int | None = None
    ip_id: int | None = None
    tos: int | None = None
    icmp: str | None = None  # name of the ICMP type/code
    icmp_type: int | None = None
    captured: bool = False  # the IP header was read (raw socket)
    seconds: float = 0.0
    looped: bool = False  # the answer came in on a loopback interface: made on this host


# --------------------------------------------------------------------------- reading one answer


def _bpf_v4(src: str, sport: int, dport: int) -> bytes:
    """A classic BPF program for a raw IPv4 TCP socket: keep packets from src:sport to our dport."""
    saddr = struct.unpack("!I", socket.inet_aton(src))[0]
    ins = [
        (0x20, 0, 0, 12),         # ld  [12]              source address
        (0x15, 0, 6, saddr),      # jeq #saddr, next, drop
        (0xB1, 0, 0, 0),          # ldx 4*([0]&0xf)       IP header length
        (0x48, 0, 0, 0),          # ldh [x+0]             TCP source port
        (0x15, 0, 3, sport),      # jeq #sport, next, drop
        (0x48, 0, 0, 2),          # ldh [x+2]             TCP destination port
        (0x15, 0, 1, dport),      # jeq #dport, next, drop
        (0x06, 0, 0, 0xFFFF),     # ret #65535            keep
        (0x06, 0, 0, 0),          # ret #0                drop
    ]
    return b"".join(struct.pack("HBBI", *i) for i in ins)


def _bpf_v6(sport: int, dport: int) -> bytes:
    """The same for a raw IPv6 TCP socket (data starts at the TCP header; the source address is
    checked on receipt)."""
    ins = [
        (0x28, 0, 0, 0),          # ldh [0]               TCP source port
        (0x15, 0, 3, sport),
        (0x28, 0, 0, 2),          # ldh [2]               TCP destination port
        (0x15, 0, 1, dport),
        (0x06, 0, 0, 0xFFFF),
        (0x06, 0, 0, 0),
    ]
    return b"".join(struct.pack("HBBI", *i) for i in ins)


def _bpf_out_v4(dst: str, sport: int, dport: int) -> bytes:
    """BPF for a packet socket (SOCK_DGRAM: data starts at the IP header): our SYN to dst:dport."""
    daddr = struct.unpack("!I", socket.inet_aton(dst))[0]
    ins = [
        (0x20, 0, 0, 16),         # ld  [16]              destination address
        (0x15, 0, 6, daddr),
        (0xB1, 0, 0, 0),          # ldx 4*([0]&0xf)
        (0x48, 0, 0, 0),          # ldh [x+0]             TCP source port
        (0x15, 0, 3, sport),
        (0x48, 0, 0, 2),          # ldh [x+2]             TCP destination port
        (0x15, 0, 1, dport),
        (0x06, 0, 0, 0xFFFF),
        (0x06, 0, 0, 0),
    ]
    return b"".join(struct.pack("HBBI", *i) for i in ins)


def _bpf_out_v6(sport: int, dport: int) -> bytes:
    """The same over IPv6 (ports right after the 40-byte header; the address is checked on receipt)."""
    ins = [
        (0x28, 0, 0, 40),
        (0x15, 0, 3, sport),
        (0x28, 0, 0, 42),
        (0x15, 0, 1, dport),
        (0x06, 0, 0, 0xFFFF),
        (0x06, 0, 0, 0),
    ]
    return b"".join(struct.pack("HBBI", *i) for i in ins)


def _attach(raw: socket.socket, program: bytes) -> None:
    import ctypes

    buf = ctypes.create_string_buffer(program)
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buf))
    raw.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    raw.setblocking(False)
    while True:  # packets queued before the filter was in place
        try:
            raw.recv(65535)
        except OSError:
            break


def raw_capture_allowed() -> bool:
    """Whether this process may open a raw TCP socket (CAP_NET_RAW)."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP).close()
        return True
    except OSError:
        return False


def syn_answer(address: str, port: int, timeout: float, *, ttl: int | None = None, tos: int = TOS_MARK,
               capture: bool = True) -> Answer:
    """Send one SYN to address:port (a connect from a socket of our own) and read what answered:
    SO_ERROR, the error queue (ICMP type, code, sender, TTL) and, when `capture` and allowed, the
    answering TCP packet's IP header on a raw socket filtered to this connection."""
    v6 = ":" in address
    fam = socket.AF_INET6 if v6 else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    raw: socket.socket | None = None
    tap: socket.socket | None = None  # sees our own SYN leave (or not) on any interface
    try:
        if v6:
            s.setsockopt(SOL_IPV6, IPV6_TCLASS, tos)
            s.setsockopt(SOL_IPV6, IPV6_RECVERR, 1)
            s.setsockopt(SOL_IPV6, IPV6_RECVHOPLIMIT, 1)
            if ttl:
                s.setsockopt(SOL_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
            s.bind(("::", 0))
        else:
            s.setsockopt(SOL_IP, socket.IP_TOS, tos)
            s.setsockopt(SOL_IP, IP_RECVERR, 1)
            s.setsockopt(SOL_IP, IP_RECVTTL, 1)
            if ttl:
                s.setsockopt(SOL_IP, socket.IP_TTL, ttl)
            s.bind(("0.0.0.0", 0))
        lport = s.getsockname()[1]
        if capture:
            try:
                raw = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_TCP)
                if v6:
                    raw.setsockopt(SOL_IPV6, IPV6_RECVHOPLIMIT, 1)
                    raw.setsockopt(SOL_IPV6, IPV6_RECVTCLASS, 1)
                _attach(raw, _bpf_v6(port, lport) if v6 else _bpf_v4(address, port, lport))
                # only ETH_P_ALL taps see outgoing packets (dev_queue_xmit_nit)
                tap = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
                _attach(tap, _bpf_out_v6(lport, port) if v6 else _bpf_out_v4(address, lport, port))
            except (OSError, AttributeError):
                for x in (raw, tap):
                    if x is not None:
                        x.close()
                raw = tap = None
        s.setblocking(False)
        t0 = time.perf_counter()
        code = s.connect_ex((address, port, 0, 0) if v6 else (address, port))
        if code in (errno_mod.EINPROGRESS, errno_mod.EAGAIN):
            _r, w, _x = select.select([], [s], [], timeout)
            code = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if w else None
        seconds = time.perf_counter() - t0
        if code == 0:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        err = _error_queue(s, v6)
        packet = _read_raw(raw, address, v6) if raw is not None and code is not None else None
        stayed = tap is not None and code is not None and not _syn_left(tap, address, v6)
    finally:
        s.close()
        for x in (raw, tap):
            if x is not None:
                x.close()
    name = errno_mod.errorcode.get(code, str(code)) if code else None
    if err is not None:
        return Answer("icmp", name, err["src"], err["ttl"], None, None, err["name"], err["type"], False, seconds,
                      looped=is_this_host(err["src"]))
    if code is None:
        return Answer("none", None, seconds=seconds)
    kind = "syn-ack" if code == 0 else "tcp-reset" if code == errno_mod.ECONNREFUSED else "error"
    if packet is not None:
        flags = packet["flags"]
        kind = "syn-ack" if flags & 0x12 == 0x12 else "tcp-reset" if flags & 0x04 else kind
        return Answer(kind, name, address, packet["ttl"], packet["id"], packet["tos"], captured=True,
                      seconds=seconds, looped=stayed)
    return Answer(kind, name, address, seconds=seconds)


def _error_queue(s: socket.socket, v6: bool) -> dict | None:
    """The ICMP error the kernel queued on `s` (IP_RECVERR), or None."""
    try:
        _data, anc, _flags, _addr = s.recvmsg(512, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
    except OSError:
        return None
    found: dict = {"ttl": None}
    for level, kind, data in anc:
        if (level, kind) in ((SOL_IP, IP_RECVERR), (SOL_IPV6, IPV6_RECVERR)) and len(data) >= 16:
            _ee_errno, origin, typ, code, _pad, _info, _data2 = struct.unpack("IBBBBII", data[:16])
            offender = data[16:]
            if origin == SO_EE_ORIGIN_ICMP and len(offender) >= 8:
                found["src"] = socket.inet_ntop(socket.AF_INET, offender[4:8])
                found["name"] = ICMP4_NAMES.get((typ, code), f"type {typ} code {code}")
                found["type"] = ("icmp", typ)
            elif origin == SO_EE_ORIGIN_ICMP6 and len(offender) >= 24:
                found["src"] = socket.inet_ntop(socket.AF_INET6, offender[8:24])
                found["name"] = ICMP6_NAMES.get((typ, code), f"type {typ} code {code}")
                found["type"] = ("icmp6", typ)
        elif (level, kind) in ((SOL_IP, IP_TTL_CMSG), (SOL_IPV6, IPV6_HOPLIMIT)) and len(data) >= 4:
            found["ttl"] = struct.unpack("i", data[:4])[0]
    return found if "src" in found else None


def _read_raw(raw: socket.socket, address: str, v6: bool, wait: float = 0.05) -> dict | None:
    """The first TCP packet the filtered raw socket holds (it was queued before connect() saw the
    answer, so a short wait is for safety only)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            if v6:
                data, anc, _f, addr = raw.recvmsg(256, 256)
                if addr[0].split("%")[0] != address:
                    continue
                hop = next((struct.unpack("i", d[:4])[0] for lv, k, d in anc if k == IPV6_HOPLIMIT), None)
                tcl = next((struct.unpack("i", d[:4])[0] for lv, k, d in anc if k == IPV6_TCLASS), None)
                return {"ttl": hop, "tos": tcl, "id": None, "flags": data[13] if len(data) > 13 else 0}
            data = raw.recv(256)
            ihl = (data[0] & 0x0F) * 4
            return {"ttl": data[8], "tos": data[1], "id": struct.unpack("!H", data[4:6])[0],
                    "flags": data[ihl + 13] if len(data) > ihl + 13 else 0}
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            select.select([raw], [], [], left)
        except OSError:
            return None


def _syn_left(tap: socket.socket, address: str, v6: bool) -> bool:
    """Whether the packet tap saw our SYN go out on some interface (a REJECT in this host's
    OUTPUT chain answers before it does)."""
    while True:
        try:
            data, addr = tap.recvfrom(128)
        except OSError:
            return False
        if addr[2] != socket.PACKET_OUTGOING or not data or data[0] >> 4 != (6 if v6 else 4):
            continue
        if not v6 or socket.inet_ntop(socket.AF_INET6, data[24:40]) == address:
            return True


def is_this_host(address: str | None) -> bool:
    """Whether `address` is one of this host's own or loopback (the kernel lets us bind to it)."""
    if not address:
        return False
    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.bind((address, 0))
        return True
    except OSError:
        return False


def hop_addresses(address: str, port: int, hops: int, timeout: float) -> dict[int, str]:
    """Routers on the way to `address`: hop number -> the address that answered a SYN sent with
    that TTL by ICMP time-exceeded (read from the error queue; no privilege needed)."""
    from concurrent.futures import ThreadPoolExecutor

    hops = max(0, min(hops, 16))
    if not hops:
        return {}
    with ThreadPoolExecutor(max_workers=hops) as pool:
        answers = list(pool.map(lambda h: syn_answer(address, port, timeout, ttl=h, capture=False),
                                range(1, hops + 1)))
    return {h: a.src for h, a in zip(range(1, hops + 1), answers)
            if a.kind == "icmp" and a.src and a.icmp in ("ttl-exceeded", "hop-limit-exceeded")}


# --------------------------------------------------------------------------- judging it


def initial_ttl(ttl: int) -> int:
    """The TTL a packet most likely left its sender with (64 Linux/BSD, 128 Windows, 255 network gear)."""
    return next(i for i in (32, 64, 128, 255) if ttl <= i)


def routers_before(ttl: int) -> int:
    """Routers a packet that arrived with `ttl` went through."""
    return initial_ttl(ttl) - ttl


def judge(address: str, port: int, answer: Answer, reference: tuple[int, Answer] | None = None,
          hops: dict[int, str] | None = None, tos_mark: int = TOS_MARK, raw_allowed: bool = True) -> RefusalOrigin:
    """Place the sender of `answer` (the answer to a SYN to address:port): the target's TCP stack,
    a firewall rule on the target, or a device in the path. `reference` is (port, answer) of the
    target's own packet (a SYN-ACK, or a reset that echoed the TOS mark); `hops` maps hop numbers
    to router addresses (hop_addresses). Pure: every fact comes in as an argument."""
    hops = hops or {}
    where_ep = endpoint(address, port)
    if answer.looped and answer.kind in ("icmp", "tcp-reset"):
        what = f"ICMP {answer.icmp}" if answer.kind == "icmp" else "a TCP reset"
        ev = (f"the SYN to {where_ep} was answered by {what} that was made on this host"
              + (f" (sent from {answer.src}, an address of this host)" if answer.kind == "icmp"
                 else " (it came in on the loopback interface, though it names " + address + " as its sender)"),
              "a REJECT rule in this host's own OUTPUT chain (or nft output hook) answers for the target: "
              "the SYN never left")
        return RefusalOrigin(address, port, answer.kind, "this_host", answer.src if answer.kind == "icmp" else None,
                             answer.icmp, answer.ttl, answer.ip_id, answer.tos, 0, None,
                             f"refused by a firewall rule on this host (its OUTPUT chain) before the SYN left, "
                             f"not by {address}", ev)
    if answer.kind == "icmp":
        name = answer.icmp or "an ICMP error"
        ev = [f"the SYN to {where_ep} was answered by ICMP {name} from {answer.src}"
              + (f" (TTL {answer.ttl}, {routers_before(answer.ttl)} routers away)" if answer.ttl else "")]
        if answer.src == address:
            ev.append("a Linux host answers a SYN to a closed port with a TCP reset, never with ICMP: an ICMP "
                      "refusal from the target itself is a firewall rule there (iptables REJECT, nft reject)")
            summary = (f"refused by {address} itself with ICMP {name}: a firewall rule there, not its TCP stack "
                       f"(the service may well be running)")
            return RefusalOrigin(address, port, "icmp", "target_firewall", answer.src, name, answer.ttl, None, None,
                                 routers_before(answer.ttl) if answer.ttl else None, None, summary, tuple(ev))
        summary = (f"refused by {answer.src} with ICMP {name}, a hop before the server: a firewall in the path, "
                   f"not the service")
        return RefusalOrigin(address, port, "icmp", "path", answer.src, name, answer.ttl, None, None,
                             routers_before(answer.ttl) if answer.ttl else None, None, summary, tuple(ev))
    if answer.kind != "tcp-reset":
        what = {"syn-ack": "accepted it", "none": "nothing answered"}.get(answer.kind, f"it failed ({answer.errno})")
        return RefusalOrigin(address, port, "none", "unknown", summary=f"the SYN to {where_ep} was not refused this time: {what}")
    if not answer.captured:
        return RefusalOrigin(address, port, "tcp-reset", "unknown", address,
                             summary=f"{where_ep} answered with a TCP reset; who sent it was not read",
                             evidence=(f"the SYN to {where_ep} was answered by a TCP reset (ECONNREFUSED)",),
                             limitation=_RAW_NEEDS if not raw_allowed else "the reset was not captured")
    echoed = answer.tos is not None and (answer.tos & 0xFC) == (tos_mark & 0xFC) and tos_mark & 0xFC
    ev = [f"the SYN to {where_ep} (TOS 0x{tos_mark:02x}) was answered by a TCP reset with TTL {answer.ttl}"
          + (f", IP ID {answer.ip_id}" if answer.ip_id is not None else "")
          + f", TOS 0x{(answer.tos or 0):02x}"]
    ref_ttl = None
    ref_text = None
    if reference is not None and reference[1].captured and reference[1].ttl is not None:
        rport, ref = reference
        ref_ttl = ref.ttl
        what = "SYN-ACK" if ref.kind == "syn-ack" else "reset (TOS echoed: its TCP stack)"
        ref_text = f"{what} of {endpoint(address, rport)}: TTL {ref.ttl}" + (f", IP ID {ref.ip_id}" if ref.ip_id is not None else "")
        ev.append(f"the target's own packet for comparison: {ref_text}")
    if echoed:
        ev.append("the reset echoes the SYN's TOS mark, as Linux's TCP stack does (a REJECT rule writes TOS 0)")
    else:
        ev.append("the reset does not echo the SYN's TOS mark: Linux's TCP stack would; a firewall rule's "
                  "REJECT --reject-with tcp-reset (or a non-Linux stack, or a path that clears TOS) does not")
    if ref_ttl is not None and answer.ttl is not None and answer.ttl > ref_ttl:
        closer = answer.ttl - ref_ttl
        n = routers_before(answer.ttl)  # routers between us and the forger
        sender = hops.get(n + 1)
        ev.append(f"its TTL is {closer} above the target's own: it was sent {closer} hop{'s' if closer > 1 else ''} "
                  f"before the target" + (f"; a SYN limited to TTL {n + 1} is answered by {sender} (ICMP time "
                                          f"exceeded): that router sent the reset" if sender else ""))
        summary = (f"refused by {sender or 'a device ' + str(closer) + ' hop(s) before ' + address} with a forged TCP "
                   f"reset, a hop before the server: a firewall in the path (REJECT --reject-with tcp-reset), "
                   f"not the service")
        return RefusalOrigin(address, port, "tcp-reset", "path", sender, None, answer.ttl, answer.ip_id, answer.tos,
                             n, ref_text, summary, tuple(ev))
    if ref_ttl is not None and answer.ttl is not None and answer.ttl < ref_ttl:
        ev.append(f"its TTL is {ref_ttl - answer.ttl} below the target's own: it came from beyond the address "
                  f"probed (a NAT or load balancer passing the SYN to a host that refused it)")
        return RefusalOrigin(address, port, "tcp-reset", "unknown", None, None, answer.ttl, answer.ip_id, answer.tos,
                             routers_before(answer.ttl), ref_text,
                             f"{where_ep} answered with a reset from beyond {address} (NAT or load balancer backend)",
                             tuple(ev))
    if echoed:
        summary = (f"the reset came from {address}'s own TCP stack: nothing listens on port {port} there "
                   f"(no firewall is involved)")
        return RefusalOrigin(address, port, "tcp-reset", "target", address, None, answer.ttl, answer.ip_id, answer.tos,
                             routers_before(answer.ttl), ref_text, summary, tuple(ev))
    if ref_ttl is None and routers_before(answer.ttl or 64) > 0:
        n = routers_before(answer.ttl or 64)
        ev.append(f"no packet of {address}'s own TCP stack was seen to compare its TTL with, so the rule may be "
                  f"on {address} or on one of the {n} router(s) before it")
        return RefusalOrigin(address, port, "tcp-reset", "unknown", None, None, answer.ttl, answer.ip_id, answer.tos,
                             n, None, f"a firewall rule (REJECT --reject-with tcp-reset) on {address} or on a router "
                             f"before it refused {where_ep}", tuple(ev))
    summary = (f"refused by a firewall rule on {address} itself (REJECT --reject-with tcp-reset), not by its TCP "
               f"stack: the service may well be running")
    return RefusalOrigin(address, port, "tcp-reset", "target_firewall", address, None, answer.ttl, answer.ip_id,
                         answer.tos, routers_before(answer.ttl) if answer.ttl else None, ref_text, summary, tuple(ev))


def who_refused(address: str, port: int, timeout: float, references: tuple[tuple[int, str], ...] = ()) -> RefusalOrigin:
    """Send a SYN to address:port and place who refused it (see the module docstring).

    `references`: (port, state) of other ports of the same address from a short scan, open ones
    first; the first whose answer is the target's own (a SYN-ACK, or a reset echoing the mark)
    gives the TTL to compare with."""
    raw_ok = raw_capture_allowed()
    started = time.monotonic()
    answer = syn_answer(address, port, timeout, capture=raw_ok)
    ref: tuple[int, Answer] | None = None
    if answer.kind == "tcp-reset" and answer.captured:
        for rport, _state in references[:4]:
            if time.monotonic() - started > 2 * timeout:  # keep the whole look bounded
                break
            got = syn_answer(address, rport, timeout)
            own = got.kind == "syn-ack" or (got.kind == "tcp-reset" and got.tos is not None
                                            and (got.tos & 0xFC) == (TOS_MARK & 0xFC))
            if got.captured and own:
                ref = (rport, got)
                break
    hops: dict[int, str] = {}
    if ref is not None and answer.ttl is not None and ref[1].ttl is not None and answer.ttl > ref[1].ttl:
        hops = hop_addresses(address, port, routers_before(answer.ttl) + 1, timeout)
    return judge(address, port, answer, ref, hops, raw_allowed=raw_ok)
