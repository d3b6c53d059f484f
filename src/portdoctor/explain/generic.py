"""The layer under the family parsers: what any client's message says, whoever printed it.

A family parser knows one client's exact wording. This module knows the wording all of them
share, anywhere in a pasted text (one line, a traceback, a log with noise around it):

- errno evidence: symbolic names (`ECONNREFUSED`, `:econnrefused`, `Errno::ECONNREFUSED`,
  `ERR_CONNECTION_REFUSED`), the C library's phrases ("Connection refused", "No route to host"),
  the wording one system alone uses ("actively refused", "Operation timed out", "nodename nor
  servname provided") and numbers in errno positions (`[Errno 111]`, `errno = 61`, `(10061)`);
  a number or a system-specific phrase gives the platform;
- targets: `host:port`, `[v6]:port`, URLs (the scheme gives a missing port), `name/addr:port`
  (Java, Kafka), `ipv4:HOST:PORT` (gRPC), `HOST port N` (ssh, curl, nc), `Trying ADDR...`
  (telnet), `host='h', port=N` and `HOST=h ... PORT=N` pairs, ranked by how close they stand to
  the failure and by what surrounds them (a listening address or a stack frame is no target);
- the service a message is about (Kafka, MongoDB, AMQP, ...), whose default port fills in a
  port the message leaves out.

`scan` returns that evidence; `candidate` turns it into a Candidate for text no family parser
recognised, and `complete` fills what a family parser left empty.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from dataclasses import dataclass
from typing import Iterator

from portdoctor.explain import errnos
from portdoctor.explain.errnos import LINUX, MACOS, WINDOWS
from portdoctor.explain.parsers import Candidate, clean_host, line_at, split_hostport, valid_port
from portdoctor.target import SCHEME_PORTS

__all__ = ["Evidence", "normalize", "scan", "candidate", "complete"]


@dataclass(frozen=True, slots=True)
class ErrnoHit:
    """One piece of errno evidence: a condition, maybe the platform its wording implies."""

    pos: int
    name: str | None  # None: the phrase gives only the platform (Go's `connectex:`)
    platform: str | None
    strength: int


@dataclass(frozen=True, slots=True)
class NumberHit:
    """A number printed where an errno goes (`[Errno 111]`, `errno = 61`, `(10061)`)."""

    pos: int
    number: int


@dataclass(frozen=True, slots=True)
class TargetHit:
    """A host (and port, when the text gives one) the client may have dialled."""

    pos: int
    host: str
    port: int | None
    scheme: str | None
    score: int
    defaulted: bool = False  # the port is the scheme's or the service's default


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything the generic layer read from one text."""

    errnos: tuple[ErrnoHit, ...]
    numbers: tuple[NumberHit, ...]
    targets: tuple[TargetHit, ...]
    failure: bool  # connect-failure wording without an errno ("could not be established")
    service: str | None
    source: str | None
    anchors: tuple[int, ...]  # line numbers of the lines that carry the failure


# --------------------------------------------------------------------------- normalising


def normalize(text: str) -> str:
    """The text as a reader sees it: HTML entities and %-escapes decoded, JSON-escaped newlines
    made real, and Dart's `port = N` (the local port of a failed socket) removed."""
    if re.search(r"&(?:quot|amp|lt|gt|#\d+);", text):
        import html

        text = html.unescape(text)
    if re.search(r"%3[Aa]%?|%2[Ff]", text):
        from urllib.parse import unquote

        text = unquote(text)
    text = re.sub(r"\\n(?=\s)", "\n", text).replace('\\"', '"').replace("：", ":")
    # Dart's SocketException names the *local* port of the failed socket, not the server's
    return re.sub(r"(address = [^,\s]+), port = \d+", r"\1", text)


# --------------------------------------------------------------------------- errno wording

_W = r"\s+"  # the space between two words of a phrase (pastes wrap lines anywhere)


def _phrase(words: str) -> str:
    return _W.join(re.escape(w) for w in words.split())


