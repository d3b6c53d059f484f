"""Containers: what the engine knows (Docker Engine API, also served by Podman) and what
really listens inside each container's network namespace (/proc/PID/net/tcp).

Snapshot.containers (ContainerFacts) is built from this plain form = {
  "engine": "docker" | "podman" | None, "source": "api unix:///..." | "cli podman" | "proc",
  "self": "name" | None,           # the container whose network namespace portdoctor runs in
  "gateway": "10.88.0.1" | None,   # this namespace's default gateway (the host, seen from a container)
  "host_listeners", "host_addresses": when "self" is set, what listens in the host's namespace
  "containers": [{"id", "name", "image", "state", "status", "exit_code", "oom_killed", "error",
                  "restart_count", "restart_policy", "started_at", "finished_at", "pid", "cmd",
                  "networks": [{"name", "address", "gateway", "prefixlen", "aliases"}],
                  "ports": [{"host_ip", "host_port", "container_port", "proto"}],
                  "listeners": [{"address", "port", "family"}] | None,  # None: not readable
                  "addresses": [...], "local": bool | None, "same_netns": bool,
                  "here": bool | None,  # its published ports and network live in THIS network
                                        # namespace (its conmon / containerd-shim runs here, or,
                                        # when stopped, its network's gateway is ours)
                  "logs": [...], "labels": {...}}]}

The collector only gathers; checks/mapping.py decides. Everything it reads comes through the
Host (req.system); the Docker SDK talks to the engine's socket itself, so the API is asked only
on a live host (a recorded one answers from its recorded CLI output or its /proc).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from typing import Any

from portdoctor import redact
from portdoctor.collectors import Facts, Request
from portdoctor.collectors import procfs
from portdoctor.collectors.procfs import netns_inode
from portdoctor.host import Host
from portdoctor.hostfacts import ContainerFacts
from portdoctor.model import Limitation
from portdoctor.plain import from_plain

SOCKETS = ("/var/run/docker.sock", "/run/docker.sock", "/run/podman/podman.sock")
LOG_LINES = 12
API_TIMEOUT = 5


# --------------------------------------------------------------------------- namespaces




def ns_listeners(host: Host, pid: int) -> list[dict[str, Any]] | None:
    """LISTEN sockets in pid's network namespace, from /proc/PID/net/tcp{,6}; None if unreadable."""
    out: list[dict[str, Any]] = []
    seen = False
    for name in ("tcp", "tcp6"):
        try:
            text = host.read_text(f"{host.proc_root}/{pid}/net/{name}", 1 << 30)
        except OSError:
            continue
        seen = True
        for ln in procfs.parse_proc_net_tcp(text):
            item = {"address": ln.address, "port": ln.port, "family": ln.family}
            if item not in out:
                out.append(item)
    return out if seen else None


def parse_fib_trie_local(text: str) -> list[str]:
    """IPv4 addresses of the namespace (the "/32 host LOCAL" leaves of /proc/net/fib_trie)."""
    out: list[str] = []
    last: str | None = None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("|--") or s.startswith("+--"):
            last = s[3:].split()[0].split("/")[0] if s.startswith("|--") else None
        elif "/32 host LOCAL" in s and last and last not in out:
            out.append(last)
    return out


def parse_if_inet6(text: str) -> list[str]:
    """IPv6 addresses from /proc/net/if_inet6 (link-local excluded)."""
    out: list[str] = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or len(parts[0]) != 32:
            continue
        addr = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(parts[0]))
        if not addr.startswith("fe80") and addr not in out:
            out.append(addr)
    return out


def ns_addresses(host: Host, pid: int | str) -> list[str]:
    """Addresses configured in pid's network namespace (loopback included)."""
    out: list[str] = []
    for name, parser in (("fib_trie", parse_fib_trie_local), ("if_inet6", parse_if_inet6)):
        try:
            out += [a for a in parser(host.read_text(f"{host.proc_root}/{pid}/net/{name}", 1 << 26))
                    if a not in out]
        except OSError:
            pass
    return out


def default_gateway(host: Host, pid: int | str = "self") -> str | None:
    """The IPv4 default gateway of pid's namespace (/proc/PID/net/route)."""
    try:
        lines = host.read_text(f"{host.proc_root}/{pid}/net/route").splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) > 2 and parts[1] == "00000000" and parts[2] != "00000000":
            return socket.inet_ntoa(bytes.fromhex(parts[2])[::-1])
    return None


# --------------------------------------------------------------------------- engine data


