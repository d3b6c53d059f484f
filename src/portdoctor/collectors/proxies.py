"""Reverse proxies running in this network namespace: nginx, HAProxy, Caddy.

For each running proxy: its effective configuration reduced to routes (proxyconf), the error
log lines about refused upstreams (nginx), and, when the port asked about is one of its
listening ports, one plain HTTP request to it on loopback or this namespace's own address.

Snapshot.proxies (ProxyFacts) is built from this plain form = {"proxies": [{"kind", "pid", "exe", "source", "config": ProxyConfig JSON,
                                 "error_log": [{"path", "lines"}],
                                 "unix": {path: {"state": "ok | missing | refused | busy | not_socket |
                                                 denied | error", "kind", "mode", "owner", "error",
                                                 "others": [other sockets in its folder]}},
                                 "http": [{"address", "port", "status", "reason", "server",
                                           "error", "seconds"}]}]}
"""

from __future__ import annotations

import errno as errno_mod
import json
import os
import posixpath
import socket
import time
import urllib.request
from typing import Any

from portdoctor import redact
from portdoctor.collectors import Facts, Request, procfs
from portdoctor.collectors.containers import ns_addresses
from portdoctor.collectors.procfs import netns_inode
from portdoctor.host import Host, LocalHost
from portdoctor.hostfacts import ProxyFacts
from portdoctor.model import Limitation
from portdoctor.plain import from_plain
from portdoctor.proxyconf import ProxyConfig, caddy, haproxy, nginx

HTTP_TIMEOUT = 4.5  # HAProxy retries a refused server for ~3 s before its 503
LOG_TAIL_BYTES = 256 * 1024
LOG_LINES = 8
MAX_CONFIG_FILES = 200
_REFUSED_MARKS = ("Connection refused", "no live upstreams", "upstream prematurely closed",
                  "connect() failed", "upstream timed out", "while connecting to upstream",
                  "could not be resolved")


def _arg(argv: tuple[str, ...] | list[str], flag: str) -> str | None:
    """The value after `flag` in argv (or of `flag=value`)."""
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "=") and flag.startswith("--"):
            return a.split("=", 1)[1]
    return None


class ProxyProcess:
    """One running proxy as the collector sees it: pid, argv, user, and how its files are read.

    Files it names (configs, logs) are read through `read`, which applies the Host's rule for
    files another user's process named, through /proc/PID/root when it has its own mount
    namespace; what was refused is kept in `refused`."""

    def __init__(self, host: Host, kind: str, pid: int, argv: tuple[str, ...]) -> None:
        self.host, self.kind, self.pid, self.argv = host, kind, pid, argv
        self.uid = procfs.read_uid(host, pid)
        self.user = host.user_name(self.uid) if self.uid is not None else None
        self.root = _proxy_root(host, pid)
        self.refused: list[tuple[str, str]] = []

    def _where(self, path: str) -> str:
        return self.root + path if self.root else path

    def allowed(self, path: str, owner_rule: bool = True) -> bool:
        """May this proxy's file be read for it (see Host.readable_for)? Records a refusal."""
        ok, why = self.host.readable_for(self._where(path), self.uid, owner_rule)
        why = why.replace(self.root, "") if self.root else why  # name the file as the proxy does
        if not ok and (path, why) not in self.refused:
            self.refused.append((path, why))
        return ok

    def read(self, path: str) -> str:
        """The text of a file the proxy names; OSError when missing, unreadable or refused."""
        if not self.allowed(path):
            raise PermissionError(errno_mod.EACCES, "not read for this process's user", path)
        return self.host.read_text(self._where(path))

    def tail(self, path: str, size: int) -> bytes:
        """The last bytes of a file the proxy's (vetted) config names, its logs; OSError as for `read`."""
        if not self.allowed(path, owner_rule=False):
            raise PermissionError(errno_mod.EACCES, "not read for this process's user", path)
        return self.host.read_tail(self._where(path), size)

    def is_dir(self, path: str) -> bool:
        try:
            return self.host.stat(self._where(path)).kind == "dir"
        except OSError:
            return False

    def exists(self, path: str) -> bool:
        return self.host.exists(self._where(path))

    def glob(self, pattern: str) -> list[str]:
        found = self.host.glob(self._where(pattern))
        return [p[len(self.root):] for p in found] if self.root else found

    def why_not_run(self) -> str | None:
        """None when its own binary may be run (nginx -T), else why not: it runs as root, from a
        file that is the same file under that path here, which root alone could have put there
        (Host.trusted_executable)."""
        if self.uid != 0:
            return f"it runs as {self.user or self.uid}, not root"
        exe = procfs.read_exe(self.host, self.pid)
        if not exe:
            return "its program cannot be seen (/proc/PID/exe)"
        try:  # the path must name here the very file it runs (not so in a container)
            running = self.host.stat(f"{self.host.proc_root}/{self.pid}/exe")
            here = self.host.stat(exe)
        except OSError:
            return f"its program {exe} is not a file of this host's filesystem"
        if (running.dev, running.ino) != (here.dev, here.ino):
            return f"its program {exe} is another file than {exe} here (it runs in a container)"
        ok, why = self.host.trusted_executable(exe)
        return None if ok else why

    def refusals(self) -> list[Limitation]:
        """A limitation per file not read for this proxy."""
        return [Limitation(f"{self.kind} configuration {path}, named by process {self.pid} "
                           f"(user {self.user or self.uid}), was not read: {why}",
                           "check that file by hand; portdoctor reads for a process only what its user could read")
                for path, why in self.refused]


