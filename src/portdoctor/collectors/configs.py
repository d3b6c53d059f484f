"""Bind and port settings of known servers, read from the files the servers themselves read.

For each process of the snapshot that services.py knows, the config file is found the way the
server finds it (command-line option, environment, then the packaged default path), parsed in
its own syntax, and every bind/port setting becomes a ServiceConfig (file, line, key, value,
the line's text), in the order the server reads them: when a key repeats, the last one wins.
Settings given on the command line (`redis-server --port 6380`) are reported with path
"(command line)" and line 0. Absent settings produce nothing: the checks know the defaults.
Only a few files are read (includes followed to a small limit); the filesystem is never walked.

A config path comes from a process's command line or from the server's own reply (Redis INFO
`config_file`), so another user may have chosen it. As root, such a file is read only when it
belongs to root or to the process's user and that user could read it (`Host.readable_for`);
only the matched directive lines are kept.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from portdoctor import services
from portdoctor.collectors import Facts, Request, procfs
from portdoctor.host import Host, LocalHost
from portdoctor.model import COMMAND_LINE, Limitation, Listener, Process, ServiceConfig
from portdoctor.services import ServiceInfo

MAX_FILES = 24  # per process, includes counted


@dataclass(frozen=True, slots=True)
class Setting:
    """One `key value` line of a config file."""

    line: int
    key: str
    value: str
    text: str


# --------------------------------------------------------------------------- parsers


def _strip_comment(line: str, marks: str = "#") -> str:
    """The line without a trailing comment (quotes respected)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in marks:
            return line[:i]
    return line


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        inner = value[1:-1]
        return inner.replace("''", "'") if value[0] == "'" else inner
    return value


def parse_postgresql(text: str) -> Iterator[Setting]:
    """postgresql.conf: `key = value` or `key value`, '#' comments, single-quoted strings.

    include, include_if_exists and include_dir come out as settings too, so callers can follow
    them.
    """
    for n, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw).strip()
        if not line:
            continue
        m = re.match(r"([A-Za-z0-9_.]+)\s*(?:=\s*|\s+)(.*)$", line)
        if m:
            yield Setting(n, m.group(1).lower(), _unquote(m.group(2)), raw.rstrip("\n"))


def parse_redis(text: str) -> Iterator[Setting]:
    """redis.conf: `key arg arg...` ("bind 127.0.0.1 -::1", "port 6379", "include FILE")."""
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, *rest = line.split(None, 1)
        yield Setting(n, key.lower(), " ".join(_unquote(w) for w in "".join(rest).split()), raw.rstrip("\n"))


_MYSQL_SERVER_SECTIONS = re.compile(r"^(mysqld|server|mariadb|mariadbd|mysqld-[\d.]+|mariadb-[\d.]+|mariadbd-[\d.]+)$")


def parse_mysql(text: str) -> Iterator[Setting]:
    """my.cnf: settings of the server sections ([mysqld], [server], [mariadb], ...).

    `!include FILE` and `!includedir DIR` come out as settings ("!include", "!includedir").
    Keys are normalised with '_' as '-' (the server accepts both).
    """
    section = ""
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("!include"):
            key, _, rest = line.partition(" ")
            yield Setting(n, key, rest.strip(), raw.rstrip("\n"))
            continue
        if line.startswith("["):
            section = line.strip("[] ").lower()
            continue
        if not _MYSQL_SERVER_SECTIONS.match(section):
            continue
        line = _strip_comment(line, "#;" if "=" not in line else "#").strip()
        key, sep, value = line.partition("=")
        yield Setting(n, key.strip().lower().replace("_", "-"), _unquote(value) if sep else "",
                      raw.rstrip("\n"))