def _ports(inspect: dict[str, Any]) -> list[dict[str, Any]]:
    """Published ports from an inspect document (running: NetworkSettings.Ports; else HostConfig)."""
    ns = (inspect.get("NetworkSettings") or {}).get("Ports") or {}
    hc = (inspect.get("HostConfig") or {}).get("PortBindings") or {}
    out: list[dict[str, Any]] = []
    for source in (ns, hc):
        for key, binds in source.items():
            cport, _, proto = key.partition("/")
            for b in binds or []:
                hp = str(b.get("HostPort") or "")
                if not hp.isdigit() or not cport.isdigit():
                    continue
                item = {"host_ip": b.get("HostIp") or "0.0.0.0", "host_port": int(hp),
                        "container_port": int(cport), "proto": proto or "tcp"}
                if item not in out:
                    out.append(item)
        if out:
            break
    return out


def normalize(inspect: dict[str, Any]) -> dict[str, Any]:
    """One container's inspect document (Docker API or `podman inspect`) -> our plain record."""
    st = inspect.get("State") or {}
    cfg = inspect.get("Config") or {}
    hc = inspect.get("HostConfig") or {}
    status = st.get("Status") or ("running" if st.get("Running") else "unknown")
    if st.get("Restarting"):
        status = "restarting"
    nets = []
    for name, n in ((inspect.get("NetworkSettings") or {}).get("Networks") or {}).items():
        nets.append({"name": name, "address": n.get("IPAddress") or None,
                     "gateway": n.get("Gateway") or None, "prefixlen": n.get("IPPrefixLen") or None,
                     "aliases": list(n.get("Aliases") or [])})
    cmd = list(redact.argv(list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])))
    labels = cfg.get("Labels") or {}
    return {
        "id": str(inspect.get("Id", ""))[:12],
        "name": str(inspect.get("Name", "")).lstrip("/"),
        "image": cfg.get("Image") or inspect.get("ImageName") or inspect.get("Image"),
        "state": status,
        "status": st.get("Status"),
        "exit_code": st.get("ExitCode"),
        "oom_killed": bool(st.get("OOMKilled")),
        "error": st.get("Error") or None,
        "restart_count": inspect.get("RestartCount") or st.get("RestartCount") or 0,
        "restart_policy": ((hc.get("RestartPolicy") or {}).get("Name")) or None,
        "started_at": st.get("StartedAt"),
        "finished_at": st.get("FinishedAt"),
        "pid": st.get("Pid") or None,
        "cmd": cmd,
        "networks": nets,
        "network_mode": hc.get("NetworkMode"),
        "ports": _ports(inspect),
        "listeners": None,
        "addresses": [n["address"] for n in nets if n["address"]],
        "local": None,
        "logs": [],
        "labels": {k: v for k, v in labels.items()
                   if k.startswith(("com.docker.compose.", "io.podman.compose."))},
    }


def network_gateways(doc: dict[str, Any]) -> list[str]:
    """Gateways of a network definition (`podman network inspect` or the Docker API's)."""
    out: list[str] = []
    for sub in doc.get("subnets") or []:  # podman (netavark) native
        if sub.get("gateway"):
            out.append(sub["gateway"])
    for cfg in ((doc.get("IPAM") or {}).get("Config") or []):  # Docker API, podman compat
        if cfg.get("Gateway") and cfg["Gateway"] not in out:
            out.append(cfg["Gateway"])
    return out


def _needs_gateway(recs: list[dict[str, Any]]) -> set[str]:
    """Network names of containers whose inspect document gives no gateway (stopped ones)."""
    return {n["name"] for r in recs for n in r["networks"] if not n.get("gateway") and n.get("name")}


def _fill_gateways(recs: list[dict[str, Any]], gateways: dict[str, list[str]]) -> None:
    for r in recs:
        for n in r["networks"]:
            if not n.get("gateway") and gateways.get(n["name"]):
                n["gateway"] = gateways[n["name"]][0]
                n["gateway_from"] = "network"


def _socket_path(host: Host, env: Mapping[str, str]) -> str | None:
    for var in ("DOCKER_HOST", "CONTAINER_HOST"):
        url = env.get(var, "")
        if url.startswith("unix://"):
            return url[len("unix://"):]
    for path in SOCKETS:
        if host.exists(path):
            return path
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg and host.exists(f"{xdg}/podman/podman.sock"):
        return f"{xdg}/podman/podman.sock"
    return None