def find_proxies(host: Host) -> list[tuple[str, int, tuple[str, ...]]]:
    """(kind, pid, argv) of the main process of each proxy in this network namespace."""
    own = netns_inode(host, "self")
    out: list[tuple[str, int, tuple[str, ...]]] = []
    kinds: dict[int, str] = {}
    for pid in procfs.pids(host):
        comm = procfs.read_comm(host, pid)
        if comm in ("nginx", "haproxy", "caddy"):
            kinds[pid] = comm
    for pid, kind in kinds.items():
        if netns_inode(host, pid) != own:
            continue
        if kinds.get(procfs.read_ppid(host, pid) or 0) == kind:
            continue  # a worker of a master we already have
        argv = procfs.read_cmdline(host, pid)
        if kind == "nginx" and argv[:2] == ("nginx:", "worker"):
            continue
        out.append((kind, pid, argv))
    return out


def nginx_dump(proxy: ProxyProcess, main: str, prefix: str | None = None) -> str:
    """`nginx -T`-like text built from the files (when nginx -T may not or cannot be run),
    following `include` directives; each file read under the proxy's reading rule."""
    prefix = prefix or posixpath.dirname(main)
    out: list[str] = []
    seen: set[str] = set()
    todo = [main]
    while todo and len(seen) < MAX_CONFIG_FILES:
        path = todo.pop(0)
        if path in seen:
            continue
        seen.add(path)
        try:
            text = proxy.read(path)
        except OSError:
            continue
        out.append(f"# configuration file {path}:\n{text}\n")
        for pattern in nginx.includes(nginx.parse_file(path, text)):
            pattern = pattern if posixpath.isabs(pattern) else posixpath.join(prefix, pattern)
            todo.extend(proxy.glob(pattern))
    return "\n".join(out)