def parse_yaml_keys(text: str) -> Iterator[Setting]:
    """Scalar keys of a simple block-style YAML file as dotted paths ("net.bindIp").

    Enough for mongod.conf and elasticsearch.yml (nested or dotted keys, comments, quotes);
    flow collections and multi-line scalars are returned as their raw text.
    """
    stack: list[tuple[int, str]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith(("#", "---", "- ")):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        line = _strip_comment(raw).strip()
        m = re.match(r"([\"']?)([^:\"']+)\1\s*:(?:\s+(.*))?$", line)
        if not m:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = ".".join([k for _, k in stack] + [m.group(2).strip()])
        value = (m.group(3) or "").strip()
        if value:
            yield Setting(n, key, _unquote(value), raw.rstrip("\n"))
        else:
            stack.append((indent, m.group(2).strip()))


def parse_properties(text: str) -> Iterator[Setting]:
    """key=value / key: value / key = value files (Kafka, ZooKeeper, rabbitmq.conf)."""
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#!;":
            continue
        m = re.match(r"([^=:\s]+)\s*[=:]\s*(.*)$", line)
        if m:
            yield Setting(n, m.group(1), _unquote(m.group(2)), raw.rstrip("\n"))


def parse_directives(text: str) -> Iterator[Setting]:
    """Directive files: `Keyword args` (sshd_config, Apache, memcached.conf's `-p 11211`),
    and `keyword args;` (nginx), `bind ...` (haproxy). `include` lines come out too."""
    for n, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw).strip().rstrip(";").strip()
        if not line:
            continue
        key, *rest = line.split(None, 1)
        yield Setting(n, key, "".join(rest).strip(), raw.rstrip("\n"))


def parse_xml_tags(text: str) -> Iterator[Setting]:
    """`<tag>value</tag>` lines of an XML config (ClickHouse), outside <!-- comments -->."""
    in_comment = False
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw
        if in_comment:
            if "-->" not in line:
                continue
            line, in_comment = line.split("-->", 1)[1], False
        line = re.sub(r"<!--.*?-->", "", line)
        if "<!--" in line:
            line, in_comment = line.split("<!--", 1)[0], True
        for m in re.finditer(r"<([A-Za-z_][\w.-]*)>([^<]*)</\1>", line):
            yield Setting(n, m.group(1), m.group(2).strip(), raw.rstrip("\n"))


PARSERS = {
    "postgresql": parse_postgresql,
    "redis": parse_redis,
    "mysql": parse_mysql,
    "mongodb": parse_yaml_keys,
    "yaml": parse_yaml_keys,
    "properties": parse_properties,
    "ini": parse_properties,
    "memcached": parse_directives,
    "sshd": parse_directives,
    "apache": parse_directives,
    "nginx": parse_directives,
    "haproxy": parse_directives,
    "xml": parse_xml_tags,
}

_INCLUDE_KEYS = {"include", "include_if_exists", "include_dir", "!include", "!includedir"}


# --------------------------------------------------------------------------- reading files


class ConfigReader:
    """Reads config files as a process sees them (through /proc/PID/root when it runs in
    another mount namespace), counting files against MAX_FILES.

    With the process's `uid`, a file is read only when `host.readable_for` allows it (files
    another user's process named); the refused ones are kept in `refused` with the reason."""

    def __init__(self, host: Host, pid: int | None, uid: int | None = None) -> None:
        self.host = host
        self.prefix = ""
        self.files = 0
        self.denied: list[str] = []
        self.refused: list[tuple[str, str]] = []  # (path, why it was not read)
        self.uid = uid
        self.checked = pid is not None and pid > 0  # a process chose the paths: check them
        if self.checked and host.live:
            mine, theirs = procfs.ns_id(host, "self", "mnt"), procfs.ns_id(host, pid, "mnt")
            if mine is not None and theirs is not None and mine != theirs:
                self.prefix = f"{host.proc_root}/{pid}/root"

    def read(self, path: str) -> str | None:
        """The file's text, or None when missing, unreadable, refused, or past the file limit."""
        if self.files >= MAX_FILES:
            return None
        if self.checked:
            ok, why = self.host.readable_for(self.prefix + path, self.uid)
            why = why.replace(self.prefix, "") if self.prefix else why  # name the file as the server does
            if not ok:
                if (path, why) not in self.refused:
                    self.refused.append((path, why))
                return None
        try:
            text = self.host.read_text(self.prefix + path, 1 << 20)
        except PermissionError:
            self.denied.append(path)
            return None
        except OSError:
            return None
        self.files += 1
        return text

    def glob(self, pattern: str) -> list[str]:
        """Paths matching a pattern with wildcards in its last parts (sorted, like includedir)."""
        found = self.host.glob(self.prefix + pattern)
        return sorted(p[len(self.prefix):] for p in found)

    def exists(self, path: str) -> bool:
        """True when the path exists as the process sees it."""
        return self.host.exists(self.prefix + path)


