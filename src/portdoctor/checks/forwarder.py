"""Accepted, then closed: a TCP forwarder on the port whose backend refuses, or a server that drops
every connection it accepts.

A forwarder (socat, ssh -L/-R, docker-proxy, kubectl port-forward, systemd-socket-proxyd, rinetd)
accepts the client and connects to its backend; when that connection fails it closes or resets
the client's at once, so the client never sees the refusal. Facts come from snap.forwarders
(collectors/forwarders.py: where each forwards, and what a connection made from the forwarder's
side saw there). The verdict is the backend's own cause (nothing listens there, it listens on
loopback or another address, another port, a firewall, a stopped container), with the forwarder
named in the evidence and the fix on the side that should change: the backend, or the
forwarder's target. A forwarder whose backend accepts raises nothing.

Without a known forwarder, a probe that saw the connection accepted and then closed or reset is
still never `ok`: the finding names the process holding the port and what to look at.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from portdoctor.addresses import endpoint, is_loopback
from portdoctor.checks import Context, facts
from portdoctor.checks.proxy import upstream_cause
from portdoctor.hostfacts import BackendProbe, Forwarder, ForwardTarget
from portdoctor.hostview import (
    all_containers, describe, held_by_engine, holder_container, process_name, publisher, takes,
)
from portdoctor.model import Cause, Finding, Fix, Severity, State
from portdoctor.probe import accepted_then_closed
from portdoctor.snapshot import Snapshot

CHECK = "forwarder"

# upstream_cause's kind -> the cause the client's failure has
_KIND_CAUSE = {
    "nothing_listens": Cause.SERVICE_NOT_RUNNING,
    "container_stopped": Cause.SERVICE_NOT_RUNNING,
    "other_port": Cause.WRONG_PORT,
    "loopback_only": Cause.WRONG_INTERFACE,
    "other_address": Cause.WRONG_INTERFACE,
    "listening": Cause.FIREWALL_REJECT,
    "other_container": Cause.PORT_MAPPING,
}
_LABEL = {"nginx": "nginx (stream)", "haproxy": "HAProxy (mode tcp)", "ssh": "ssh", "docker-proxy": "docker-proxy", "kubectl": "kubectl port-forward",
          "systemd-socket-proxyd": "systemd-socket-proxyd", "rinetd": "rinetd", "socat": "socat"}


def _who(f: Forwarder) -> str:
    """The forwarder's short name for sentences ("socat", "HAProxy")."""
    return {"haproxy": "HAProxy", "kubectl": "kubectl port-forward"}.get(f.kind, f.kind)


def _name(f: Forwarder) -> str:
    return f"{_LABEL.get(f.kind, f.kind)} (pid {f.pid})"


def _target_text(t: ForwardTarget) -> str:
    if t.unix:
        return f"unix:{t.unix}"
    return endpoint(t.host, t.port) if t.port else t.host


def _where_written(f: Forwarder, t: ForwardTarget) -> str:
    if t.file:
        return f"{t.file}:{t.line}: {t.text}" if t.line else f"{t.file}: {t.text}"
    return f"`{f.text}` on its command line"


def serving(snap: Snapshot, ctx: Context) -> list[Forwarder]:
    """The forwarders whose listening socket takes the target's connections."""
    if snap.forwarders is None or not facts.target_is_local(snap, ctx):
        return []
    port = ctx.target.port
    addrs = [a.address for a in ctx.probe.addresses] or [ctx.target.host]
    out = []
    for f in snap.forwarders.forwarders:
        if f.port != port:
            continue
        sock = next((s for s in snap.listeners if s.port == port and s.address == f.address and f.pid in s.pids), None)
        if ctx.target.is_this_host or sock is None or any(takes(sock, a) for a in addrs):
            out.append(f)
    return out


def tcp_routes(snap: Snapshot, ctx: Context) -> list[Forwarder]:
    """nginx `stream` and HAProxy `mode tcp` routes on the target port, as forwarders: their
    upstreams with what the follow-up probes from this namespace (the proxy's) saw there."""
    from portdoctor.checks.proxy import hops

    groups: dict[tuple[int, str], Forwarder] = {}
    for h in hops(snap, ctx.target):
        if h.route.mode != "tcp" or h.unix or h.name:
            continue
        res = ctx.followups.get(h.key)
        up = h.upstream
        probes = None if res is None else tuple(
            BackendProbe(a.address, a.state.value, a.errno, a.seconds) for a in res.addresses)
        t = ForwardTarget(h.host, h.port, text=up.text, file=up.file, line=up.line, probes=probes or None)
        key = (h.proxy.pid, h.route.name)
        if key not in groups:
            bind = next(b for b in h.route.binds if b.port == ctx.target.port)
            groups[key] = Forwarder(h.proxy.kind, h.proxy.pid, h.proxy.kind, bind.address, bind.port, bind.family,
                                    (), f"{h.route.name} ({h.route.file}:{h.route.line})")
        groups[key] = replace(groups[key], targets=groups[key].targets + (t,))
    return list(groups.values())


