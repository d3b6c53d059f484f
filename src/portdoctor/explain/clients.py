"""Family parsers for clients beyond the runtimes of `parsers`: kubectl, Kafka, gRPC, browsers,
telnet, the Docker CLI, Ruby, PHP, botocore, Dart, Elixir and Prisma.

Each reads what its client prints precisely and adds the advice that client needs; what it
leaves empty (an errno its wording implies, a target elsewhere in the paste) the generic layer
fills in afterwards. `ORDER` is every parser of the package in order of precedence.
"""

from __future__ import annotations

import re
from typing import Callable

from portdoctor.explain import errnos
from portdoctor.explain.errnos import WINDOWS
from portdoctor.explain.parsers import (
    PARSERS,
    Candidate,
    clean_host,
    fill_from_url,
    line_at,
    parse_go,
    split_hostport,
    strerror_name,
    valid_port,
)


def parse_kubectl(text: str) -> Candidate | None:
    """kubectl: `The connection to the server HOST:PORT was refused - did you specify the right
    host or port?`, `Unable to connect to the server: dial tcp ...` and its client-go log lines."""
    m = re.search(r"The connection to the server (\S+?)\s*(?::\s*(\d+))? was refused", text)
    hints = re.search(r"\bkubectl\b|memcache\.go:\d+|couldn't get current server API group list|"
                      r"Unable to connect to the server:|round_trippers\.go", text)
    if m is None and hints is None:
        return None
    c = parse_go(text) if hints is not None else None
    if c is not None:
        c.source = "kubectl"
    elif m is not None:
        c = Candidate("kubectl", line_at(text, m.start()), errno_name="ECONNREFUSED")
        c.host, c.port = split_hostport(m.group(1) + (":" + m.group(2) if m.group(2) else ""))
    else:
        return None
    if c.errno_name is None and m is not None:
        c.errno_name = "ECONNREFUSED"
    if c.port == 8080 and c.host in ("localhost", "127.0.0.1", "::1"):
        c.notes.append("localhost:8080 is where kubectl goes when it finds no kubeconfig: point it at "
                       "your cluster (export KUBECONFIG=/etc/kubernetes/admin.conf, or copy it to "
                       "~/.kube/config; `kubectl config current-context` shows what it uses).")
    else:
        c.notes.append("kubectl connects to the API server of its current kubeconfig context: a "
                       "refusal means kube-apiserver is not listening there (check it runs: "
                       "`crictl ps | grep kube-apiserver`, `systemctl status kubelet`).")
    return c


def parse_kafka(text: str) -> Candidate | None:
    """Kafka clients: the Java NetworkClient's `Connection to node -1 (host/addr:port) could not
    be established. Broker may not be available.` and kafka-python's `NoBrokersAvailable`."""
    m = re.search(r"Connection to node (-?\d+)(?: \(([^)\s]*)\))? could not be established", text)
    if m is not None:
        c = Candidate("kafka", line_at(text, m.start()))
        if m.group(2):
            name, _, addr = m.group(2).rpartition("/")
            c.host, c.port = split_hostport(addr)
            c.host = clean_host(name) or c.host
        node = int(m.group(1))
        c.notes.append("The Kafka client could not open a TCP connection to the broker and does not "
                       "log why (refused or timed out: the probe tells). "
                       + ("Node -1 is an address from bootstrap.servers." if node < 0 else
                          f"Node {node} is a broker address the cluster advertised (advertised.listeners): "
                          "it must be reachable from this client, not only from the broker's host."))
        return c
    m = re.search(r"\bNoBrokersAvailable\b|client has run out of available brokers", text)
    if m is None:
        return None
    c = Candidate("kafka", line_at(text, m.start()))
    c.notes.append("The Kafka client reached no broker of its bootstrap servers (kafka-python's default "
                   "is localhost:9092): check that the broker runs and listens where bootstrap_servers "
                   "points, and that its advertised.listeners are reachable from here.")
    return c