# (pattern, condition, platform the wording belongs to, strength)
_ERRNO_WORDS: tuple[tuple[str, str | None, str | None, int], ...] = (
    # Windows (FormatMessage texts, also translated), Java and Go on Windows
    (_phrase("actively refused"), "ECONNREFUSED", WINDOWS, 4),
    (_phrase("denegó expresamente"), "ECONNREFUSED", WINDOWS, 4),
    ("积极拒绝", "ECONNREFUSED", WINDOWS, 4),
    (_phrase("die Verbindung verweigerte"), "ECONNREFUSED", WINDOWS, 4),
    (_phrase("l’a expressément refusée") + "|" + _phrase("l'a expressément refusée"), "ECONNREFUSED", WINDOWS, 4),
    (_phrase("as recusou ativamente"), "ECONNREFUSED", WINDOWS, 4),
    (_phrase("Rifiuto persistente del computer di destinazione"), "ECONNREFUSED", WINDOWS, 4),
    (_phrase("doelcomputer de verbinding actief heeft geweigerd"), "ECONNREFUSED", WINDOWS, 4),
    (_phrase("отверг запрос на подключение"), "ECONNREFUSED", WINDOWS, 4),
    ("によって拒否されたため、接続できませんでした", "ECONNREFUSED", WINDOWS, 4),
    (_phrase("connected party did not properly respond"), "ETIMEDOUT", WINDOWS, 4),
    (_phrase("attempted to an unreachable host"), "EHOSTUNREACH", WINDOWS, 4),
    (_phrase("attempted to an unreachable network"), "ENETUNREACH", WINDOWS, 4),
    (_phrase("No such host is known"), "EAI_NONAME", WINDOWS, 4),
    (_phrase("forcibly closed by the remote host"), "ECONNRESET", WINDOWS, 2),
    (r"Connection refused: connect\b", "ECONNREFUSED", WINDOWS, 4),
    (_phrase("Connection refused: no further information"), "ECONNREFUSED", WINDOWS, 4),  # Java NIO
    (_phrase("Connection timed out: no further information"), "ETIMEDOUT", WINDOWS, 4),
    (r"(?:Connection|connect) timed out: connect\b", "ETIMEDOUT", WINDOWS, 4),
    (r"\bconnectex:", None, WINDOWS, 0),
    (r"\bWSAE(?:CONNREFUSED)\b", "ECONNREFUSED", WINDOWS, 4),
    (r"\bWSAE(?:TIMEDOUT)\b", "ETIMEDOUT", WINDOWS, 4),
    # macOS and the BSDs (xnu strerror)
    (_phrase("Operation timed out") + r"(?!\s+after)", "ETIMEDOUT", MACOS, 4),
    (_phrase("nodename nor servname provided"), "EAI_NONAME", MACOS, 4),
    (_phrase("Can't assign requested address"), "EADDRNOTAVAIL", MACOS, 4),
    # glibc
    (_phrase("Name or service not known"), "EAI_NONAME", LINUX, 4),
    (_phrase("Temporary failure in name resolution"), "EAI_AGAIN", LINUX, 4),
    (_phrase("Cannot assign requested address"), "EADDRNOTAVAIL", LINUX, 4),
    # any system: symbolic names
    (r"\bE(?:CONNREFUSED)\b|:econnrefused\b|\bConnectionRefused|\bERR_CONNECTION_REFUSED\b|"
     r"\bNS_ERROR_CONNECTION_REFUSED\b", "ECONNREFUSED", None, 4),
    (r"\bETIMEDOUT\b|:etimedout\b|\bERR_CONNECTION_TIMED_OUT\b|\bERR_TIMED_OUT\b|\bNS_ERROR_NET_TIMEOUT\b",
     "ETIMEDOUT", None, 4),
    (r"\bEHOSTUNREACH\b|:ehostunreach\b|\bERR_ADDRESS_UNREACHABLE\b|\bNoRouteToHostException\b",
     "EHOSTUNREACH", None, 4),
    (r"\bENETUNREACH\b|:enetunreach\b", "ENETUNREACH", None, 4),
    (r"\bENOTFOUND\b|\bEAI_NONAME\b|:nxdomain\b|\bERR_NAME_NOT_RESOLVED\b|\bNS_ERROR_UNKNOWN_HOST\b|"
     r"\bUnknownHostException\b", "EAI_NONAME", None, 4),
    (r"\bEAI_AGAIN\b", "EAI_AGAIN", None, 4),
    (r"\bEADDRNOTAVAIL\b", "EADDRNOTAVAIL", None, 4),
    (r"\bECONNRESET\b|\bERR_CONNECTION_RESET\b", "ECONNRESET", None, 2),
    # any system: phrases
    (r"connection\s+refused|refused\s+to\s+connect|\bwas\s+refused\b|refused\s+the\s+connection|"
     r"refused\s+connection|\bconnection\s+to\s+\S{1,120}\s+refused", "ECONNREFUSED", None, 3),
    # glibc's translations of "Connection refused" (de, fr, es, it, pt, ru, zh, ja, ko)
    (r"Verbindungsaufbau\s+abgelehnt|Connexion\s+refusée|Conexión\s+rehusada|Connessione\s+rifiutata|"
     r"Conexão\s+recusada|В\s+соединении\s+отказано|拒绝连接|接続を拒否されました|연결이\s+거부됨",
     "ECONNREFUSED", None, 3),
    (_phrase("can’t establish a connection to the server") + "|" + _phrase("can't establish a connection to the server")
     + "|" + _phrase("is unable to connect to the"), "ECONNREFUSED", None, 2),
    (r"(?<![\w-])Unable\s+to\s+connect(?!\s+to\b)", "ECONNREFUSED", None, 1),
    (_phrase("No route to host") + "|" + _phrase("Host is unreachable"), "EHOSTUNREACH", None, 3),
    (_phrase("Network is unreachable"), "ENETUNREACH", None, 3),
    (r"connection\s+timed\s+out|connect\s+timed\s+out|\bi/o\s+timeout\b|\btimed\s+out\b|"
     r"timeout\s+expired", "ETIMEDOUT", None, 3),
    (r"\bConnectTimeout|\bTimeoutError\b|\bSocketTimeoutException\b|\bconnect\s+timeout\b|\bClientTimeout\b|"
     r"\bNet::OpenTimeout\b|\bexecution\s+expired\b", "ETIMEDOUT", None, 2),
    (r"could\s+not\s+resolve\s+host|unknown\s+host|\bno\s+such\s+host\b|name\s+does\s+not\s+resolve|"
     r"could\s+not\s+translate\s+host\s+name|getaddrinfo\s+failed|Unknown\s+(?:MySQL\s+)?server\s+host",
     "EAI_NONAME", None, 3),
    (r"\bAddress\s+not\s+available\b", "EADDRNOTAVAIL", None, 3),
    (r"connection\s+reset\s+by\s+peer", "ECONNRESET", None, 2),
    (_phrase("Host is down"), "EHOSTDOWN", None, 3),
    (_phrase("Network is down"), "ENETDOWN", None, 3),
)
_ERRNO_RES = tuple((re.compile(p, re.I), n, pl, s) for p, n, pl, s in _ERRNO_WORDS)

