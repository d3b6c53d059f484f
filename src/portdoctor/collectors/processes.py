"""Processes worth knowing about: owners of listeners, and candidates for the port asked about.

A candidate is a process whose command line or environment mentions the port (`--port 8080`,
`-p 8080`, `:8080`, `PORT=8080`), whose name or command line matches the service the user named,
or which is a known server (services.py). Each gets name, argv, user, systemd unit, container,
port-like environment, open fds against RLIMIT_NOFILE, and working directory.
"""

from __future__ import annotations

from dataclasses import replace

import os
import re
import sys
from collections.abc import Iterable

from portdoctor import redact, services
from portdoctor.collectors import Facts, Request, procfs
from portdoctor.host import Host
from portdoctor.model import Limitation, Process

# environment variable names that may carry a port or an address
_ENV_NAME = re.compile(r"PORT|ADDR|HOST|BIND|LISTEN", re.IGNORECASE)
_ENV_SKIP = frozenset({"HOSTNAME", "HOSTTYPE", "SSH_CONNECTION", "SSH_CLIENT"})


def port_env(env: dict[str, str]) -> dict[str, str]:
    """The variables whose names look like ports or addresses (*PORT*, *ADDR*, *HOST*, ...)."""
    return {k: v for k, v in env.items() if _ENV_NAME.search(k) and k not in _ENV_SKIP}


def mentions_port(argv: Iterable[str], port: int) -> bool:
    """True when a command line names `port` as a token.

    >>> mentions_port(["redis-server", "--port", "6380"], 6380)
    True
    >>> mentions_port(["nginx", "-g", "daemon off;"], 80)
    False
    >>> mentions_port(["app", "--listen=0.0.0.0:8080"], 8080)
    True
    """
    p = str(port)
    pattern = re.compile(rf"(?:^|[=:@,]|^-p|^-P){p}(?:/.*)?$")
    for token in argv:
        if token == p or (p in token and pattern.search(token)):
            return True
    return False


def env_mentions_port(env: dict[str, str], port: int) -> bool:
    """True when a port-like variable holds the port (PORT=8080, BIND=0.0.0.0:8080)."""
    p = str(port)
    return any(v == p or v.endswith(":" + p) for v in port_env(env).values())


def _matches_service(argv: tuple[str, ...], comm: str, service: str) -> bool:
    want = service.lower()
    info = services.by_name(want)
    names = {want} | (set(info.process_names) | {info.name} if info else set())
    if comm.lower() in names:
        return True
    prog = os.path.basename(argv[0]).lower() if argv else ""
    if prog in names:
        return True
    found = services.by_process(" ".join(argv)) if argv else None
    if info is not None and found is info:
        return True
    return any(want in os.path.basename(a).lower() for a in argv[:3])


def user_name(host: Host, uid: int | None, names: dict[int, str] | None = None) -> str | None:
    """Login name of uid on the host (the number as a string when it has no name).

    `names` remembers the answers of one collection (many processes share a few users)."""
    if uid is None:
        return None
    if names is not None and uid in names:
        return names[uid]
    name = host.user_name(uid) or str(uid)
    if names is not None:
        names[uid] = name
    return name


def read_process(host: Host, pid: int, argv: tuple[str, ...] | None = None,
                 env: dict[str, str] | None = None, open_fds: int | None = None,
                 names: dict[int, str] | None = None) -> Process | None:
    """Everything we keep about one process, or None when it is gone.

    Secrets in its command line and environment are redacted here, before anything stores them."""
    comm = procfs.read_comm(host, pid)
    if comm is None:
        return None
    if argv is None:
        argv = procfs.read_cmdline(host, pid)
    if env is None:
        env = procfs.read_environ(host, pid) or {}
    unit, container = procfs.read_cgroup(host, pid)
    if open_fds is None:
        open_fds = procfs.count_fds(host, pid)
    return Process(
        pid=pid,
        name=comm,
        cmdline=redact.argv(argv),
        user=user_name(host, procfs.read_uid(host, pid), names),
        unit=unit,
        container=container,
        env=redact.env(port_env(env)),
        open_fds=open_fds,
        fd_soft_limit=procfs.read_fd_soft_limit(host, pid),
        cwd=procfs.read_cwd(host, pid),
        state=procfs.read_state(host, pid),
    )


