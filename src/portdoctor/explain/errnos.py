"""Errno numbers of the connect failures users paste, per operating system, and what they mean.

The same condition has different numbers on each system, and the same number means different
things (61 is ECONNREFUSED on macOS and the BSDs but ENODATA on Linux), so a number alone tells
the platform a message came from, and a number read with the wrong table misleads.

Sources of the numbers:

- Linux: include/uapi/asm-generic/errno-base.h (1..34) and include/uapi/asm-generic/errno.h
  (35..133) of the Linux kernel; glibc resolv/netdb.h for the EAI_* codes (negative).
- macOS: xnu bsd/sys/errno.h; libinfo netdb.h for EAI_*.
- BSD: FreeBSD sys/sys/errno.h (the network errnos are the 4.4BSD values, same as macOS).
- Windows: winsock2.h / winerror.h (WSABASEERR 10000 + the BSD value; WSAHOST_NOT_FOUND 11001).
- Node.js on Windows: libuv include/uv/errno.h (UV__ECONNREFUSED -4078, ...); on Unix, libuv
  reports the negated system errno (-111 on Linux, -61 on macOS).
"""

from __future__ import annotations

LINUX, MACOS, BSD, WINDOWS = "linux", "macos", "bsd", "windows"

# condition -> number, per platform (only the errnos a failed connect or lookup ends with)
ERRNO: dict[str, dict[str, int]] = {
    LINUX: {
        "EPERM": 1, "ENOENT": 2, "EACCES": 13, "ENODATA": 61, "EADDRNOTAVAIL": 99,
        "ENETDOWN": 100, "ENETUNREACH": 101, "ECONNABORTED": 103, "ECONNRESET": 104,
        "ETIMEDOUT": 110, "ECONNREFUSED": 111, "EHOSTDOWN": 112, "EHOSTUNREACH": 113,
        "EINPROGRESS": 115,
        "EAI_NONAME": -2, "EAI_AGAIN": -3, "EAI_FAIL": -4, "EAI_NODATA": -5,
    },
    MACOS: {
        "EPERM": 1, "ENOENT": 2, "EACCES": 13, "EINPROGRESS": 36, "EADDRNOTAVAIL": 49,
        "ENETDOWN": 50, "ENETUNREACH": 51, "ECONNABORTED": 53, "ECONNRESET": 54,
        "ETIMEDOUT": 60, "ECONNREFUSED": 61, "EHOSTDOWN": 64, "EHOSTUNREACH": 65,
        "ENODATA": 96,
        "EAI_AGAIN": 2, "EAI_FAIL": 4, "EAI_NONAME": 8,
    },
    BSD: {
        "EPERM": 1, "ENOENT": 2, "EACCES": 13, "EINPROGRESS": 36, "EADDRNOTAVAIL": 49,
        "ENETDOWN": 50, "ENETUNREACH": 51, "ECONNABORTED": 53, "ECONNRESET": 54,
        "ETIMEDOUT": 60, "ECONNREFUSED": 61, "EHOSTDOWN": 64, "EHOSTUNREACH": 65,
        "EAI_AGAIN": 2, "EAI_FAIL": 4, "EAI_NONAME": 8,
    },
    WINDOWS: {
        "EACCES": 10013, "EINPROGRESS": 10036, "EADDRNOTAVAIL": 10049, "ENETDOWN": 10050,
        "ENETUNREACH": 10051, "ECONNABORTED": 10053, "ECONNRESET": 10054, "ETIMEDOUT": 10060,
        "ECONNREFUSED": 10061, "EHOSTDOWN": 10064, "EHOSTUNREACH": 10065,
        "EAI_NONAME": 11001, "EAI_AGAIN": 11002, "EAI_FAIL": 11003, "EAI_NODATA": 11004,
    },
}

# Node.js on Windows reports libuv's own codes (include/uv/errno.h), not WSA numbers.
LIBUV_WINDOWS: dict[int, str] = {
    -4092: "EACCES", -4090: "EADDRNOTAVAIL", -4079: "ECONNABORTED", -4078: "ECONNREFUSED",
    -4077: "ECONNRESET", -4073: "EHOSTUNREACH", -4063: "ENETDOWN", -4062: "ENETUNREACH",
    -4058: "ENOENT", -4048: "EPERM", -4039: "ETIMEDOUT", -4031: "EHOSTDOWN",
    -3008: "EAI_NONAME", -3001: "EAI_AGAIN", -3004: "EAI_FAIL", -3007: "EAI_NODATA",
}

# The message text each C library prints for a condition (strerror / gai_strerror / FormatMessage).
STRERROR: dict[str, tuple[str, ...]] = {
    "ECONNREFUSED": ("connection refused",
                     "no connection could be made because the target machine actively refused it"),
    "ETIMEDOUT": ("connection timed out", "operation timed out", "timed out",
                  "a connection attempt failed because the connected party did not properly respond"),
    "EHOSTUNREACH": ("no route to host", "host is unreachable",
                     "a socket operation was attempted to an unreachable host"),
    "ENETUNREACH": ("network is unreachable",
                    "a socket operation was attempted to an unreachable network"),
    "ECONNRESET": ("connection reset by peer", "an existing connection was forcibly closed by the remote host"),
    "ECONNABORTED": ("software caused connection abort",),
    "EHOSTDOWN": ("host is down",),
    "ENETDOWN": ("network is down",),
    "EADDRNOTAVAIL": ("cannot assign requested address", "can't assign requested address"),
    "EACCES": ("permission denied",),
    "EPERM": ("operation not permitted",),
    "ENOENT": ("no such file or directory",),
    "EAI_NONAME": ("name or service not known", "nodename nor servname provided, or not known",
                   "no such host is known", "no address associated with hostname", "no such host",
                   "could not resolve host", "could not translate host name", "unknown host",
                   "name does not resolve", "getaddrinfo failed"),
    "EAI_AGAIN": ("temporary failure in name resolution",),
}