# ENOENT counts only where a socket file is meant (a Unix socket that does not exist)
_NOENT = re.compile(r"no\s+such\s+file\s+or\s+directory", re.I)
_SOCKET_WORDS = re.compile(r"\bsocket\b|\.sock\b|dial unix|unix:/|\.s\.PGSQL", re.I)

# numbers in errno positions
_NUMBER_RES = (
    re.compile(r"\[(?:Errno|WinError) (-?\d{1,5})\]"),
    re.compile(r"\berrno\b[\"']?\s*[=:]?\s*(-?\d{1,5})\b", re.I),
    re.compile(r"\(os error (-?\d{1,5})\)"),
    re.compile(r"\bcode:\s*(-?\d{1,5}),\s*kind:"),
    re.compile(r"Exception\s*\((\d{2,5})\)"),
    re.compile(r"\(0x[0-9A-Fa-f]+/(\d{2,5})\)"),
    re.compile(r"\berror\s+(\d{2,5})\s*:", re.I),
    re.compile(r"Error\((\d{2,5}),\s*['\"]"),
    re.compile(r"(?:refused|timed out|unreachable|no route to host)\s*\((\d{2,5})\)", re.I),
    re.compile(r"\b(100(?:49|5[01]|54|6[015])|1100[1-4])\b"),  # Winsock numbers, anywhere
    re.compile(r"_kCFStreamErrorCodeKey=(\d{1,3})\b"),  # the POSIX errno under an NSURLError (iOS, macOS)
    re.compile(r"NSPOSIXErrorDomain\s+Code=(\d{1,3})\b"),
    re.compile(r"[\[(](\d{2,5})[\])]:\s*(?:Connection|No route|Network|Operation|Host)", re.I),  # PHP
)

# wording of a failed connection that names no errno
_FAILURE = re.compile(
    r"could\s+not\s+connect|couldn.t\s+connect|can.t\s+connect|cannot\s+connect|unable\s+to\s+connect|"
    r"failed\s+to\s+connect|failed\s+connect\s+to|could\s+not\s+be\s+established|can.t\s+reach|"
    r"cannot\s+reach|unable\s+to\s+reach|NoBrokersAvailable|failed\s+to\s+establish|"
    r"connection\s+failed|connect\s+failed|connection\s+error|failed\s+to\s+open\s+TCP\s+connection|"
    r"Max\s+retries\s+exceeded|Communications\s+link\s+failure|EndpointConnectionError|"
    r"failed\s+to\s+connect\s+to\s+all\s+addresses|StatusCode\.UNAVAILABLE|Is\s+the\s+docker\s+daemon\s+running|"
    r"Connect\s+call\s+failed|can.t\s+be\s+reached|ServerSelectionTimeout|connect_error|"
    r"is\s+the\s+(?:\w+\s+)?(?:server|daemon)\s+running|make\s+sure\s+your\s+(?:\w+\s+)?server\s+is\s+running|"
    r"Exception\s+opening\s+socket|MongoSocketOpenException|No\s+suitable\s+servers\s+found|"
    r"could\s+not\s+establish|None\s+of\s+the\s+configured\s+nodes\s+are\s+available|NoNodeAvailable|"
    r"cannot\s+be\s+established",
    re.I)

# --------------------------------------------------------------------------- services and clients

# (pattern, service) in order of precedence: the server a message is about gives a missing port
_SERVICES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p, re.I), s) for p, s in (
    (r"\bkafka|NoBrokersAvailable|bootstrap[._]servers", "kafka"),
    (r"\bmongo|ServerSelectionTimeoutError", "mongodb"),
    (r"\bpika\b|\bamqp|rabbitmq|\bcelery\b", "amqp"),
    (r"elasticsearch", "elasticsearch"),
    (r"\bredis|ioredis|lettuce", "redis"),
    (r"mysql|mariadb|SQLSTATE\[HY000\] \[2002\]", "mysql"),
    (r"postgres|libpq|psycopg|npgsql|\bPG::|\bpsql\b", "postgresql"),
    (r"(?<![./])\bssh\b(?![./])", "ssh"),
    (r"\btelnet\b", "telnet"),
))
SERVICE_NAMES: dict[str, str] = {"kafka": "Kafka", "mongodb": "MongoDB", "amqp": "AMQP (RabbitMQ)",
                                 "elasticsearch": "Elasticsearch", "redis": "Redis", "mysql": "MySQL/MariaDB",
                                 "postgresql": "PostgreSQL", "ssh": "SSH", "telnet": "telnet"}