def _failed(t: ForwardTarget) -> bool | None:
    """True when every connection to the backend failed, False when one got through, None: unknown."""
    if t.resolve_error:
        return True
    if not t.probes:
        return None
    return all(p.state != "open" for p in t.probes)


def _client_saw(ctx: Context) -> list[str]:
    dropped = accepted_then_closed(ctx.probe)
    if dropped:
        return [f"a client of {endpoint(a.address, ctx.target.port)} saw: {a.detail}" for a in dropped[:2]]
    refused = [a for a in ctx.probe.addresses if a.state is not State.OPEN]
    return [f"a client of {endpoint(a.address, ctx.target.port)} saw: {a.state.value}"
            + (f" ({a.errno})" if a.errno else "") for a in refused[:2]]


def _netns_cause(t: ForwardTarget, address: str, who: str,
                 state: str = "refused") -> tuple[str, list[str], list[Fix], dict[str, Any]]:
    """Why the backend refuses in the far end's namespace, from its listeners there."""
    port = t.port or 0
    where = t.side_detail or "the far end's network namespace"
    lns = t.listeners
    if lns is None:
        return (f"its listeners there could not be read", [], [], {"kind": "unknown"})
    if not lns:
        return (f"nothing listens on port {port} in {where}",
                [f"no socket listens on port {port} in {where}"],
                [Fix(f"start the backend service so that it listens on {endpoint(address, port)} in {where}")],
                {"kind": "nothing_listens"})
    shown = ", ".join(endpoint(x.address, x.port) for x in lns)
    ok = [x for x in lns if x.address in ("0.0.0.0", "::") or x.address == address]
    if ok:
        what = "got no answer" if state == "timeout" else "was refused"
        verb = "drops" if state == "timeout" else "rejects"
        return (f"{endpoint(ok[0].address, port)} listens there and would accept, yet the connection {what}: "
                f"look for a firewall rule in {where}", [f"listening in {where}: {shown}"],
                [Fix(f"find the rule that {verb} port {port} in {where} and let {who}'s connections through",
                     "iptables -S INPUT; nft list ruleset  # run there")],
                {"kind": "listening"})
    ln = lns[0]
    # a loopback listener there is reachable only from inside that namespace: retargeting helps
    # when the connection starts there (an ssh tunnel's far end), not from the forwarder's side
    reachable = t.side == "netns" or not is_loopback(ln.address)
    return (f"the backend listens on {endpoint(ln.address, port)} only, while {who} connects to "
            f"{endpoint(address, port)}", [f"listening in {where}: {shown}"],
            [Fix(f"make the backend listen on {endpoint(address, port)} (or on every address)")],
            {"kind": "loopback_only" if is_loopback(ln.address) else "other_address",
             "listener": endpoint(ln.address, port) if reachable else None})


def _other_container(snap: Snapshot, address: str, port: int) -> str | None:
    """A running container (not the one at `address`) whose app listens on `port` on its own address."""
    for c in all_containers(snap):
        if c.state != "running" or address in (c.addresses or ()):
            continue
        if any(x.port == port and not is_loopback(x.address) for x in c.listeners or ()) and c.addresses:
            return f"{c.label} ({endpoint(c.addresses[0], port)})"
    return None


def _retarget_fix(f: Forwarder, t: ForwardTarget, new: str) -> Fix:
    """Point the forwarder at `new` (host:port), in the words of its kind."""
    old = _target_text(t)
    if t.file and f.kind == "rinetd":
        line = t.text.replace(f"{t.host} {t.port}", " ".join(new.rsplit(":", 1)).strip("[]"))
        return Fix(f"or point rinetd at {new}: edit {t.file} line {t.line}, then restart rinetd",
                   f"# {t.file}, line {t.line}\n{line}")
    if t.file:  # an nginx stream upstream, an HAProxy mode tcp server
        line = t.text.replace(f"{t.host}:{t.port}", new) if f"{t.host}:{t.port}" in t.text else t.text
        return Fix(f"or point {_who(f)} at {new}: edit {t.file} line {t.line}, then reload {_who(f)}",
                   f"# {t.file}, line {t.line}\n{line}")
    if f.kind == "docker-proxy":
        return Fix(f"or publish the container port the app uses (recreate the container with the right -p)")
    if f.kind == "kubectl":
        return Fix(f"or forward to the port the app uses: kubectl port-forward {f.via or ''} {f.port}:{new.rsplit(':', 1)[-1]}")
    text = f.text.replace(t.text, t.text.replace(old if old in t.text else f"{t.host}:{t.port}", new))
    return Fix(f"or point {_who(f)} at {new}: restart it with `{text}`")


