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
from portdoctor.model import Cause, Finding, Fix, Severity, State
from portdoctor.snapshot import Snapshot

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
             if any(facts.takes(s, a.address) for a in ctx.probe.addresses) or not ctx.probe.addresses]
    findings: list[Finding] = []
    failing = ctx.probe.state is not State.OPEN or any(
        a.state is not State.OPEN for a in ctx.probe.addresses)
    grew = rising(snap)
    abort = snap.sysctls.get("net.ipv4.tcp_abort_on_overflow", "").strip() == "1"
    bsd = not snap.platform.startswith("linux")  # macOS / FreeBSD: netstat -Lan and kern.ipc.somaxconn
    somaxconn = snap.sysctls.get("kern.ipc.somaxconn" if bsd else "net.core.somaxconn")

    for s in socks:
        full = s.backlog > 0 and s.queue >= s.backlog
        near = s.backlog > 0 and s.queue >= max(1, int(0.9 * s.backlog))
        if not (full or near or (grew and failing)):
            continue
        if not (full or near) and (grew.keys() & {"TcpExt.TCPReqQFullDrop", "TcpExt.TCPReqQFullDoCookies"}):
            findings.append(_syn_queue_finding(snap, ctx, s, grew, failing))
            continue
        evidence = [facts.describe(snap, s)]
        if full:
            evidence.append(f"accept queue full: {s.queue} connections waiting, backlog {s.backlog} "
                            + (f"(netstat -Lan {s.queue}/-/{s.backlog})" if bsd else
                               f"(ss Recv-Q {s.queue} / Send-Q {s.backlog})"))
        elif near:
            evidence.append(f"accept queue nearly full: {s.queue} of {s.backlog}")
        for name, delta in grew.items():
            evidence.append(f"{name} rose by {delta} during the probe (/proc/net/netstat)")
        if abort:
            evidence.append("net.ipv4.tcp_abort_on_overflow = 1: on overflow the server resets the "
                            "connection instead of letting the client retry")
        if s.backlog <= 1:
            evidence.append(f"the server listens with a backlog of {s.backlog} (listen(fd, {s.backlog})): "
                            f"one connection waiting for accept() fills the queue")
        if somaxconn and s.backlog and str(s.backlog) == somaxconn.strip():
            evidence.append(f"the backlog equals {'kern.ipc' if bsd else 'net.core'}.somaxconn = {somaxconn}: the "
                            f"kernel capped the backlog the server asked for")
        procs = facts.owners(snap, s)
        who = f"{procs[0].name} (pid {procs[0].pid})" if procs else "the server"
        stopped = [p for p in procs if p.state in ("T", "t")]
        if stopped:
            findings.append(_stopped_finding(snap, ctx, s, stopped, evidence_extra=[
                f"{name} rose by {delta} during the probe (/proc/net/netstat)" for name, delta in grew.items()],
                full=full, failing=failing))
            continue
        symptom = _symptom(ctx)
        summary = (f"{who} is not accepting connections fast enough: its accept queue on port {port} "
                   f"{'is full' if full else 'overflows'}"
                   + (f", and {symptom}" if symptom else "") + ".")
        if abort:
            summary += " With tcp_abort_on_overflow=1 overflow turns into resets, which clients report as refused/reset."
        fixes = [Fix(f"Find why {who} stops calling accept(): a blocked or overloaded event loop, too few "
                     f"workers, or a deadlock (look at its threads and CPU)",
                     (f"netstat -Lan | grep '[.]{port} '" + (f"; sample {procs[0].pid} 5" if procs and
                                                                 snap.platform == "darwin" else "")) if bsd else
                     f"ss -ltn 'sport = :{port}'" + (f"; cat /proc/{procs[0].pid}/status" if procs else ""))]
        if s.backlog <= 1:
            fixes.append(Fix(f"Raise the backlog the server passes to listen() (now {s.backlog}); 128 or more "
                             f"is usual (a `backlog` option in most servers)", None))
        if abort:
            fixes.append(Fix("Let clients retry instead of resetting them on overflow",
                             "sysctl -w net.ipv4.tcp_abort_on_overflow=0"))
        fixes.append(Fix("Give the listener a longer queue: raise the server's backlog setting and the "
                         "kernel cap together",
                         "sudo sysctl kern.ipc.somaxconn=4096" if bsd else
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


def _syn_queue_finding(snap: Snapshot, ctx: Context, s, grew: dict[str, int], failing: bool) -> Finding:
    """The accept queue is fine but handshakes are dropped: the SYN queue of half-open
    connections is full (a SYN flood, or clients whose final ACK never arrives)."""
    port = ctx.target.port
    cookies = snap.sysctls.get("net.ipv4.tcp_syncookies", "").strip()
    syn_backlog = snap.sysctls.get("net.ipv4.tcp_max_syn_backlog", "").strip()
    evidence = [facts.describe(snap, s),
                f"the accept queue is not full ({s.queue} of {s.backlog}), yet handshakes were dropped:"]
    evidence += [f"{name} rose by {delta} during the probe (/proc/net/netstat)" for name, delta in grew.items()]
    if cookies:
        evidence.append(f"net.ipv4.tcp_syncookies = {cookies}" + (" (off: a full SYN queue drops new SYNs)"
                                                                  if cookies == "0" else ""))
    if syn_backlog:
        evidence.append(f"net.ipv4.tcp_max_syn_backlog = {syn_backlog}; the SYN queue of this listener is "
                        f"also bounded by its backlog {s.backlog}")
    fixes = [Fix("See the half-open handshakes (SYN-RECV) and where they come from: many from few sources "
                 "is a SYN flood", f"ss -tn state syn-recv '( sport = :{port} )' | awk 'NR>1 {{print $4}}' | "
                 "sed 's/:[0-9]*$//' | sort | uniq -c | sort -rn | head")]
    if cookies == "0":
        fixes.append(Fix("Turn SYN cookies back on, so a full SYN queue no longer drops real clients",
                         "sysctl -w net.ipv4.tcp_syncookies=1"))
    fixes.append(Fix("Give the SYN queue room: a larger listen backlog in the server and a larger kernel cap",
                     "sysctl -w net.ipv4.tcp_max_syn_backlog=4096 net.core.somaxconn=4096"))
    return Finding(
        Cause.RESOURCE_EXHAUSTION, CHECK, Severity.ERROR if failing else Severity.WARNING,
        f"Port {port} drops new handshakes because its SYN queue of half-open connections is full "
        f"(a SYN flood, or clients whose final ACK never arrives)"
        + (" and SYN cookies are off" if cookies == "0" else "") + f": {_symptom(ctx) or 'clients time out'}.",
        tuple(evidence), tuple(fixes), 0.85 if failing else 0.35)


def _stopped_finding(snap: Snapshot, ctx: Context, s, stopped: list, evidence_extra: list[str],
                     full: bool, failing: bool) -> Finding:
    """The listener's process is stopped (SIGSTOP, Ctrl-Z, a debugger): the kernel still
    completes handshakes until the queue is full, then drops them."""
    p = stopped[0]
    how = "stopped (SIGSTOP or Ctrl-Z)" if p.state == "T" else "stopped by a debugger or tracer"
    evidence = [facts.describe(snap, s), f"/proc/{p.pid}/stat: state {p.state} ({how})"]
    evidence.append(f"accept queue {'full' if full else 'filling'}: {s.queue} waiting, backlog {s.backlog}")
    evidence += evidence_extra
    fixes = [Fix(f"Let {p.name} run again", f"kill -CONT {p.pid}")]
    if p.state == "t":
        fixes = [Fix(f"Detach the debugger or tracer from {p.name} (pid {p.pid})", f"grep TracerPid /proc/{p.pid}/status")]
    return Finding(
        Cause.RESOURCE_EXHAUSTION, CHECK, Severity.ERROR,
        f"{p.name} (pid {p.pid}) is {how}: it accepts nothing, so its accept queue on port {ctx.target.port} "
        f"fills and new connections {'are dropped' if full else 'wait unanswered'}"
        + (f" ({_symptom(ctx)})" if _symptom(ctx) else "") + ".",
        tuple(evidence), tuple(fixes), 0.94 if failing else 0.8)