SERVICE_PORTS: dict[str, int] = {"kafka": 9092, "mongodb": 27017, "amqp": 5672, "elasticsearch": 9200,
                                 "redis": 6379, "mysql": 3306, "postgresql": 5432, "ssh": 22, "telnet": 23}

# (pattern, client) for text no family parser claims
_CLIENTS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p, re.I), s) for p, s in (
    (r"\bkubectl\b|The connection to the server\b|Unable to connect to the server:", "kubectl"),
    (r"\bgrpc\b|failed to connect to all addresses", "grpc"),
    (r"NetworkClient|NoBrokersAvailable|\bkafka|rdkafka", "kafka"),
    (r"botocore|EndpointConnectionError|Could not connect to the endpoint URL", "botocore"),
    (r"Docker daemon|docker\.sock", "docker"),
    (r"\bfirefox\b|NS_ERROR_", "firefox"),
    (r"ERR_CONNECTION_|ERR_NAME_NOT_RESOLVED|ERR_ADDRESS_UNREACHABLE|refused to connect", "chrome"),
    (r"\btelnet\b|Trying \S+\.\.\.", "telnet"),
    (r"Errno::E[A-Z]+|connect\(2\)|\bBunny::|::\w*Conn\w*(?:Error|Failed)\w*", "ruby"),
    (r"SQLSTATE\[|php_network_getaddresses|PDOException", "php"),
    (r"Npgsql", "npgsql"),
    (r"System\.Net\.|SocketException \(\d+\)", "dotnet"),
    (r":econnrefused|DBConnection", "elixir"),
    (r"OS Error:", "dart"),
    (r"prisma|Can't reach database server", "prisma"),
    (r"\bssh:", "ssh"),
    (r"\bwget\b|^Resolving \S+ \(|^Connecting to \S+ \(", "wget"),
    (r"NSURLErrorDomain|kCFErrorDomainCFNetwork|NSPOSIXErrorDomain", "ios"),
    (r"Is the server running on host|accepting\s+TCP/IP\s+connections", "psql"),
    (r"Traceback \(most recent|\.py\", line \d|\[Errno -?\d+\]|aiohttp|ClientConnectorError|AMQPConnector|"
     r"urllib3|requests\.exceptions", "python"),
    (r"TCPConnectWrap|node_modules|\bnode:|\bsyscall: '", "node"),
    (r"\bjava\.|\.java:\d+|io\.lettuce|io\.netty|Connection (?:refused|timed out): connect\b|"
     r"NoNodeAvailableException|org\.elasticsearch", "java"),
    (r"\bdial tcp", "go"),
))


# --------------------------------------------------------------------------- targets

_V6B = r"\[[0-9A-Fa-f:.]*:[0-9A-Fa-f:.%\w]*\]"
_V4 = r"(?:\d{1,3}\.){3}\d{1,3}"
_NAME = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?"
_HOST = rf"(?:{_V6B}|{_V4}|{_NAME})"

# file names that look like host:port (net.js:1104, Client.php:69)
_CODE_EXT = re.compile(r"\.(?:py|pyx|js|mjs|cjs|jsx|ts|tsx|java|kt|scala|groovy|go|rs|rb|php|cs|cc|cpp|cxx|c|h|hpp|"
                       r"m|mm|swift|dart|ex|exs|erl|lua|pl|pm|sh|jar|class|yml|yaml|json|xml|conf|ini|cfg|txt|"
                       r"log|html?|vue|svelte|sql|proto|gradle|md)$", re.I)
_NOT_HOSTS = {"line", "port", "error", "file", "at", "http", "https", "tcp", "tcp4", "tcp6", "udp", "ipv4", "ipv6",
              "unix", "host", "url", "in", "to", "from", "on", "warning", "info", "debug", "trace", "err",
              "caused", "exception", "status", "code", "errno", "time", "id", "node", "server", "address",
              "src", "dst", "default", "localhost.localdomain"}

