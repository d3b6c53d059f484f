"""Explain a pasted connection error: which client printed it, which errno on which platform,
which host and port it tried, and what that means.

>>> e = explain("Error: connect ECONNREFUSED 127.0.0.1:3000")
>>> (e.source, e.errno_name, e.target.port)
('node', 'ECONNREFUSED', 3000)
>>> explain("ERROR 2003 (HY000): Can't connect to MySQL server on 'db' (61)").platform
'macos'

Parsers live in `parsers` (one function per message family), the wording every client shares in
`generic` (the layer under the families: any client's target and errno), errno tables in `errnos`.

Text that is no connection error gives `recognized=False`; a parser that raises is a bug of
portdoctor, not bad input, and surfaces as `ParserError`.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from portdoctor.addresses import endpoint
from portdoctor.model import Target

if TYPE_CHECKING:
    from portdoctor.explain.parsers import Candidate
    from portdoctor.model import ProbeResult

__all__ = ["Explanation", "ParserError", "explain"]

MAX_CHARS = 200_000  # a pasted log longer than this is cut (regexes stay fast)

# the server a client's refusal is about, for the meaning sentence
_SERVICES = {"psql": "PostgreSQL", "mysql": "MySQL/MariaDB", "redis-cli": "Redis", "ssh": "SSH"}

_PLATFORM_WORDS = {"linux": "Linux", "macos": "macOS", "bsd": "a BSD", "windows": "Windows"}


@dataclass(frozen=True, slots=True)
class Explanation:
    """What a pasted error message says: source client, errno, platform, target, meaning."""

    recognized: bool
    source: str | None
    errno_name: str | None
    errno_number: int | None
    platform: str | None
    target: Target | None
    port_defaulted: bool
    meaning: str
    notes: tuple[str, ...]
    message: str
    probe: ProbeResult | None = None
    # probe-state vocabulary (refused, timeout, unreachable, dns_error, error) the errno implies
    state: str | None = None
    unix_socket: str | None = None
    # the kind of server the message is about (kafka, mongodb, postgresql, ...), when it says
    service: str | None = None

    def with_probe(self, probe: ProbeResult) -> Explanation:
        """A copy of this explanation carrying the probe of its target."""
        return dataclasses.replace(self, probe=probe)

    def to_json(self) -> dict[str, Any]:
        """The `portdoctor.explain/1` document of SPEC.md, plus `meaning`, `notes`, `state` (the
        probe state the errno implies), `unix_socket` (a client that used one, not TCP) and
        `service` (the kind of server, when the message says)."""
        out: dict[str, Any] = {
            "schema": "portdoctor.explain/1",
            "recognized": self.recognized,
            "source": self.source,
            "errno": {"name": self.errno_name, "number": self.errno_number, "platform": self.platform},
            "target": ({"host": self.target.host, "port": self.target.port}
                       if self.target is not None else None),
            "meaning": self.meaning,
            "notes": list(self.notes),
            "state": self.state,
            "unix_socket": self.unix_socket,
            "service": self.service,
        }
        if self.probe is not None:
            out["probe"] = self.probe.to_json()
        return out


class ParserError(RuntimeError):
    """A parser of portdoctor raised on a pasted text: a bug to report, not a problem of the text."""

    def __init__(self, parser: str, error: BaseException) -> None:
        super().__init__(f"the explain parser {parser} failed on this message "
                         f"({type(error).__name__}: {error}); please report it with the message")
        self.parser = parser


def unrecognized(text: str) -> Explanation:
    """The answer for text that is no connection error portdoctor knows."""
    first = next((ln.strip() for ln in (text or "").splitlines() if ln.strip()), "")
    return Explanation(False, None, None, None, None, None, False,
                       "This is not a connection error portdoctor recognises.", (), first[:500])


def explain(text: str | bytes) -> Explanation:
    """Recognise a pasted connection error.

    Text that is no connection error (or not text at all) gives recognized=False; a parser that
    raises on the text is a bug of portdoctor and raises ParserError, so it cannot pass for bad
    input.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str) or not text.strip():
        return unrecognized("")
    text = text[:MAX_CHARS].replace("\r\n", "\n")
    from portdoctor.explain import generic
    from portdoctor.explain.clients import ORDER

    view = _guarded("generic.normalize", generic.normalize, text)
    evidence = _guarded("generic.scan", generic.scan, view)
    best = _best(ORDER, view)
    if best is None:
        best = _guarded("generic.candidate", generic.candidate, evidence, view)
    else:
        _guarded("generic.complete", generic.complete, best, evidence)
    if best is None:
        return unrecognized(text)
    return _finish(best)