def _nginx_config(proxy: ProxyProcess) -> tuple[ProxyConfig, str, list[Limitation]]:
    argv = proxy.argv
    if argv[:3] == ("nginx:", "master", "process"):
        argv = argv[3:]
    conf, prefix = _arg(argv, "-c"), _arg(argv, "-p")
    lims: list[Limitation] = []
    why_not = proxy.why_not_run()
    if why_not is None:
        exe = procfs.read_exe(proxy.host, proxy.pid) or ""
        cmd = [exe, "-T"] + (["-c", conf] if conf else []) + (["-p", prefix] if prefix else [])
        r = proxy.host.run(cmd, timeout=15)
        if r.ok and "# configuration file " in r.stdout:
            return nginx.parse_dump(r.stdout), "nginx -T", lims
        why = "not found" if r.missing else (r.stderr.strip().splitlines() or ["no output"])[-1]
        note = (f"`{' '.join(cmd)}` failed ({why}); nginx configuration read from the files",
                "run as root so nginx -T can read every file")
    else:
        note = (f"nginx (pid {proxy.pid}) -T was not run: {why_not}; its configuration was read from the files",
                "portdoctor runs a proxy's own binary only when root owns it and every folder above it, and "
                "the proxy runs as root")
    main = conf or "/etc/nginx/nginx.conf"
    if prefix and not posixpath.isabs(main):
        main = posixpath.join(prefix, main)
    cfg = nginx.parse_dump(nginx_dump(proxy, main), main)
    lims.append(Limitation(*note))
    return cfg, "files", lims


def _haproxy_config(proxy: ProxyProcess) -> tuple[ProxyConfig, str, list[Limitation]]:
    argv = proxy.argv
    paths = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-f"] or ["/etc/haproxy/haproxy.cfg"]
    files: list[tuple[str, str]] = []
    lims: list[Limitation] = []
    for p in paths:
        names = proxy.glob(posixpath.join(p, "*.cfg")) if proxy.is_dir(p) else [p]
        for name in names:
            try:
                files.append((name, proxy.read(name)))
            except OSError as exc:
                if any(path == name for path, _ in proxy.refused):
                    continue  # said by proxy.refusals()
                lims.append(Limitation(f"cannot read HAProxy config {name} ({exc.strerror})", "run as root"))
    return haproxy.parse_many(files), "files", lims


def _caddy_config(proxy: ProxyProcess) -> tuple[ProxyConfig, str, list[Limitation]]:
    argv, host = proxy.argv, proxy.host
    conf = _arg(argv, "--config")
    adapter = _arg(argv, "--adapter")
    cwd = procfs.read_cwd(host, proxy.pid) or "/"
    if conf is None and proxy.exists(posixpath.join(cwd, "Caddyfile")):
        conf, adapter = "Caddyfile", "caddyfile"
    if conf is not None:
        path = conf if posixpath.isabs(conf) else posixpath.join(cwd, conf)
        try:
            text = proxy.read(path)
        except OSError as exc:
            if any(p == path for p, _ in proxy.refused):
                return ProxyConfig("caddy", path), "none", []  # said by proxy.refusals()
            return ProxyConfig("caddy", path), "files", [
                Limitation(f"cannot read Caddy config {path} ({exc.strerror})", "run as root")]
        if adapter == "caddyfile" or (adapter is None and not path.endswith(".json")):
            return caddy.parse_caddyfile(text, path), "files", []
        return caddy.parse_json(text, path), "files", []
    # no file: the config was loaded through the admin API; ask it (loopback only, a probe)
    if not host.live:
        return ProxyConfig("caddy", "caddy admin API"), "none", [
            Limitation("Caddy's configuration is unknown (its admin API cannot be asked on a recorded host)")]
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
        with opener.open("http://127.0.0.1:2019/config/", timeout=2) as resp:
            return caddy.parse_json(json.loads(resp.read() or b"null") or {}, "caddy admin API"), "admin API", []
    except (OSError, ValueError) as exc:
        return ProxyConfig("caddy", "caddy admin API"), "none", [
            Limitation(f"Caddy's configuration is unknown (admin API 127.0.0.1:2019: {exc})",
                       "start caddy with --config FILE, or enable its admin API on localhost")]


