"""Turn what a user typed into a Target.

Forms (every command shares them):

>>> parse_target("db.internal:5432").port
5432
>>> parse_target("[::1]:8080").host
'::1'
>>> parse_target(":3000").host
'localhost'
>>> parse_target("postgres://app@db/prod").port
5432
>>> parse_target("10.0.0.2", port=80).port
80
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from portdoctor.errors import BadInput
from portdoctor.model import Target

# Ports a URL scheme implies when the URL names none (IANA and each client's default).
SCHEME_PORTS: dict[str, int] = {
    "http": 80,
    "ws": 80,
    "https": 443,
    "wss": 443,
    "ftp": 21,
    "ssh": 22,
    "sftp": 22,
    "telnet": 23,
    "smtp": 25,
    "smtps": 465,
    "submission": 587,
    "dns": 53,
    "pop3": 110,
    "imap": 143,
    "imaps": 993,
    "pop3s": 995,
    "ldap": 389,
    "ldaps": 636,
    "mysql": 3306,
    "mariadb": 3306,
    "postgres": 5432,
    "postgresql": 5432,
    "redis": 6379,
    "rediss": 6379,
    "amqp": 5672,
    "amqps": 5671,
    "mongodb": 27017,
    "memcached": 11211,
    "mqtt": 1883,
    "mqtts": 8883,
    "nats": 4222,
    "kafka": 9092,
    "elasticsearch": 9200,
    "clickhouse": 9000,
    "cassandra": 9042,
    "zookeeper": 2181,
    "etcd": 2379,
    "consul": 8500,
    "vnc": 5900,
    "rdp": 3389,
    "git": 9418,
    "rtsp": 554,
    "sip": 5060,
    "ipp": 631,
}

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$")


def parse_port(text: str | int, what: str = "port") -> int:
    """Return a TCP port from 1 to 65535, or raise BadInput saying what is wrong."""
    if isinstance(text, int):
        value = text
    else:
        text = text.strip()
        if not (text.isascii() and text.isdigit()):  # "٣" and "８０" are digits to str.isdigit
            raise BadInput(f"{what} {text!r} is not a number (a TCP port is 1 to 65535)")
        value = int(text)
    if not 1 <= value <= 65535:
        raise BadInput(f"{what} {value} is out of range (a TCP port is 1 to 65535)")
    return value


def _check_host(host: str, original: str) -> str:
    if not host:
        raise BadInput(f"target {original!r} has no host")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOSTNAME.match(host) or host.replace(".", "").isdigit():
        raise BadInput(f"target {original!r}: {host!r} is neither a host name nor an IP address")
    return host.rstrip(".") if host != "." else host


def parse_target(text: str, port: int | None = None) -> Target:
    """Parse a target as the user wrote it; raise BadInput (exit 2) with one line if malformed.

    `port` (from --port) fills in a port the text does not give; a port in the text wins.
    """
    original = text
    if text and "@" in text and "://" in text:  # as shown and recorded: a URL's password never is
        from portdoctor import redact

        original = redact.text(text)
    text = (text or "").strip()
    if not text:
        raise BadInput("the target is empty: give host:port, [v6addr]:port, :port or a URL")
    if port is not None:
        port = parse_port(port, "--port")

    if "://" in text:
        return _parse_url(text, original, port)

    if text.startswith("["):  # [v6]:port or [v6]
        m = re.fullmatch(r"\[([^\]]+)\](?::(.*))?", text)
        if not m:
            raise BadInput(f"target {original!r}: expected [IPv6-address]:port")
        host = m.group(1).split("%")[0] if "%" in m.group(1) else m.group(1)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise BadInput(f"target {original!r}: {m.group(1)!r} is not an IPv6 address") from None
        scoped = m.group(1)
        if m.group(2) is None:
            return Target(original, scoped, _need_port(port, original))
        return Target(original, scoped, parse_port(m.group(2)))

    if text.startswith(":") and text.count(":") == 1:  # :port, but not ::1 (a bare IPv6 address)
        return Target(original, "localhost", parse_port(text[1:]))

    if text.count(":") >= 2:  # a bare IPv6 address
        try:
            addr = ipaddress.IPv6Address(text.split("%")[0])
        except ValueError:
            raise BadInput(
                f"target {original!r}: write an IPv6 address with its port as [address]:port"
            ) from None
        if port is None:
            raise BadInput(f"target {original!r} has no port: write an IPv6 address with its port as "
                           "[address]:port, or pass --port")
        return Target(original, text if "%" in text else str(addr), port)

    if ":" in text:
        host, _, port_text = text.rpartition(":")
        return Target(original, _check_host(host, original), parse_port(port_text))

    if text.isdigit():
        raise BadInput(f"target {original!r} has no host: write :{text} for this host, or host:{text}")
    return Target(original, _check_host(text, original), _need_port(port, original))


def _need_port(port: int | None, original: str) -> int:
    if port is None:
        raise BadInput(f"target {original!r} has no port: write host:port or pass --port")
    return port


def _parse_url(text: str, original: str, port: int | None) -> Target:
    try:
        parts = urlsplit(text)
        url_port = parts.port
    except ValueError as exc:
        raise BadInput(f"target {original!r}: {exc}") from None
    scheme = parts.scheme.lower()
    # postgres+psycopg://, mysql+pymysql:// (SQLAlchemy) name the protocol before the '+'
    base_scheme = scheme.split("+")[0]
    raw_host = parts.hostname or ""
    if not raw_host:
        # postgres:///db and redis:///0 mean the local server
        raw_host = "localhost"
    host = _check_host(raw_host, original)
    if url_port is not None:
        return Target(original, host, parse_port(url_port), scheme=base_scheme)
    if port is not None:
        return Target(original, host, port, scheme=base_scheme)
    if base_scheme not in SCHEME_PORTS:
        raise BadInput(f"target {original!r}: scheme {scheme!r} implies no port; add :port to the URL")
    return Target(original, host, SCHEME_PORTS[base_scheme], scheme=base_scheme)
