"""Container port mappings: the path client -> host port -> NAT -> container -> listener.

Facts come from snap.containers (collectors/containers.py) through portdoctor.hostview. Findings:
- a published port whose app listens on the container's loopback (wrong_interface);
- a port published on 127.0.0.1 of the host but reached from elsewhere (wrong_interface);
- a mapping to a container port where nothing listens while the app uses another (port_mapping);
- the client uses the container port instead of the published host port (wrong_port);
- a container that listens but publishes nothing (port_mapping);
- the container behind the port exited or restarts in a loop (service_not_running);
- a client inside a container using localhost for a service on the host or in another
  container (port_mapping: localhost is the container itself).
"""

from __future__ import annotations

from portdoctor.addresses import is_loopback, unmapped
from portdoctor.checks import Context, endpoint_key
from portdoctor.checks.facts import addresses_to_check, describe, target_is_local
from portdoctor.hostfacts import Container, NetnsListener, PortPublish
from portdoctor.hostview import containers_here, holder_container, takes
from portdoctor.model import Cause, Finding, Fix, Severity, State, Target
from portdoctor.snapshot import Snapshot

CHECK = "mapping"


def _engine(snap: Snapshot) -> str:
    return (snap.containers.engine if snap.containers else None) or "docker"


def _target_addresses(ctx: Context) -> list[str]:
    addrs = [a.address for a in ctx.probe.addresses] if ctx.probe.addresses else []
    return addrs or [ctx.target.host]


def _host_ip_covers(host_ip: str, addrs: list[str]) -> bool:
    if host_ip in ("", "0.0.0.0", "::"):
        return True
    return any(a == host_ip or (is_loopback(a) and is_loopback(host_ip)) for a in addrs)


def _mapping_text(p: PortPublish) -> str:
    hip = p.host_ip or "0.0.0.0"
    return f"{endpoint_key(hip, p.host_port)}->{p.container_port}/{(p.proto or 'tcp')}"


def _publish_flag(host_ip: str, host_port: int, cport: int) -> str:
    return f"-p {host_port}:{cport}" if host_ip in ("", "0.0.0.0", "::") else f"-p {host_ip}:{host_port}:{cport}"


def _compose(c: Container) -> str:
    """'the compose file (service web of project shop)' when compose labels say so."""
    labels = c.labels or {}
    svc = labels.get("com.docker.compose.service") or labels.get("io.podman.compose.service")
    proj = labels.get("com.docker.compose.project") or labels.get("io.podman.compose.project")
    if svc:
        return f"the compose file (service {svc}" + (f" of project {proj})" if proj else ")")
    return "a compose file"


def _name(c: Container) -> str:
    return c.name or c.id or "?"


def _ip(c: Container) -> str | None:
    return (c.addresses or [None])[0]


def _publishing(snap: Snapshot, port: int) -> list[tuple[Container, PortPublish]]:
    return [(c, p) for c in containers_here(snap) for p in c.ports or []
            if p.host_port == port and (p.proto or "tcp") == "tcp"]


def followups(snap: Snapshot, ctx: Context) -> list[Target]:
    """The container address:port behind a published target port (what the DNAT leads to)."""
    out: list[Target] = []
    if snap.containers is None or not target_is_local(snap, ctx):
        return out
    for c, p in _publishing(snap, ctx.target.port):
        ip = _ip(c)
        if ip and c.state == "running":
            key = endpoint_key(ip, p.container_port)
            out.append(Target(key, ip, p.container_port))
    return out


def _host_listens(snap: Snapshot, port: int, addrs: list[str]) -> bool:
    """Some listener on this host (not a container's) accepts on port for one of addrs."""
    return any(ln.port == port and any(takes(ln, a) for a in addrs) for ln in snap.listeners)


def _logs(c: Container) -> list[str]:
    return [f"log: {ln}" for ln in (c.logs or [])[-6:] if ln.strip()]