def tail_lines(proxy: ProxyProcess, path: str, marks: tuple[str, ...] = _REFUSED_MARKS,
               limit: int = LOG_LINES) -> list[str]:
    """The last `limit` lines of a log file that contain one of `marks`."""
    data = proxy.tail(path, LOG_TAIL_BYTES).decode(errors="replace")
    lines = [ln for ln in data.splitlines() if any(m in ln for m in marks)]
    return lines[-limit:]


def http_check(address: str, port: int, host_header: str | None = None,
               timeout: float = HTTP_TIMEOUT, host: Host | None = None) -> dict[str, Any]:
    """One `GET /` over HTTP/1.0; status, reason and Server header (or the error)."""
    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    out: dict[str, Any] = {"address": address, "port": port, "status": None, "reason": None,
                           "server": None, "error": None, "seconds": None}
    start = time.monotonic()
    try:
        with (host or LocalHost()).connect(fam, (address, port), timeout) as s:
            name = host_header or (f"[{address}]" if fam == socket.AF_INET6 else address)
            s.sendall(f"GET / HTTP/1.0\r\nHost: {name}\r\nUser-Agent: portdoctor\r\n"
                      "Connection: close\r\n\r\n".encode())
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        out["error"] = f"{type(exc).__name__}: {exc.strerror or exc}"
        out["seconds"] = round(time.monotonic() - start, 3)
        return out
    out["seconds"] = round(time.monotonic() - start, 3)
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    first = head[0].split(" ", 2) if head and head[0] else []
    if len(first) >= 2 and first[0].startswith("HTTP/") and first[1].isdigit():
        out["status"] = int(first[1])
        out["reason"] = first[2] if len(first) > 2 else ""
    else:
        out["error"] = "no HTTP answer" if not data else f"not HTTP: {head[0][:60]!r}"
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "server":
            out["server"] = value.strip()
    return out


def unix_socket_fact(path: str, root: str = "", host: Host | None = None) -> dict[str, Any]:
    """Stat a unix socket path (as seen under `root`, the proxy's root folder) and try one
    connect to it: does it exist, is it a socket, does something accept on it."""
    host = host or LocalHost()
    real = root.rstrip("/") + path if root else path
    out: dict[str, Any] = {"state": None, "kind": None, "mode": None, "owner": None, "error": None, "others": []}
    try:
        st = host.stat(real)
    except FileNotFoundError:
        out["state"] = "missing"
        folder = posixpath.dirname(real)
        try:
            socks = []
            for n in host.listdir(folder):
                try:
                    if host.stat(posixpath.join(folder, n), follow_symlinks=False).kind == "socket":
                        socks.append(posixpath.join(posixpath.dirname(path), n))
                except OSError:
                    continue
            out["others"] = sorted(socks)[:5]
        except OSError:
            pass
        return out
    except PermissionError as exc:
        out["state"], out["error"] = None, f"stat: {exc.strerror}"
        return out
    except OSError as exc:
        out["state"], out["error"] = "error", f"stat: {exc.strerror}"
        return out
    out["mode"] = oct(st.mode)
    out["owner"] = host.user_name(st.uid) or str(st.uid)
    if st.kind != "socket":
        out["state"], out["kind"] = "not_socket", "directory" if st.kind == "dir" else "file"
        return out
    out["kind"] = "socket"
    try:
        host.connect(socket.AF_UNIX, real, 0.5).close()
        out["state"] = "ok"
    except TimeoutError:
        out["state"], out["error"] = "busy", "connect timed out"
    except OSError as exc:
        rc = exc.errno or 0
        out["error"] = f"{errno_mod.errorcode.get(rc, rc)}: {os.strerror(rc)}" if rc else str(exc)
        out["state"] = {errno_mod.ECONNREFUSED: "refused", errno_mod.EAGAIN: "busy",
                        errno_mod.ENOENT: "missing", errno_mod.EACCES: "denied",
                        errno_mod.EPERM: "denied"}.get(rc, "error")
    return out