# (pattern with <host> and maybe <port>, score): how a family-neutral message names its target
_SPECIFIC: tuple[tuple[re.Pattern[str], int], ...] = tuple((re.compile(p, re.I), s) for p, s in (
    (rf"\bto (?:host |address )?(?P<host>{_HOST}) (?:and )?port (?P<port>\d{{1,5}})\b", 50),      # ssh, nc
    (rf"\b(?:to|at) (?P<host>{_HOST}) on port (?P<port>\d{{1,5}})\b", 45),
    (rf"\bto /?(?P<host>{_HOST})(?:/(?:{_V4}|[0-9A-Fa-f:]+))? ?\(port (?P<port>\d{{1,5}})\)", 50),  # Android
    (rf"\bFailed to connect to (?P<host>{_HOST}) port (?P<port>\d{{1,5}})\b", 50),           # curl
    (rf"connect\(2\) for \"?(?P<host>{_HOST})\"? port (?P<port>\d{{1,5}})", 50),              # ruby
    (rf"\bhost='(?P<host>{_HOST})', port=(?P<port>\d{{1,5}})", 50),                         # urllib3
    (rf"\('(?P<host>{_HOST})', (?P<port>\d{{1,5}})[,)]", 45),                                # asyncio, pymongo
    (rf"`(?P<host>{_HOST})`:`(?P<port>\d{{1,5}})`", 50),                                     # prisma
    (rf"\btelnet (?P<host>{_HOST}) (?P<port>\d{{1,5}})\b", 50),                              # telnet command
    (rf"\btelnet (?P<host>{_HOST})(?![\w.:-]| \d)", 40),                                        # its port 23
    (r"\b(?:connect(?:ion|ing)? to|connect ECONN\w+) (?P<host>[0-9A-Fa-f]*::?[0-9A-Fa-f:]*):(?P<port>\d{1,5})\b", 45),  # ::1:5672
    (rf"\bTrying (?P<host>{_V4}|[0-9A-Fa-f:]*:[0-9A-Fa-f:]+)(?:\.\.\.|\b)", 40),             # telnet
    (rf"\bconnect to address (?P<host>{_V4}|[0-9A-Fa-f:]*:[0-9A-Fa-f:]+):", 40),             # telnet
    (rf"(?:reached\s*|(?<![\w.-]))(?P<host>{_HOST}) refused to connect", 40),              # chrome
    (rf"connection to the server at (?P<host>{_HOST})\.?(?:\s|$)", 40),                      # firefox, no port
    (rf"server on '(?P<host>{_HOST})'", 45),                                                 # mysql clients
    (rf"\bhost \"(?P<host>{_HOST})\"(?:\s+\([^)]*\))?\s+and\s+accepting\s+TCP/IP\s+connections\s+on\s+port\s+"
     rf"(?P<port>\d{{1,5}})", 50),                                                          # libpq before 14
    (rf"\bhost \"(?P<host>{_HOST})\"", 40),                                                  # libpq
    (rf"\bCould not resolve host:? (?P<host>{_HOST})", 40),                                 # curl, git
    (rf"\bConnection to (?:[a-z]+:/*)?(?P<host>{_HOST}):(?P<port>\d{{1,5}}) refused", 50),      # HttpClient 4
    # erlang's "h":N; not a JSON key ("type":2), so an address, localhost or a dotted name only
    (rf"\"(?P<host>{_V4}|localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{{2,}})\":(?P<port>\d{{1,5}})\b", 45),
    (rf"\bconnect\w*\(\s*\(?\s*[\"'](?P<host>{_HOST})[\"']\s*,\s*(?P<port>\d{{1,5}})\b", 45),  # connect("h", N)
    (rf"\{{\s*\w+\s*,\s*\"(?P<host>{_HOST})\"\s*,\s*(?P<port>\d{{1,5}})\s*[,}}]", 40),          # {connect,"h",N,
))
_GRPC = re.compile(r"\bipv[46]:(?P<hp>\[[0-9A-Fa-f:.]+\]:\d{1,5}|(?:\d{1,3}\.){3}\d{1,3}:\d{1,5})")
# the address may be masked by whoever pasted it (`localhost/xx.xxx.xxx.xx:5037`) or unresolved
_SLASHED = re.compile(rf"(?<![\w./:-])(?P<name>{_NAME})?/(?P<addr>{_V4}|(?:[\dxX*]{{1,3}}\.){{3}}[\dxX*]{{1,3}}|"
                      rf"<unresolved>|\[?[0-9A-Fa-f]*:[0-9A-Fa-f:]+\]?):(?P<port>\d{{1,5}})\b")
# ASCII boundaries: an address glued to CJK text (`但是127.0.0.1:8000网页`) is still an address
_HOSTPORT = re.compile(rf"(?<![A-Za-z0-9_.:/@%-])(?P<host>{_V6B}|{_V4}|{_NAME}):(?P<port>\d{{1,5}})(?![A-Za-z0-9_]|:\d|\.\d)")
_URL = re.compile(r"\b([a-z][a-z0-9+.-]{1,20})://(?:[^@\s/'\"<>`]*@)?(\[[0-9a-fA-F:.%\w]+\]|[A-Za-z0-9_.-]+)"
                  r"(?::(\d{1,5}))?", re.I)
# `host: 'h'`, `"address":"h"` (quoted) or `DB_HOST=h` (no space): not prose like "remote host: Connection"
_HOST_KEY = re.compile(rf"\b(?:\w+_)?(?:host(?:name)?|address)(?:['\"]?\s*[=:]\s*['\"](?P<quoted>{_HOST})['\"]|"
                       rf"=(?P<bare>{_HOST}))", re.I)
_PORT_KEY = re.compile(r"\b(?:\w+_)?port['\"]?\s*[=:]\s*['\"]?(?P<port>\d{1,5})\b", re.I)
_CONNECT_WORDS = re.compile(r"(?:\bto|\bat|\bserver|\bhost|\bbroker|connecting to|connection to|\bon|dial|"
                            r"\bremote|\bupstream|\bendpoint)\s*[\"'(\[]?\s*$", re.I)
_LISTEN_WORDS = re.compile(r"listen|starting server|serving on|\bbind\b|bound to|running on|\bLISTEN\b|"
                           r"\bsrc:|\bfrom\s*$|client:\s*$|\blocal\b", re.I)
