"""proxy_upstream: the proxy accepts, but an upstream it forwards to refuses.

Facts come from snap.proxies (collectors/proxies.py: routes with file:line, the HTTP
answer of the proxy, its error log) and the follow-up probes of every upstream of the port.
For each refused upstream the finding says why, from this host's listeners (nothing listens
there, it listens on loopback only, it listens on another address or port) or from the
container that owns the upstream's address.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Any

from portdoctor.checks import Context, endpoint_key
from portdoctor.hostfacts import Container, PortPublish, ProxyInstance, UnixSocketState
from portdoctor.hostview import container_here, is_local, process_name, takes
from portdoctor.proxyconf import Bind, Route, Upstream
from portdoctor.model import Cause, Finding, Fix, Listener, ProbeResult, Scope, Severity, State, Target
from portdoctor.snapshot import Snapshot

CHECK = "proxy"


@dataclass(frozen=True)
class Hop:
    """One upstream of the target port, as configured."""

    proxy: ProxyInstance
    route: Route
    upstream: Upstream
    host: str  # an address to probe, or a host name (`name` is then True); "" for a unix socket
    port: int
    name: bool = False  # host is a name: the probe resolves it through this host's resolver
    unix: str | None = None  # a unix socket path instead of host:port

    @property
    def key(self) -> str:
        return f"unix:{self.unix}" if self.unix else endpoint_key(self.host, self.port)


def _literal(host: str) -> str | None:
    """An IP literal for host (localhost -> 127.0.0.1); None for a name we must not resolve."""
    if host in ("localhost", "localhost.localdomain", ""):
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def _bind_matches(bind: Bind, port: int, target_host: str) -> bool:
    if bind.port != port:
        return False
    addr = bind.address
    lit = _literal(target_host)
    if addr in ("0.0.0.0", "::") or lit is None:
        return True
    return addr == lit


def hops(snap: Snapshot, target: Target) -> list[Hop]:
    """Every upstream reachable through the target port (proxies listening on it)."""
    out: list[Hop] = []
    for proxy in (snap.proxies.proxies if snap.proxies else ()):
        for route in proxy.config.routes:
            if not any(_bind_matches(b, target.port, target.host) for b in route.binds):
                continue
            for up in route.upstreams:
                if up.disabled:
                    continue  # takes no traffic: see _disabled_findings
                if up.unix:
                    out.append(Hop(proxy, route, up, "", 0, unix=up.unix))
                    continue
                raw = (up.host or "").strip("[]")
                host = _literal(raw)
                port = up.port or target.port
                if host is None:
                    if not _is_name(raw):
                        continue
                    out.append(Hop(proxy, route, up, raw.rstrip(".").lower(), port, name=True))
                    continue
                out.append(Hop(proxy, route, up, host, port))
    return out


def _is_name(text: str) -> bool:
    """A DNS host name (letters, digits, '-', '_' and dots), as a proxy would resolve it."""
    return bool(text) and len(text) <= 253 and all(
        part and len(part) <= 63 and all(ch.isalnum() or ch in "-_" for ch in part)
        for part in text.rstrip(".").split("."))


def followups(snap: Snapshot, ctx: Context) -> list[Target]:
    """Each upstream of a proxy that listens on the target port, to be probed from here.

    An upstream given by name is probed by name: the probe resolves it through this host's
    resolver, as the proxy does, and tries every address it gets."""
    out: list[Target] = []
    for h in hops(snap, ctx.target):
        if h.unix:
            continue  # judged from the collector's facts (ProxyInstance.unix)
        key = endpoint_key(h.host, h.port)
        if all(endpoint_key(t.host, t.port) != key for t in out):
            out.append(Target(key, h.host, h.port))
    return out


# --------------------------------------------------------------------------- the upstream's own cause


def _owner(snap: Snapshot, listener: Listener) -> str:
    pids = listener.pids
    names = sorted({process_name(snap, p) for p in pids if p in snap.processes})
    return f" ({', '.join(names)})" if names else ""


def upstream_cause(snap: Snapshot, host: str, port: int, exclude_pids: set[int] = frozenset(),
                   exclude_ports: set[int] = frozenset(),
                   who: str = "the proxy") -> tuple[str, list[str], list[Fix], dict[str, Any]]:
    """Why host:port refuses, from this host's (or a container's) listeners; `who` names what
    connects there in the sentences and fixes ("the proxy", "socat").

    Returns (sentence, evidence, fixes, facts) where facts["kind"] is one of nothing_listens,
    loopback_only, other_address, other_port, listening (refused anyway), remote, unknown.
    """
    where = endpoint_key(host, port)
    container = _container_with(snap, host)
    if container is not None:
        return _container_cause(container, host, port)
    if not is_local(snap, host):
        return (f"{host} is not an address of this host; run `portdoctor diagnose {where}` on it",
                [], [Fix(f"diagnose the upstream on {host} itself", f"portdoctor diagnose {where}")],
                {"kind": "remote"})
    published = _published_by(snap, host, port)
    if published is not None:
        c, mp = published
        ip = (c.addresses or [host])[0]
        sentence, ev, fixes, facts = _container_cause(c, ip, mp.container_port)
        mapping = f"{endpoint_key(mp.host_ip or '0.0.0.0', port)}->{mp.container_port}"
        return (f"port {port} is published by container {c.name} ({mapping}), and {sentence}",
                [f"published: {mapping} (container {c.name})", *ev], fixes, facts)
    if not snap.listeners:
        return ("nothing is known about listeners here", [], [], {"kind": "unknown"})
    on_port = [ln for ln in snap.listeners if ln.port == port]
    if not on_port:
        near = _nearby(snap, port, exclude_pids, exclude_ports)
        sentence = f"nothing listens on port {port} on this host"
        evidence = [f"no listening socket on port {port} (checked {len(snap.listeners)} listeners)"]
        fixes = [Fix(f"start the upstream service so that it listens on {where}")]
        facts: dict[str, Any] = {"kind": "nothing_listens"}
        if near:
            best = near[0]
            sentence += f"; {best.endpoint}{_owner(snap, best)} listens on port {best.port} instead"
            evidence.append("listening on nearby ports: " + ", ".join(f"{n.endpoint}{_owner(snap, n)}" for n in near))
            fixes.insert(0, Fix(f"if {best.endpoint}{_owner(snap, best)} is the upstream, point {who} at "
                                f"port {best.port}"))
            facts = {"kind": "other_port", "listener": best.endpoint, "port": best.port}
        return sentence, evidence, fixes, facts
    ok = [ln for ln in on_port if takes(ln, host)]
    if ok:
        return (f"{ok[0].endpoint}{_owner(snap, ok[0])} listens and would accept, yet the connection was "
                f"refused: look for a firewall rule on this host",
                [f"listening: {ok[0].endpoint}{_owner(snap, ok[0])}"], [], {"kind": "listening"})
    ln = on_port[0]
    evidence = [f"listening: {', '.join(x.endpoint + _owner(snap, x) for x in on_port)}"]
    if ln.scope is Scope.LOOPBACK:
        sentence = (f"the upstream listens on {ln.endpoint}{_owner(snap, ln)} (loopback only), "
                    f"while {who} connects to {where}")
        fixes = [Fix(f"make the upstream listen on 0.0.0.0:{port} (or {host}:{port})"),
                 Fix(f"or point {who} at {ln.endpoint}")]
        return sentence, evidence, fixes, {"kind": "loopback_only", "listener": ln.endpoint}
    sentence = (f"the upstream listens on {ln.endpoint}{_owner(snap, ln)}, not on {host}; "
                f"{who} connects to {where}")
    fixes = [Fix(f"point {who} at {ln.endpoint}"),
             Fix(f"or make the upstream listen on {host}:{port} (or 0.0.0.0:{port})")]
    return sentence, evidence, fixes, {"kind": "other_address", "listener": ln.endpoint}


def _nearby(snap: Snapshot, port: int, exclude_pids: set[int], exclude_ports: set[int]) -> list[Listener]:
    """Listeners on ports close to `port` (a digit off, the same tail), not the proxy's own."""
    out, others = [], []
    for ln in snap.listeners:
        if ln.port == port or ln.port in exclude_ports or set(ln.pids) & exclude_pids or ln.port in (22, 53):
            continue
        close = abs(ln.port - port) <= 10 or (ln.port % 1000 == port % 1000 and ln.port > 1023)
        if close and ln not in out:
            out.append(ln)
        if ln.port not in {o.port for o in others}:
            others.append(ln)
    if not out and len(others) == 1:
        return others  # the only other service here: likely the upstream, on another port
    return sorted(out, key=lambda ln: abs(ln.port - port))[:3]


