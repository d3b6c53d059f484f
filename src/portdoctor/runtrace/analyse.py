"""From failed attempts to answers: group them by target, name who made them and under which
name, and diagnose each distinct target once.

Every TCP target gets the library's `diagnose`: on this host (loopback, or an address of one of
its interfaces) that is the full diagnosis; for a remote host it is what this side can see (the
probe, reachability, this host's own firewall), plus the client-side explanation of what the
program saw and the command to run on the server. A Unix socket gets what its errno means.
"""

from __future__ import annotations

import socket
from collections import Counter
from typing import TYPE_CHECKING, Callable

from portdoctor.addresses import ip, is_loopback, is_wildcard, same_address
from portdoctor.runtrace.report import AttemptRef, Explanation, FailedLookup, FailedTarget, ProcessRef

if TYPE_CHECKING:
    from portdoctor.model import Diagnosis, ProbeResult, Target
    from portdoctor.runtrace.attempts import Endpoint, Folded, Folder

DIAGNOSED_MAX = 10  # distinct targets diagnosed per run (the most tried first)


def group(folded: Folded, folder: Folder, hosts: dict[str, list[str]],
          mine: set[str] | None = None) -> list[FailedTarget]:
    """One FailedTarget per endpoint, most attempts first (not yet diagnosed). `mine`: this
    host's addresses (read from its interfaces when None)."""
    start = folded.first_ts or 0.0
    if mine is None and any(a.endpoint.kind == "tcp" for a in folded.attempts):
        mine = local_addresses()
    by_endpoint: dict[Endpoint, list] = {}
    for a in folded.attempts:
        by_endpoint.setdefault(a.endpoint, []).append(a)
    out = []
    for endpoint, attempts in by_endpoint.items():
        procs: Counter = Counter()
        refs = []
        for a in attempts:
            p = folder.process(a.tid, a.ts)
            procs[(p.pid, p.ppid, p.command)] += 1
            refs.append(AttemptRef(a.ts - start, p.pid, a.errno, a.waited, a.how))
        name, source = (None, None)
        if endpoint.kind == "tcp":
            first = attempts[0]
            name, source = folder.name_for(first.tid, first.ts, endpoint.address, hosts)
        errnos = Counter(a.errno or "none" for a in attempts)
        total = folded.counts[endpoint]
        if total > len(attempts):  # attempts beyond those kept: counted, not detailed
            errnos[attempts[-1].errno or "none"] += total - len(attempts)
        out.append(FailedTarget(
            endpoint=endpoint, count=total, errnos=dict(errnos),
            first=attempts[0].ts - start, last=attempts[-1].ts - start, first_at=attempts[0].ts,
            processes=tuple(ProcessRef(pid, ppid, cmd, n) for (pid, ppid, cmd), n in procs.most_common()),
            attempts=tuple(refs), name=name, name_source=source,
            succeeded=folded.successes.get(endpoint, 0),
            local=is_local(endpoint.address, mine) if endpoint.kind == "tcp" else None,
        ))
    out.sort(key=lambda f: (-f.count, f.first))
    return out


def group_lookups(folded: Folded, folder: Folder) -> list[FailedLookup]:
    """One FailedLookup per (name, response code) the program never got past."""
    start = folded.first_ts or 0.0
    seen: dict[tuple[str, str], list[tuple[float, int]]] = {}
    for ts, tid, qname, rcode in folder.unresolved():
        seen.setdefault((qname, rcode), []).append((ts, tid))
    out = []
    for (qname, rcode), hits in seen.items():
        procs: Counter = Counter()
        for ts, tid in hits:
            p = folder.process(tid, ts)
            procs[(p.pid, p.ppid, p.command)] += 1
        out.append(FailedLookup(qname, rcode, len(hits), hits[0][0] - start,
                                tuple(ProcessRef(pid, ppid, cmd, n) for (pid, ppid, cmd), n in procs.most_common())))
    out.sort(key=lambda x: x.first)
    return out


def local_addresses() -> set[str]:
    """Every address of this host's interfaces (in the current network namespace)."""
    import psutil

    found = set()
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                found.add(a.address.split("%")[0])
    return found


def is_local(address: str, mine: set[str] | None = None) -> bool:
    """Whether a connection to `address` stays on this host."""
    if is_loopback(address) or is_wildcard(address):
        return True
    mine = local_addresses() if mine is None else mine
    return any(same_address(address, m) for m in mine)