def _ancestors(pid: int, host: Host) -> set[int]:
    """pid and its parents up to (not including) init."""
    out: set[int] = set()
    while pid > 1 and pid not in out and len(out) < 64:
        out.add(pid)
        pid = procfs.read_ppid(host, pid) or 0
    return out


def find_candidates(req: Request, exclude: set[int]) -> tuple[dict[int, tuple[tuple[str, ...], dict | None]], int]:
    """pid -> (argv, environ) of candidate processes, and how many environments were unreadable."""
    out: dict[int, tuple[tuple[str, ...], dict | None]] = {}
    hidden = 0
    host = req.system
    # portdoctor and whatever started it (sudo, a shell, timeout) name the port too
    ours = _ancestors(os.getpid(), host) if host.live else set()
    # a process in another network namespace (a container, another lab host) cannot listen on
    # this host's port: it is no candidate (containers are the container collector's business);
    # a recorded /proc tree has no "self", a recorded host has the recorder's
    our_net = procfs.netns_inode(host, "self")
    for pid in procfs.pids(host):
        if pid in exclude or pid in ours:
            continue
        if our_net is not None:
            theirs = procfs.netns_inode(host, pid)
            if theirs is not None and theirs != our_net:
                continue
        argv = procfs.read_cmdline(host, pid)
        if not argv:
            continue  # kernel thread or zombie
        env = procfs.read_environ(host, pid)
        if env is None:
            hidden += 1
        hit = mentions_port(argv, req.port) or (env is not None and env_mentions_port(env, req.port))
        if not hit:
            comm = procfs.read_comm(host, pid) or ""
            if req.service and _matches_service(argv, comm, req.service):
                hit = True
            else:
                info = services.by_process(" ".join(argv)) or services.by_process(comm)
                hit = info is not None and not services.is_generic(info)
        if hit:
            out[pid] = (argv, env)
    return out, hidden


def processes_for(req: Request) -> tuple[dict[int, Process], list[Limitation]]:
    """Owners of every listener plus candidates for req.port / req.service (read once per
    collect(): `req.derive`)."""
    return req.derive("processes.processes_for", lambda: read_processes(req))


def read_processes(req: Request) -> tuple[dict[int, Process], list[Limitation]]:
    """Owners of every listener plus candidates for req.port / req.service, read now."""
    lims: list[Limitation] = []
    host = req.system
    names: dict[int, str] = {}
    owners: set[int] = set()
    fd_counts: dict[int, int] = {}
    if sys.platform.startswith("linux"):
        from portdoctor.collectors.linux import listener_facts

        lf = listener_facts(req)
        for listener in lf.listeners:
            owners.update(listener.pids)
        fd_counts = lf.scan.fd_counts
    cands, hidden = find_candidates(req, owners)
    procs: dict[int, Process] = {}
    for pid in sorted(owners):
        p = read_process(host, pid, open_fds=fd_counts.get(pid), names=names)
        if p is not None:
            procs[pid] = p
    named: dict[int, str] | None = None
    for pid, (argv, env) in sorted(cands.items()):
        p = read_process(host, pid, argv=argv, env=env or {}, open_fds=fd_counts.get(pid), names=names)
        if p is None:
            continue
        info = services.service_for_process(p)
        if info is not None and not services.is_generic(info):
            # a server holding no TCP listener may serve only its unix socket (listen_addresses = '')
            if named is None:
                named = procfs.read_unix_listening(host)
            if named:
                p = replace(p, unix_listeners=procfs.unix_listeners_of(host, pid, named))
        procs[pid] = p
    if hidden and not host.is_root:
        lims.append(Limitation(
            f"environments of {hidden} processes of other users are unreadable "
            "(a PORT=... set there is not seen)", "run as root (sudo)"))
    return procs, lims


def collect_processes(req: Request) -> Facts:
    """Owners of every listener plus candidate processes for req.port / req.service."""
    procs, lims = processes_for(req)
    return Facts(fields={"processes": dict(procs)}, limitations=list(lims))