def _published_by(snap: Snapshot, host: str, port: int) -> tuple[Container, PortPublish] | None:
    """The container (and mapping) that publishes host:port on this host, if any."""
    for c in (snap.containers.containers if snap.containers else ()):
        if not container_here(snap, c):
            continue
        for mp in c.ports or []:
            hip = mp.host_ip or "0.0.0.0"
            if mp.host_port == port and (hip in ("0.0.0.0", "::") or hip == host):
                return c, mp
    return None


def _container_with(snap: Snapshot, host: str) -> Container | None:
    for c in (snap.containers.containers if snap.containers else ()):
        if host in (c.addresses or []) and container_here(snap, c):
            return c
    return None


def _container_cause(c: Container, host: str, port: int) -> tuple[str, list[str], list[Fix], dict[str, Any]]:
    name = c.name or c.id
    if c.state != "running":
        code = c.exit_code
        return (f"its container {name} is {c.state}" + (f" (exit code {code})" if code is not None else ""),
                [f"container {name}: state {c.state}, exit code {code}"],
                [Fix(f"start the container {name}", f"podman start {name}")],
                {"kind": "container_stopped", "container": name})
    lns = c.listeners
    if lns is None:
        return (f"it is container {name}; what listens inside could not be read", [], [], {"kind": "unknown"})
    on_port = [ln for ln in lns if ln.port == port]
    inside = ", ".join(endpoint_key(ln.address, ln.port) for ln in lns) or "nothing"
    evidence = [f"listening inside container {name}: {inside}"]
    if not on_port:
        return (f"nothing listens on port {port} inside container {name}", evidence,
                [Fix(f"start the service in container {name} on port {port}, or point the proxy at the port it uses")],
                {"kind": "nothing_listens", "container": name})
    ln = on_port[0]
    if ln.address.startswith("127.") or ln.address == "::1":
        return (f"inside container {name} it listens on {endpoint_key(ln.address, port)} (the container's loopback), "
                f"so {host}:{port} refuses", evidence,
                [Fix(f"make the service in container {name} listen on 0.0.0.0:{port}")],
                {"kind": "loopback_only", "container": name})
    return (f"container {name} listens on {endpoint_key(ln.address, port)}", evidence, [], {"kind": "listening"})