_FRAME = re.compile(r"^\s*(?:at\s|File \"|from\s/|#\d+\s)")
# sites that pasted errors link to (a forge, a help page, an error tracker), not the failing target
_LINK_HOSTS = re.compile(r"^docs\.|(?:^|\.)(?:github\.com|stackoverflow\.com|githubusercontent\.com|rollbar\.com|"
                         r"bugsnag\.com|sentry\.io|appcenter\.ms|mozilla\.org|microsoft\.com|aka\.ms|kubernetes\.io|"
                         r"readthedocs\.io|sqlalche\.me|curl\.haxx\.se|curl\.se|dev\.mysql\.com|postgresql\.org|"
                         r"nodejs\.org|docker\.com)$", re.I)


_MIN_SCORE = 10


# ports of the URL schemes and services portdoctor knows, and the usual development ports
_WELL_KNOWN_PORTS: frozenset[int] = frozenset(SCHEME_PORTS.values()) | frozenset(SERVICE_PORTS.values()) | {
    80, 443, 1433, 1521, 2375, 2376, 3000, 5000, 5001, 6443, 8000, 8080, 8443, 9092, 9200, 9300}


def _plausible_name(host: str, before: str, port: int | None = None) -> bool:
    """Whether a name read in front of `:port` is a host, not a file, a word or a label."""
    low = host.lower()
    if low in _NOT_HOSTS or _CODE_EXT.search(host):
        return False
    if low == "localhost" or low.endswith(".localhost"):
        return True
    if "." in host:
        tld = host.rsplit(".", 1)[1]
        return len(tld) >= 2 and tld.isalpha() and not host[0] == "."
    # a single label (`db`, `kafka`, `Master_IP`) where a connection names it, or with the port
    # of a well-known service (`mongo:27017`, `redis:6379`)
    if host.isdigit():
        return False
    return bool(_CONNECT_WORDS.search(before[-40:])) or port in _WELL_KNOWN_PORTS


# --------------------------------------------------------------------------- scanning


def _line_index(text: str) -> list[int]:
    starts = [0]
    starts.extend(m.end() for m in re.finditer("\n", text))
    return starts


def _line_of(starts: list[int], pos: int) -> int:
    return bisect.bisect_right(starts, pos) - 1


def _errno_hits(text: str) -> list[ErrnoHit]:
    hits: list[ErrnoHit] = []
    for rx, name, plat, strength in _ERRNO_RES:
        for m in rx.finditer(text):
            hits.append(ErrnoHit(m.start(), name, plat, strength))
    if _SOCKET_WORDS.search(text):
        hits.extend(ErrnoHit(m.start(), "ENOENT", None, 3) for m in _NOENT.finditer(text))
    return sorted(hits, key=lambda h: h.pos)


def _number_hits(text: str) -> list[NumberHit]:
    seen: set[int] = set()
    out: list[NumberHit] = []
    for rx in _NUMBER_RES:
        for m in rx.finditer(text):
            if m.start(1) in seen:
                continue
            seen.add(m.start(1))
            out.append(NumberHit(m.start(1), int(m.group(1))))
    return sorted(out, key=lambda h: h.pos)


# (position, host, port, scheme, score, port_defaulted) of one target read, before its context
_Raw = tuple[int, str, "int | None", "str | None", int, bool]


def _specific_hits(text: str) -> Iterator[_Raw]:
    """Targets in the wording of a known kind of message (`connect to host H port N`, ...)."""
    for rx, score in _SPECIFIC:
        for m in rx.finditer(text):
            host = clean_host(m.group("host"))
            if host is not None and host.lower() not in _NOT_HOSTS:
                yield m.start("host"), host, valid_port(m.groupdict().get("port")), None, score, False


def _grpc_hits(text: str) -> Iterator[_Raw]:
    """gRPC's `ipv4:HOST:PORT` and `ipv6:[ADDR]:PORT` (not the peer an error was received from)."""
    for m in _GRPC.finditer(text):
        if re.search(r"from peer\s*$", text[max(0, m.start() - 30):m.start()]):
            continue
        host, port = split_hostport(m.group("hp"))
        if host and port:
            yield m.start("hp"), host, port, None, 50, False


def _slashed_hits(text: str) -> Iterator[_Raw]:
    """Java's and Kafka's `name/addr:port` (the name when there is one, else the address)."""
    for m in _SLASHED.finditer(text):
        port = valid_port(m.group("port"))
        name = clean_host(m.group("name")) if m.group("name") else None
        if name is None or name.lower() in _NOT_HOSTS or _CODE_EXT.search(name):
            addr = m.group("addr")
            if addr == "<unresolved>" or re.search(r"[xX*]", addr):
                continue  # no name and no readable address
            name = clean_host(addr.strip("[]"))
        if name and port:
            yield m.start(), name, port, None, 45, False


def _url_hits(text: str) -> Iterator[_Raw]:
    """URLs; the scheme gives the port a URL leaves out (http 80, postgres 5432, ...)."""
    for m in _URL.finditer(text):
        scheme = m.group(1).lower().split("+")[0]
        host = clean_host(m.group(2))
        if host is None or scheme in ("file", "chrome-error", "chrome-devtools", "chrome", "about", "data"):
            continue
        port = valid_port(m.group(3))
        if port is None and scheme not in SCHEME_PORTS:
            continue
        score = 32 if port is not None else 28
        if text[max(0, m.start() - 2):m.start()] == "](":  # the link of a markdown link
            score -= 20
        if _LINK_HOSTS.search(host):  # a link to a forge or a help page: a target only on the failing line
            score -= 30
        if port is None:
            yield m.start(2), host, SCHEME_PORTS[scheme], scheme, score, True
        else:
            yield m.start(2), host, port, scheme, score, False


