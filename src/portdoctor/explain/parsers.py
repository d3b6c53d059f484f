"""One parser per family of pasted connection errors.

Each parser reads the whole pasted text (a single line or a multi-line traceback) and returns a
`Candidate` when it recognises its family, else None. A parser fills what its family prints:
the errno (name, number), the platform the number implies, the host and port, and the line
that carried the error. `explain` runs every parser and keeps the most specific candidate.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Callable

from portdoctor.explain import errnos
from portdoctor.explain.errnos import LINUX, MACOS, WINDOWS

# Ports a client uses when the message (or the user) gives none.
CLIENT_PORTS: dict[str, int] = {"psql": 5432, "mysql": 3306, "redis-cli": 6379, "ssh": 22}


@dataclass
class Candidate:
    """What one parser read from the text (mutable while the parser fills it)."""

    source: str
    line: str
    errno_name: str | None = None
    errno_number: int | None = None
    platform: str | None = None
    host: str | None = None
    port: int | None = None
    scheme: str | None = None
    port_defaulted: bool = False
    unix_socket: str | None = None
    notes: list[str] = field(default_factory=list)
    # a number the client printed but which is not the platform errno (Node's -4078, curl's 7)
    raw_code: str | None = None
    # the kind of server the message is about (kafka, mongodb, ...), when the text says
    service: str | None = None

    def score(self) -> int:
        """How much of a diagnosis this candidate carries; the most specific one wins."""
        return ((4 if self.errno_name else 0) + (1 if self.errno_number is not None else 0)
                + (1 if self.platform else 0) + (3 if self.host else 0)
                + (2 if self.port and not self.port_defaulted else 0)
                + (3 if self.unix_socket else 0))


# --------------------------------------------------------------------------- helpers

_URL = re.compile(r"\b([a-z][a-z0-9+.-]{1,20})://(?:[^@\s/'\"<>]*@)?(\[[0-9a-fA-F:.%\w]+\]|[A-Za-z0-9_.-]+)"
                  r"(?::(\d{1,5}))?", re.I)
_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})$")


def line_at(text: str, pos: int) -> str:
    """The full line of `text` that contains position `pos`, stripped."""
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return text[start:end if end != -1 else len(text)].strip()


def clean_host(host: str | None) -> str | None:
    """A host as a Target wants it: brackets and quotes removed; None when it is not a host."""
    if not host:
        return None
    host = host.strip().strip("'\"").strip("[]")
    if not host:
        return None
    try:
        return str(ipaddress.ip_address(host.split("%")[0])) + (
            "%" + host.split("%", 1)[1] if "%" in host else "")
    except ValueError:
        pass
    if _HOSTNAME.match(host) and not host.replace(".", "").isdigit():
        return host.rstrip(".")
    return None


def valid_port(text: str | int | None) -> int | None:
    """The port as an int when it is 1..65535, else None."""
    try:
        value = int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if 1 <= value <= 65535 else None


def _unglue(text: str) -> str:
    """`text` without the quotes, punctuation and unbalanced closing brackets glued to its end
    (`127.0.0.1:27017]"}` from a JSON log, `'db:5432'.`)."""
    while True:
        before = text
        text = text.strip("'\"`").rstrip(".,;")
        for opening, closing in ("()", "[]", "{}", "<>"):
            if text.endswith(closing) and text.count(closing) > text.count(opening):
                text = text[:-1]
        if text == before:
            return text


def split_hostport(text: str) -> tuple[str | None, int | None]:
    """Split `host:port`, `[v6]:port` and the unbracketed `::1:3000` that Node and redis-cli print.

    >>> split_hostport("::1:3000")
    ('::1', 3000)
    >>> split_hostport("[fe80::1]:5432")
    ('fe80::1', 5432)
    """
    text = _unglue(text.strip())
    m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", text)
    if m:
        return clean_host(m.group(1)), valid_port(m.group(2))
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and host:
        return clean_host(host), valid_port(port)
    return clean_host(text), None


def url_target(text: str) -> tuple[str | None, int | None, str | None, bool]:
    """The first URL in `text`: (host, port, scheme, port_defaulted); the scheme gives the port
    when the URL names none (http 80, https 443, postgres 5432, ...)."""
    from portdoctor.target import SCHEME_PORTS

    for m in _URL.finditer(text):
        scheme = m.group(1).lower().split("+")[0]
        host = clean_host(m.group(2))
        if host is None:
            continue
        port = valid_port(m.group(3))
        if port is not None:
            return host, port, scheme, False
        if scheme in SCHEME_PORTS:
            return host, SCHEME_PORTS[scheme], scheme, True
    return None, None, None, False


def apply_number(c: Candidate, number: int, name: str | None = None) -> None:
    """Record an errno number on `c` and the platform it implies (61 + refused -> macOS)."""
    if name is None:
        for plat in (c.platform, LINUX, MACOS, WINDOWS):
            if plat is None:
                continue
            found = errnos.name_of(number, plat)
            if found and found not in ("ENODATA",):
                name = found
                break
    c.errno_number = number
    if name:
        c.errno_name = c.errno_name or name
        plats = errnos.platforms_of(number, name)
        if plats and (c.platform is None or c.platform not in plats):
            c.platform = plats[0]


def strerror_name(text: str) -> str | None:
    """The errno condition a message phrase names ('Connection refused' -> ECONNREFUSED)."""
    return errnos.from_strerror(text)


def fill_from_url(c: Candidate, text: str) -> None:
    """Take host and port from a URL in `text` when the candidate has none yet."""
    if c.host is not None:
        return
    host, port, scheme, defaulted = url_target(text)
    if host:
        c.host, c.port, c.scheme, c.port_defaulted = host, port, scheme, defaulted


# --------------------------------------------------------------------------- families


def parse_nginx(text: str) -> Candidate | None:
    """nginx error log: `connect() failed (111: Connection refused) while connecting to upstream,
    ..., upstream: "http://127.0.0.1:9000/"`."""
    m = re.search(r"(?:connect\(\)(?: to (\S+))? failed|upstream timed out) \((\d+): ([^)]*)\)"
                  r"(?: while (?:connecting to|reading response header from) upstream)?", text)
    if not m:
        return None
    c = Candidate("nginx", line_at(text, m.start()))
    apply_number(c, int(m.group(2)), strerror_name(m.group(3)))
    rest = text[m.end():m.end() + 2000]
    if m.group(1) and m.group(1).startswith("unix:"):
        c.unix_socket = m.group(1)[5:]
    up = re.search(r'upstream: "([^"\s]+)', rest)
    if up and not c.unix_socket:
        if up.group(1).startswith("unix:") or "unix:/" in up.group(1):
            c.unix_socket = up.group(1).split("unix:", 1)[1].split(":")[0]
        else:
            fill_from_url(c, up.group(1))
    if c.host is None and m.group(1) and not c.unix_socket:
        c.host, c.port = split_hostport(m.group(1))
    if "while reading response header" in m.group(0):
        c.raw_code = "read"
        c.notes.append("nginx did connect to the upstream; the backend accepted the connection but "
                       "sent no response header within proxy_read_timeout (a slow or stuck backend, "
                       "not a refused or dropped connection).")
    else:
        c.notes.append("This is nginx's connection to its upstream (the backend it proxies to), not a "
                       "client's connection to nginx: clients of nginx get 502 Bad Gateway.")
    return c


def _libpq_tcp(text: str, at: int, host: str, port: str, why: str, each_address: str) -> Candidate:
    """A libpq TCP failure (either message generation); notes when every address of the host failed."""
    c = Candidate("psql", line_at(text, at))
    c.host, c.port = clean_host(host), valid_port(port)
    _libpq_errno(c, why)
    addrs = re.findall(each_address, text)
    if len(set(addrs)) > 1:
        c.notes.append(f"psql tried every address of {host} ({', '.join(dict.fromkeys(addrs))}) "
                       "and each one failed.")
    return c


def parse_psql(text: str) -> Candidate | None:
    """libpq (psql, psycopg, pg gem): `connection to server at "h" (ip), port 5432 failed: ...`,
    the older `could not connect to server: ... Is the server running on host "h" ... port 5432?`,
    and the Unix-socket forms of both."""
    c: Candidate | None = None
    m = re.search(r'connection to server at "([^"]+)"(?: \(([^)]+)\))?, port (\d+) failed: ([^\n]*)', text)
    if m:
        c = _libpq_tcp(text, m.start(), m.group(1), m.group(3), m.group(4),
                       r'connection to server at "[^"]+" \(([^)]+)\), port \d+ failed')
    if c is None:
        m = re.search(r'could not connect to server: ([^\n]{0,300})\s+Is the server running on host "([^"]+)"'
                      r'(?: \(([^)]+)\))? and accepting\s+TCP/IP connections on port (\d+)\?', text)
        if m:
            c = _libpq_tcp(text, m.start(), m.group(2), m.group(4), m.group(1),
                           r'Is the server running on host "[^"]+" \(([^)]+)\)')
    if c is None:
        m = (re.search(r'connection to server on socket "([^"]+)" failed: ([^\n]*)', text)
             or re.search(r'could not connect to server: ([^\n]{0,300})\s+Is the server running locally and '
                          r'accepting\s+connections on Unix domain socket "([^"]+)"', text))
        if m:
            c = Candidate("psql", line_at(text, m.start()))
            sock, why = (m.group(1), m.group(2)) if m.re.pattern.startswith("connection") else (m.group(2), m.group(1))
            c.unix_socket = sock
            _libpq_errno(c, why)
            c.notes.append("psql used a Unix socket, not TCP (no -h was given, or -h named a directory); "
                           "pass -h 127.0.0.1 to connect over TCP, or check that the server's "
                           "unix_socket_directories contains " + sock.rsplit("/", 1)[0] + ".")
            return c
    if c is None:
        m = re.search(r'could not translate host name "([^"]+)" to address: ([^\n]*)', text)
        if m:
            c = Candidate("psql", line_at(text, m.start()))
            c.host = clean_host(m.group(1))
            c.errno_name = "EAI_NONAME" if "temporary" not in m.group(2).lower() else "EAI_AGAIN"
            _platform_from_gai(c, m.group(2))
    if c is None:
        m = re.search(r"Connection to (\S+?) refused\. Check that the hostname and port are correct", text)
        if m:  # PgJDBC, the Java driver (pgAdmin, DBeaver, Spring)
            c = Candidate("java", line_at(text, m.start()))
            c.host, c.port = split_hostport(m.group(1))
            c.errno_name = "ECONNREFUSED"
            return c
    if c is None:
        return None
    if c.port is None and c.host is not None:
        c.port, c.port_defaulted = CLIENT_PORTS["psql"], True
    return c


def _libpq_errno(c: Candidate, why: str) -> None:
    c.errno_name = strerror_name(why) or ("ETIMEDOUT" if "timeout expired" in why.lower() else None)
    w = re.search(r"\(0x[0-9A-Fa-f]+/(\d+)\)", why)
    if w:
        apply_number(c, int(w.group(1)), c.errno_name)


def _platform_from_gai(c: Candidate, why: str) -> None:
    low = why.lower()
    if "name or service not known" in low or "temporary failure in name resolution" in low:
        c.platform = LINUX
    elif "nodename nor servname" in low:
        c.platform = MACOS
    elif "no such host is known" in low:
        c.platform = WINDOWS
    if c.platform and c.errno_name:
        c.errno_number = errnos.number_of(c.errno_name, c.platform)


def parse_mysql(text: str) -> Candidate | None:
    """MySQL and MariaDB clients: `ERROR 2003 (HY000): Can't connect to MySQL server on 'h:3306'
    (111)`, the MariaDB `Can't connect to server on 'h' (115)`, the Unix-socket 2002 form and
    `Unknown MySQL server host 'h' (-2)`."""
    m = re.search(r"Can't connect to local (?:MySQL )?server through socket '([^']+)' \((-?\d+)", text)
    if m:
        c = Candidate("mysql", line_at(text, m.start()))
        c.unix_socket = m.group(1)
        apply_number(c, int(m.group(2)))
        c.notes.append("The mysql client used the Unix socket, because the host was 'localhost' or "
                       "none; use -h 127.0.0.1 (or --protocol=TCP) to connect over TCP.")
        return c
    m = re.search(r"Can't connect to (?:MySQL |MariaDB )?server on '([^']*)'\s*\((?:\[(?:WinError|Errno) )?(-?\d+)\]?"
                  r"(?: \"([^\"]*)\")?", text)
    if m:
        c = Candidate("mysql", line_at(text, m.start()))
        _mysql_host(c, m.group(1))
        number = int(m.group(2))
        apply_number(c, number, strerror_name(m.group(3) or ""))
        if c.errno_name == "EINPROGRESS":
            c.notes.append(f"{number} is EINPROGRESS: the MariaDB client prints the errno of its "
                           "non-blocking connect, not the real outcome; the connection was refused or "
                           "timed out (the probe tells which).")
        return c
    m = re.search(r"Unknown (?:MySQL )?server host '([^']*)' \((-?\d+)\)", text)
    if m:
        c = Candidate("mysql", line_at(text, m.start()))
        _mysql_host(c, m.group(1))
        number = int(m.group(2))
        c.errno_name = "EAI_AGAIN" if number == -3 else "EAI_NONAME"
        c.errno_number = number
        if number in (-2, -3):
            c.platform = LINUX
        return c
    return None


def _mysql_host(c: Candidate, text: str) -> None:
    host, port = split_hostport(text)
    try:  # '::1' is a whole address, not host '::' port 1
        ipaddress.IPv6Address(text)
        if port is None or port < 10 or host is None:
            host, port = clean_host(text), None
    except ValueError:
        pass
    c.host, c.port = host, port
    if c.port is None and c.host is not None:
        c.port, c.port_defaulted = CLIENT_PORTS["mysql"], True


def parse_redis_cli(text: str) -> Candidate | None:
    """redis-cli: `Could not connect to Redis at 127.0.0.1:6379: Connection refused`."""
    m = re.search(r"Could not connect to Redis at (\S+?): ([A-Za-z][^\n]*)", text)
    if not m:
        return None
    c = Candidate("redis-cli", line_at(text, m.start()))
    c.host, c.port = split_hostport(m.group(1))
    if c.port is None and c.host is not None:
        c.port, c.port_defaulted = CLIENT_PORTS["redis-cli"], True
    c.errno_name = strerror_name(m.group(2))
    _platform_from_gai(c, m.group(2))
    return c


def parse_curl(text: str) -> Candidate | None:
    """curl: `curl: (7) Failed to connect to h port 3000 after 0 ms: Connection refused` (older
    curl) or `...: Couldn't connect to server` (7.85+), `curl: (6) Could not resolve host: h`,
    `curl: (28) ... Connection timed out`; also `cURL error 7:` from PHP and the -v lines."""
    m = re.search(r"(?:curl: \((\d+)\)|cURL error (\d+):)\s*([^\n]*)", text)
    f = re.search(r"Failed to connect to (\S+) port (\d+)(?: after \d+ ms)?: ([^\n;]*)", text)
    r = re.search(r"Could not resolve host: ([^\s;]+)", text)
    if not (m or f or (r and ("curl" in text.lower() or "unable to access" in text))):  # git uses libcurl
        return None
    anchor = m or f or r
    assert anchor is not None
    c = Candidate("curl", line_at(text, anchor.start()))
    code = int(m.group(1) or m.group(2)) if m else None
    if code is not None:
        c.raw_code = f"curl exit {code}"
    if f:
        c.host, c.port = clean_host(f.group(1)), valid_port(f.group(2))
        c.errno_name = strerror_name(f.group(3))
        if c.errno_name is None and "couldn't connect to server" in f.group(3).lower():
            c.notes.append("curl 7.85 and later print \"Couldn't connect to server\" instead of the "
                           "errno; curl -v shows it (\"connect to ... failed: Connection refused\").")
    if r or code == 6:
        c.errno_name = "EAI_NONAME"
        if r:
            c.host = clean_host(r.group(1))
    if c.host is not None and c.port is None:
        url_host, url_port, scheme, defaulted = url_target(text)
        if url_host == c.host:
            c.port, c.scheme, c.port_defaulted = url_port, scheme, defaulted
    if code == 28 and c.errno_name is None:
        c.errno_name = "ETIMEDOUT"
    v = re.search(r"connect to (\S+) port (\d+) failed: ([^\n]*)", text)
    if v and c.errno_name is None:
        c.errno_name = strerror_name(v.group(3))
        c.notes = [n for n in c.notes if "curl -v" not in n]
        if c.host is None:
            c.host, c.port = clean_host(v.group(1)), valid_port(v.group(2))
    fill_from_url(c, text)
    return c


def parse_wget(text: str) -> Candidate | None:
    """wget: `Connecting to 127.0.0.1:8080... failed: Connection refused.`"""
    m = re.search(r"Connecting to (?:(\S+) \(\S+\)\|)?(\S+?)\|?:(\d+)\.\.\. failed: ([^\n]*)", text)
    if m:
        c = Candidate("wget", line_at(text, m.start()))
        c.host = clean_host(m.group(1) or m.group(2).strip("|"))
        c.port = valid_port(m.group(3))
        c.errno_name = strerror_name(m.group(4))
        return c
    m = re.search(r"wget: unable to resolve host address ['‘]([^'’]+)['’]", text)
    if m:
        c = Candidate("wget", line_at(text, m.start()))
        c.host, c.errno_name = clean_host(m.group(1)), "EAI_NONAME"
        fill_from_url(c, text)
        return c
    return None


def parse_ssh(text: str) -> Candidate | None:
    """OpenSSH: `ssh: connect to host h port 22: Connection refused`."""
    m = re.search(r"ssh: connect to host (\S+) port (\d+): ([^\n]*)", text)
    if m:
        c = Candidate("ssh", line_at(text, m.start()))
        c.host, c.port = clean_host(m.group(1)), valid_port(m.group(2))
        c.errno_name = strerror_name(m.group(3))
        return c
    m = re.search(r"ssh: Could not resolve hostname (\S+?): ([^\n]*)", text)
    if m:
        c = Candidate("ssh", line_at(text, m.start()))
        c.host = clean_host(m.group(1))
        c.errno_name = "EAI_AGAIN" if "temporary failure" in m.group(2).lower() else "EAI_NONAME"
        c.port, c.port_defaulted = CLIENT_PORTS["ssh"], True
        _platform_from_gai(c, m.group(2))
        return c
    return None


def parse_go(text: str) -> Candidate | None:
    """Go net: `dial tcp 127.0.0.1:5432: connect: connection refused`, `connectex:` on Windows,
    `i/o timeout`, `dial tcp: lookup h on 127.0.0.11:53: no such host`, `dial unix /path: ...`."""
    m = (re.search(r"dial (tcp[46]?|unix) (\S+): (?:(connect|connectex|getsockopt): )?([^\n]*)", text)
         or re.search(r"\b(tcp[46]?) (\S+:\d+): (connect|connectex|getsockopt): ([^\n]*)", text))
    if m and m.group(2) != "lookup":
        c = Candidate("go", line_at(text, m.start()))
        why = m.group(4)
        if m.group(1) == "unix":
            c.unix_socket = m.group(2)
        else:
            c.host, c.port = split_hostport(m.group(2))
        if why.lower().startswith("i/o timeout"):
            c.errno_name = "ETIMEDOUT"
            c.notes.append("Go's \"i/o timeout\" is its own dial deadline (net.Dialer.Timeout or a "
                           "context), not the kernel's ETIMEDOUT; either way, nothing answered.")
        else:
            c.errno_name = strerror_name(why)
        if m.group(3) == "connectex":
            c.platform = WINDOWS
        if c.platform and c.errno_name:
            c.errno_number = errnos.number_of(c.errno_name, c.platform)
        fill_from_url(c, text)
        return c
    m = re.search(r"dial (?:tcp[46]?|udp): lookup (\S+?)(?: on (\S+:\d+))?: ([^\n]*)", text)
    if m:
        c = Candidate("go", line_at(text, m.start()))
        c.host = clean_host(m.group(1))
        why = m.group(3).lower()
        c.errno_name = "EAI_NONAME" if "no such host" in why else (
            "EAI_AGAIN" if ("timeout" in why or "server misbehaving" in why) else strerror_name(why))
        if m.group(2) and m.group(2).startswith("127.0.0.11:"):
            c.notes.append("127.0.0.11 is Docker's embedded DNS server: the name is not a container or "
                           "service on the same Docker network (check the service name and the "
                           "networks of both containers).")
        url_host, url_port, scheme, defaulted = url_target(text)
        if url_host == c.host:
            c.port, c.scheme, c.port_defaulted = url_port, scheme, defaulted
        return c
    return None


def parse_node(text: str) -> Candidate | None:
    """Node.js: `Error: connect ECONNREFUSED 127.0.0.1:3000` (also `::1:3000`), `getaddrinfo
    ENOTFOUND h`, the `errno: -111` / `address:` / `port:` fields, and AggregateError lists."""
    m = re.search(r"\b(connect|getaddrinfo|read|write|querySrv) (E[A-Z_]{3,})\b(?: ([^\s,)]+))?"
                  r"(?: ([^\s,)]+:\d+))?", text)
    if not m:
        return None
    c = Candidate("node", line_at(text, m.start()))
    code = m.group(2)
    c.raw_code = code
    c.errno_name = {"ENOTFOUND": "EAI_NONAME", "EAI_AGAIN": "EAI_AGAIN"}.get(code, code)
    if code == "ENOTFOUND":
        c.notes.append("Node reports a name that does not resolve (EAI_NONAME) as ENOTFOUND.")
    if m.group(3):
        if m.group(1) == "getaddrinfo":
            c.host = clean_host(m.group(3))
            if m.group(4):  # Node before 12: `getaddrinfo ENOTFOUND h h:80`
                c.port = split_hostport(m.group(4))[1]
        elif m.group(3).startswith("/"):  # `connect ECONNREFUSED /var/run/postgresql/.s.PGSQL.5432`
            c.unix_socket = m.group(3)
        else:
            c.host, c.port = split_hostport(m.group(3))
    n = re.search(r"errno: (-?\d+)", text)
    if n:
        value = int(n.group(1))
        if value in errnos.LIBUV_WINDOWS:
            if not -3100 < value <= -3000:  # libuv's getaddrinfo codes are the same everywhere
                c.platform = WINDOWS
                c.errno_number = errnos.number_of(c.errno_name, WINDOWS)
                c.notes.append(f"Node on Windows prints libuv's code {value} for {c.errno_name}.")
        elif value < 0:
            apply_number(c, -value, c.errno_name)
    if c.port is None:
        p = re.search(r"\bport: (\d+)", text)
        if p:
            c.port = valid_port(p.group(1))
    if c.host is None:
        a = re.search(r"\b(?:address|hostname): '([^']+)'", text)
        if a:
            c.host = clean_host(a.group(1))
    if c.host is not None and c.port is None:
        url_host, url_port, scheme, defaulted = url_target(text)
        if url_host == c.host:
            c.port, c.scheme, c.port_defaulted = url_port, scheme, defaulted
    fam = re.findall(r"connect " + re.escape(code) + r" (\S+)", text)
    if len(set(fam)) > 1:
        c.notes.append("Node tried several addresses (" + ", ".join(dict.fromkeys(fam)) + ") and every "
                       "one failed (AggregateError from autoSelectFamily, Node 20+).")
    return c


def parse_rust(text: str) -> Candidate | None:
    """Rust std::io::Error: `Connection refused (os error 111)` and the Debug form
    `Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }`."""
    m = re.search(r"\(os error (-?\d+)\)", text)
    d = re.search(r'Os \{\s*code: (-?\d+),\s*kind: (\w+),\s*message: "([^"]*)",?\s*\}', text)
    if not (m or d):
        return None
    anchor = d or m
    assert anchor is not None
    c = Candidate("rust", line_at(text, anchor.start()))
    if d:
        apply_number(c, int(d.group(1)), strerror_name(d.group(3)))
    else:
        assert m is not None
        apply_number(c, int(m.group(1)), strerror_name(text[max(0, m.start() - 120):m.start()]))
    if c.host is None:
        h = re.search(r"(?:connect(?:ing)? to|addr(?:ess)?[=:]\s*)\s*(\[[0-9a-fA-F:]+\]:\d+|[\w.-]{1,253}:\d+)", text)
        if h:
            c.host, c.port = split_hostport(h.group(1))
    return c


_JAVA_EXC = re.compile(r"(?<!\\)\b(?:java\.net\.|org\.apache\.http\.conn\.|io\.netty\.channel\.AbstractChannel\$)?"
                       r"(ConnectException|HttpHostConnectException|AnnotatedConnectException|"
                       r"NoRouteToHostException|UnknownHostException|SocketTimeoutException)"
                       r"(?::[ \t]*([^\n]*))?")


def parse_java(text: str) -> Candidate | None:
    """Java: `java.net.ConnectException: Connection refused` (`: connect` on Windows), Apache
    HttpClient `Connect to h:8080 [h/127.0.0.1] failed`, Netty `Connection refused: h/ip:port`,
    `UnknownHostException: h`, `SocketTimeoutException: connect timed out`."""
    netty = re.search(r"Connection refused: (?:no further information: )?([\w.-]{0,253}/\[?[0-9a-fA-F:.]{2,45}\]?:\d+)", text)
    hits = list(_JAVA_EXC.finditer(text))
    if not hits and netty:  # Netty's message alone: `Connection refused: localhost/127.0.0.1:8080`
        c = Candidate("java", line_at(text, netty.start()), errno_name="ECONNREFUSED")
        name, _, addr = netty.group(1).partition("/")
        c.host, c.port = split_hostport(addr)
        c.host = clean_host(name) or c.host
        return c
    if not hits:
        return None
    # the most specific line: one that names a host, else the first
    best = next((h for h in hits if h.group(2) and re.search(r"/[\d.:a-fA-F]{2,45}:\d+|:\d+", h.group(2))),
                hits[0])
    c = Candidate("java", line_at(text, best.start()))
    kind, msg = best.group(1), best.group(2) or ""
    if kind == "UnknownHostException":
        c.errno_name = "EAI_NONAME"
        c.host = clean_host(msg.split(":")[0].strip())
        _platform_from_gai(c, msg)
    elif kind == "NoRouteToHostException":
        c.errno_name = "EHOSTUNREACH"
    elif kind == "SocketTimeoutException":
        c.errno_name = "ETIMEDOUT"
    else:
        c.errno_name = strerror_name(msg) or "ECONNREFUSED"
    if re.search(r"Connection refused: connect\b", text):
        c.platform = WINDOWS
        c.errno_number = errnos.number_of(c.errno_name, WINDOWS)
    hp = (re.search(r"Connect to (\S+?) \[", text)
          or re.search(r"/(\[?[0-9a-fA-F:.]{2,45}\]?:\d+)\b", msg)
          or re.search(r"\b[\w.-]{1,253}/(\[?[0-9a-fA-F:.]{2,45}\]?:\d+)\b", text))
    if hp:
        c.host, c.port = split_hostport(hp.group(1))
        named = re.search(r"\b([A-Za-z][\w.-]{0,252})/" + re.escape(hp.group(1)), text)
        if named and clean_host(named.group(1)):
            c.host = clean_host(named.group(1))
    return c


def parse_python(text: str) -> Candidate | None:
    """Python: `ConnectionRefusedError: [Errno 111] Connection refused` ([Errno 61] on macOS,
    [WinError 10061] on Windows), requests/urllib3 `HTTPConnectionPool(host='h', port=8000): Max
    retries exceeded ... NewConnectionError`, `socket.gaierror: [Errno -2] Name or service not
    known`, redis-py `Error 111 connecting to h:6379. Connection refused.`"""
    m = (re.search(r"\[(Errno|WinError) (-?\d+)\] ([^\]'\"\)>\n]*)", text)
         or re.search(r"\bError (-?\d+) connecting to (\S+?)\. ([^\n]*)", text)
         or re.search(r"(?:socket\.timeout|TimeoutError|ConnectTimeoutError)\b[:(]", text))
    if not m:
        return None
    # the most specific line: the last [Errno] that names a host wins over the bare exception line
    c = Candidate("python", line_at(text, m.start()))
    if m.re.pattern.startswith(r"\[(Errno"):
        rich = [x for x in re.finditer(r"\[(Errno|WinError) (-?\d+)\] ([^\]'\"\)>\n]*)", text)
                if "host=" in line_at(text, x.start()) or "Max retries" in line_at(text, x.start())]
        if rich:
            m = rich[-1]
            c.line = line_at(text, m.start())
        number, why = int(m.group(2)), m.group(3)
        name = strerror_name(why)
        if name is None and "getaddrinfo failed" in why.lower():
            name = "EAI_NONAME"
        if m.group(1) == "WinError" or number >= 10000:
            c.platform = WINDOWS
        elif name and name.startswith("EAI_"):
            _platform_from_gai(c, why)
        apply_number(c, number, name)
        if name and name.startswith("EAI_"):
            c.errno_name = name
            c.errno_number = number
    elif m.re.pattern.startswith(r"\bError"):
        c.host, c.port = split_hostport(m.group(2))
        apply_number(c, int(m.group(1)), strerror_name(m.group(3)))
    else:
        c.errno_name = "ETIMEDOUT"
    h = (re.search(r"host='([^']+)', port=(\d+)", text)
         or re.search(r"Connect call failed \('([^']+)', (\d+)", text))  # asyncio
    if h and c.host is None:
        c.host, c.port = clean_host(h.group(1)), valid_port(h.group(2))
    if c.host is None:
        t = re.search(r"Connection to (\S+) timed out", text)
        if t:
            c.host = clean_host(t.group(1))
    return c


def parse_windows(text: str) -> Candidate | None:
    """Winsock and .NET: `No connection could be made because the target machine actively
    refused it`, `SocketException (10061)`, `WSAECONNREFUSED`."""
    m = (re.search(r"No connection could be made because the target machine actively refused it", text, re.I)
         or re.search(r"\bWSAE(CONNREFUSED|TIMEDOUT|HOSTUNREACH|NETUNREACH|CONNRESET)\b", text)
         or re.search(r"SocketException \((100\d\d|1100\d)\)", text)
         or re.search(r"\b(10061|10060|10065|10051|10054)\b", text))
    if not m:
        return None
    source = "dotnet" if ("System.Net" in text or "SocketException" in text) else "windows"
    c = Candidate(source, line_at(text, m.start()), platform=WINDOWS)
    num = re.search(r"\b(100[5-6]\d|1100[1-4])\b", text)
    name = strerror_name(text) or ("E" + m.group(1) if m.re.pattern.startswith(r"\bWSAE") else None)
    if num:
        apply_number(c, int(num.group(1)), name if name and errnos.number_of(name, WINDOWS) == int(num.group(1)) else None)
        c.platform = WINDOWS
    else:
        c.errno_name = name
        c.errno_number = errnos.number_of(name, WINDOWS) if name else None
    uds = re.search(r"Error connecting to '([A-Za-z]:\\[^']+|/[^']+)'", text)
    if uds:  # .NET over a Unix domain socket: `(localhost:80)` is only the HTTP authority
        c.unix_socket = uds.group(1)
        return c
    hp = (re.search(r"\((\[?[\w.:-]+\]?:\d+)\)", text) or re.search(r"\[tcp://([^\]]+)\]", text))
    if hp:
        c.host, c.port = split_hostport(hp.group(1))
    return c


# In order of precedence when two candidates are equally specific.
PARSERS: tuple[Callable[[str], Candidate | None], ...] = (
    parse_nginx, parse_psql, parse_mysql, parse_redis_cli, parse_curl, parse_wget, parse_ssh,
    parse_go, parse_node, parse_rust, parse_java, parse_python, parse_windows,
)
__all__ = ["Candidate", "PARSERS", "split_hostport", "url_target"]