# --------------------------------------------------------------------------- the check


def _where(up: Upstream) -> str:
    line = f":{up.line}" if up.line else ""
    return f"{up.file}{line}"


def _reload(proxy: ProxyInstance) -> Fix:
    kind = proxy.kind
    argv = proxy.argv or []
    if kind == "nginx":
        conf = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-c"), None)
        return Fix("reload nginx after the change", "nginx -s reload" + (f" -c {conf}" if conf else ""))
    if kind == "haproxy":
        return Fix("reload HAProxy after the change (check the file first)",
                   f"haproxy -c -f {proxy.config.main} && kill -USR2 {proxy.pid}")
    main = proxy.config.main
    return Fix("reload Caddy after the change", f"caddy reload --config {main}" if main and "API" not in main
               else "caddy reload")


def _http_evidence(proxy: ProxyInstance) -> list[str]:
    out = []
    for h in proxy.http or []:
        url = f"http://{endpoint_key(h.address, h.port)}/"
        if h.status is not None:
            server = f" (Server: {h.server})" if h.server else ""
            out.append(f"GET {url} answered {h.status} {h.reason or ''}".rstrip() + server
                       + f" after {h.seconds or 0:.3f} s")
        elif h.error:
            out.append(f"GET {url} failed: {h.error}")
    return out


def _log_evidence(proxy: ProxyInstance, *needles: str) -> list[str]:
    out = []
    for log in proxy.error_log or []:
        lines = [ln for ln in log.lines if any(n and n in ln for n in needles)]
        for ln in lines[-2:]:
            out.append(f"{log.path}: {ln}")
    return out


def _state_text(res: ProbeResult) -> str:
    a = res.addresses[0] if res.addresses else None
    if a is None:
        return res.state.value
    return f"{res.state.value}" + (f" ({a.errno})" if a.errno else "")


_FAILED = (State.REFUSED, State.TIMEOUT, State.UNREACHABLE, State.DNS_ERROR, State.ERROR)
_VERB = {State.REFUSED: "refuses connections", State.TIMEOUT: "does not answer",
         State.UNREACHABLE: "is unreachable", State.ERROR: "cannot be connected to"}