def diagnose_all(targets: list[FailedTarget], timeout: float,
                 diagnose: Callable[..., Diagnosis] | None = None) -> list[FailedTarget]:
    """Each target with its diagnosis (and, when remote, the client-side explanation), or the
    explanation of a Unix socket's errno."""
    import dataclasses

    if diagnose is None:
        from portdoctor.diagnose import diagnose
    out = []
    for n, t in enumerate(targets):
        if n >= DIAGNOSED_MAX:
            out.append(dataclasses.replace(t, note=f"not diagnosed: only the {DIAGNOSED_MAX} most tried targets are"))
            continue
        e = t.endpoint
        if e.kind == "unix":
            out.append(dataclasses.replace(t, explanation=explain_unix(t)))
            continue
        target = _target(e)
        # The library's diagnosis of a remote target is the client-side view: the probe, what
        # reachability alone tells, and this host's own firewall (an OUTPUT rule that drops the
        # SYN looks like a remote drop to the program). It says what only the server can show.
        found = diagnose(target, timeout=timeout)
        if t.local:
            out.append(dataclasses.replace(t, diagnosis=found))
        else:
            out.append(dataclasses.replace(t, diagnosis=found, probe=found.probe,
                                           explanation=explain_remote(t, found.probe)))
    return out


def _target(e: Endpoint) -> Target:
    from portdoctor.model import Target

    return Target(input=str(e), host=e.address, port=e.port or 0)


def source_address(address: str) -> str | None:
    """The local address this host would use to reach `address` (nothing is sent)."""
    a = ip(address)
    if a is None:
        return None
    family = socket.AF_INET6 if a.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((str(a), 9))  # a datagram connect only picks the route
            return s.getsockname()[0]
    except OSError:
        return None


def explain_remote(t: FailedTarget, now: ProbeResult) -> Explanation:
    """What a client can tell about a remote target from its errno and a probe made now."""
    e = t.endpoint
    src = source_address(e.address)
    on_server = f"portdoctor diagnose :{e.port}" + (f" --from {src}" if src else "")
    where = f"on {e.address}: {on_server}"
    seen = t.state
    now_state = now.state.value
    later = ""
    if now_state == "open":
        later = " It accepts connections now: the service was down or restarting while the program ran."
    elif now_state != seen and now_state in ("refused", "timeout", "unreachable"):
        later = f" From here it is {now_state} now."
    if seen == "refused":
        return Explanation(
            "unknown",
            f"{e.address} answered, but nothing accepted the connection on port {e.port}: no service "
            f"listens there, it listens on another port or only on loopback, or a firewall rejects "
            f"it. Those look alike from this side; the server can tell which.{later}",
            where)
    if seen == "timeout":
        waited = t.gave_up_after
        how = (f"the program gave up after {waited:.1f} s without an answer" if waited is not None
               else "the connection timed out (ETIMEDOUT)")
        return Explanation(
            "firewall_drop",
            f"{e.address} did not answer on port {e.port} ({how}): most often a firewall drops the "
            f"packets, on the server or in between; a host that is down or a server whose accept "
            f"queue is full look the same from here.{later}",
            where)
    if seen == "unreachable":
        return Explanation(
            "host_unreachable",
            f"{e.address} could not be reached ({t.errno}): no route to it, no answer to ARP/neighbour "
            f"discovery, or a router or firewall answered with ICMP unreachable.{later}",
            f"ip route get {e.address}")
    from portdoctor.explain import errnos

    meaning = errnos.MEANING.get(t.errno or "", f"The connection failed with {t.errno}.")
    return Explanation("unknown", meaning + later, where)


def explain_unix(t: FailedTarget) -> Explanation:
    """What a failed Unix-socket connect means, from its errno and the socket file as it is now."""
    import os
    import stat

    path = t.endpoint.address
    exists = None
    if not path.startswith("@"):
        try:
            exists = stat.S_ISSOCK(os.stat(path).st_mode)
        except OSError:
            exists = False
    errno = t.errno
    if errno == "ENOENT":
        return Explanation(
            "service_not_running",
            f"The Unix socket {path} does not exist"
            + (" (it does now: the server started later)" if exists else "")
            + ": the server is not running, or it puts its socket in another directory or listens on TCP only.",
            f"ls -l {os.path.dirname(path) or '/'}" if not path.startswith("@") else None)
    if errno == "ECONNREFUSED":
        return Explanation(
            "service_not_running",
            f"The Unix socket {path} exists but nothing accepts on it: the server stopped and left the "
            "socket file behind (or its accept queue is full).",
            f"ss -xlp src {path}")
    if errno in ("EACCES", "EPERM"):
        return Explanation(
            "unknown",
            f"The program may not connect to {path}: connecting to a Unix socket needs write permission "
            "on the socket file (and search permission on its directories).",
            f"ls -l {path}")
    if errno == "EAGAIN":
        return Explanation(
            "resource_exhaustion",
            f"The accept queue of {path} was full: the server does not accept connections fast enough.",
            f"ss -xl src {path}")
    return Explanation("unknown", f"Connecting to the Unix socket {path} failed with {errno or 'no answer'}.")