def from_api(path: str, logs_for: set[str] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """(engine name, containers) through the Docker Engine API on a unix socket."""
    import docker  # heavy: imported only when a socket exists

    client = docker.DockerClient(base_url=f"unix://{path}", timeout=API_TIMEOUT)
    try:
        version = client.api.version()
        comps = [c.get("Name", "") for c in version.get("Components") or []]
        engine = "podman" if any("Podman" in c for c in comps) else "docker"
        out = []
        for summary in client.api.containers(all=True):
            rec = normalize(client.api.inspect_container(summary["Id"]))
            if rec["state"] != "running" or rec["restart_count"] >= 2 or (logs_for is not None and rec["id"] in logs_for):
                try:
                    raw = client.api.logs(summary["Id"], tail=LOG_LINES, stdout=True, stderr=True)
                    rec["logs"] = raw.decode(errors="replace").splitlines()[-LOG_LINES:]
                except Exception:  # logs are a bonus; a missing log driver must not hide the rest
                    rec["logs"] = []
            out.append(rec)
        gws: dict[str, list[str]] = {}
        for net in _needs_gateway(out):
            try:
                gws[net] = network_gateways(client.api.inspect_network(net) or {})
            except Exception:  # a network removed meanwhile: its containers stay unplaced
                continue
        _fill_gateways(out, gws)
        return engine, out
    finally:
        client.close()


class CliFailure(RuntimeError):
    """The engine's CLI failed, timed out or vanished."""


def _cli(host: Host, argv: list[str], timeout: float) -> str:
    r = host.run(argv, timeout)
    if not r.ok:
        why = "not installed" if r.missing else (r.stderr.strip().splitlines() or [f"exit status {r.rc}"])[-1]
        raise CliFailure(f"`{' '.join(os.path.basename(a) if i == 0 else a for i, a in enumerate(argv))}`: {why}")
    return r.stdout


def from_cli(host: Host, exe: str) -> list[dict[str, Any]]:
    """Containers through `podman`/`docker` (used when no API socket is there)."""
    ids = _cli(host, [exe, "ps", "-a", "-q", "--no-trunc"], 15).split()
    if not ids:
        return []
    docs = json.loads(_cli(host, [exe, "inspect", *ids], 15) or "[]")
    out = []
    for doc in docs:
        rec = normalize(doc)
        if rec["state"] != "running" or rec["restart_count"] >= 2:
            cp = host.run([exe, "logs", "--tail", str(LOG_LINES), rec["id"]], 10)
            rec["logs"] = (cp.stdout + cp.stderr).splitlines()[-LOG_LINES:]
        out.append(rec)
    gws: dict[str, list[str]] = {}
    for net in _needs_gateway(out):
        cp = host.run([exe, "network", "inspect", net], 15)
        try:
            docs = json.loads(cp.stdout or "[]") if cp.ok else []
        except ValueError:
            docs = []
        gws[net] = [g for d in docs if isinstance(d, dict) for g in network_gateways(d)]
    _fill_gateways(out, gws)
    return out


def from_proc(host: Host, own_ns: int | None) -> list[dict[str, Any]]:
    """Containers seen only through /proc: processes in a container cgroup and another netns."""
    by_id: dict[str, dict[str, Any]] = {}
    for pid in procfs.pids(host):
        _unit, cid = procfs.read_cgroup(host, pid)
        if not cid or cid[:12] in by_id:
            continue
        ns = netns_inode(host, pid)
        if ns is None or ns == own_ns:
            continue
        by_id[cid[:12]] = {
            "id": cid[:12], "name": cid[:12], "image": None, "state": "running", "status": "running",
            "exit_code": None, "oom_killed": False, "error": None, "restart_count": 0,
            "restart_policy": None, "started_at": None, "finished_at": None, "pid": pid,
            "cmd": list(redact.argv(procfs.read_cmdline(host, pid))), "networks": [], "network_mode": None,
            "ports": [], "listeners": None, "addresses": [], "local": None, "logs": [], "labels": {},
        }
    return list(by_id.values())


def engine_side_netns(host: Host, pid: int) -> int | None:
    """The network namespace of the engine's side of a container: the first ancestor of pid
    (conmon, containerd-shim) that lives in another namespace than the container itself. That
    is where the engine published its ports (conmon's port holders, docker-proxy, DNAT rules)."""
    ns = netns_inode(host, pid)
    if ns is None:
        return None
    cur: int | None = pid
    for _ in range(64):
        cur = procfs.read_ppid(host, cur) if cur else None
        if not cur:
            return None
        pns = netns_inode(host, cur)
        if pns is None:
            return None
        if pns != ns:
            return pns
    return None


def _enrich(rec: dict[str, Any], host: Host, own_ns: int | None, own_addrs: set[str]) -> None:
    """Listeners and addresses inside the container's namespace; is it attached to this host?"""
    pid = rec.get("pid")
    rec["same_netns"] = False
    rec["here"] = None
    if pid:
        ns = netns_inode(host, pid)
        if ns is not None and ns == own_ns:
            rec["same_netns"] = True
            rec["here"] = True
        else:
            side = engine_side_netns(host, pid)
            if side is not None and own_ns is not None:
                rec["here"] = side == own_ns
        rec["listeners"] = ns_listeners(host, pid)
        addrs = [a for a in ns_addresses(host, pid) if not a.startswith("127.") and a != "::1"]
        rec["addresses"] = list(dict.fromkeys(rec["addresses"] + addrs))
    gateways = {n["gateway"] for n in rec["networks"] if n.get("gateway")}
    if rec["same_netns"]:
        rec["local"] = True  # portdoctor runs inside this very container
    elif gateways:
        rec["local"] = bool(gateways & own_addrs)
    elif rec.get("network_mode") == "host" or rec["same_netns"]:
        rec["local"] = True
    if rec["here"] is None and not pid and gateways:
        rec["here"] = bool(gateways & own_addrs)  # stopped: is its network's bridge ours?


def gather(req: Request, env: Mapping[str, str] | None = None) -> Facts:
    """Everything the containers collector returns (see the module docstring).

    `env` is portdoctor's own environment (DOCKER_HOST, XDG_RUNTIME_DIR); the host's by default."""
    proc = req.system  # the Host every read goes through
    env = proc.environ() if env is None else env
    own_ns = netns_inode(proc, "self")
    own_addrs = set(ns_addresses(proc, "self"))
    lims: list[Limitation] = []
    engine: str | None = None
    source: str | None = None
    containers: list[dict[str, Any]] = []
    path = _socket_path(proc, env)
    cli = proc.which("podman") or proc.which("docker")
    if path and not proc.exists(path):
        lims.append(Limitation(f"the container engine socket {path} (DOCKER_HOST) does not exist",
                               "start the engine, or unset DOCKER_HOST"))
        path = None
    if path and proc.live:
        try:
            kind = proc.stat(path).kind
        except OSError:
            kind = None
        if kind != "socket":
            lims.append(Limitation(f"the container engine socket {path} is not accessible: containers "
                                   "are unknown", "run as root or as a member of the docker group"))
        else:
            try:
                engine, containers = from_api(path)
                source = f"api unix://{path}"
            except ImportError:
                lims.append(Limitation("the Docker SDK for Python is not installed: containers read "
                                       "through the CLI or /proc only", "pip install docker"))
            except Exception as exc:  # engine down, API error: say so and fall back
                if "Permission denied" in str(exc):
                    lims.append(Limitation(f"the container engine socket {path} is not accessible: containers "
                                           "are unknown", "run as root or as a member of the docker group"))
                else:
                    lims.append(Limitation(f"the container engine at {path} did not answer ({exc})",
                                           "start the engine (systemctl start docker / podman system service)"))
    if source is None and cli:
        try:
            containers = from_cli(proc, cli)
            engine, source = os.path.basename(cli), f"cli {os.path.basename(cli)}"
            lims = [x for x in lims if "did not answer" not in x.what and "SDK" not in x.what]
        except (OSError, CliFailure, ValueError) as exc:
            lims.append(Limitation(f"`{os.path.basename(cli)} ps` failed ({exc}); containers seen through "
                                   "/proc only", "run as root"))
    seen = {c["id"] for c in containers}
    extra_proc = [c for c in from_proc(proc, own_ns) if c["id"] not in seen]
    if extra_proc and source is None:
        source = "proc"
    containers += extra_proc
    for rec in containers:
        _enrich(rec, proc, own_ns, own_addrs)
    if source is None and not containers and not path:
        return Facts(limitations=lims)  # no engine here: say nothing
    own = next((c for c in containers if c["same_netns"] and c.get("network_mode") != "host"), None)
    host_view: dict[str, Any] = {}
    if own is not None and own.get("pid"):
        # the container's parent (conmon, containerd-shim) lives in the host's network namespace
        ppid = procfs.read_ppid(proc, own["pid"])
        if ppid and netns_inode(proc, ppid) != own_ns:
            host_view = {"host_listeners": ns_listeners(proc, ppid), "host_addresses": ns_addresses(proc, ppid)}
    doc = {"engine": engine, "source": source, "self": own["name"] if own else None, **host_view,
           "gateway": default_gateway(proc), "containers": containers}
    return Facts(fields={"containers": from_plain(ContainerFacts, doc)}, limitations=lims)


def collect_containers(req: Request) -> Facts:
    """Collector entry point: containers, their published ports and what listens inside."""
    return gather(req)