def _guarded(name: str, func: Any, *args: Any) -> Any:
    """Call one step of the parsing; an exception in it becomes a ParserError naming the step."""
    try:
        return func(*args)
    except Exception as exc:
        raise ParserError(name, exc) from exc


def _best(parsers: tuple, text: str) -> Candidate | None:
    """The most specific candidate of `parsers`; on a tie, the parser listed first."""
    best: Candidate | None = None
    for parse in parsers:
        cand = _guarded(f"parsers.{parse.__name__}", parse, text)
        if cand is not None and (best is None or cand.score() > best.score()):
            best = cand
    return best


def _finish(c: Candidate) -> Explanation:
    from portdoctor.explain import errnos

    target = None
    if c.host is not None and c.port is not None and not c.unix_socket:
        shown = endpoint(c.host, c.port)
        target = Target(input=shown, host=c.host, port=c.port, scheme=c.scheme)
    notes = list(c.notes)
    if c.unix_socket and not any("Unix socket" in n for n in notes):
        notes.append(f"The client used the Unix socket {c.unix_socket}, not TCP: there is no TCP "
                     "target to probe; check that the server runs and where it puts its socket.")
    if c.port_defaulted and target is not None:
        from portdoctor.explain.generic import SERVICE_NAMES

        why = (f"the {c.scheme} scheme's" if c.scheme else
               f"{SERVICE_NAMES[c.service]}'s" if c.service in SERVICE_NAMES else f"{c.source}'s")
        notes.append(f"The message names no port; {why} default {c.port} was assumed.")
    if c.host is not None and c.port is None and not c.unix_socket:
        notes.append(f"The message names the host {c.host} but no port: run "
                     f"`portdoctor probe {c.host}:PORT` with the port the client used.")
    notes += _platform_notes(c)
    notes += _address_notes(c)
    state = errnos.STATE.get(c.errno_name or "", "error" if c.errno_name else None)
    return Explanation(
        recognized=True,
        source=c.source,
        errno_name=c.errno_name,
        errno_number=c.errno_number,
        platform=c.platform,
        target=target,
        port_defaulted=c.port_defaulted and target is not None,
        meaning=_meaning(c, target),
        notes=tuple(dict.fromkeys(notes)),
        message=c.line[:500],
        state=state,
        unix_socket=c.unix_socket,
        service=c.service,
    )


