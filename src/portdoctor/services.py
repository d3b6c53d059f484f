"""Well-known TCP services: their ports, process names, and where their bind/port settings live.

Data only (plus three lookups), so checks can say "redis-server listens on 127.0.0.1 because of
/etc/redis/redis.conf line 87 `bind 127.0.0.1 -::1`". Ports follow the IANA registry and each
project's documented default; config paths are the Debian/Ubuntu package defaults plus the
upstream ones, as globs.

>>> [s.name for s in by_port(6379)]
['redis']
>>> by_process("/usr/lib/postgresql/16/bin/postgres -D /var/lib/postgresql/16/main").name
'postgresql'
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from portdoctor.model import Process


@dataclass(frozen=True, slots=True)
class ConfigSpec:
    """Where a server's configuration lives and which keys set its address and port.

    syntax: postgresql (key = value), redis (key value...), mysql (ini, [mysqld]), mongodb
    (YAML net:), nginx (listen ...;), apache (Listen ...), haproxy (bind ...), sshd
    (ListenAddress/Port), properties (key=value: kafka, zookeeper, elasticsearch.yml is yaml),
    yaml (flat dotted keys), xml (clickhouse), ini (rabbitmq.conf is key = value).
    """

    paths: tuple[str, ...]
    syntax: str
    bind_keys: tuple[str, ...] = ()
    port_keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """A well-known server: default ports, process names, configuration files and keys."""

    name: str
    ports: tuple[int, ...]
    process_names: tuple[str, ...]
    configs: tuple[ConfigSpec, ...] = ()
    bind_key_hint: str = ""  # how a user changes the bind address, in the server's own words
    port_key_hint: str = ""


SERVICES: tuple[ServiceInfo, ...] = (
    ServiceInfo(
        "postgresql", (5432,), ("postgres", "postmaster"),
        (ConfigSpec(("/etc/postgresql/*/main/postgresql.conf", "/var/lib/pgsql/data/postgresql.conf",
                     "/var/lib/postgresql/data/postgresql.conf"),
                    "postgresql", ("listen_addresses",), ("port",)),),
        "listen_addresses = '*'", "port = 5432"),
    ServiceInfo(
        "mysql", (3306, 33060), ("mysqld", "mariadbd", "mysqld_safe", "mariadbd-safe"),
        (ConfigSpec(("/etc/mysql/my.cnf", "/etc/mysql/mariadb.conf.d/*.cnf", "/etc/mysql/conf.d/*.cnf",
                     "/etc/mysql/mysql.conf.d/*.cnf", "/etc/my.cnf", "/etc/my.cnf.d/*.cnf"),
                    "mysql", ("bind-address", "bind_address", "skip-networking"), ("port",)),),
        "bind-address = 0.0.0.0 (in the [mysqld] section)", "port = 3306 (in the [mysqld] section)"),
    ServiceInfo(
        "redis", (6379,), ("redis-server",),
        (ConfigSpec(("/etc/redis/redis.conf", "/etc/redis.conf", "/usr/local/etc/redis.conf"),
                    "redis", ("bind", "protected-mode"), ("port",)),),
        "bind 0.0.0.0 (and protected-mode no, or set requirepass)", "port 6379"),
    ServiceInfo(
        "mongodb", (27017,), ("mongod", "mongos"),
        (ConfigSpec(("/etc/mongod.conf", "/etc/mongodb.conf"), "mongodb",
                    ("net.bindIp", "net.bindIpAll"), ("net.port",)),),
        "net:\n  bindIp: 0.0.0.0", "net:\n  port: 27017"),
    ServiceInfo(
        "elasticsearch", (9200, 9300), ("elasticsearch", "opensearch"),
        (ConfigSpec(("/etc/elasticsearch/elasticsearch.yml", "/etc/opensearch/opensearch.yml"), "yaml",
                    ("network.host", "http.host"), ("http.port",)),),
        "network.host: 0.0.0.0", "http.port: 9200"),
    ServiceInfo(
        "rabbitmq", (5672, 15672, 25672), ("rabbitmq-server",),
        (ConfigSpec(("/etc/rabbitmq/rabbitmq.conf",), "ini", ("listeners.tcp.default", "listeners.tcp.1"),
                    ("listeners.tcp.default",)),),
        "listeners.tcp.default = 0.0.0.0:5672", "listeners.tcp.default = 5672"),
    ServiceInfo(
        "memcached", (11211,), ("memcached",),
        (ConfigSpec(("/etc/memcached.conf",), "memcached", ("-l",), ("-p",)),),
        "-l 0.0.0.0", "-p 11211"),
    ServiceInfo(
        "nginx", (80, 443), ("nginx",),
        (ConfigSpec(("/etc/nginx/nginx.conf", "/etc/nginx/sites-enabled/*", "/etc/nginx/conf.d/*.conf"),
                    "nginx", ("listen",), ("listen",)),),
        "listen 0.0.0.0:80;", "listen 80;"),
    ServiceInfo(
        "apache", (80, 443), ("apache2", "httpd"),
        (ConfigSpec(("/etc/apache2/ports.conf", "/etc/httpd/conf/httpd.conf"), "apache",
                    ("Listen",), ("Listen",)),),
        "Listen 0.0.0.0:80", "Listen 80"),
    ServiceInfo(
        "haproxy", (80, 443), ("haproxy",),
        (ConfigSpec(("/etc/haproxy/haproxy.cfg",), "haproxy", ("bind",), ("bind",)),),
        "bind 0.0.0.0:80", "bind :80"),
    ServiceInfo(
        "sshd", (22,), ("sshd",),
        (ConfigSpec(("/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d/*.conf"), "sshd",
                    ("ListenAddress",), ("Port",)),),
        "ListenAddress 0.0.0.0", "Port 22"),
    ServiceInfo(
        "kafka", (9092,), ("kafka",),
        (ConfigSpec(("/etc/kafka/server.properties", "/opt/kafka/config/server.properties"), "properties",
                    ("listeners", "advertised.listeners"), ("listeners",)),),
        "listeners=PLAINTEXT://0.0.0.0:9092", "listeners=PLAINTEXT://:9092"),
    ServiceInfo(
        "zookeeper", (2181,), ("zookeeper",),
        (ConfigSpec(("/etc/zookeeper/conf/zoo.cfg", "/etc/zookeeper/zoo.cfg", "/opt/zookeeper/conf/zoo.cfg"),
                    "properties", ("clientPortAddress",), ("clientPort",)),),
        "clientPortAddress=0.0.0.0", "clientPort=2181"),
    ServiceInfo(
        "etcd", (2379, 2380), ("etcd",),
        (ConfigSpec(("/etc/etcd/etcd.conf.yml", "/etc/default/etcd"), "yaml",
                    ("listen-client-urls", "ETCD_LISTEN_CLIENT_URLS"), ("listen-client-urls",)),),
        "--listen-client-urls http://0.0.0.0:2379", "--listen-client-urls http://127.0.0.1:2379"),
    ServiceInfo(
        "clickhouse", (8123, 9000), ("clickhouse-server", "clickhouse"),
        (ConfigSpec(("/etc/clickhouse-server/config.xml", "/etc/clickhouse-server/config.d/*.xml"), "xml",
                    ("listen_host",), ("http_port", "tcp_port")),),
        "<listen_host>0.0.0.0</listen_host>", "<tcp_port>9000</tcp_port>"),
    ServiceInfo(
        "gunicorn", (8000,), ("gunicorn",), (),
        "--bind 0.0.0.0:8000", "--bind 127.0.0.1:8000"),
    ServiceInfo(
        "uvicorn", (8000,), ("uvicorn",), (),
        "--host 0.0.0.0", "--port 8000"),
    ServiceInfo(
        "node", (3000, 8080, 5173, 4200), ("node", "nodejs", "deno", "bun"), (),
        "server.listen(port, '0.0.0.0') / HOST=0.0.0.0", "PORT=3000"),
    ServiceInfo(
        "python", (8000, 5000, 8080, 8888), ("python", "python3", "flask", "django-admin"), (),
        "--host 0.0.0.0 (flask run), 0.0.0.0:8000 (manage.py runserver), --bind 0.0.0.0 (http.server)",
        "--port N"),
    ServiceInfo(
        "http", (80, 8080, 3000, 8000, 8008, 8888), (), (), "", ""),
    ServiceInfo(
        "https", (443, 8443), (), (), "", ""),
)

# Process names that run many kinds of program: a match says "a dev server", not which one.
GENERIC_RUNTIMES: frozenset[str] = frozenset(
    {"node", "nodejs", "deno", "bun", "python", "python3", "java", "ruby", "php", "beam.smp", "erl"})

# process name -> the first service that names it (a constant table, built once at import)
_BY_NAME: dict[str, ServiceInfo] = {
    pname: svc for svc in reversed(SERVICES) for pname in svc.process_names}


def by_port(port: int) -> list[ServiceInfo]:
    """Services whose default ports include `port`, most specific first."""
    return [s for s in SERVICES if port in s.ports]


def by_name(name: str) -> ServiceInfo | None:
    """The service called `name` (postgresql, postgres, redis, mysql, mariadb, ...)."""
    key = name.lower()
    aliases = {"postgres": "postgresql", "pg": "postgresql", "mariadb": "mysql", "mongo": "mongodb",
               "ssh": "sshd", "apache2": "apache", "httpd": "apache", "opensearch": "elasticsearch"}
    key = aliases.get(key, key)
    for s in SERVICES:
        if s.name == key:
            return s
    return _BY_NAME.get(key)


def _base(word: str) -> str:
    base = os.path.basename(word.strip())
    if base.endswith(":"):  # nginx rewrites argv0 as "nginx:"
        base = base[:-1]
    return base


@functools.lru_cache(maxsize=512)
def by_process(name_or_cmdline: str) -> ServiceInfo | None:
    """The service a process name or command line belongs to, or None.

    Looks at the program name, and for generic runtimes (python, node, java) at the script or
    module they run (`python -m uvicorn`, `java ... kafka.Kafka`).
    """
    words = name_or_cmdline.split()
    if not words:
        return None
    prog = _base(words[0])
    if prog.startswith("python") and prog[6:].replace(".", "").isdigit():
        prog = "python"
    svc = _BY_NAME.get(prog)
    if svc is None:
        for prefix, stem in (("postgres", "postgres"), ("redis-server", "redis-server"),
                             ("mysqld", "mysqld"), ("mongod", "mongod")):
            if prog.startswith(prefix):
                svc = _BY_NAME.get(stem)
                break
    if prog not in GENERIC_RUNTIMES:
        return svc
    # a generic runtime: what it runs decides (`python -m uvicorn`, `python3 /usr/bin/gunicorn`,
    # `java ... kafka.Kafka`, `beam.smp ... -s rabbit`), never a later argument (`pytest -k redis`)
    if prog in ("java", "beam.smp", "erl"):
        for word in words[1:64]:
            low = word.lower()
            if "kafka.kafka" in low:
                return by_name("kafka")
            if "quorumpeermain" in low:
                return by_name("zookeeper")
            if "org.elasticsearch" in low or "org.opensearch" in low:
                return by_name("elasticsearch")
            if low == "rabbit" or low.startswith("rabbit@") or "/rabbitmq" in low:
                return by_name("rabbitmq")
        return svc
    main = _runtime_program(words[1:])
    if main is not None:
        base = _base(main)
        found = _BY_NAME.get(base) or _BY_NAME.get(base.split(".")[0])
        if found is not None and found.name not in ("node", "python"):
            return found
    return svc


# options of python and node that take a value (so the next word is not the program)
_VALUE_OPTIONS = frozenset({"-X", "-W", "-Q", "-r", "--require", "--import", "--loader",
                            "--experimental-loader", "--inspect-port", "--max-old-space-size"})


def _runtime_program(args: list[str]) -> str | None:
    """The module or script an interpreter runs: `-m MODULE` or its first positional argument."""
    skip = False
    for i, a in enumerate(args):
        if skip:
            skip = False
            continue
        if a == "-m":
            return args[i + 1] if i + 1 < len(args) else None
        if a in ("-c", "-e", "--eval", "-p", "--print"):
            return None  # inline code
        if a in _VALUE_OPTIONS:
            skip = True
            continue
        if a.startswith("-"):
            continue
        return a
    return None


def service_for_process(proc: Process) -> ServiceInfo | None:
    """The well-known service a snapshot Process runs, or None."""
    if proc.cmdline:
        found = by_process(" ".join(proc.cmdline))
        if found is not None:
            return found
    return by_process(proc.name)


def is_generic(info: ServiceInfo) -> bool:
    """True for the dev-server entries (node, python, http): they say little about the program."""
    return info.name in ("node", "python", "http", "https")
