"""Reverse proxies running in this network namespace: nginx, HAProxy, Caddy.

For each running proxy: its effective configuration reduced to routes (proxyconf), the error
log lines about refused upstreams (nginx), and, when the port asked about is one of its
listening ports, one plain HTTP request to it on loopback or this namespace's own address.

extra["proxies"] = {"proxies": [{"kind", "pid", "exe", "source", "config": ProxyConfig JSON,
                                 "error_log": [{"path", "lines"}],
                                 "unix": {path: {"state": "ok | missing | refused | busy | not_socket |
                                                 denied | error", "kind", "mode", "owner", "error",
                                                 "others": [other sockets in its folder]}},
                                 "http": [{"address", "port", "status", "reason", "server",
                                           "error", "seconds"}]}]}
"""

from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import time
import urllib.request
from typing import Any

from portdoctor.collectors import Facts, Request
from portdoctor.collectors import procfs
from portdoctor.collectors.containers import ns_addresses
from portdoctor.collectors.procfs import netns_inode
from portdoctor.hostfacts import ProxyFacts
from portdoctor.model import Limitation
from portdoctor.plain import from_plain
from portdoctor.proxyconf import ProxyConfig, caddy, haproxy, nginx

HTTP_TIMEOUT = 4.5  # HAProxy retries a refused server for ~3 s before its 503
LOG_TAIL_BYTES = 256 * 1024
LOG_LINES = 8
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


def _exe(proc_root: str, pid: int, fallback: str) -> str:
    try:
        path = os.readlink(f"{proc_root}/{pid}/exe").removesuffix(" (deleted)")
        return path if os.path.exists(path) else fallback
    except OSError:
        return fallback


def find_proxies(proc_root: str) -> list[tuple[str, int, tuple[str, ...]]]:
    """(kind, pid, argv) of the main process of each proxy in this network namespace."""
    own = netns_inode(proc_root, "self")
    out: list[tuple[str, int, tuple[str, ...]]] = []
    kinds: dict[int, str] = {}
    for pid in procfs.pids(proc_root):
        comm = procfs.read_comm(proc_root, pid)
        if comm in ("nginx", "haproxy", "caddy"):
            kinds[pid] = comm
    for pid, kind in kinds.items():
        if netns_inode(proc_root, pid) != own:
            continue
        if kinds.get(procfs.read_ppid(proc_root, pid) or 0) == kind:
            continue  # a worker of a master we already have
        argv = procfs.read_cmdline(proc_root, pid)
        if kind == "nginx" and argv[:2] == ("nginx:", "worker"):
            continue
        out.append((kind, pid, argv))
    return out


def _nginx_config(proc_root: str, pid: int, argv: tuple[str, ...]) -> tuple[ProxyConfig, str, list[Limitation]]:
    if argv[:3] == ("nginx:", "master", "process"):
        argv = argv[3:]
    exe = _exe(proc_root, pid, argv[0] if argv else "nginx")
    conf, prefix = _arg(argv, "-c"), _arg(argv, "-p")
    cmd = [exe, "-T"] + (["-c", conf] if conf else []) + (["-p", prefix] if prefix else [])
    lims: list[Limitation] = []
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
        if cp.returncode == 0 and "# configuration file " in cp.stdout:
            cfg = nginx.parse_dump(cp.stdout)
            return cfg, "nginx -T", lims
        why = (cp.stderr.strip().splitlines() or ["no output"])[-1]
    except (OSError, subprocess.SubprocessError) as exc:
        why = str(exc)
    main = conf or "/etc/nginx/nginx.conf"
    if prefix and not os.path.isabs(main):
        main = os.path.join(prefix, main)
    cfg = nginx.parse_dump(nginx.dump_from_disk(main), main)
    lims.append(Limitation(f"`{' '.join(cmd)}` failed ({why}); nginx configuration read from the files",
                           "run as root so nginx -T can read every file"))
    return cfg, "files", lims


def _haproxy_config(argv: tuple[str, ...]) -> tuple[ProxyConfig, str, list[Limitation]]:
    paths = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-f"] or ["/etc/haproxy/haproxy.cfg"]
    files: list[tuple[str, str]] = []
    lims: list[Limitation] = []
    for p in paths:
        names = sorted(glob.glob(os.path.join(p, "*.cfg"))) if os.path.isdir(p) else [p]
        for name in names:
            try:
                with open(name, encoding="utf-8", errors="replace") as fh:
                    files.append((name, fh.read()))
            except OSError as exc:
                lims.append(Limitation(f"cannot read HAProxy config {name} ({exc.strerror})", "run as root"))
    return haproxy.parse_many(files), "files", lims


def _caddy_config(proc_root: str, pid: int, argv: tuple[str, ...]) -> tuple[ProxyConfig, str, list[Limitation]]:
    conf = _arg(argv, "--config")
    adapter = _arg(argv, "--adapter")
    cwd = procfs.read_cwd(proc_root, pid) or "/"
    if conf is None and os.path.exists(os.path.join(cwd, "Caddyfile")):
        conf, adapter = "Caddyfile", "caddyfile"
    if conf is not None:
        path = conf if os.path.isabs(conf) else os.path.join(cwd, conf)
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except OSError as exc:
            return ProxyConfig("caddy", path), "files", [
                Limitation(f"cannot read Caddy config {path} ({exc.strerror})", "run as root")]
        if adapter == "caddyfile" or (adapter is None and not path.endswith(".json")):
            return caddy.parse_caddyfile(text, path), "files", []
        return caddy.parse_json(text, path), "files", []
    # no file: the config was loaded through the admin API; ask it (loopback only)
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
        with opener.open("http://127.0.0.1:2019/config/", timeout=2) as resp:
            return caddy.parse_json(json.loads(resp.read() or b"null") or {}, "caddy admin API"), "admin API", []
    except (OSError, ValueError) as exc:
        return ProxyConfig("caddy", "caddy admin API"), "none", [
            Limitation(f"Caddy's configuration is unknown (admin API 127.0.0.1:2019: {exc})",
                       "start caddy with --config FILE, or enable its admin API on localhost")]