# unix socket fact state -> (what the socket does, why), for the summary
_UNIX_WHY = {
    "missing": "does not exist: the app that should create it is not running (or listens on another path)",
    "refused": "refuses connections: the socket file is there, but no process listens on it any more "
               "(left behind by an app that stopped)",
    "not_socket": "is not a socket",
    "busy": "does not accept: the app's accept queue on it is full",
    "denied": "cannot be opened: permission denied",
    "error": "cannot be connected to",
}


def _unix_fact(h: Hop) -> UnixSocketState | None:
    return (h.proxy.unix or {}).get(h.unix or "")


def _status(h: Hop, ctx: Context) -> bool | None:
    """True when the upstream accepts, False when it fails, None when it was not judged."""
    if h.unix:
        fact = _unix_fact(h)
        return None if fact is None or fact.state is None else fact.state == "ok"
    res = ctx.followups.get(h.key)
    if res is None:
        return None
    if res.state is State.OPEN:
        return True
    return False if res.state in _FAILED else None


def _unix_finding(h: Hop, fact: UnixSocketState) -> tuple[str, list[str], list[Fix]]:
    path, state = h.unix or "", fact.state or "error"
    why = _UNIX_WHY.get(state, _UNIX_WHY["error"])
    if state in ("error", "denied") and fact.error:
        why += f" ({fact.error})"
    sentence = f"its upstream, the unix socket {path}, {why}"
    ev = [f"unix socket {path}: " + ("no such file" if state == "missing" else
                                      f"exists ({fact.kind or 'socket'}"
                                      + (f", mode {fact.mode}" if fact.mode else "")
                                      + (f", owner {fact.owner}" if fact.owner else "") + ")")
          + (f"; connect: {fact.error}" if fact.error else "")]
    if fact.others:
        ev.append(f"other sockets in {os.path.dirname(path)}: {', '.join(fact.others)}")
    fixes = [Fix(f"start the upstream app so that it listens on unix:{path}")]
    if state == "refused":
        fixes = [Fix(f"restart the app that serves {path} (the socket file outlived it)")]
    elif state == "busy":
        fixes = [Fix(f"the app behind {path} is overloaded: add workers or raise its listen backlog")]
    elif state == "denied":
        fixes = [Fix(f"let the proxy's user read and write {path} (socket mode / group)")]
    if fact.others:
        fixes.append(Fix(f"if the app listens on {fact.others[0]}, point the proxy there ({_where(h.upstream)})"))
    return sentence, ev, fixes