def _hostport_hits(text: str) -> Iterator[_Raw]:
    """`host:port` and `[v6]:port` anywhere, where the name looks like a host (not `net.js:1104`)."""
    for m in _HOSTPORT.finditer(text):
        host_text, port = m.group("host"), valid_port(m.group("port"))
        if port is None or text[max(0, m.start() - 3):m.start()] == "://":
            continue
        before = text[max(0, m.start() - 60):m.start()]
        if not host_text.startswith("[") and not re.fullmatch(_V4, host_text):
            if not _plausible_name(host_text, before, port):
                continue
        host = clean_host(host_text)
        if host is None:
            continue
        score = 27 if host_text[0].isdigit() or host_text.startswith("[") else 25
        if _CONNECT_WORDS.search(before[-40:]):
            score += 5
        yield m.start(), host, port, None, score, False


def _key_value_hits(text: str) -> Iterator[_Raw]:
    """`host='h', port=N`, `HOST=h ... PORT=N`, `address: 'h', port: N` (code, config, Node's fields)."""
    ports = [(m.start(), valid_port(m.group("port"))) for m in _PORT_KEY.finditer(text)]
    for m in _HOST_KEY.finditer(text):
        host = clean_host(m.group("quoted") or m.group("bare"))
        if host is None or host.lower() in _NOT_HOSTS or len(host) < 2:
            continue
        near = [p for at, p in ports if p and -300 < at - m.end() < 300]
        yield m.start(), host, near[0] if near else None, None, 42 if near else 35, False


_FINDERS = (_specific_hits, _grpc_hits, _slashed_hits, _url_hits, _hostport_hits, _key_value_hits)


def _context_score(text: str, starts: list[int], anchors: set[int], pos: int) -> int:
    """What the surroundings add to a target read at `pos`: near the failure counts, a listening
    address, a client's own address or a frame of a stack trace counts against."""
    line_no = _line_of(starts, pos)
    line_start = starts[line_no]
    end = text.find("\n", pos)
    line = text[line_start:end if end != -1 else len(text)]
    score = 15 if line_no in anchors else 5 if any(abs(line_no - a) <= 3 for a in anchors) else 0
    if _LISTEN_WORDS.search(text[max(line_start, pos - 40):pos]):
        score -= 40
    if _FRAME.match(line):
        score -= 10
    return score


def _target_hits(text: str, starts: list[int], anchors: set[int]) -> list[TargetHit]:
    out: list[TargetHit] = []
    for find in _FINDERS:
        for pos, host, port, scheme, score, defaulted in find(text):
            score += _context_score(text, starts, anchors, pos)
            if score >= _MIN_SCORE:
                out.append(TargetHit(pos, host, port, scheme, score, defaulted))
    return out


def scan(text: str) -> Evidence:
    """Read the errno, target, service and client evidence of a (normalized) text."""
    starts = _line_index(text)
    hits = _errno_hits(text)
    failures = [m.start() for m in _FAILURE.finditer(text)]
    anchors = {_line_of(starts, h.pos) for h in hits if h.name and h.strength >= 2}
    anchors |= {_line_of(starts, p) for p in failures}
    service = next((s for rx, s in _SERVICES if rx.search(text)), None)
    source = next((s for rx, s in _CLIENTS if rx.search(text)), None)
    return Evidence(errnos=tuple(hits), numbers=tuple(_number_hits(text)),
                    targets=tuple(_target_hits(text, starts, anchors)), failure=bool(failures),
                    service=service, source=source, anchors=tuple(sorted(anchors)))


# --------------------------------------------------------------------------- deciding

# numbers that name a connect failure on exactly one platform family
_CONNECT_NAMES = ("ECONNREFUSED", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ECONNRESET",
                  "ECONNABORTED", "EHOSTDOWN", "ENETDOWN", "EADDRNOTAVAIL")


def _number_meaning(number: int) -> tuple[str, str] | None:
    """(condition, platform) a number printed in an errno position stands for, when unambiguous."""
    if number < 0:
        if number in errnos.LIBUV_WINDOWS:
            return errnos.LIBUV_WINDOWS[number], WINDOWS
        for name in ("EAI_NONAME", "EAI_AGAIN", "EAI_FAIL", "EAI_NODATA"):
            if errnos.ERRNO[LINUX][name] == number:
                return name, LINUX
        number = -number  # libuv on Unix negates the system errno (Node's errno: -111)
    for plat in (LINUX, MACOS, WINDOWS):
        for name in _CONNECT_NAMES:
            if errnos.ERRNO[plat].get(name) == number:
                return name, plat
    if number in (11001, 11002, 11003, 11004):
        return errnos.name_of(number, WINDOWS) or "EAI_NONAME", WINDOWS
    return None