def read_settings(reader: ConfigReader, path: str, syntax: str, depth: int = 0) -> Iterator[tuple[str, Setting]]:
    """(file, setting) for `path` and the files it includes, in reading order."""
    text = reader.read(path)
    if text is None:
        return
    parse = PARSERS.get(syntax, parse_directives)
    base = os.path.dirname(path)
    for s in parse(text):
        key = s.key.lower()
        if key in _INCLUDE_KEYS and depth < 4:
            yield path, s
            target = s.value if os.path.isabs(s.value) else os.path.join(base, s.value)
            if key in ("include_dir", "!includedir"):
                suffix = ".conf" if key == "include_dir" else ".cnf"
                for inc in reader.glob(os.path.join(target, "*" + suffix)):
                    yield from read_settings(reader, inc, syntax, depth + 1)
            elif "*" in target or "?" in target:
                for inc in reader.glob(target):
                    yield from read_settings(reader, inc, syntax, depth + 1)
            else:
                yield from read_settings(reader, target, syntax, depth + 1)
        else:
            yield path, s


# --------------------------------------------------------------------------- where each server looks


def _opt(argv: tuple[str, ...], *names: str) -> str | None:
    """The value of the last `--name VALUE`, `--name=VALUE` or `-nVALUE` option in argv."""
    found: str | None = None
    for i, a in enumerate(argv):
        for name in names:
            if a == name and i + 1 < len(argv):
                found = argv[i + 1]
            elif a.startswith(name + "="):
                found = a[len(name) + 1:]
            elif len(name) == 2 and a.startswith(name) and len(a) > 2 and not a.startswith("--"):
                found = a[2:]
    return found


def _postgresql_paths(argv: tuple[str, ...], env: dict[str, str], reader: ConfigReader,
                      packaged: Callable[[], list[str]]) -> list[str]:
    """postgresql.conf (-c config_file=, else DATADIR/postgresql.conf, else the packaged one), then
    DATADIR/postgresql.auto.conf (ALTER SYSTEM), which the server reads last."""
    explicit = None
    for i, a in enumerate(argv):
        if a == "-c" and i + 1 < len(argv) and argv[i + 1].startswith("config_file="):
            explicit = argv[i + 1].split("=", 1)[1]
        elif a.startswith(("--config-file=", "--config_file=")):
            explicit = a.split("=", 1)[1]
    datadir = _opt(argv, "-D") or env.get("PGDATA")
    if explicit:
        main = explicit
    elif datadir:
        main = os.path.join(datadir, "postgresql.conf")
    else:
        found = packaged()
        if len(found) != 1:
            return found  # several clusters and no hint which one: read them all
        main = found[0]
    if explicit or not datadir:
        # Debian keeps the config in /etc and names the data directory inside it
        text = reader.read(main)
        for s in parse_postgresql(text or ""):
            if s.key == "data_directory":
                datadir = s.value
        reader.files -= 1 if text is not None else 0  # read again below; count it once
    out = [main]
    if datadir:
        auto = os.path.join(datadir, "postgresql.auto.conf")
        if reader.exists(auto):
            out.append(auto)
    return out