def parse_grpc(text: str) -> Candidate | None:
    """gRPC: `StatusCode.UNAVAILABLE`, `failed to connect to all addresses; last error: UNKNOWN:
    ipv4:HOST:PORT: Failed to connect to remote host: Connection refused` and the JSON
    `debug_error_string` of gRPC core."""
    m = re.search(r"failed to connect to all addresses|Failed to connect to remote host|"
                  r"StatusCode\.UNAVAILABLE|Failed to pick subchannel", text, re.I)
    if m is None:
        return None
    c = Candidate("grpc", line_at(text, m.start()))
    c.notes.append("gRPC reports UNAVAILABLE when its channel could not connect to any address of the "
                   "target; newer versions name the address and the reason after \"last error\".")
    return c


_CHROME = {"CONNECTION_REFUSED": "ECONNREFUSED", "CONNECTION_TIMED_OUT": "ETIMEDOUT", "TIMED_OUT": "ETIMEDOUT",
           "NAME_NOT_RESOLVED": "EAI_NONAME", "ADDRESS_UNREACHABLE": "EHOSTUNREACH",
           "CONNECTION_RESET": "ECONNRESET"}


def parse_chrome(text: str) -> Candidate | None:
    """Chrome and Edge: `net::ERR_CONNECTION_REFUSED`, the page "This site can't be reached /
    localhost refused to connect", `ERR_NAME_NOT_RESOLVED`, `ERR_CONNECTION_TIMED_OUT`."""
    m = re.search(r"\bERR_(" + "|".join(_CHROME) + r")\b", text)
    # the page reads "This site can’t be reached" then "HOST refused to connect"; copies glue the two
    r = re.search(r"(?:reached\s*|(?<![\w.-]))([\w.-]+|\[[0-9a-fA-F:]+\]) refused to connect", text)
    if m is None and r is None:
        return None
    anchor = m or r
    assert anchor is not None
    c = Candidate("chrome", line_at(text, anchor.start()))
    c.errno_name = _CHROME[m.group(1)] if m is not None else "ECONNREFUSED"
    if r is not None:
        c.host, c.port = split_hostport(r.group(1))
        # the page offers "Search Google for HOST PORT", made from the address bar's URL
        g = re.search(r"Search Google for " + re.escape(r.group(1)) + r" (\d{1,5})\b", text)
        if g is not None and c.port is None:
            c.port = valid_port(g.group(1))
    fill_from_url(c, text)
    if c.errno_name == "ECONNREFUSED":
        c.notes.append("The browser's page names the host but not the port: it is the port of the "
                       "address bar's URL (80 for http://, 443 for https:// when none is written).")
    return c


def parse_firefox(text: str) -> Candidate | None:
    """Firefox: "Unable to connect / Firefox can't establish a connection to the server at
    HOST:PORT", "The connection has timed out", and the `about:neterror?e=...` addresses."""
    m = re.search(r"Firefox can.t establish a connection to the server at (\S+?)\.?(?=\s|$)|"
                  r"Firefox is unable to connect to the (\S+) server|e=(connectionFailure|netTimeout|dnsNotFound)",
                  text)
    if m is None:
        return None
    c = Candidate("firefox", line_at(text, m.start()))
    kind = m.group(3) or ""
    c.errno_name = {"netTimeout": "ETIMEDOUT", "dnsNotFound": "EAI_NONAME"}.get(kind, "ECONNREFUSED")
    where = m.group(1) or m.group(2)
    if where and "://" in where:
        fill_from_url(c, where)
    elif where:
        c.host, c.port = split_hostport(where)
    fill_from_url(c, text)
    c.notes.append("Firefox's \"Unable to connect\" page is a refused connection (its timeouts and name "
                   "errors have pages of their own); without a port it means the URL's default, 80 or 443.")
    return c


def parse_telnet(text: str) -> Candidate | None:
    """telnet: `Trying ADDR...` then `telnet: connect to address ADDR: Connection refused` or
    `telnet: Unable to connect to remote host: ...`, and Windows' `Could not open connection to
    the host, on port N: Connect failed`."""
    m = re.search(r"telnet: (?:connect to address (\S+?): ([^\n]+)|Unable to connect to remote host(?:: ([^\n*]+))?)",
                  text)
    w = re.search(r"(?:Connecting To (\S+?)\.\.\.)?Could not open connection to the host, on port (\d+): Connect failed",
                  text)
    if m is None and w is None:
        return None
    if m is not None:
        c = Candidate("telnet", line_at(text, m.start()))
        c.errno_name = strerror_name(m.group(2) or m.group(3) or "")
        cmd = re.search(r"\btelnet\s+(\S+)\s+(\d{1,5})\b", text)
        if cmd:
            c.host, c.port = clean_host(cmd.group(1)), valid_port(cmd.group(2))
        return c
    assert w is not None
    c = Candidate("telnet", line_at(text, w.start()), platform=WINDOWS)
    c.port = valid_port(w.group(2))
    if w.group(1):
        c.host = clean_host(w.group(1))
    c.notes.append("Windows telnet takes the port as a separate argument (`telnet HOST PORT`), not HOST:PORT.")
    return c