def _finding(snap: Snapshot, ctx: Context, f: Forwarder, t: ForwardTarget, severity: Severity) -> Finding | None:
    who = _who(f)
    listen = endpoint(f.address, f.port)
    front = f"{_name(f)} accepts on {listen} and forwards each connection to {_target_text(t)}"
    if f.kind == "ssh" and f.via:
        front += f" through the ssh server {f.via}"
    evidence = [f"forwarder: {_name(f)} listening on {listen}: {_where_written(f, t)}"]
    evidence += _client_saw(ctx)
    fixes: list[Fix] = []
    if t.resolve_error:
        summary = (f"{front}, but the name {t.host} does not resolve ({t.resolve_error}), so it closes every "
                   f"connection it accepts.")
        evidence.append(f"resolving {t.host} from {who}'s side failed: {t.resolve_error}")
        fixes = [Fix(f"make {t.host} resolve where {who} runs (DNS, /etc/hosts), or point {who} at an address")]
        return Finding(Cause.DNS, CHECK, severity, summary, tuple(evidence), tuple(fixes), 0.9)
    probes = t.probes or ()
    seen_from = (f"from {who}'s side" if t.side == "here" else f"from the tunnel's far end ({t.side_detail})")
    evidence += [f"{seen_from}, {endpoint(p.address, t.port or 0)} is {p.state}" + (f" ({p.errno})" if p.errno else "")
                 for p in probes]
    first = probes[0]
    state = first.state
    in_container = any(first.address in (c.addresses or ()) for c in all_containers(snap))
    if t.side == "netns" or (t.listeners is not None and not in_container):
        why, ev, more_fix, kind_facts = _netns_cause(t, first.address, who, first.state)
    else:
        why, ev, more_fix, kind_facts = upstream_cause(snap, first.address, t.port or 0, {f.pid}, {f.port}, who=who)
    kind = kind_facts.get("kind")
    if kind == "nothing_listens" and t.side == "here":
        other = _other_container(snap, first.address, t.port or 0)
        if other is not None and kind_facts.get("container"):
            why += f"; container {other} is the one that listens on port {t.port}"
            kind = "other_container"
            more_fix = [Fix(f"point {who} at the container that serves port {t.port}: {other}")] + more_fix
    cause = _KIND_CAUSE.get(kind or "", Cause.PROXY_UPSTREAM)
    if state == "timeout":
        # no answer from a backend of this machine (its listeners were read) is a firewall's drop:
        # a port where nothing listens answers with a reset
        on_machine = t.side == "netns" or t.listeners is not None or kind not in ("remote", "unknown", None)
        cause = Cause.FIREWALL_DROP if on_machine and kind != "container_stopped" else Cause.PROXY_UPSTREAM
        verb = "does not answer"
    elif state == "unreachable":
        verb, cause = "is unreachable", Cause.HOST_UNREACHABLE if kind == "remote" else cause
    else:
        verb = "refuses connections"
    summary = (f"{front}, which {verb}: {why}. So {who} closes every connection it accepts "
               f"(clients see it accepted, then closed).")
    evidence += ev
    fixes = list(more_fix)
    listener = kind_facts.get("listener")
    if kind in ("loopback_only", "other_address", "other_port") and listener and not kind_facts.get("container"):
        # the forwarder's own words replace the generic "point it at ..." lines
        fixes = [x for x in fixes if f"point {who} at" not in x.description and "point the tunnel at" not in x.description]
        fixes.append(_retarget_fix(f, t, listener))
    elif kind == "nothing_listens" and not kind_facts.get("container"):
        fixes.append(Fix(f"or, if the backend runs elsewhere, point {who} there ({_where_written(f, t)})"))
    weight = 0.93 if state == "refused" else 0.8
    if cause is Cause.PROXY_UPSTREAM:
        weight = 0.75
    return Finding(cause, CHECK, severity, summary, tuple(evidence), tuple(fixes), weight)