def _proxy_root(host: Host, pid: int) -> str:
    """"" when the proxy sees the same files as we do, else its root through /proc/PID/root."""
    mine, theirs = procfs.ns_id(host, "self", "mnt"), procfs.ns_id(host, pid, "mnt")
    if mine is None or theirs is None or mine == theirs:
        return ""
    return f"{host.proc_root}/{pid}/root"


def _check_address(bind_address: str, own: set[str]) -> str | None:
    """Where this host may send the HTTP request for a bind: loopback or its own address only."""
    if bind_address in ("0.0.0.0",):
        return "127.0.0.1"
    if bind_address == "::":
        return "::1"
    if bind_address.startswith("127.") or bind_address == "::1" or bind_address in own:
        return bind_address
    return None


def gather(req: Request) -> Facts:
    """Everything the proxies collector returns (see the module docstring)."""
    proc = req.system  # the Host every read goes through
    found = find_proxies(proc)
    if not found:
        return Facts()
    own = set(ns_addresses(proc, "self"))
    out: list[dict[str, Any]] = []
    lims: list[Limitation] = []
    for kind, pid, argv in found:
        proxy = ProxyProcess(proc, kind, pid, argv)
        if kind == "nginx":
            cfg, source, more = _nginx_config(proxy)
        elif kind == "haproxy":
            cfg, source, more = _haproxy_config(proxy)
        else:
            cfg, source, more = _caddy_config(proxy)
        lims += more
        entry: dict[str, Any] = {"kind": kind, "pid": pid, "argv": list(redact.argv(argv)), "source": source,
                                 "config": cfg.to_json(), "error_log": [], "http": []}
        serves_port = req.port and any(b.port == req.port for r in cfg.routes for b in r.binds)
        if serves_port:
            tried: set[tuple[str, int]] = set()
            for route in cfg.routes:
                if route.mode != "http":
                    continue
                for b in route.binds:
                    addr = _check_address(b.address, own) if b.port == req.port else None
                    if addr is None or (addr, b.port) in tried:
                        continue
                    tried.add((addr, b.port))
                    entry["http"].append(http_check(addr, b.port, host=proc))
            root = proxy.root
            for route in cfg.routes:
                if not any(b.port == req.port for b in route.binds):
                    continue
                for up in route.upstreams:
                    if up.unix and up.unix not in entry.setdefault("unix", {}):
                        fact = unix_socket_fact(up.unix, root, proc)
                        entry["unix"][up.unix] = fact
                        if fact["state"] is None:
                            lims.append(Limitation(f"{kind} upstream unix socket {up.unix} could not be checked "
                                                   f"({fact['error']})", "run as root"))
                    elif not up.unix and up.port is None and not up.host:
                        lims.append(Limitation(f"{kind} upstream at {up.file}:{up.line} (`{up.text}`) could not "
                                               "be judged: no address in it", "check it by hand"))
            for problem in cfg.problems:
                lims.append(Limitation(f"{kind} configuration not fully followed, an upstream may go unjudged: {problem}",
                                       "check that upstream by hand (portdoctor diagnose HOST:PORT)"))
            for path in cfg.error_logs:
                try:
                    entry["error_log"].append({"path": path, "lines": tail_lines(proxy, path)})
                except FileNotFoundError:
                    continue
                except PermissionError:
                    if not any(p == path for p, _ in proxy.refused):
                        lims.append(Limitation(f"cannot read {kind} error log {path}", "run as root"))
                except OSError:
                    continue
        lims += proxy.refusals()
        out.append(entry)
    return Facts(fields={"proxies": from_plain(ProxyFacts, {"proxies": out})}, limitations=lims)


def collect_proxies(req: Request) -> Facts:
    """Collector entry point: running reverse proxies, their routes and an HTTP check."""
    try:
        return gather(req)
    except PermissionError:
        raise
    except Exception as exc:  # a configuration the parsers trip on must not stop the diagnosis
        return Facts(limitations=[Limitation(f"reverse proxies could not be read ({type(exc).__name__}: {exc})",
                                             "check the proxy's configuration with nginx -T / haproxy -c")])