def config_paths(info: ServiceInfo, proc: Process, env: dict[str, str], reader: ConfigReader,
                 listeners: Sequence[Listener] = (), asked: dict[int, object] | None = None) -> list[str]:
    """The config file(s) this server process reads, as the server itself would pick them."""
    argv = proc.cmdline
    spec_paths = [p for spec in info.configs for p in spec.paths]

    def packaged() -> list[str]:
        out: list[str] = []
        for pattern in spec_paths:
            out.extend(reader.glob(pattern) if any(c in pattern for c in "*?[") else
                       ([pattern] if reader.exists(pattern) else []))
        return out

    if info.name == "postgresql":
        return _postgresql_paths(argv, env, reader, packaged)
    if info.name == "redis":
        for a in argv[1:]:
            if not a.startswith("-") and a.endswith(".conf"):
                return [a]
        told = _redis_told(proc, listeners, asked, reader.host)
        if told is not None and told.config_file is not None:
            return [told.config_file] if told.config_file else []  # "" = no config file at all
        return packaged()[:1]
    if info.name == "mysql":
        explicit = _opt(argv, "--defaults-file")
        if explicit:
            return [explicit]
        out = [p for p in ("/etc/my.cnf", "/etc/mysql/my.cnf") if reader.exists(p)]
        extra = _opt(argv, "--defaults-extra-file")
        return out + ([extra] if extra else [])
    if info.name == "mongodb":
        explicit = _opt(argv, "--config", "-f")
        return [explicit] if explicit else packaged()[:1]
    if info.name == "nginx":
        explicit = _opt(argv, "-c")
        return [explicit] if explicit else packaged()
    if info.name == "sshd":
        explicit = _opt(argv, "-f")
        return [explicit] if explicit else packaged()[:1]
    if info.name == "haproxy":
        explicit = _opt(argv, "-f")
        return [explicit] if explicit else packaged()[:1]
    return packaged()


def _redis_told(proc: Process, listeners: Sequence[Listener], asked: dict[int, object] | None = None,
                host: Host | None = None):
    """What the Redis of this process says about itself (its title hides the config path).

    `asked` keeps the answers of one reading of a process's settings, so Redis is asked once.
    """
    if proc.pid <= 0 or not listeners:
        return None
    if asked is not None and proc.pid in asked:
        return asked[proc.pid]
    from portdoctor.collectors import redisinfo

    told = None
    socks = sorted((r for r in listeners if proc.pid in r.pids),
                   key=lambda r: (r.address not in ("127.0.0.1", "::1", "0.0.0.0", "::"), r.family))
    for r in socks[:2]:
        address = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(r.address, r.address)
        told = redisinfo.ask(address, r.port, host=host)
        if told is not None:
            break
    if asked is not None:
        asked[proc.pid] = told
    return told


def _redis_runtime_settings(proc: Process, listeners: Sequence[Listener],
                            asked: dict[int, object] | None = None, host: Host | None = None) -> list[ServiceConfig]:
    """A Redis started without a config file: its bind list as given on its command line."""
    told = _redis_told(proc, listeners, asked, host)
    if told is None or told.config_file != "" or not told.bind:
        return []
    return [ServiceConfig("redis", COMMAND_LINE, 0, "bind", told.bind, f"--bind {told.bind}")]


def _wanted_keys(info: ServiceInfo) -> tuple[dict[str, str], str]:
    """lower-cased key -> the spelling of services.py (checks compare keys exactly), and the syntax."""
    keys: dict[str, str] = {}
    syntax = "directives"
    for spec in info.configs:
        for k in (*spec.bind_keys, *spec.port_keys):
            keys.setdefault(k.lower(), k)
        syntax = spec.syntax
    return keys, syntax


# command-line options that override config files, per service: option -> config key
_CMDLINE_FLAGS: dict[str, dict[str, str]] = {
    "redis": {"--port": "port", "--bind": "bind", "--protected-mode": "protected-mode"},
    "mysql": {"--port": "port", "--bind-address": "bind-address", "--bind_address": "bind-address",
              "-P": "port"},
    "mongodb": {"--port": "net.port", "--bind_ip": "net.bindIp", "--bind_ip_all": "net.bindIpAll"},
    "memcached": {"-p": "-p", "-l": "-l", "--port": "-p", "--listen": "-l"},
    "postgresql": {"-p": "port", "-h": "listen_addresses"},
    "sshd": {"-p": "Port"},
}


def cmdline_settings(info: ServiceInfo, proc: Process) -> list[ServiceConfig]:
    """Bind/port settings given as options on the server's command line (path "(command line)")."""
    out: list[ServiceConfig] = []
    argv = proc.cmdline
    flags = _CMDLINE_FLAGS.get(info.name, {})
    for i, a in enumerate(argv[1:], 1):
        opt, eq, inline = a.partition("=")
        if a in flags:
            value = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("-") else ""
            out.append(ServiceConfig(info.name, COMMAND_LINE, 0, flags[a], value, f"{a} {value}".strip()))
        elif eq and opt.startswith("--") and opt in flags:
            out.append(ServiceConfig(info.name, COMMAND_LINE, 0, flags[opt], inline, a))
        elif info.name == "postgresql" and a == "-c" and i + 1 < len(argv):
            key, _, value = argv[i + 1].partition("=")
            if key in ("port", "listen_addresses"):
                out.append(ServiceConfig(info.name, COMMAND_LINE, 0, key, value, f"-c {argv[i + 1]}"))
    return out