def tail_lines(path: str, marks: tuple[str, ...] = _REFUSED_MARKS, limit: int = LOG_LINES) -> list[str]:
    """The last `limit` lines of a log file that contain one of `marks`."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - LOG_TAIL_BYTES))
        data = fh.read().decode(errors="replace")
    lines = [ln for ln in data.splitlines() if any(m in ln for m in marks)]
    return lines[-limit:]


def http_check(address: str, port: int, host_header: str | None = None,
               timeout: float = HTTP_TIMEOUT) -> dict[str, Any]:
    """One `GET /` over HTTP/1.0; status, reason and Server header (or the error)."""
    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    out: dict[str, Any] = {"address": address, "port": port, "status": None, "reason": None,
                           "server": None, "error": None, "seconds": None}
    start = time.monotonic()
    try:
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect((address, port))
            host = host_header or (f"[{address}]" if fam == socket.AF_INET6 else address)
            s.sendall(f"GET / HTTP/1.0\r\nHost: {host}\r\nUser-Agent: portdoctor\r\n"
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


def unix_socket_fact(path: str, root: str = "") -> dict[str, Any]:
    """Stat a unix socket path (as seen under `root`, the proxy's root folder) and try one
    non-blocking connect to it: does it exist, is it a socket, does something accept on it."""
    import errno as errno_mod
    import pwd
    import stat as stat_mod

    real = root.rstrip("/") + path if root else path
    out: dict[str, Any] = {"state": None, "kind": None, "mode": None, "owner": None, "error": None, "others": []}
    try:
        st = os.stat(real)
    except FileNotFoundError:
        out["state"] = "missing"
        folder = os.path.dirname(real)
        try:
            out["others"] = sorted(os.path.join(os.path.dirname(path), n) for n in os.listdir(folder)
                                   if stat_mod.S_ISSOCK(os.lstat(os.path.join(folder, n)).st_mode))[:5]
        except OSError:
            pass
        return out
    except PermissionError as exc:
        out["state"], out["error"] = None, f"stat: {exc.strerror}"
        return out
    except OSError as exc:
        out["state"], out["error"] = "error", f"stat: {exc.strerror}"
        return out
    out["mode"] = oct(stat_mod.S_IMODE(st.st_mode))
    try:
        out["owner"] = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        out["owner"] = str(st.st_uid)
    if not stat_mod.S_ISSOCK(st.st_mode):
        out["state"], out["kind"] = "not_socket", "directory" if stat_mod.S_ISDIR(st.st_mode) else "file"
        return out
    out["kind"] = "socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sk:
        sk.setblocking(False)
        rc = sk.connect_ex(real)
    if rc == 0 or rc == errno_mod.EINPROGRESS:
        out["state"] = "ok"
    else:
        out["error"] = f"{errno_mod.errorcode.get(rc, rc)}: {os.strerror(rc)}"
        out["state"] = {errno_mod.ECONNREFUSED: "refused", errno_mod.EAGAIN: "busy",
                        errno_mod.ENOENT: "missing", errno_mod.EACCES: "denied",
                        errno_mod.EPERM: "denied"}.get(rc, "error")
    return out


def _proxy_root(proc_root: str, pid: int) -> str:
    """"" when the proxy sees the same files as we do, else its root through /proc/PID/root."""
    try:
        if os.stat(f"{proc_root}/{pid}/ns/mnt").st_ino == os.stat(f"{proc_root}/self/ns/mnt").st_ino:
            return ""
    except OSError:
        return ""
    return f"{proc_root}/{pid}/root"


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
    proc = req.proc_root
    found = find_proxies(proc)
    if not found:
        return Facts()
    own = set(ns_addresses(proc, "self"))
    out: list[dict[str, Any]] = []
    lims: list[Limitation] = []
    for kind, pid, argv in found:
        if kind == "nginx":
            cfg, source, more = _nginx_config(proc, pid, argv)
        elif kind == "haproxy":
            cfg, source, more = _haproxy_config(argv)
        else:
            cfg, source, more = _caddy_config(proc, pid, argv)
        lims += more
        entry: dict[str, Any] = {"kind": kind, "pid": pid, "argv": list(argv), "source": source,
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
                    entry["http"].append(http_check(addr, b.port))
            root = _proxy_root(proc, pid)
            for route in cfg.routes:
                if not any(b.port == req.port for b in route.binds):
                    continue
                for up in route.upstreams:
                    if up.unix and up.unix not in entry.setdefault("unix", {}):
                        fact = unix_socket_fact(up.unix, root)
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
                    entry["error_log"].append({"path": path, "lines": tail_lines(path)})
                except FileNotFoundError:
                    continue
                except PermissionError:
                    lims.append(Limitation(f"cannot read {kind} error log {path}", "run as root"))
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
