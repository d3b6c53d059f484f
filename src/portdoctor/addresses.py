"""Address and endpoint predicates that every stage shares: one answer to "is this loopback?",
"does a socket bound here take a connection to there?" and "how is host:port written?".

Addresses are compared as addresses, never as strings: `fd00::2` and `fd00:0:0::2` are the same
address, `::ffff:127.0.0.1` is loopback, and an IPv6 zone (`fe80::1%eth0`) is not part of it.

>>> accepts("::", 6, False, "10.0.0.2"), accepts("::", 6, True, "10.0.0.2")
(True, False)
>>> endpoint("fd00::2", 8080), endpoint("10.0.0.2", 80)
('[fd00::2]:8080', '10.0.0.2:80')
"""

from __future__ import annotations

import functools
import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

WILDCARDS = ("0.0.0.0", "::")


@functools.lru_cache(maxsize=8192)  # a pure parse: the port map asks about each address many times
def ip(text: str | None) -> IPAddress | None:
    """The address in `text` (brackets and an IPv6 zone dropped), or None when it is not one."""
    if not text:
        return None
    try:
        return ipaddress.ip_address(text.strip("[]").split("%")[0])
    except ValueError:
        return None


@functools.lru_cache(maxsize=8192)
def unmapped(text: str) -> str:
    """The canonical form of an address, IPv4-mapped IPv6 as IPv4: ::ffff:1.2.3.4 -> 1.2.3.4.

    Text that is not an address (a host name) comes back unchanged.
    """
    a = ip(text)
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return str(a.ipv4_mapped)
    return str(a) if a is not None else text


def same_address(a: str, b: str) -> bool:
    """Whether two texts name the same address (fd00::2 == fd00:0:0::2, ::ffff:10.0.0.1 == 10.0.0.1)."""
    return unmapped(a) == unmapped(b)


def family(text: str) -> int:
    """4 or 6: the family a client uses for this address (an IPv4-mapped address is IPv4)."""
    a = ip(unmapped(text))
    if a is None:
        return 6 if ":" in text else 4
    return a.version


def is_loopback(text: str | None) -> bool:
    """127.0.0.0/8, ::1 and ::ffff:127.x, and the name `localhost`."""
    if text and text.strip("[]").lower() in ("localhost", "localhost."):
        return True
    a = ip(unmapped(text)) if text else None
    return bool(a is not None and a.is_loopback)


def is_wildcard(text: str) -> bool:
    """0.0.0.0 or :: (any spelling): a socket bound there listens on every address of its family."""
    a = ip(text)
    return a is not None and a.is_unspecified


def is_link_local(text: str) -> bool:
    """fe80::/10 and 169.254.0.0/16."""
    a = ip(text)
    return a is not None and a.is_link_local


def scope(bound: str) -> str:
    """"all", "loopback" or "specific": which addresses a socket bound to `bound` listens on."""
    if is_wildcard(bound):
        return "all"
    if is_loopback(bound):
        return "loopback"
    return "specific"


def accepts(bound: str, bound_family: int, v6only: bool | None, dest: str) -> bool:
    """Whether a socket bound to `bound` takes a connection addressed to `dest`.

    IPv4 connections reach 0.0.0.0 and the exact address; on Linux an IPv6 `::` socket without
    IPV6_V6ONLY also takes IPv4 (as ::ffff:a.b.c.d), and a socket bound to ::ffff:a.b.c.d takes
    a.b.c.d. IPv6 connections reach `::` and the exact address. `dest` must be an address.
    """
    d = ip(unmapped(dest))
    if d is None:
        return False
    b = ip(bound)
    if b is None:
        return False
    if isinstance(d, ipaddress.IPv4Address):
        if bound_family == 4 or b.version == 4:
            return b.is_unspecified or b == d
        if b.is_unspecified:
            return v6only is not True
        return b.ipv4_mapped == d
    if bound_family != 6 or b.version != 6:
        return False
    return b.is_unspecified or b == d


def endpoint(host: str, port: int | str) -> str:
    """host:port as a user writes it: [v6]:port for IPv6."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
