"""Ask a running Redis which config file it loaded and what it binds to.

Redis rewrites its process title ("redis-server 127.0.0.1:6379"), so neither the config path
nor `--bind` options survive in /proc/PID/cmdline. The server itself knows: `INFO server`
has `config_file:` (empty when it was started without one) and `CONFIG GET bind` the bind
list. Both are asked over one connection to the server's own listener on this host, with a
short timeout; a server that wants a password answers -NOAUTH and we learn nothing.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from portdoctor.host import Host, LocalHost


@dataclass(frozen=True, slots=True)
class RedisFacts:
    """What a Redis server said about itself; None where it would not say."""

    config_file: str | None  # "" = started without a config file
    bind: str | None


def _read_reply(buf: bytes, pos: int) -> tuple[object, int] | None:
    """Parse one RESP2 reply at buf[pos:]; None when more bytes are needed."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind, line = buf[pos:pos + 1], buf[pos + 1:end]
    pos = end + 2
    if kind in (b"+", b"-", b":"):
        return (line.decode(errors="replace") if kind != b"-" else Exception(line.decode(errors="replace"))), pos
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            return None
        return buf[pos:pos + n].decode(errors="replace"), pos + n + 2
    if kind == b"*":
        n = int(line)
        items = []
        for _ in range(max(n, 0)):
            got = _read_reply(buf, pos)
            if got is None:
                return None
            item, pos = got
            items.append(item)
        return items, pos
    raise ValueError(f"not a RESP reply: {kind!r}")


def parse_replies(data: bytes, count: int) -> list[object] | None:
    """The first `count` replies in data, or None if data is incomplete.

    A reply that cannot be read becomes Exception("could not read reply N: ..."), like an error
    reply, and so do the ones after it (where they start is lost); the ones before are kept.
    """
    out, pos = [], 0
    for i in range(count):
        try:
            got = _read_reply(data, pos)
        except (ValueError, RecursionError) as exc:
            return out + [Exception(f"could not read reply {k}: {exc}") for k in range(i + 1, count + 1)]
        if got is None:
            return None
        item, pos = got
        out.append(item)
    return out


def facts_from_replies(info: object, bind: object) -> RedisFacts:
    """Turn the INFO server and CONFIG GET bind replies into RedisFacts."""
    config_file = None
    if isinstance(info, str):
        for line in info.splitlines():
            if line.startswith("config_file:"):
                config_file = line.partition(":")[2].strip()
    bind_value = None
    if isinstance(bind, list) and len(bind) == 2 and isinstance(bind[1], str):
        bind_value = bind[1]
    return RedisFacts(config_file, bind_value)


def ask(address: str, port: int, timeout: float = 0.5, host: Host | None = None) -> RedisFacts | None:
    """INFO server + CONFIG GET bind from the Redis at address:port; None if it did not answer
    (or the host is a recording: `host.connect` refuses)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with (host or LocalHost()).connect(family, (address, port), timeout) as s:
            s.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$4\r\nbind\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                replies = parse_replies(data, 2)
                if replies is not None:
                    return facts_from_replies(*replies)
                if len(data) > 1 << 20:
                    break
    except (OSError, ValueError):
        return None
    return None
