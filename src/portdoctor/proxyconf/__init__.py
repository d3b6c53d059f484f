"""Reverse-proxy configuration parsers: nginx (`nginx -T`), HAProxy (haproxy.cfg), Caddy.

Each parser turns a configuration into one `ProxyConfig`: the routes a proxy serves, each
with the addresses it listens on and the upstreams it forwards to, and the file and line
that say so. Parsers only read text; finding the running proxy and its files is the job of
`portdoctor.collectors.proxies`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from portdoctor.plain import to_plain


@dataclass(frozen=True, slots=True)
class Bind:
    """An address:port a proxy listens on (address "0.0.0.0" / "::" for all)."""

    address: str
    port: int
    file: str
    line: int | None
    text: str
    family: int = 4
    v6only: bool | None = None


@dataclass(frozen=True, slots=True)
class Upstream:
    """A backend a proxy forwards to. `port` None means "the port the client used" (HAProxy)."""

    host: str
    port: int | None
    file: str
    line: int | None
    text: str
    directive: str  # proxy_pass, fastcgi_pass, server, reverse_proxy, dial, ...
    group: str | None = None  # upstream block / backend name
    unix: str | None = None  # a unix socket path instead of host:port
    # the directive that routes to the group (proxy_pass http://backend;), when not this line
    via_file: str | None = None
    via_line: int | None = None
    via_text: str | None = None
    disabled: bool = False  # HAProxy `server ... disabled`: configured but taking no traffic


@dataclass(frozen=True, slots=True)
class Route:
    """One server block / frontend / site: where it listens and what it forwards to."""

    name: str
    binds: tuple[Bind, ...]
    upstreams: tuple[Upstream, ...]
    file: str
    line: int | None
    location: str | None = None
    mode: str = "http"  # http, or tcp for nginx stream / HAProxy mode tcp


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """A proxy's effective configuration, reduced to routes."""

    kind: str  # nginx, haproxy, caddy
    main: str  # the main configuration file (or "caddy admin API")
    routes: tuple[Route, ...] = ()
    files: tuple[str, ...] = ()
    error_logs: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()  # what the parser could not follow (variables, includes)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data, as stored in Snapshot.extra["proxies"]."""
        return to_plain(self)


def split_hostport(text: str, default_port: int | None) -> tuple[str, int | None]:
    """Split "host:port", "[v6]:port", "host" or ":port" into (host, port).

    >>> split_hostport("[::1]:8080", 80)
    ('::1', 8080)
    >>> split_hostport("backend", 80)
    ('backend', 80)
    """
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host, int(port) if port.isdigit() else default_port
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port) if port.isdigit() else default_port
    if text.count(":") > 1:  # a bare IPv6 address
        return text, default_port
    if text.isdigit():
        return "", int(text)
    return text, default_port


def family_of(address: str) -> int:
    """6 for an IPv6 literal, 4 otherwise."""
    return 6 if ":" in address else 4
