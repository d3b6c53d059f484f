"""The server runs and listens, but is out of resources: resource_exhaustion.

Linux kernel behaviour this check relies on (measured on these machines): when a listener's
accept queue is full, new SYNs are dropped, so the client times out and
TcpExt.ListenOverflows / ListenDrops rise; with net.ipv4.tcp_abort_on_overflow=1 the server
instead resets a connection whose handshake completed, so the client sees its connect succeed
and then ECONNRESET. A process at its RLIMIT_NOFILE cannot accept(): connections pile up in
the queue and then behave as above. A full conntrack table drops new flows (timeout).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from portdoctor.checks import facts
from portdoctor.checks.listener import restart_fix
from portdoctor.model import Cause, Finding, Fix, Severity, Snapshot, State

if TYPE_CHECKING:
    from portdoctor.checks import Context

CHECK = "resources"

_OVERFLOW_COUNTERS = ("TcpExt.ListenOverflows", "TcpExt.ListenDrops", "TcpExt.TCPReqQFullDrop",
                      "TcpExt.TCPReqQFullDoCookies", "TcpExt.TCPBacklogDrop")


def _symptom(ctx: Context) -> str:
    states = {a.state for a in ctx.probe.addresses}
    errnos = {a.errno for a in ctx.probe.addresses}
    if "ECONNRESET" in errnos:
        return "the connection was accepted by the kernel and then reset"
    if State.TIMEOUT in states:
        return "the client's SYN got no answer (timeout)"
    if State.OPEN in states:
        return "connections are accepted by the kernel but may wait without an answer"
    return ""


def rising(snap: Snapshot) -> dict[str, int]:
    """Overflow counters that grew between the samples taken around the probe."""
    out = {}
    for name in _OVERFLOW_COUNTERS:
        before, after = snap.counters_before.get(name), snap.counters_after.get(name)
        if before is not None and after is not None and after > before:
            out[name] = after - before
    return out


def check_resources(snap: Snapshot, ctx: Context) -> list[Finding]:
    """Accept queue full, overflow counters rising, fd limit reached, conntrack full."""
    if not facts.target_is_local(snap, ctx):
        return []
    port = ctx.target.port
    socks = [s for s in facts.listeners_on_port(snap, port)
             if any(facts.accepts(s, a.address) for a in ctx.probe.addresses) or not ctx.probe.addresses]
    findings: list[Finding] = []
    failing = ctx.probe.state is not State.OPEN or any(
        a.state is not State.OPEN for a in ctx.probe.addresses)
    grew = rising(snap)
    abort = snap.sysctls.get("net.ipv4.tcp_abort_on_overflow", "").strip() == "1"
    somaxconn = snap.sysctls.get("net.core.somaxconn")

    for s in socks:
        full = s.backlog > 0 and s.queue >= s.backlog
        near = s.backlog > 0 and s.queue >= max(1, int(0.9 * s.backlog))
        if not (full or near or (grew and failing)):
            continue
        evidence = [facts.describe(snap, s)]
        if full:
            evidence.append(f"accept queue full: {s.queue} connections waiting, backlog {s.backlog} "
                            f"(ss Recv-Q {s.queue} / Send-Q {s.backlog})")
        elif near:
            evidence.append(f"accept queue nearly full: {s.queue} of {s.backlog}")
        for name, delta in grew.items():
            evidence.append(f"{name} rose by {delta} during the probe (/proc/net/netstat)")
        if abort:
            evidence.append("net.ipv4.tcp_abort_on_overflow = 1: on overflow the server resets the "
                            "connection instead of letting the client retry")
        if somaxconn and s.backlog and str(s.backlog) == somaxconn.strip():
            evidence.append(f"the backlog equals net.core.somaxconn = {somaxconn}: the kernel capped the "
                            f"backlog the server asked for")
        procs = facts.owners(snap, s)
        who = f"{procs[0].name} (pid {procs[0].pid})" if procs else "the server"
        symptom = _symptom(ctx)
        summary = (f"{who} is not accepting connections fast enough: its accept queue on port {port} "
                   f"{'is full' if full else 'overflows'}"
                   + (f", and {symptom}" if symptom else "") + ".")
        if abort:
            summary += " With tcp_abort_on_overflow=1 overflow turns into resets, which clients report as refused/reset."
        fixes = [Fix(f"Find why {who} stops calling accept(): a blocked or overloaded event loop, too few "
                     f"workers, or a deadlock (look at its threads and CPU)",
                     f"ss -ltn 'sport = :{port}'" + (f"; cat /proc/{procs[0].pid}/status" if procs else ""))]
        if abort:
            fixes.append(Fix("Let clients retry instead of resetting them on overflow",
                             "sysctl -w net.ipv4.tcp_abort_on_overflow=0"))
        fixes.append(Fix("Give the listener a longer queue: raise the server's backlog setting and the "
                         "kernel cap together",
                         "sysctl -w net.core.somaxconn=4096 net.ipv4.tcp_max_syn_backlog=4096"))
        weight = 0.92 if full and failing else (0.85 if grew and failing else (0.6 if failing else 0.3))
        findings.append(Finding(Cause.RESOURCE_EXHAUSTION, CHECK,
                                Severity.ERROR if failing else Severity.WARNING,
                                summary, tuple(evidence), tuple(fixes), weight))

    # file descriptors of the listeners' processes
    reported: set[int] = set()
    for s in socks:
        for proc in facts.owners(snap, s):
            if proc.pid in reported or proc.open_fds is None or not proc.fd_soft_limit:
                continue
            if proc.open_fds < proc.fd_soft_limit - 1:
                continue
            reported.add(proc.pid)
            findings.append(Finding(
                Cause.RESOURCE_EXHAUSTION, CHECK, Severity.ERROR,
                f"{proc.name} (pid {proc.pid}) has {proc.open_fds} open files, at its limit of "
                f"{proc.fd_soft_limit}: accept() fails with EMFILE, so new connections wait in the "
                f"queue unanswered" + (f" ({_symptom(ctx)})" if _symptom(ctx) else "") + ".",
                (f"/proc/{proc.pid}/fd: {proc.open_fds} entries; /proc/{proc.pid}/limits: "
                 f"Max open files {proc.fd_soft_limit}", facts.describe(snap, s)),
                (Fix("Raise the open-files limit of the service (systemd: LimitNOFILE= in the unit; "
                     "otherwise ulimit -n before starting it)",
                     f"systemctl edit {proc.unit}  # [Service] LimitNOFILE=65536" if proc.unit
                     else f"prlimit --pid {proc.pid} --nofile=65536:65536"),
                 Fix("and look for a descriptor leak (connections or files never closed)",
                     f"ls -l /proc/{proc.pid}/fd | awk '{{print $NF}}' | sed 's/:.*//' | sort | uniq -c"),
                 restart_fix(snap, proc, proc.name)),
                # the kernel still completes handshakes, so a probe that got "open" proves nothing here
                0.9 if failing else 0.8))

    # conntrack: a full table drops new flows before any listener sees them
    count, limit = snap.sysctls.get("net.netfilter.nf_conntrack_count"), snap.sysctls.get(
        "net.netfilter.nf_conntrack_max")
    if count and limit and count.strip().isdigit() and limit.strip().isdigit():
        c, m = int(count), int(limit)
        if m and c >= 0.95 * m:
            findings.append(Finding(
                Cause.RESOURCE_EXHAUSTION, CHECK, Severity.ERROR if failing else Severity.WARNING,
                f"The connection-tracking table is full ({c} of {m}): the kernel drops new connections "
                f"before they reach any listener (clients time out).",
                (f"net.netfilter.nf_conntrack_count = {c}", f"net.netfilter.nf_conntrack_max = {m}"),
                (Fix("Raise the table size (and find what opens so many flows)",
                     f"sysctl -w net.netfilter.nf_conntrack_max={m * 2}"),),
                0.85 if failing else 0.3))
    return findings
