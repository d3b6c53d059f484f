"""Listening sockets as lsof -F, netstat -anv, netstat -Lan and sockstat print them.

Shared row type: `SocketRow` (address, port, family, v6only, pid, command, user). Addresses
are written the BSD way by netstat ("127.0.0.1.8080", "*.8080", "::1.8080") and the lsof /
sockstat way ("127.0.0.1:8080", "*:8080", "[::1]:8080"); `split_endpoint` reads both.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_QUEUE = re.compile(r"^(\d+)/(\d+)/(\d+)$")


@dataclass(frozen=True, slots=True)
class SocketRow:
    """One listening TCP socket as a tool printed it."""

    address: str  # "0.0.0.0" / "::" for a wildcard
    port: int
    family: int
    v6only: bool | None = None  # None: the tool cannot tell (lsof), or IPv4
    pid: int | None = None
    command: str | None = None
    user: str | None = None  # login name or uid as text
    fd: int | None = None


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One line of `netstat -Lan`: a listener's accept queue."""

    address: str
    port: int
    family: int | None  # None when the line does not say (macOS prints no protocol column)
    qlen: int  # connections waiting to be accepted
    incqlen: int  # incomplete (handshake not finished)
    maxqlen: int  # the backlog


def _wild(family: int) -> str:
    return "::" if family == 6 else "0.0.0.0"


def split_endpoint(text: str, family: int | None = None) -> tuple[str, int, int] | None:
    """(address, port, family) of an endpoint as netstat ("127.0.0.1.8080", "*.8080", "::1.8080"),
    lsof ("[::1]:8080", "*:8080") or sockstat ("::1:8080", "*:22") print it: the port follows
    whichever of ':' and '.' comes last.

    >>> split_endpoint("*.8080", 4), split_endpoint("[::1]:3000"), split_endpoint("fe80::1%lo0.631")
    (('0.0.0.0', 8080, 4), ('::1', 3000, 6), ('fe80::1', 631, 6))
    >>> split_endpoint("::1:6379"), split_endpoint("::ffff:127.0.0.1.80")
    (('::1', 6379, 6), ('::ffff:127.0.0.1', 80, 6))
    """
    t = text.strip()
    if t.startswith("["):
        host, _, port = t[1:].partition("]:")
    else:
        cut = max(t.rfind(":"), t.rfind("."))
        host, port = (t[:cut], t[cut + 1:]) if cut > 0 else ("", "")
    if not port.isdigit():
        return None
    host = host.split("%")[0]
    if host == "*":
        fam = family or 4
        return _wild(fam), int(port), fam
    if not host:
        return None
    fam = 6 if ":" in host else 4
    return host, int(port), fam


# --------------------------------------------------------------------------- lsof -F


LSOF_ARGV = ("lsof", "-nP", "-w", "-iTCP", "-sTCP:LISTEN", "-FpcLuftPn")


def parse_lsof(text: str) -> list[SocketRow]:
    """Listening sockets from `lsof -nP -iTCP -sTCP:LISTEN -FpcLuftPn` field output.

    A `p` line opens a process (c command, L login, u uid follow), an `f` line opens a file of
    it (t IPv4/IPv6, P protocol, n name "*:8080" / "[::1]:8080"). lsof cannot tell an IPv6
    socket's V6ONLY, so v6only stays None for IPv6 rows.
    """
    rows: list[SocketRow] = []
    pid: int | None = None
    command = user = None
    uid = None
    fd: int | None = None
    ftype = proto = None

    def flush(name: str | None) -> None:
        if name is None or (proto and proto != "TCP"):
            return
        if "->" in name:
            return  # a connection, not a listener
        fam = 6 if ftype == "IPv6" else 4
        ep = split_endpoint(name, fam)
        if ep is None:
            return
        rows.append(SocketRow(ep[0], ep[1], fam, None, pid, command, user or uid, fd))

    for line in text.splitlines():
        if not line:
            continue
        tag, value = line[0], line[1:]
        if tag == "p":
            pid = int(value) if value.isdigit() else None
            command, user, uid, fd, ftype, proto = None, None, None, None, None, None
        elif tag == "c":
            command = value
        elif tag == "L":
            user = value
        elif tag == "u":
            uid = value
        elif tag == "f":
            fd = int(value) if value.isdigit() else None
            ftype = proto = None
        elif tag == "t":
            ftype = value
        elif tag == "P":
            proto = value
        elif tag == "n":
            flush(value)
    return rows


# --------------------------------------------------------------------------- netstat -anv -p tcp