def _not_running(snap: Snapshot, c: Container, p: PortPublish) -> Finding:
    eng, name = _engine(snap), _name(c)
    state, code = c.state, c.exit_code
    restarts = c.restart_count or 0
    looping = state == "restarting" or (restarts and restarts >= 3)
    if looping:
        what = f"is in a restart loop ({restarts} restarts" + (f", last exit code {code})" if code is not None else ")")
    else:
        what = f"is {state}" + (f" (exit code {code})" if code is not None and state in ("exited", "dead", "stopped") else "")
    summary = f"Container {name}, which publishes {_mapping_text(p)}, {what}: nothing serves the port."
    ev = [f"container {name} ({c.image}): state {state}" + (f", exit code {code}" if code is not None else "")
          + (f", finished at {c.finished_at}" if (c.finished_at or "").strip("0-:TZ.") else "")]
    if c.oom_killed:
        ev.append(f"container {name} was killed for lack of memory (OOMKilled)")
    if c.error:
        ev.append(f"engine error: {c.error}")
    if restarts:
        ev.append(f"restart count {restarts}, restart policy {c.restart_policy or 'none'}")
    ev.append(f"published: {_mapping_text(p)}; command: {' '.join(c.cmd or [])}")
    ev += _logs(c)
    fixes = [Fix("read why it stopped", f"{eng} logs --tail 50 {name}")]
    if state == "running":
        fixes.append(Fix("fix the cause in the logs, then restart it", f"{eng} restart {name}"))
    else:
        fixes.append(Fix("start it again once the cause is fixed", f"{eng} start {name}"))
    # a crash loop outranks what it causes downstream (the DNAT to the container refusing
    # between two restarts): the loop is the cause to fix
    return Finding(Cause.SERVICE_NOT_RUNNING, CHECK, Severity.ERROR, summary, tuple(ev), tuple(fixes),
                   0.93 if looping else 0.85)


def _rewrite_bind(cmd: list[str], cport: int) -> str | None:
    """The container command with its loopback bind replaced by 0.0.0.0, when it names one."""
    out, changed = [], False
    for tok in cmd:
        for lo in ("127.0.0.1", "localhost", "[::1]"):
            if f"{lo}:{cport}" in tok:
                tok, changed = tok.replace(f"{lo}:{cport}", f"0.0.0.0:{cport}"), True
        out.append(tok)
    return " ".join(out) if changed else None


def _running(snap: Snapshot, ctx: Context, c: Container, p: PortPublish) -> list[Finding]:
    eng, name = _engine(snap), _name(c)
    cport, hport = p.container_port, p.host_port
    lns = c.listeners
    ip = _ip(c)
    mapping = _mapping_text(p)
    if (c.restart_count or 0) >= 3 and not any(x.port == cport for x in lns or []):
        return [_not_running(snap, c, p)]  # crashes and is restarted, again and again
    if lns is None:
        return []
    inside = ", ".join(endpoint_key(x.address, x.port) for x in lns) or "nothing"
    ev_inside = f"listening inside container {name} (its network namespace): {inside}"
    dnat = f"the port forward leads to {endpoint_key(ip, cport)}" if ip else f"the port forward leads to container port {cport}"
    fu = ctx.followups.get(endpoint_key(ip, cport)) if ip else None
    fu_ev = [f"from this host, {endpoint_key(ip, cport)} is {fu.state.value}"
             + (f" ({fu.addresses[0].errno})" if fu.addresses and fu.addresses[0].errno else "")] if fu else []
    on_port = [x for x in lns if x.port == cport]
    if on_port and all(is_loopback(x.address) for x in on_port):
        x = on_port[0]
        summary = (f"Container {name} publishes {mapping}, but its app listens on "
                   f"{endpoint_key(x.address, cport)} inside the container (the container's own loopback); "
                   f"{dnat}, where nothing accepts.")
        rewritten = _rewrite_bind(c.cmd or [], cport)
        fixes = [Fix(f"make the app in container {name} listen on 0.0.0.0:{cport} (all the container's interfaces)",
                     f"{eng} run ... {_publish_flag((p.host_ip or ''), hport, cport)} {c.image} {rewritten}"
                     if rewritten else None),
                 Fix("localhost inside a container is the container itself; a published port never reaches it")]
        ev = [ev_inside, f"published: {mapping} (container {name}, address {ip})", *fu_ev,
              f"command: {' '.join(c.cmd or [])}"]
        return [Finding(Cause.WRONG_INTERFACE, CHECK, Severity.ERROR, summary, tuple(ev), tuple(fixes), 0.9)]
    if not on_port:
        others = [x for x in lns if not is_loopback(x.address)] or lns
        if not others:
            summary = (f"Container {name} publishes {mapping}, but nothing listens inside the container "
                       f"(its process may still be starting or may have failed to bind).")
            fixes = [Fix("see what the app in the container says", f"{eng} logs --tail 50 {name}")]
            return [Finding(Cause.SERVICE_NOT_RUNNING, CHECK, Severity.ERROR, summary,
                            (ev_inside, f"published: {mapping}", *fu_ev, *_logs(c)), tuple(fixes), 0.75)]
        q = others[0].port
        summary = (f"Container {name} publishes {mapping}, but its app listens on port {q} inside the container, "
                   f"not {cport}: host port {hport} leads to container port {cport}, where nothing listens.")
        fixes = [Fix(f"publish the port the app uses: host {hport} -> container {q}",
                     f"{eng} run ... {_publish_flag((p.host_ip or ''), hport, q)} {c.image}"),
                 Fix(f"in {_compose(c)}: ports: [\"{hport}:{q}\"]"),
                 Fix(f"or make the app listen on {cport} inside the container")]
        ev = [ev_inside, f"published: {mapping}", *fu_ev]
        return [Finding(Cause.PORT_MAPPING, CHECK, Severity.ERROR, summary, tuple(ev), tuple(fixes), 0.9)]
    return []


