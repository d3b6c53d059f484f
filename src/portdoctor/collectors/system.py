"""Facts about the host as a whole: its init system, its resolver, its hosts file."""

from __future__ import annotations

import os

from portdoctor.collectors import Facts, Request


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def init_name(proc_root: str = "/proc") -> str | None:
    """The name of PID 1 ('systemd', 'init', 'tini', ...), or None when unreadable."""
    comm = _read(os.path.join(proc_root, "1", "comm"))
    return comm.strip() if comm else None


def nameservers(text: str) -> list[str]:
    """`nameserver` entries of a resolv.conf text, in order."""
    out = []
    for line in text.splitlines():
        parts = line.split("#")[0].split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            out.append(parts[1])
    return out


def hosts_entries(text: str, name: str) -> list[tuple[int, str, str]]:
    """(line number, address, line) of every hosts-file line that names `name`."""
    out = []
    wanted = name.lower().rstrip(".")
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split("#")[0].split()
        if len(fields) >= 2 and wanted in (f.lower() for f in fields[1:]):
            out.append((n, fields[0], line.strip()))
    return out


def collect_system(req: Request) -> Facts:
    """Init system, nameservers and /etc/hosts lines for the target's name."""
    extra: dict = {"init": init_name(req.proc_root)}
    resolv = _read("/etc/resolv.conf")
    extra["nameservers"] = nameservers(resolv) if resolv else []
    if req.host:
        hosts = _read("/etc/hosts")
        extra["hosts_entries"] = [list(e) for e in hosts_entries(hosts, req.host)] if hosts else []
    return Facts(extra=extra)