def parse_docker(text: str) -> Candidate | None:
    """The Docker CLI: `Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the
    docker daemon running?` and the older `dial unix /var/run/docker.sock: ...`."""
    m = re.search(r"Cannot connect to the Docker daemon at (\S+?)\.?\s+Is the docker daemon running", text, re.I)
    d = re.search(r"dial unix (\S*docker\.sock): (?:connect: )?([^\n]+)", text)
    p = re.search(r"open (//\./pipe/docker_engine\w*): ([^.\n]+)", text)
    if m is None and d is None and p is None:
        return None
    if m is None and d is None:
        assert p is not None
        c = Candidate("docker", line_at(text, p.start()), unix_socket=p.group(1), platform=WINDOWS)
        if "cannot find the file" in p.group(2).lower():
            c.errno_name = "ENOENT"
        c.notes.append("The Docker CLI on Windows talks to Docker Desktop through the named pipe "
                       f"{p.group(1)}, not TCP: start Docker Desktop (and wait until it runs), or "
                       "check DOCKER_HOST and `docker context ls`.")
        return c
    anchor = m or d
    assert anchor is not None
    c = Candidate("docker", line_at(text, anchor.start()))
    where = m.group(1) if m is not None else "unix://" + d.group(1)  # type: ignore[union-attr]
    if where.startswith("unix://"):
        c.unix_socket = where[len("unix://"):]
        c.notes.append(f"The Docker CLI talks to the daemon through the Unix socket {c.unix_socket}, not "
                       "over TCP, so there is no TCP port to probe: start the daemon (`systemctl start "
                       "docker`, or Docker Desktop), check DOCKER_HOST and `docker context ls`, and that "
                       "your user may use the socket (the docker group).")
    else:
        fill_from_url(c, where)
    if d is not None:
        c.errno_name = strerror_name(d.group(2))
    return c


def parse_ruby(text: str) -> Candidate | None:
    """Ruby: `Failed to open TCP connection to HOST:PORT (Connection refused - connect(2) for
    "HOST" port PORT) (Errno::ECONNREFUSED)`, `Errno::ECONNREFUSED: Connection refused - connect(2)`."""
    m = re.search(r"\bErrno::(E[A-Z]+)\b", text)
    s = (re.search(r"([A-Z][^-\n]{0,80}) - connect\(2\)(?: for \"?([^\"\s]+)\"? port (\d+))?", text)
         if "connect(2)" in text else None)
    if m is None and s is None:
        return None
    anchor = s or m
    assert anchor is not None
    c = Candidate("ruby", line_at(text, anchor.start()))
    if m is not None:
        c.errno_name = {"ENOTFOUND": "EAI_NONAME"}.get(m.group(1), m.group(1))
    elif s is not None:
        c.errno_name = strerror_name(s.group(1))
    o = re.search(r"Failed to open TCP connection to (\S+?) \(", text)
    if o is not None:
        c.host, c.port = split_hostport(o.group(1))
    elif s is not None and s.group(2):
        c.host, c.port = clean_host(s.group(2)), valid_port(s.group(3))
    return c


def parse_php(text: str) -> Candidate | None:
    """PHP: PDO's `SQLSTATE[HY000] [2002] Connection refused` (MySQL) and `php_network_getaddresses:
    getaddrinfo failed: ...`."""
    m = re.search(r"SQLSTATE\[HY000\] \[2002\] ([^\n(`\"<]+)", text)
    g = re.search(r"php_network_getaddresses: getaddrinfo failed: ([^\n]+)", text)
    if m is None and g is None:
        return None
    anchor = m or g
    assert anchor is not None
    c = Candidate("php", line_at(text, anchor.start()))
    if m is not None:
        why = m.group(1)
        c.errno_name = strerror_name(why)
        if c.errno_name == "ENOENT":
            c.notes.append("With host=localhost PDO's MySQL driver uses the Unix socket, not TCP, and the "
                           "socket file does not exist: set the DSN host to 127.0.0.1 for TCP, or "
                           "pdo_mysql.default_socket to the server's socket.")
        else:
            c.notes.append("SQLSTATE[HY000] [2002] is PDO's MySQL driver failing to connect: check the "
                           "DSN's host and port (DB_HOST/DB_PORT); inside a container use the database "
                           "service's name, not localhost.")
    else:
        assert g is not None
        c.errno_name = strerror_name(g.group(1)) or "EAI_NONAME"
    return c