def _loopback_published(snap: Snapshot, ctx: Context, c: Container, p: PortPublish) -> Finding | None:
    """Published on the host's 127.0.0.1 only, while the client comes from elsewhere."""
    if not is_loopback(p.host_ip):
        return None
    addrs = _target_addresses(ctx)
    outside_target = [a for a in addrs if not is_loopback(a)]
    outside_client = ctx.from_addr is not None and not is_loopback(ctx.from_addr)
    if not outside_target and not outside_client:
        return None
    eng, name = _engine(snap), _name(c)
    who = f"clients at {ctx.from_addr}" if outside_client else f"clients connecting to {outside_target[0]}"
    summary = (f"Container {name} publishes port {p.host_port} on {p.host_ip} only ({_mapping_text(p)}); "
               f"{who} cannot reach it.")
    fixes = [Fix("publish on every host address (or on the one clients use)",
                 f"{eng} run ... {_publish_flag('', p.host_port, p.container_port)} {c.image}"),
             Fix(f"in {_compose(c)}: ports: [\"{p.host_port}:{p.container_port}\"] instead of "
                 f"\"{p.host_ip}:{p.host_port}:{p.container_port}\"")]
    return Finding(Cause.WRONG_INTERFACE, CHECK, Severity.ERROR, summary,
                   (f"published: {_mapping_text(p)} (container {name})",), tuple(fixes), 0.93)


def _other_address_published(snap: Snapshot, ctx: Context, c: Container, p: PortPublish) -> Finding | None:
    """Published on one specific host address (`-p 10.0.0.3:18084:8080`) while clients use another."""
    hip = p.host_ip or ""
    if hip in ("", "0.0.0.0", "::") or is_loopback(hip):
        return None
    used = [a for a in addresses_to_check(snap, ctx) if unmapped(a) != unmapped(hip)]
    if not used:
        return None
    eng, name = _engine(snap), _name(c)
    hport, cport = p.host_port, p.container_port
    mapping = _mapping_text(p)
    summary = (f"Container {name} publishes port {hport} on {hip} only ({mapping}); clients connecting to "
               f"{used[0]} cannot reach it. Publish it on every address (-p {hport}:{cport}) or on {used[0]}.")
    held = [ln for ln in snap.listeners if ln.port == hport and holder_container(snap, ln) is c]
    ev = [f"published: {mapping} (container {name}, state {c.state})"]
    ev += [f"{describe(snap, ln)}: the engine holds the port for container {name}, on the address its -p names"
           for ln in held]
    ev.append(f"nothing on port {hport} accepts connections to {', '.join(used)}")
    use_flag = f"-p {endpoint_key(used[0], hport) if ':' in used[0] else f'{used[0]}:{hport}'}:{cport}"
    fixes = [Fix(f"publish port {hport} on every host address (recreate container {name})",
                 f"{eng} run ... {_publish_flag('', hport, cport)} {c.image}"),
             Fix(f"or publish it on the address the clients use, {used[0]}",
                 f"{eng} run ... {use_flag} {c.image}"),
             Fix(f"in {_compose(c)}: ports: [\"{hport}:{cport}\"] instead of \"{hip}:{hport}:{cport}\""),
             Fix(f"or connect to {endpoint_key(hip, hport)}")]
    return Finding(Cause.WRONG_INTERFACE, CHECK, Severity.ERROR, summary, tuple(ev), tuple(fixes), 0.93)