def parse_netstat_anv(text: str) -> list[SocketRow]:
    """LISTEN rows of macOS `netstat -anv -p tcp`, columns located from the header line.

    Releases differ: 10.14 ends "... (state) rhiwat shiwat pid epid state options"; 11 to 13
    add "gencnt flags flags1 usscnt rtncnt fltrs"; 14 adds "rxbytes txbytes" after (state);
    15 and 26 replace "pid epid" with one "process:pid" column whose name may hold spaces.
    Proto tcp4 / tcp6 / tcp46 gives the family and IPV6_V6ONLY (tcp6 only: v6only).
    """
    rows: list[SocketRow] = []
    after: list[str] | None = None  # header words after "(state)"
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "Proto" and "(state)" in words:
            after = words[words.index("(state)") + 1:]
            continue
        if words[0] not in ("tcp4", "tcp6", "tcp46"):
            continue
        if len(words) < 6 or words[5] != "LISTEN":
            continue
        proto = words[0]
        fam = 4 if proto == "tcp4" else 6
        ep = split_endpoint(words[3], fam)
        if ep is None:
            continue
        rest = words[6:]
        pid, command = _pid_from(rest, after or [])
        v6only = None if fam == 4 else (proto == "tcp6")
        rows.append(SocketRow(ep[0], ep[1], fam, v6only, pid, command))
    return rows


def _pid_from(rest: list[str], header: list[str]) -> tuple[int | None, str | None]:
    if "process:pid" in header:
        k = header.index("process:pid")
        m = len(header) - k - 1  # columns after it
        middle = rest[k:len(rest) - m] if m else rest[k:]
        name, _, pid = " ".join(middle).rpartition(":")
        return (int(pid) if pid.isdigit() else None), (name or None)
    if "pid" in header:
        k = header.index("pid")
        if k < len(rest) and rest[k].isdigit():
            return int(rest[k]), None
    return None, None


# --------------------------------------------------------------------------- netstat -Lan


def parse_listen_queues(text: str) -> list[QueueRow]:
    """Rows of `netstat -Lan` (macOS: "Listen  Local Address"; FreeBSD: "Proto Listen Local Address")."""
    rows: list[QueueRow] = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] in ("Current", "Listen", "Proto"):
            continue
        q = next((w for w in words if _QUEUE.match(w)), None)
        if q is None:
            continue
        proto = words[0] if words[0].startswith(("tcp", "unix", "sctp", "udp")) else None
        if proto is not None and not proto.startswith("tcp"):
            continue
        fam = None if proto is None else (4 if proto == "tcp4" else 6)
        ep = split_endpoint(words[-1], fam or 4)
        if ep is None:
            continue
        qlen, inc, mx = (int(x) for x in _QUEUE.match(q).groups())  # type: ignore[union-attr]
        addr = ep[0] if fam is not None or words[-1].split(".")[0] != "*" else "*"
        rows.append(QueueRow(addr, ep[1], fam if fam is not None else (ep[2] if addr != "*" else None),
                             qlen, inc, mx))
    return rows


# --------------------------------------------------------------------------- sockstat (FreeBSD)


def parse_sockstat(text: str) -> list[SocketRow]:
    """Listening TCP sockets of FreeBSD `sockstat -46lq` or `sockstat -46l` (columns by the header:
    USER COMMAND PID FD PROTO LOCAL ADDRESS FOREIGN ADDRESS); `?` rows have no owner."""
    rows: list[SocketRow] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 6 or words[0] == "USER":
            continue
        user, command, pid, fd, proto, local = words[:6]
        if not proto.startswith("tcp"):
            continue
        fam = 4 if proto == "tcp4" else 6
        ep = split_endpoint(local, fam)
        if ep is None:
            continue
        v6only = None if fam == 4 else proto == "tcp6"
        rows.append(SocketRow(ep[0], ep[1], fam, v6only, int(pid) if pid.isdigit() else None,
                              None if command in ("?", "??") else command, None if user in ("?", "??") else user,
                              int(fd) if fd.isdigit() else None))
    return rows


def parse_sockstat_json(text: str) -> list[SocketRow]:
    """The same from `sockstat --libxo json -46l` ({"sockstat": {"socket": [...]}}, FreeBSD 15)."""
    doc = json.loads(text)
    top = doc.get("sockstat") if isinstance(doc, dict) else None
    items = top.get("socket") if isinstance(top, dict) else None
    rows: list[SocketRow] = []
    for it in items if isinstance(items, list) else []:
        if not isinstance(it, dict):
            continue
        proto = str(it.get("proto", ""))
        if not proto.startswith("tcp"):
            continue
        fam = 4 if proto == "tcp4" else 6
        local = it.get("local")
        if isinstance(local, dict):
            addr, port = str(local.get("address", "*")), str(local.get("port", ""))
            ep = split_endpoint(f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}", fam)
        else:
            ep = split_endpoint(str(local or it.get("local-address", "")), fam)
        if ep is None:
            continue
        pid = str(it.get("pid", ""))
        fd = str(it.get("fd", ""))
        rows.append(SocketRow(ep[0], ep[1], fam, None if fam == 4 else proto == "tcp6",
                              int(pid) if pid.isdigit() else None, it.get("command"), it.get("user"),
                              int(fd) if fd.isdigit() else None))
    return rows