def _unjudged(snap: Snapshot, ctx: Context, f: Forwarder, t: ForwardTarget, severity: Severity) -> Finding:
    """The backend could not be probed (kubectl's pod, a remote ssh server): say what to check."""
    who = _who(f)
    listen = endpoint(f.address, f.port)
    evidence = [f"forwarder: {_name(f)} listening on {listen}: {_where_written(f, t)}", *_client_saw(ctx)]
    if t.side == "cluster":
        res = t.host
        ns = f.via.split(" -n ", 1)[1] if f.via and " -n " in f.via else None
        nsopt = f" -n {ns}" if ns else ""
        summary = (f"{_name(f)} accepts on {listen} and forwards to port {t.port} of {res}; the connection "
                   f"was accepted, then closed: the app in the pod most likely does not listen on port {t.port} "
                   f"(kubectl connects to localhost:{t.port} inside the pod), or the pod is not running.")
        fixes = [Fix("see whether the pod runs and is ready", f"kubectl get {res}{nsopt} -o wide"),
                 Fix(f"read kubectl's own message for this port (`error forwarding port {t.port} to pod ...`) "
                     f"and the app's log", f"kubectl logs {res}{nsopt} --tail 50"),
                 Fix(f"see what listens inside the pod: the app must listen on port {t.port} (0.0.0.0 or "
                     f"127.0.0.1)", f"kubectl exec {res}{nsopt} -- ss -ltn"),
                 _retarget_fix(f, t, f"{res}:<the app's port>")]
        return Finding(Cause.PROXY_UPSTREAM, CHECK, severity, summary, tuple(evidence), tuple(fixes), 0.7)
    where = t.side_detail or "the far end"
    target = _target_text(t)
    summary = (f"{_name(f)} accepts on {listen} and forwards each connection to {target}, connected from "
               f"{where}; the connection was accepted, then closed: that backend most likely refuses there.")
    host = f.via.rsplit("@", 1)[-1].rsplit(":", 1)[0] if f.via else None
    fixes = [Fix(f"diagnose the backend where the connection to it starts ({where})",
                 f"ssh {host} portdoctor diagnose {target}" if host and t.port else None)]
    return Finding(Cause.PROXY_UPSTREAM, CHECK, severity, summary, tuple(evidence), tuple(fixes), 0.7)


def check_forwarder(snap: Snapshot, ctx: Context) -> list[Finding]:
    """A forwarder on the target port whose backend fails: the backend's own cause; else, a port
    whose connections are accepted and then closed or reset at once: never ok."""
    dropped = bool(accepted_then_closed(ctx.probe))
    findings: list[Finding] = []
    judged = False
    for f in serving(snap, ctx) + tcp_routes(snap, ctx):
        status = [(t, _failed(t)) for t in f.targets]
        known = [s for _t, s in status if s is not None]
        if known and not all(known):
            judged = True
            if dropped:  # the backend takes the forwarder's connections, yet clients are dropped
                findings.append(_works_yet_drops(ctx, f, next(t for t, x in status if x is False)))
            continue  # some backend accepts: the forwarder works
        for t, failed in status:
            if failed is True:
                found = _finding(snap, ctx, f, t, Severity.ERROR)
            elif failed is None and (dropped or ctx.probe.state is not State.OPEN):
                found = _unjudged(snap, ctx, f, t, Severity.ERROR)
            else:
                found = None
            if found is not None:
                findings.append(found)
                judged = True
        if not f.targets and dropped:
            findings.append(Finding(
                Cause.PROXY_UPSTREAM, CHECK, Severity.ERROR,
                f"{_name(f)} holds port {f.port} and closes the connections it accepts; {f.note or 'where it forwards is unknown'}.",
                (f"forwarder: {_name(f)} listening on {endpoint(f.address, f.port)}: {f.text}", *_client_saw(ctx)),
                (Fix(f"read where {f.program} forwards (its command line or configuration) and diagnose that "
                     f"backend: portdoctor diagnose HOST:PORT"),), 0.6))
            judged = True
    if findings or judged or not dropped:
        return findings
    return _engine_held(snap, ctx) or [_dropped(snap, ctx)]