def _container_port_confusion(snap: Snapshot, ctx: Context) -> list[Finding]:
    port = ctx.target.port
    out: list[Finding] = []
    for c in containers_here(snap):
        for p in c.ports or []:
            if p.container_port == port and p.host_port != port:
                eng, name = _engine(snap), _name(c)
                hp = p.host_port
                summary = (f"Port {port} is container {name}'s port inside the container; on this host it is "
                           f"published as port {hp} ({_mapping_text(p)}). Connect to port {hp}, or publish "
                           f"{port}:{port}.")
                fixes = [Fix(f"connect to {endpoint_key(ctx.target.host, hp)} instead"),
                         Fix(f"or publish host port {port}",
                             f"{eng} run ... {_publish_flag((p.host_ip or ''), port, port)} {c.image}"),
                         Fix(f"in {_compose(c)}: ports: [\"{port}:{port}\"] (host:container)")]
                inside = [x for x in c.listeners or [] if x.port == port and not is_loopback(x.address)]
                ev = (f"published: {_mapping_text(p)} (container {name}, state {c.state})",
                      f"the client used port {port}; nothing on this host publishes or listens on it",
                      *([f"inside container {name}, {endpoint_key(inside[0].address, port)} listens"] if inside else []))
                weight = 0.88 if inside and c.state == "running" else 0.75
                out.append(Finding(Cause.WRONG_PORT, CHECK, Severity.ERROR, summary, ev, tuple(fixes), weight))
    return out


def _unpublished(snap: Snapshot, ctx: Context) -> list[Finding]:
    port = ctx.target.port
    out: list[Finding] = []
    for c in containers_here(snap):
        if c.state != "running" or c.same_netns:
            continue
        lns = [x for x in c.listeners or [] if x.port == port]
        if not lns or any(p.container_port == port for p in c.ports or []):
            continue
        eng, name, ip = _engine(snap), _name(c), _ip(c)
        summary = (f"Container {name} listens on port {port} inside its own network namespace but publishes no "
                   f"host port for it, so port {port} on this host refuses.")
        fixes = [Fix(f"publish it: host {port} -> container {port}",
                     f"{eng} run ... -p {port}:{port} {c.image}"),
                 Fix(f"in {_compose(c)}: ports: [\"{port}:{port}\"]")]
        if ip and not all(is_loopback(x.address) for x in lns):
            fixes.append(Fix(f"or, from this host, connect to the container's address {endpoint_key(ip, port)}"))
        ev = (f"listening inside container {name}: " + ", ".join(endpoint_key(x.address, x.port) for x in lns),
              f"published ports of {name}: " + (", ".join(_mapping_text(p) for p in c.ports or []) or "none"))
        # nothing listens on the port here (the caller made sure): this specific fact explains why, so it
        # outranks the listener check's generic "nothing listens" (0.8)
        out.append(Finding(Cause.PORT_MAPPING, CHECK, Severity.ERROR, summary, ev, tuple(fixes), 0.9))
    return out