# What each condition means for a client, in plain words.
MEANING: dict[str, str] = {
    "ECONNREFUSED": "The host answered, but nothing accepted the connection on that port: no process "
                    "listens there on that address, or a firewall rule rejects the packet.",
    "ETIMEDOUT": "No answer came at all before the client gave up: a firewall drops the packets "
                 "silently, the host is down or unreachable, or the server's accept queue is full.",
    "EHOSTUNREACH": "The client could not reach the host: no route to it, no ARP answer on the local "
                    "network, or a router or firewall answered with ICMP host-unreachable.",
    "ENETUNREACH": "This machine has no route to the destination network (often an IPv6 address "
                   "on a host without IPv6, or a missing default route).",
    "ECONNRESET": "A connection was made and then reset by the other side (or a middlebox): the "
                  "server crashed, closed abruptly, or speaks another protocol (TLS vs plain).",
    "ECONNABORTED": "The connection was aborted on this machine before it completed.",
    "EHOSTDOWN": "The host is known to be down (no answer on the local network).",
    "ENETDOWN": "The network interface the connection would use is down.",
    "EADDRNOTAVAIL": "No local address can be used to reach that destination (or the local ports "
                     "are exhausted).",
    "EACCES": "This machine refused to send the packet: a local firewall or security policy "
              "blocked it before it left.",
    "EPERM": "This machine refused to send the packet: a local firewall rule (OUTPUT chain) "
             "blocked it.",
    "EINPROGRESS": "The client's non-blocking connect did not complete; the client printed the "
                   "errno of the pending connect instead of the real outcome (refused or timed out).",
    "ENOENT": "The Unix socket file does not exist: the server is not running, or it listens only "
              "on TCP or in another socket directory.",
    "EAI_NONAME": "The host name did not resolve: DNS (or /etc/hosts) has no address for it, so "
                  "no connection was attempted.",
    "EAI_AGAIN": "The resolver did not answer in time (temporary DNS failure), so no connection "
                 "was attempted.",
    "EAI_FAIL": "The resolver failed permanently for that name; no connection was attempted.",
    "EAI_NODATA": "The name exists but has no address of the asked family; no connection was "
                  "attempted.",
}

# condition -> the probe state vocabulary of SPEC.md
STATE: dict[str, str] = {
    "ECONNREFUSED": "refused", "ECONNRESET": "error", "ETIMEDOUT": "timeout", "EHOSTUNREACH": "unreachable",
    "ENETUNREACH": "unreachable", "EHOSTDOWN": "unreachable", "ENETDOWN": "unreachable",
    "EAI_NONAME": "dns_error", "EAI_AGAIN": "dns_error", "EAI_FAIL": "dns_error",
    "EAI_NODATA": "dns_error",
}


def number_of(name: str, platform: str | None) -> int | None:
    """Return the number of errno `name` on `platform`, or None when unknown there."""
    if platform is None:
        return None
    return ERRNO.get(platform, {}).get(name)


def name_of(number: int, platform: str) -> str | None:
    """Return the condition a number stands for on `platform` (61 on linux -> ENODATA)."""
    for name, value in ERRNO.get(platform, {}).items():
        if value == number:
            return name
    return None


def platforms_of(number: int, name: str | None = None) -> list[str]:
    """Return the platforms on which `number` is errno `name` (any connect errno when None).

    >>> platforms_of(61, "ECONNREFUSED")
    ['macos', 'bsd']
    >>> platforms_of(111)
    ['linux']
    """
    out = []
    for platform, table in ERRNO.items():
        for cond, value in table.items():
            if value != number:
                continue
            if name is not None and cond != name:
                continue
            if name is None and (cond == "ENODATA" or cond.startswith("EAI_")):
                continue
            out.append(platform)
            break
    return out


def from_strerror(text: str) -> str | None:
    """Return the condition whose C-library message appears in `text` (case-insensitive)."""
    low = text.lower()
    for name, phrases in STRERROR.items():
        if any(p in low for p in phrases):
            return name
    return None


def cross_platform(name: str) -> str:
    """One line giving the number of condition `name` on each platform, e.g. for ECONNREFUSED:
    '111 on Linux, 61 on macOS and the BSDs, 10061 (WSAECONNREFUSED) on Windows'."""
    lin = ERRNO[LINUX].get(name)
    mac = ERRNO[MACOS].get(name)
    win = ERRNO[WINDOWS].get(name)
    parts = []
    if lin is not None:
        parts.append(f"{lin} on Linux")
    if mac is not None:
        parts.append(f"{mac} on macOS and the BSDs")
    if win is not None:
        wsa = "WSAHOST_NOT_FOUND" if name == "EAI_NONAME" else "WSA" + name
        parts.append(f"{win} ({wsa}) on Windows")
    return f"{name} is " + ", ".join(parts) if parts else name