def _works_yet_drops(ctx: Context, f: Forwarder, t: ForwardTarget) -> Finding:
    """The backend accepts a connection made from the forwarder's side, yet the forwarder closes the
    clients' connections: the forwarder refuses to forward (an ssh server's AllowTcpForwarding or
    PermitOpen), or the backend itself closes them at once."""
    listen = endpoint(f.address, f.port)
    evidence = [f"forwarder: {_name(f)} listening on {listen}: {_where_written(f, t)}", *_client_saw(ctx)]
    evidence += [f"from {_who(f)}'s side, {endpoint(p.address, t.port or 0)} is {p.state}" for p in t.probes or ()]
    summary = (f"{_name(f)} accepts on {listen} and its backend {_target_text(t)} accepts connections from its side, "
               f"yet the clients' connections are closed at once: ")
    if f.kind == "ssh":
        summary += ("the ssh server refuses to open the forwarding (AllowTcpForwarding no, PermitOpen, or a "
                    "restricted key), or the backend itself closes them.")
        fixes = (Fix("see the server's answer to the forwarding", "ssh -v ... (look for 'channel open failed' / "
                     "'administratively prohibited')"),
                 Fix("allow it in the server's sshd_config (AllowTcpForwarding yes / local, PermitOpen "
                     f"{_target_text(t)}), then reload sshd"))
    else:
        summary += f"the backend itself closes them, or {_who(f)} refuses to forward them (read its log)."
        fixes = (Fix(f"read {_who(f)}'s log (socat -d -d, journalctl) for why it closes the connection"),
                 Fix(f"check what the backend does with a connection", f"portdoctor probe {_target_text(t)} --attempts 3"))
    return Finding(Cause.PROXY_UPSTREAM, CHECK, Severity.ERROR, summary, tuple(evidence), fixes, 0.6)


def _engine_held(snap: Snapshot, ctx: Context) -> list[Finding]:
    """A container engine's userland proxy (rootlessport, a docker-proxy whose flags were not read)
    holds the port and drops what it accepts: the container behind the published port says why."""
    port = ctx.target.port
    for sock in (s for s in snap.listeners if s.port == port and held_by_engine(snap, s)):
        c = holder_container(snap, sock) or publisher(snap, port)
        mp = next((p for p in (c.ports if c else ()) if p.host_port == port), None)
        if c is None or mp is None or not c.addresses:
            continue
        holder = ", ".join(f"{process_name(snap, p)} (pid {p})" for p in sock.pids if p in snap.processes)
        why, ev, fixes, kind_facts = upstream_cause(snap, c.addresses[0], mp.container_port, who=holder)
        cause = _KIND_CAUSE.get(kind_facts.get("kind") or "", Cause.PROXY_UPSTREAM)
        mapping = f"{endpoint(mp.host_ip or '0.0.0.0', port)}->{mp.container_port}/tcp"
        summary = (f"{holder} holds port {port} for container {c.label} ({mapping}) and closes every connection "
                   f"it accepts: {why}.")
        evidence = [f"{describe(snap, sock)}: the container engine's proxy for {c.label}",
                    f"published: {mapping} (container {c.label})", *_client_saw(ctx), *ev]
        return [Finding(cause, CHECK, Severity.ERROR, summary, tuple(evidence), tuple(fixes),
                        0.9 if cause is not Cause.PROXY_UPSTREAM else 0.7)]
    return []


def _dropped(snap: Snapshot, ctx: Context) -> Finding:
    """Accepted, then closed or reset at once, by a process that is no known forwarder."""
    port = ctx.target.port
    dropped = accepted_then_closed(ctx.probe)
    socks = [s for s in snap.listeners if s.port == port] if facts.target_is_local(snap, ctx) else []
    holders = sorted({process_name(snap, p) for s in socks for p in s.pids if p in snap.processes})
    who = ", ".join(holders) or "the server"
    summary = (f"{endpoint(dropped[0].address, port)} accepts connections and {who} closes them at once: "
               f"a forwarder or proxy whose own backend refuses, or a server turning clients away (an allow-list, "
               f"TCP wrappers, a connection limit). Clients see 'connection reset' or an empty reply, not a refusal.")
    evidence = [*_client_saw(ctx), *(describe(snap, s) for s in socks[:3])]
    for s in socks[:2]:
        for p in s.pids:
            if p in snap.processes:
                evidence.append(f"process {p}: {snap.processes[p].command}"[:300])
    fixes = [Fix(f"read {who}'s log for why it drops the connection"),
             Fix(f"if {who} forwards the connection, diagnose the backend it forwards to", "portdoctor diagnose HOST:PORT"),
             Fix("see whether it happens every time", f"portdoctor probe {endpoint(ctx.target.host, port)} --attempts 5")]
    return Finding(Cause.UNKNOWN, CHECK, Severity.ERROR, summary, tuple(evidence), tuple(fixes), 0.5)