def _client_in_container(snap: Snapshot, ctx: Context) -> list[Finding]:
    """The client runs in a container and used localhost for a service that lives elsewhere."""
    doc = snap.containers
    port = ctx.target.port
    if not any(is_loopback(a) for a in _target_addresses(ctx)) and not is_loopback(ctx.target.host):
        return []
    client: Container | None = None
    host_lns: list[NetnsListener] = []
    host_addr: str | None = None
    if doc is not None and doc.self:
        client = next((c for c in containers_here(snap) if _name(c) == doc.self), None)
        if any(ln.port == port for ln in snap.listeners):
            return []  # something in this container does listen on the port
        host_lns = list(doc.host_listeners or ())
        host_addr = doc.gateway
    elif ctx.from_addr:
        client = next((c for c in containers_here(snap) if ctx.from_addr in (c.addresses or [])), None)
        if client is None:
            return []
        host_lns = [NetnsListener(ln.address, ln.port, ln.family) for ln in snap.listeners]
        host_addr = next((n.gateway for n in client.networks or [] if n.gateway), None)
    if client is None:
        return []
    name = _name(client)
    out: list[Finding] = []
    on_host = [x for x in host_lns if x.port == port]
    if on_host:
        lo_only = all(is_loopback(x.address) for x in on_host)
        where = ", ".join(endpoint_key(x.address, x.port) for x in on_host)
        summary = (f"The client runs in container {name}, where localhost is the container itself; the service "
                   f"on port {port} runs on the host ({where}).")
        fixes = [Fix(f"from the container, use the host's address {endpoint_key(host_addr, port)}"
                     if host_addr else "from the container, use the host's address on the container network"),
                 Fix("or the host's name host.containers.internal (Podman) / host.docker.internal "
                     "(Docker: --add-host=host.docker.internal:host-gateway)")]
        if lo_only:
            fixes.append(Fix(f"the host service listens on loopback only ({where}): make it listen on "
                             f"{host_addr or 'the bridge address'} or 0.0.0.0 too"))
        out.append(Finding(Cause.PORT_MAPPING, CHECK, Severity.ERROR, summary,
                           (f"client container: {name}", f"listening on the host: {where}",
                            f"nothing listens on port {port} inside container {name}"), tuple(fixes), 0.9))
    for other in containers_here(snap):
        if other is client or other.state != "running":
            continue
        lns = [x for x in other.listeners or [] if x.port == port and not is_loopback(x.address)]
        if not lns:
            continue
        oname, oip = _name(other), _ip(other)
        summary = (f"The client runs in container {name}, where localhost is the container itself; the service "
                   f"on port {port} runs in container {oname}.")
        fixes = [Fix(f"connect to {oname}:{port} (the container name resolves on a shared user-defined network)"),
                 Fix(f"or to its address {endpoint_key(oip, port)}" if oip else "or to its address")]
        out.append(Finding(Cause.PORT_MAPPING, CHECK, Severity.ERROR, summary,
                           (f"client container: {name}",
                            f"listening in container {oname}: " + ", ".join(endpoint_key(x.address, x.port) for x in lns)),
                           tuple(fixes), 0.9))
    return out


def check_mapping(snap: Snapshot, ctx: Context) -> list[Finding]:
    """Findings about the container path behind the target port."""
    if snap.containers is None:
        return []
    if ctx.probe.state is State.OPEN and not ctx.from_addr:
        return []
    if not target_is_local(snap, ctx):
        return []  # this host's containers say nothing about another host's port
    port = ctx.target.port
    addrs = _target_addresses(ctx)
    findings: list[Finding] = []
    findings += _client_in_container(snap, ctx)
    publishing = [(c, p) for c, p in _publishing(snap, port) if _host_ip_covers((p.host_ip or ""), addrs)
                  or _loopback_published(snap, ctx, c, p) or _other_address_published(snap, ctx, c, p)]
    for c, p in publishing:
        lp = _loopback_published(snap, ctx, c, p)
        if lp is None and not _host_ip_covers((p.host_ip or ""), addrs):
            lp = _other_address_published(snap, ctx, c, p)
        if lp is not None:
            findings.append(lp)
            continue
        if ctx.probe.state is State.OPEN:
            continue
        if c.state != "running":
            findings.append(_not_running(snap, c, p))
        else:
            findings += _running(snap, ctx, c, p)
    if not publishing and ctx.probe.state is not State.OPEN and not _host_listens(snap, port, addrs):
        found = _container_port_confusion(snap, ctx) + _unpublished(snap, ctx)
        findings += found or _other_published(snap, ctx)
    return findings


def _other_published(snap: Snapshot, ctx: Context) -> list[Finding]:
    """Nothing publishes the port, but running containers publish others: list them."""
    port = ctx.target.port
    pubs = [(c, p) for c in containers_here(snap) if c.state == "running" for p in c.ports or []
            if p.host_port != port]
    if not pubs:
        return []
    listed = ", ".join(f"{_mapping_text(p)} ({_name(c)})" for c, p in pubs[:6])
    summary = (f"No container publishes port {port}; the containers here publish {listed}. "
               f"If the service runs in one of them, connect to its published host port.")
    return [Finding(Cause.WRONG_PORT, CHECK, Severity.WARNING, summary,
                    tuple(f"published: {_mapping_text(p)} (container {_name(c)})" for c, p in pubs[:6]), (), 0.5)]