def check_proxy(snap: Snapshot, ctx: Context) -> list[Finding]:
    """A proxy listens on the target port and an upstream of it refuses: proxy_upstream.

    Upstreams are literal addresses (probed), host names (probed by name: the resolver's error
    is itself the cause, else each address is judged like a literal one) and unix sockets
    (judged from the collector's stat and connect)."""
    findings_disabled = _disabled_findings(snap, ctx)
    all_hops = hops(snap, ctx.target)
    if not all_hops:
        return findings_disabled
    status = {h.key: _status(h, ctx) for h in all_hops}
    n_open = sum(1 for v in status.values() if v is True)
    all_down = n_open == 0
    proxies = (snap.proxies.proxies if snap.proxies else ())
    own_ports = {b.port for p in proxies for r in p.config.routes for b in r.binds}
    own_pids = {p.pid for p in proxies}
    own_pids |= {pid for ln in snap.listeners if ln.port in own_ports for pid in ln.pids}
    findings: list[Finding] = []
    done: set[str] = set()
    for h in all_hops:
        if h.key in done or status[h.key] is not False:
            continue
        done.add(h.key)
        proxy, up, route = h.proxy, h.upstream, h.route
        kind = (proxy.kind or "proxy")
        loc = f" (location {route.location})" if route.location else ""
        facts: dict[str, Any] = {}
        needles: list[str] = [h.key]
        weight = 0.9
        if h.unix:
            why, why_ev, why_fix = _unix_finding(h, _unix_fact(h) or {})
            summary = f"{kind} accepts on port {ctx.target.port}, but {why}. Configured at {_where(up)}{loc}."
            probe_ev: list[str] = []
            needles = [f"unix:{h.unix}"]
        else:
            res = ctx.followups[h.key]
            if res.state is State.DNS_ERROR:
                err = res.dns_error or "no address"
                summary = (f"{kind} accepts on port {ctx.target.port}, but its upstream {h.key} cannot be reached: "
                           f"the name {h.host} does not resolve on this host ({err}). "
                           f"Configured at {_where(up)}{loc}.")
                probe_ev = [f"from this host, resolving {h.host} failed: {err}"]
                why_ev, why_fix = [], [Fix(f"make {h.host} resolve on this host (a DNS record, an /etc/hosts "
                                              f"entry, or the right container network / service name)"),
                                          Fix(f"or point the proxy at the upstream's address in {_where(up)}")]
                weight = 0.88
            else:
                failed = [a for a in res.addresses if a.state is not State.OPEN]
                addrs = list(dict.fromkeys(a.address for a in failed))
                first = failed[0] if failed else None
                addr = first.address if first else h.host
                why, why_ev, why_fix, facts = upstream_cause(snap, addr, h.port, own_pids, own_ports)
                for other in addrs[1:]:
                    more, more_ev, _f, _x = upstream_cause(snap, other, h.port, own_pids, own_ports)
                    why_ev += [f"{endpoint_key(other, h.port)}: {more}", *more_ev]
                state = first.state if first else res.state
                verb = _VERB.get(state, "fails")
                if h.name:
                    resolved = ", ".join(a.address for a in res.addresses) or "nothing"
                    who = f"{h.key} ({h.host} resolves to {resolved} on this host)"
                    needles += [endpoint_key(a, h.port) for a in addrs]
                else:
                    who = h.key
                summary = (f"{kind} accepts on port {ctx.target.port}, but its upstream {who} {verb}: {why}. "
                           f"Configured at {_where(up)}{loc}.")
                probe_ev = [f"from this host, {endpoint_key(a.address, h.port)}" + (f" ({h.host})" if h.name else "")
                            + f" is {a.state.value}" + (f" ({a.errno})" if a.errno else "") for a in res.addresses] \
                    or [f"from this host, {h.key} is {_state_text(res)}"]
                if state is not State.REFUSED:
                    weight = 0.75
        evidence = [f"{kind} config ({proxy.source}): {_where(up)}: {up.text}"]
        if up.via_text:
            evidence.append(f"routed by {up.via_file}:{up.via_line}: {up.via_text}")
        evidence.append(f"{route.name}{loc} listens on "
                        + ", ".join(endpoint_key(b.address, b.port) for b in route.binds))
        evidence += probe_ev + why_ev + _http_evidence(proxy) + _log_evidence(proxy, *needles)
        fixes = list(why_fix)
        if facts.get("kind") in ("loopback_only", "other_address", "other_port") and facts.get("listener"):
            fixes.append(Fix(f"to point the proxy there, edit {_where(up)} (`{up.text}`) to use "
                             f"{facts['listener']}"))
        fixes.append(_reload(proxy))
        findings.append(Finding(Cause.PROXY_UPSTREAM, CHECK, Severity.ERROR if all_down else Severity.WARNING,
                                summary, tuple(evidence), tuple(fixes), weight if all_down else 0.55))
    return findings_disabled + findings


def _disabled_findings(snap: Snapshot, ctx: Context) -> list[Finding]:
    """A route whose every server is disabled in the configuration (left in maintenance)."""
    out: list[Finding] = []
    port = ctx.target.port
    for proxy in (snap.proxies.proxies if snap.proxies else ()):
        for route in proxy.config.routes:
            if not any(_bind_matches(b, port, ctx.target.host) for b in route.binds):
                continue
            ups = route.upstreams
            off = [u for u in ups if u.disabled]
            if not off or len(off) < len(ups):
                continue
            kind = (proxy.kind or "proxy")
            group = off[0].group or route.name
            names = ", ".join((u.text or "").split()[1] if len((u.text or "").split()) > 1 else "?" for u in off)
            evidence = [f"{kind} config ({proxy.source}): {_where(u)}: {u.text}" for u in off]
            evidence += _http_evidence(proxy)
            fixes = [Fix(f"remove `disabled` from the server line(s) of {group} in {_where(off[0])}, then reload"),
                     _reload(proxy)]
            if kind == "haproxy":
                fixes.insert(1, Fix("or enable it at run time on the admin socket (when one is configured)",
                                    f"echo 'enable server {group}/{names.split(', ')[0]}' | "
                                    f"socat stdio /run/haproxy/admin.sock"))
            out.append(Finding(
                Cause.PROXY_UPSTREAM, CHECK, Severity.ERROR,
                f"{kind} accepts on port {port}, but every server of {group} ({names}) is disabled in its "
                f"configuration, so it has nowhere to send requests and answers with an error (503).",
                tuple(evidence), tuple(fixes), 0.9))
    return out