def parse_botocore(text: str) -> Candidate | None:
    """AWS SDKs: botocore's `EndpointConnectionError: Could not connect to the endpoint URL: "URL"`."""
    m = re.search(r"(Could not connect to the|Connect timeout on) endpoint URL: \"?([^\"\s]+)", text)
    if m is None:
        return None
    c = Candidate("botocore", line_at(text, m.start()))
    if m.group(1).startswith("Connect timeout"):
        c.errno_name = "ETIMEDOUT"
    fill_from_url(c, m.group(2))
    c.notes.append("botocore does not say why the endpoint refused (refused, timed out or an unknown "
                   "name; the probe tells): check the region and endpoint_url (LocalStack, MinIO), "
                   "and any proxy in HTTPS_PROXY.")
    return c


def parse_dart(text: str) -> Candidate | None:
    """Dart and Flutter: `SocketException: OS Error: Connection refused, errno = 111, address =
    HOST, port = N`, where N is the local port of the socket, not the server's."""
    m = re.search(r"OS Error: ([^,\n]{1,120}), errno = (\d+)\)?(?:, address = ([^,\s\])]+))?", text)
    if m is None:
        return None
    c = Candidate("dart", line_at(text, m.start()))
    number = int(m.group(2))
    name = strerror_name(m.group(1))
    from portdoctor.explain.parsers import apply_number

    apply_number(c, number, name)
    if m.group(3):
        c.host = clean_host(m.group(3))
    c.notes.append("Dart's SocketException prints the local port of the failed socket (`port = ...`), "
                   "not the server's: the server's port is the one your code connects to.")
    if c.host in ("localhost", "127.0.0.1", "::1"):
        c.notes.append("On an Android emulator localhost is the emulator itself: the host machine is 10.0.2.2.")
    return c


def parse_elixir(text: str) -> Candidate | None:
    """Elixir/Erlang: `(DBConnection.ConnectionError) tcp connect (HOST:PORT): connection refused -
    :econnrefused` (Postgrex, MyXQL)."""
    m = re.search(r"tcp connect \(([^)\n]{1,300})\): ([^\n]{0,200}?) - :(\w+)", text)
    if m is None:
        return None
    c = Candidate("elixir", line_at(text, m.start()))
    c.host, c.port = split_hostport(m.group(1))
    code = m.group(3).upper()
    c.errno_name = {"NXDOMAIN": "EAI_NONAME"}.get(code, code if code in errnos.STATE else None) or strerror_name(m.group(2))
    return c


def parse_prisma(text: str) -> Candidate | None:
    """Prisma: `P1001: Can't reach database server at `HOST`:`PORT``."""
    m = re.search(r"(?:Can't reach database server|database server is running) at `([^`]+)`:`(\d+)`", text)
    if m is None:
        return None
    c = Candidate("prisma", line_at(text, m.start()))
    c.host, c.port = clean_host(m.group(1)), valid_port(m.group(2))
    c.notes.append("Prisma's P1001 gives no errno: the database did not accept a connection at the "
                   "host and port of DATABASE_URL (the probe tells whether it refused or timed out).")
    return c


# Every parser, in order of precedence when two candidates are equally specific. The clients of
# this module come first where they add advice to a runtime's own wording (kubectl over Go,
# Docker over Go, Ruby over the strerror text).
ORDER: tuple[Callable[[str], Candidate | None], ...] = (
    parse_kubectl, parse_docker, parse_elixir, parse_ruby, parse_dart, parse_prisma,
) + PARSERS + (
    parse_kafka, parse_grpc, parse_chrome, parse_firefox, parse_telnet, parse_php, parse_botocore,
)

__all__ = ["ORDER"]