def service_configs(info: ServiceInfo, proc: Process, host: Host | None = None,
                    env: dict[str, str] | None = None,
                    reader: ConfigReader | None = None,
                    listeners: Sequence[Listener] = ()) -> tuple[list[ServiceConfig], list[str]]:
    """(settings, files that could not be read) of one server process; files refused by the
    reading rule are in `reader.refused`. The host is the reader's, else this machine."""
    host = host or (reader.host if reader is not None else LocalHost())
    if reader is None:
        reader = ConfigReader(host, proc.pid, procfs.read_uid(host, proc.pid))
    keys, syntax = _wanted_keys(info)
    out: list[ServiceConfig] = []
    asked: dict[int, object] = {}  # what Redis said of itself, asked once for both uses below
    for path in config_paths(info, proc, env or {}, reader, listeners, asked):
        for file, s in read_settings(reader, path, syntax):
            key = keys.get(s.key.lower())
            if key is not None:
                out.append(ServiceConfig(info.name, file, s.line, key, s.value, s.text))
    out.extend(cmdline_settings(info, proc))
    if info.name == "redis" and not any(c.path == COMMAND_LINE and c.key == "bind" for c in out):
        out.extend(_redis_runtime_settings(proc, listeners, asked, reader.host))
    return out, reader.denied


def collect_configs(req: Request) -> Facts:
    """ServiceConfig for every bind/port setting of each known server among the processes.

    A server that is expected (--service, or the well-known owner of the port) but not running
    has its packaged config files read too: they may say it listens elsewhere.
    """
    from portdoctor.collectors.processes import processes_for

    procs, _ = processes_for(req)
    host = req.system
    listeners: list[Listener] = []
    if host.live and sys.platform.startswith("linux"):  # a live host: servers can be asked
        from portdoctor.collectors.linux import listener_facts

        listeners = list(listener_facts(req).listeners)
    out: list[ServiceConfig] = []
    lims: list[Limitation] = []
    running: set[str] = set()
    for pid, proc in sorted(procs.items()):
        info = services.service_for_process(proc)
        if info is None or not info.configs:
            continue
        running.add(info.name)
        # postgres, nginx and apache fork workers that share the parent's settings
        parent = procs.get(procfs.read_ppid(host, pid) or -1)
        if parent is not None and services.service_for_process(parent) is info:
            continue
        env = procfs.read_environ(host, pid) or {}
        uid = procfs.read_uid(host, pid)
        reader = ConfigReader(host, pid, uid)
        found, denied = service_configs(info, proc, host, env, reader=reader, listeners=listeners)
        out.extend(x for x in found if x not in out)
        for path in denied:
            lims.append(Limitation(f"{info.name} configuration {path} is not readable",
                                   "run as root (sudo) to read it"))
        for path, why in reader.refused:
            lims.append(Limitation(
                f"{info.name} configuration {path}, named by process {pid} (user {proc.user or uid}), "
                f"was not read: {why}", "check that file by hand; portdoctor reads for a process only "
                "what its user could read"))
    if host.live:  # a recorded tree comes from another host: its files are not here
        for info in expected_services(req):
            if info.name in running:
                continue
            found, denied = service_configs(info, Process(pid=0, name=info.name), host,
                                            reader=ConfigReader(host, None))
            out.extend(x for x in found if x not in out)
            for path in denied:
                lims.append(Limitation(f"{info.name} configuration {path} is not readable",
                                       "run as root (sudo) to read it"))
    return Facts(fields={"configs": tuple(out)}, limitations=lims)


def expected_services(req: Request) -> list[ServiceInfo]:
    """The servers with config files the user means: --service, else the daemons of the port."""
    if req.service:
        info = services.by_name(req.service)
        return [info] if info is not None and info.configs else []
    return [s for s in services.by_port(req.port) if s.configs and not services.is_generic(s)][:3]
