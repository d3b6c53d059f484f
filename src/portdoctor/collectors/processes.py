"""Processes worth knowing about: owners of listeners, and candidates for the port asked about.

A candidate is a process whose command line or environment mentions the port (`--port 8080`,
`-p 8080`, `:8080`, `PORT=8080`), whose name or command line matches the service the user named,
or which is a known server (services.py). Each gets name, argv, user, systemd unit, container,
port-like environment, open fds against RLIMIT_NOFILE, and working directory.
"""

from __future__ import annotations

from dataclasses import replace

import os
import pwd
import re
import sys
from collections.abc import Iterable

from portdoctor import services
from portdoctor.collectors import Facts, Request, procfs
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


def user_name(uid: int | None) -> str | None:
    """Login name of uid (the number as a string when it has no name).

    Not cached across calls: an account renamed or added while a long-running `watch` runs
    must show as it is now (getpwuid reads a small, page-cached file).
    """
    if uid is None:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def read_process(proc_root: str, pid: int, argv: tuple[str, ...] | None = None,
                 env: dict[str, str] | None = None, open_fds: int | None = None) -> Process | None:
    """Everything we keep about one process, or None when it is gone."""
    comm = procfs.read_comm(proc_root, pid)
    if comm is None:
        return None
    if argv is None:
        argv = procfs.read_cmdline(proc_root, pid)
    if env is None:
        env = procfs.read_environ(proc_root, pid) or {}
    unit, container = procfs.read_cgroup(proc_root, pid)
    if open_fds is None:
        open_fds = procfs.count_fds(proc_root, pid)
    return Process(
        pid=pid,
        name=comm,
        cmdline=argv,
        user=user_name(procfs.read_uid(proc_root, pid)),
        unit=unit,
        container=container,
        env=port_env(env),
        open_fds=open_fds,
        fd_soft_limit=procfs.read_fd_soft_limit(proc_root, pid),
        cwd=procfs.read_cwd(proc_root, pid),
        state=procfs.read_state(proc_root, pid),
    )


def _ancestors(pid: int, proc_root: str = "/proc") -> set[int]:
    """pid and its parents up to (not including) init."""
    out: set[int] = set()
    while pid > 1 and pid not in out and len(out) < 64:
        out.add(pid)
        pid = procfs.read_ppid(proc_root, pid) or 0
    return out


def find_candidates(req: Request, exclude: set[int]) -> tuple[dict[int, tuple[tuple[str, ...], dict | None]], int]:
    """pid -> (argv, environ) of candidate processes, and how many environments were unreadable."""
    out: dict[int, tuple[tuple[str, ...], dict | None]] = {}
    hidden = 0
    # portdoctor and whatever started it (sudo, a shell, timeout) name the port too
    ours = _ancestors(os.getpid()) if req.proc_root == "/proc" else set()
    # a process in another network namespace (a container, another lab host) cannot listen on
    # this host's port: it is no candidate (containers are the container collector's business)
    our_net = procfs.netns_inode(req.proc_root, "self") if req.proc_root == "/proc" else None
    for pid in procfs.pids(req.proc_root):
        if pid in exclude or pid in ours:
            continue
        if our_net is not None:
            theirs = procfs.netns_inode(req.proc_root, pid)
            if theirs is not None and theirs != our_net:
                continue
        argv = procfs.read_cmdline(req.proc_root, pid)
        if not argv:
            continue  # kernel thread or zombie
        env = procfs.read_environ(req.proc_root, pid)
        if env is None:
            hidden += 1
        hit = mentions_port(argv, req.port) or (env is not None and env_mentions_port(env, req.port))
        if not hit:
            comm = procfs.read_comm(req.proc_root, pid) or ""
            if req.service and _matches_service(argv, comm, req.service):
                hit = True
            else:
                info = services.by_process(" ".join(argv)) or services.by_process(comm)
                hit = info is not None and not services.is_generic(info)
        if hit:
            out[pid] = (argv, env)
    return out, hidden


def processes_for(req: Request) -> tuple[dict[int, Process], list[Limitation]]:
    """Owners of every listener plus candidates for req.port / req.service (read once per run)."""
    return req.derive("processes", lambda: _read_processes(req))


def _read_processes(req: Request) -> tuple[dict[int, Process], list[Limitation]]:
    lims: list[Limitation] = []
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
        p = read_process(req.proc_root, pid, open_fds=fd_counts.get(pid))
        if p is not None:
            procs[pid] = p
    named: dict[int, str] | None = None
    for pid, (argv, env) in sorted(cands.items()):
        p = read_process(req.proc_root, pid, argv=argv, env=env or {}, open_fds=fd_counts.get(pid))
        if p is None:
            continue
        info = services.service_for_process(p)
        if info is not None and not services.is_generic(info):
            # a server holding no TCP listener may serve only its unix socket (listen_addresses = '')
            if named is None:
                named = procfs.read_unix_listening(req.proc_root)
            if named:
                p = replace(p, unix_listeners=procfs.unix_listeners_of(req.proc_root, pid, named))
        procs[pid] = p
    if hidden and os.geteuid() != 0:
        lims.append(Limitation(
            f"environments of {hidden} processes of other users are unreadable "
            "(a PORT=... set there is not seen)", "run as root (sudo)"))
    return procs, lims


def collect_processes(req: Request) -> Facts:
    """Owners of every listener plus candidate processes for req.port / req.service."""
    procs, lims = processes_for(req)
    return Facts(fields={"processes": dict(procs)}, limitations=list(lims))