def _agrees(number: int, name: str) -> tuple[int, str] | None:
    """(the platform's own number for `name`, platform) when `number` as printed is errno `name`
    (Node's -111 is 111 on Linux, libuv's -4078 is 10061 on Windows)."""
    meaning = _number_meaning(number)
    if meaning is not None and meaning[0] == name:
        return errnos.number_of(name, meaning[1]) or number, meaning[1]
    plat = next((p for p in (LINUX, MACOS, WINDOWS) if errnos.ERRNO[p].get(name) == number), None)
    return (number, plat) if plat is not None else None


def decide_errno(ev: Evidence) -> tuple[str | None, int | None, str | None]:
    """The errno (name, number, platform) the evidence supports best, each None when unknown."""
    named = [h for h in ev.errnos if h.name]
    name: str | None = None
    if named:
        top = max(h.strength for h in named)
        name = next(h.name for h in named if h.strength == top)
    if name is None:
        for n in ev.numbers:
            meaning = _number_meaning(n.number)
            if meaning is not None:
                name = meaning[0]
                break
    if name is None:
        return None, None, None
    number: int | None = None
    platform: str | None = None
    for n in ev.numbers:
        agreed = _agrees(n.number, name)
        if agreed is not None:
            number, platform = agreed
            break
    if platform is None:
        plats = [h.platform for h in ev.errnos if h.platform and h.name in (name, None)]
        if plats:
            platform = plats[0]
            number = errnos.number_of(name, platform)
    return name, number, platform


def decide_target(ev: Evidence) -> tuple[str | None, int | None, str | None, bool]:
    """(host, port, scheme, port_defaulted) of the best target; a host without a port when the
    text names the host alone and no default applies."""
    full = [t for t in ev.targets if t.port is not None]
    bare = [t for t in ev.targets if t.port is None]
    default = SERVICE_PORTS.get(ev.service or "")
    for t in bare:  # a host named alone takes the port another hit gives it, or the service's
        same = [f for f in full if f.host == t.host]
        if same:
            own = max(same, key=lambda f: (not f.defaulted, f.score))
            full.append(TargetHit(t.pos, t.host, own.port, own.scheme, t.score, own.defaulted))
        elif default is not None:
            full.append(TargetHit(t.pos, t.host, default, None, t.score - 5, True))
    if full:
        best = max(full, key=lambda t: (t.score, -t.pos))
        named = _name_of_address(best, full)
        if named is not None:
            best = named
        return best.host, best.port, best.scheme, best.defaulted
    if bare:
        best = max(bare, key=lambda t: (t.score, -t.pos))
        return best.host, None, None, False
    return None, None, None, False


def _name_of_address(best: TargetHit, hits: list[TargetHit]) -> TargetHit | None:
    """The host name a client was given when `best` is the address it resolved to: a named hit
    with the same port close by (`ecs.datacite.org:42463 (... for "10.0.20.182" port 42463)`)."""
    try:
        ipaddress.ip_address(best.host.split("%")[0])
    except ValueError:
        return None
    names = [t for t in hits if t.port == best.port and not t.defaulted and abs(t.pos - best.pos) < 400
             and t.score >= best.score - 30 and not t.host[0].isdigit() and ":" not in t.host]
    return max(names, key=lambda t: t.score) if names else None


def candidate(ev: Evidence, text: str) -> Candidate | None:
    """A Candidate from the generic evidence alone; None when nothing says a connection failed."""
    name, number, platform = decide_errno(ev)
    if name is None and not ev.failure:
        return None
    if name is None and ev.source is None and decide_target(ev)[0] is None:
        return None  # "could not connect" and nothing else: too little to explain
    anchor_pos = next((h.pos for h in ev.errnos if h.name == name), None)
    if anchor_pos is None:
        m = _FAILURE.search(text)
        anchor_pos = m.start() if m else 0
    c = Candidate(ev.source or "unknown", line_at(text, anchor_pos), service=ev.service)
    c.errno_name, c.errno_number, c.platform = name, number, platform
    _fill_target(c, ev)
    return c


def complete(c: Candidate, ev: Evidence) -> None:
    """Fill what a family parser left empty (errno, number, platform, target) from the evidence."""
    c.service = c.service or ev.service
    if c.errno_name is None:
        name, number, platform = decide_errno(ev)
        if name is not None:
            c.errno_name, c.errno_number, c.platform = name, number, platform
    elif c.errno_number is None and c.platform is None:
        name, number, platform = decide_errno(ev)
        if name == c.errno_name:
            c.errno_number, c.platform = number, platform
    if c.unix_socket:
        return
    if c.host is None:
        _fill_target(c, ev)
    elif c.port is None:
        same = [t for t in ev.targets if t.host == c.host and t.port is not None]
        if same:
            own = max(same, key=lambda t: (not t.defaulted, t.score))
            c.port, c.port_defaulted = own.port, own.defaulted
        else:
            default = SERVICE_PORTS.get(ev.service or "")
            if default is not None:
                c.port, c.port_defaulted = default, True


def _fill_target(c: Candidate, ev: Evidence) -> None:
    host, port, scheme, defaulted = decide_target(ev)
    if host is not None:
        c.host, c.port, c.scheme, c.port_defaulted = host, port, scheme, defaulted