def _meaning(c: Candidate, target: Target | None) -> str:
    from portdoctor.explain import errnos

    where = f" {target.host}:{target.port}" if target is not None and ":" not in target.host else (
        f" [{target.host}]:{target.port}" if target is not None else "")
    name = c.errno_name
    if c.source == "nginx" and name == "ECONNREFUSED":
        return (f"nginx's upstream{where} refused the connection: the backend is not listening "
                "there (or a firewall rejects it), so nginx answers 502 Bad Gateway.")
    if c.source == "nginx" and name == "ETIMEDOUT" and c.raw_code == "read":
        return (f"nginx's upstream{where} accepted the connection but sent no response header in "
                "time (proxy_read_timeout): the backend is slow or stuck; nginx answers 504.")
    if c.source == "nginx" and name == "ETIMEDOUT":
        return (f"nginx's upstream{where} did not answer in time: packets are dropped, the backend "
                "host is down, or its accept queue is full; nginx answers 504 or 502.")
    if name is None and c.unix_socket:
        return (f"The {c.source} client could not connect to the Unix socket {c.unix_socket} (not TCP): "
                "the server is not running, or its socket is elsewhere or not open to this user.")
    if name is None:
        if c.source == "curl":
            return (f"curl could not connect to{where} ({c.raw_code}: CURLE_COULDNT_CONNECT); most "
                    "often the connection was refused (nothing listens on that port).")
        return f"The {c.source} client could not connect{(' to' + where) if where else ''}."
    base = errnos.MEANING.get(name, f"The connection failed with {name}.")
    from portdoctor.explain.generic import SERVICE_NAMES

    service = _SERVICES.get(c.source or "") or SERVICE_NAMES.get(c.service or "")
    if name == "ECONNREFUSED" and target is not None and not c.unix_socket:
        what = f"no {service} server" if service else "no process"
        return (f"{target.host} answered, but nothing accepted the connection on port {target.port}: "
                f"{what} listens there on that address, or a firewall rule rejects the packet.")
    if name in ("ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH") and target is not None:
        return f"{target.input}: {base[0].lower()}{base[1:]}"
    if name.startswith("EAI_") and c.host:
        return base.replace("The host name", f"The host name {c.host}", 1)
    if c.unix_socket and name == "ENOENT":
        return (f"The Unix socket {c.unix_socket} does not exist: the server is not running, or it "
                "listens only on TCP or puts its socket in another directory.")
    if c.unix_socket and name == "ECONNREFUSED":
        return (f"The Unix socket {c.unix_socket} exists but nothing accepts on it: the server "
                "stopped and left a stale socket file behind.")
    return base


def _platform_notes(c: Candidate) -> list[str]:
    from portdoctor.explain import errnos

    notes: list[str] = []
    name, number, plat = c.errno_name, c.errno_number, c.platform
    if name and number is not None and plat:
        if name == "ECONNREFUSED" and plat in ("macos", "bsd") and number == 61:
            notes.append("61 is ECONNREFUSED on macOS and the BSDs, but ENODATA (\"No data "
                         "available\") on Linux: this message came from a Mac or a BSD machine.")
        elif name == "ECONNREFUSED" and plat == "linux" and number == 111:
            notes.append("111 is ECONNREFUSED on Linux (61 on macOS and the BSDs, 10061 on Windows).")
        elif name == "ECONNREFUSED" and plat == "windows":
            notes.append("10061 is WSAECONNREFUSED, Windows' number for ECONNREFUSED (111 on Linux, "
                         "61 on macOS and the BSDs).")
        elif name in ("ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ECONNRESET", "ECONNABORTED",
                      "EHOSTDOWN", "ENETDOWN", "EADDRNOTAVAIL"):
            notes.append(errnos.cross_platform(name) + ".")
    here = {"linux": "linux", "darwin": "macos", "win32": "windows"}.get(sys.platform, "bsd")
    if plat and plat != here and not (plat == "bsd" and here == "macos"):
        notes.append(f"The message came from a client on {_PLATFORM_WORDS.get(plat, plat)}; the probe "
                     "runs from this host, so it shows this host's view of the target.")
    return notes


def _address_notes(c: Candidate) -> list[str]:
    notes: list[str] = []
    host = c.host or ""
    if c.source == "node" and host == "::1":
        notes.append("Node 17 and later use the operating system's address order for `localhost`, "
                     "often ::1 first; a server listening only on 127.0.0.1 (IPv4) refuses ::1. "
                     "Connect to 127.0.0.1, or make the server listen on ::1 too.")
    elif host == "::1":
        notes.append("The client connected over IPv6 (::1): a server listening only on 127.0.0.1 "
                     "refuses it. Connect to 127.0.0.1, or make the server listen on ::1 too.")
    if host in ("0.0.0.0", "::"):
        notes.append(f"{host} is a wildcard for listening, not an address to connect to: connect to "
                     "127.0.0.1 (this host) or the server's real address.")
    return notes
