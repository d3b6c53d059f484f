"""Container port mappings: the path client -> host port -> NAT -> container -> listener.

Facts come from extra["containers"] (collectors/containers.py). Findings:
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

import ipaddress
from typing import Any

from portdoctor.checks import Context, endpoint_key
from portdoctor.checks.facts import addresses_to_check, describe, target_is_local, unmapped
from portdoctor.model import Cause, Finding, Fix, Severity, Snapshot, State, Target

CHECK = "mapping"


def _doc(snap: Snapshot) -> dict[str, Any]:
    return snap.extra.get("containers") or {}


# Engine processes that hold a published port open on the host side for a container.
HOLDERS = ("conmon", "docker-proxy", "rootlessport", "rootlessport-child", "slirp4netns", "pasta")


def _all(snap: Snapshot) -> list[dict[str, Any]]:
    return list(_doc(snap).get("containers", []))


def _containers(snap: Snapshot) -> list[dict[str, Any]]:
    """The containers whose ports and network belong to this network namespace (container_here)."""
    return [c for c in _all(snap) if container_here(snap, c)]


def _argv_value(argv: tuple[str, ...] | list[str], *flags: str) -> str | None:
    for i, a in enumerate(argv):
        for f in flags:
            if a == f and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith(f + "="):
                return a.split("=", 1)[1]
    return None


def _is_holder(snap: Snapshot, pid: int) -> bool:
    proc = snap.processes.get(pid)
    if proc is None:
        return False
    first = proc.cmdline[0].rsplit("/", 1)[-1] if proc.cmdline else ""
    return proc.name in HOLDERS or first in HOLDERS


def held_by_engine(snap: Snapshot, sock: Any) -> bool:
    """Whether every known owner of a listening socket is a container engine's port holder."""
    pids = [p for p in sock.pids if p in snap.processes]
    return bool(pids) and all(_is_holder(snap, p) for p in pids)


def holder_container(snap: Snapshot, sock: Any) -> dict[str, Any] | None:
    """The container a port-holder listener (conmon, docker-proxy, rootlessport) holds its port for."""
    if not held_by_engine(snap, sock):
        return None
    every = _all(snap)
    for pid in sock.pids:
        argv = snap.processes[pid].cmdline
        cid = _argv_value(argv, "-c", "--cid", "-u", "--cuuid")
        cname = _argv_value(argv, "-n", "--name")
        cip = _argv_value(argv, "-container-ip", "--container-ip")
        for c in every:
            if cid and c.get("id") and cid.startswith(c["id"]):
                return c
            if cname and c.get("name") == cname:
                return c
            if cip and cip in (c.get("addresses") or []) and any(
                    p.get("host_port") == sock.port for p in c.get("ports") or []):
                return c
    cands = [c for c in every if c.get("state") == "running" and any(
        p.get("host_port") == sock.port and (p.get("host_ip") or "0.0.0.0") in ("0.0.0.0", "::", sock.address)
        for p in c.get("ports") or [])]
    return cands[0] if len(cands) == 1 else None


def _dnat_to(snap: Snapshot, addresses: list[str]) -> bool:
    """A DNAT rule of this namespace's ruleset leads to one of `addresses`."""
    if not addresses:
        return False
    from portdoctor.portmap import _dnats

    return any(d.get("to_addr") in addresses for d in _dnats(snap))


def container_here(snap: Snapshot, c: dict[str, Any]) -> bool:
    """Whether container c belongs to this network namespace, so that it may explain this host's
    ports: portdoctor runs inside it, or its engine side (conmon, containerd-shim) runs here (the
    collector's "here"), or, when that is unknown, a port holder or a DNAT rule of this namespace
    leads to it. Rootful Podman lists the containers of every network namespace of the machine."""
    if c.get("same_netns"):
        return True
    here = c.get("here")
    if here is not None:
        return bool(here)
    if c.get("local") is False:
        return False
    if c.get("state") == "running":
        if any(holder_container(snap, ln) is c for ln in snap.listeners):
            return True
        if _dnat_to(snap, list(c.get("addresses") or [])):
            return True
        return c.get("local") is True
    # stopped: nothing holds its ports any more; it is ours when a network it uses is ours
    nets = {n.get("name") for n in c.get("networks") or [] if n.get("name")}
    if any(n.get("gateway") and _is_local_addr(snap, n["gateway"]) for n in c.get("networks") or []):
        return True
    return bool(nets) and any(o is not c and o.get("state") == "running"
                              and nets & {n.get("name") for n in o.get("networks") or []}
                              and container_here(snap, o) for o in _all(snap))


def _is_local_addr(snap: Snapshot, addr: str) -> bool:
    from portdoctor.checks.facts import is_local

    return is_local(snap, addr)


def _engine(snap: Snapshot) -> str:
    return _doc(snap).get("engine") or "docker"


def _is_loopback(addr: str | None) -> bool:
    if not addr:
        return False
    if addr == "localhost":
        return True
    try:
        return ipaddress.ip_address(addr.strip("[]")).is_loopback
    except ValueError:
        return False


def _target_addresses(ctx: Context) -> list[str]:
    addrs = [a.address for a in ctx.probe.addresses] if ctx.probe.addresses else []
    return addrs or [ctx.target.host]


def _host_ip_covers(host_ip: str, addrs: list[str]) -> bool:
    if host_ip in ("", "0.0.0.0", "::"):
        return True
    return any(a == host_ip or (_is_loopback(a) and _is_loopback(host_ip)) for a in addrs)


def _mapping_text(p: dict[str, Any]) -> str:
    hip = p.get("host_ip") or "0.0.0.0"
    return f"{endpoint_key(hip, p['host_port'])}->{p['container_port']}/{p.get('proto', 'tcp')}"


def _publish_flag(host_ip: str, host_port: int, cport: int) -> str:
    return f"-p {host_port}:{cport}" if host_ip in ("", "0.0.0.0", "::") else f"-p {host_ip}:{host_port}:{cport}"


def _compose(c: dict[str, Any]) -> str:
    """'the compose file (service web of project shop)' when compose labels say so."""
    labels = c.get("labels") or {}
    svc = labels.get("com.docker.compose.service") or labels.get("io.podman.compose.service")
    proj = labels.get("com.docker.compose.project") or labels.get("io.podman.compose.project")
    if svc:
        return f"the compose file (service {svc}" + (f" of project {proj})" if proj else ")")
    return "a compose file"


def _name(c: dict[str, Any]) -> str:
    return c.get("name") or c.get("id") or "?"


def _ip(c: dict[str, Any]) -> str | None:
    return (c.get("addresses") or [None])[0]


def _publishing(snap: Snapshot, port: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(c, p) for c in _containers(snap) for p in c.get("ports") or []
            if p.get("host_port") == port and p.get("proto", "tcp") == "tcp"]


def followups(snap: Snapshot, ctx: Context) -> list[Target]:
    """The container address:port behind a published target port (what the DNAT leads to)."""
    out: list[Target] = []
    if not _doc(snap) or not target_is_local(snap, ctx):
        return out
    for c, p in _publishing(snap, ctx.target.port):
        ip = _ip(c)
        if ip and c.get("state") == "running":
            key = endpoint_key(ip, p["container_port"])
            out.append(Target(key, ip, p["container_port"]))
    return out


def _host_listens(snap: Snapshot, port: int, addrs: list[str]) -> bool:
    """Some listener on this host (not a container's) accepts on port for one of addrs."""
    from portdoctor.checks.proxy import accepts

    return any(ln.port == port and any(accepts(ln, a) for a in addrs) for ln in snap.listeners)


def _logs(c: dict[str, Any]) -> list[str]:
    return [f"log: {ln}" for ln in (c.get("logs") or [])[-6:] if ln.strip()]


def _not_running(snap: Snapshot, c: dict[str, Any], p: dict[str, Any]) -> Finding:
    eng, name = _engine(snap), _name(c)
    state, code = c.get("state"), c.get("exit_code")
    restarts = c.get("restart_count") or 0
    looping = state == "restarting" or (restarts and restarts >= 3)
    if looping:
        what = f"is in a restart loop ({restarts} restarts" + (f", last exit code {code})" if code is not None else ")")
    else:
        what = f"is {state}" + (f" (exit code {code})" if code is not None and state in ("exited", "dead", "stopped") else "")
    summary = f"Container {name}, which publishes {_mapping_text(p)}, {what}: nothing serves the port."
    ev = [f"container {name} ({c.get('image')}): state {state}" + (f", exit code {code}" if code is not None else "")
          + (f", finished at {c['finished_at']}" if c.get("finished_at", "").strip("0-:TZ.") else "")]
    if c.get("oom_killed"):
        ev.append(f"container {name} was killed for lack of memory (OOMKilled)")
    if c.get("error"):
        ev.append(f"engine error: {c['error']}")
    if restarts:
        ev.append(f"restart count {restarts}, restart policy {c.get('restart_policy') or 'none'}")
    ev.append(f"published: {_mapping_text(p)}; command: {' '.join(c.get('cmd') or [])}")
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


def _running(snap: Snapshot, ctx: Context, c: dict[str, Any], p: dict[str, Any]) -> list[Finding]:
    eng, name = _engine(snap), _name(c)
    cport, hport = p["container_port"], p["host_port"]
    lns = c.get("listeners")
    ip = _ip(c)
    mapping = _mapping_text(p)
    if (c.get("restart_count") or 0) >= 3 and not any(x["port"] == cport for x in lns or []):
        return [_not_running(snap, c, p)]  # crashes and is restarted, again and again
    if lns is None:
        return []
    inside = ", ".join(endpoint_key(x["address"], x["port"]) for x in lns) or "nothing"
    ev_inside = f"listening inside container {name} (its network namespace): {inside}"
    dnat = f"the port forward leads to {endpoint_key(ip, cport)}" if ip else f"the port forward leads to container port {cport}"
    fu = ctx.followups.get(endpoint_key(ip, cport)) if ip else None
    fu_ev = [f"from this host, {endpoint_key(ip, cport)} is {fu.state.value}"
             + (f" ({fu.addresses[0].errno})" if fu.addresses and fu.addresses[0].errno else "")] if fu else []
    on_port = [x for x in lns if x["port"] == cport]
    if on_port and all(_is_loopback(x["address"]) for x in on_port):
        x = on_port[0]
        summary = (f"Container {name} publishes {mapping}, but its app listens on "
                   f"{endpoint_key(x['address'], cport)} inside the container (the container's own loopback); "
                   f"{dnat}, where nothing accepts.")
        rewritten = _rewrite_bind(c.get("cmd") or [], cport)
        fixes = [Fix(f"make the app in container {name} listen on 0.0.0.0:{cport} (all the container's interfaces)",
                     f"{eng} run ... {_publish_flag(p.get('host_ip', ''), hport, cport)} {c.get('image')} {rewritten}"
                     if rewritten else None),
                 Fix("localhost inside a container is the container itself; a published port never reaches it")]
        ev = [ev_inside, f"published: {mapping} (container {name}, address {ip})", *fu_ev,
              f"command: {' '.join(c.get('cmd') or [])}"]
        return [Finding(Cause.WRONG_INTERFACE, CHECK, Severity.ERROR, summary, tuple(ev), tuple(fixes), 0.9)]
    if not on_port:
        others = [x for x in lns if not _is_loopback(x["address"])] or lns
        if not others:
            summary = (f"Container {name} publishes {mapping}, but nothing listens inside the container "
                       f"(its process may still be starting or may have failed to bind).")
            fixes = [Fix("see what the app in the container says", f"{eng} logs --tail 50 {name}")]
            return [Finding(Cause.SERVICE_NOT_RUNNING, CHECK, Severity.ERROR, summary,
                            (ev_inside, f"published: {mapping}", *fu_ev, *_logs(c)), tuple(fixes), 0.75)]
        q = others[0]["port"]
        summary = (f"Container {name} publishes {mapping}, but its app listens on port {q} inside the container, "
                   f"not {cport}: host port {hport} leads to container port {cport}, where nothing listens.")
        fixes = [Fix(f"publish the port the app uses: host {hport} -> container {q}",
                     f"{eng} run ... {_publish_flag(p.get('host_ip', ''), hport, q)} {c.get('image')}"),
                 Fix(f"in {_compose(c)}: ports: [\"{hport}:{q}\"]"),
                 Fix(f"or make the app listen on {cport} inside the container")]
        ev = [ev_inside, f"published: {mapping}", *fu_ev]
        return [Finding(Cause.PORT_MAPPING, CHECK, Severity.ERROR, summary, tuple(ev), tuple(fixes), 0.9)]
    return []


def _loopback_published(snap: Snapshot, ctx: Context, c: dict[str, Any], p: dict[str, Any]) -> Finding | None:
    """Published on the host's 127.0.0.1 only, while the client comes from elsewhere."""
    if not _is_loopback(p.get("host_ip")):
        return None
    addrs = _target_addresses(ctx)
    outside_target = [a for a in addrs if not _is_loopback(a)]
    outside_client = ctx.from_addr is not None and not _is_loopback(ctx.from_addr)
    if not outside_target and not outside_client:
        return None
    eng, name = _engine(snap), _name(c)
    who = f"clients at {ctx.from_addr}" if outside_client else f"clients connecting to {outside_target[0]}"
    summary = (f"Container {name} publishes port {p['host_port']} on {p['host_ip']} only ({_mapping_text(p)}); "
               f"{who} cannot reach it.")
    fixes = [Fix("publish on every host address (or on the one clients use)",
                 f"{eng} run ... {_publish_flag('', p['host_port'], p['container_port'])} {c.get('image')}"),
             Fix(f"in {_compose(c)}: ports: [\"{p['host_port']}:{p['container_port']}\"] instead of "
                 f"\"{p['host_ip']}:{p['host_port']}:{p['container_port']}\"")]
    return Finding(Cause.WRONG_INTERFACE, CHECK, Severity.ERROR, summary,
                   (f"published: {_mapping_text(p)} (container {name})",), tuple(fixes), 0.93)


def _other_address_published(snap: Snapshot, ctx: Context, c: dict[str, Any], p: dict[str, Any]) -> Finding | None:
    """Published on one specific host address (`-p 10.0.0.3:18084:8080`) while clients use another."""
    hip = p.get("host_ip") or ""
    if hip in ("", "0.0.0.0", "::") or _is_loopback(hip):
        return None
    used = [a for a in addresses_to_check(snap, ctx) if unmapped(a) != unmapped(hip)]
    if not used:
        return None
    eng, name = _engine(snap), _name(c)
    hport, cport = p["host_port"], p["container_port"]
    mapping = _mapping_text(p)
    summary = (f"Container {name} publishes port {hport} on {hip} only ({mapping}); clients connecting to "
               f"{used[0]} cannot reach it. Publish it on every address (-p {hport}:{cport}) or on {used[0]}.")
    held = [ln for ln in snap.listeners if ln.port == hport and holder_container(snap, ln) is c]
    ev = [f"published: {mapping} (container {name}, state {c.get('state')})"]
    ev += [f"{describe(snap, ln)}: the engine holds the port for container {name}, on the address its -p names"
           for ln in held]
    ev.append(f"nothing on port {hport} accepts connections to {', '.join(used)}")
    use_flag = f"-p {endpoint_key(used[0], hport) if ':' in used[0] else f'{used[0]}:{hport}'}:{cport}"
    fixes = [Fix(f"publish port {hport} on every host address (recreate container {name})",
                 f"{eng} run ... {_publish_flag('', hport, cport)} {c.get('image')}"),
             Fix(f"or publish it on the address the clients use, {used[0]}",
                 f"{eng} run ... {use_flag} {c.get('image')}"),
             Fix(f"in {_compose(c)}: ports: [\"{hport}:{cport}\"] instead of \"{hip}:{hport}:{cport}\""),
             Fix(f"or connect to {endpoint_key(hip, hport)}")]
    return Finding(Cause.WRONG_INTERFACE, CHECK, Severity.ERROR, summary, tuple(ev), tuple(fixes), 0.93)


def _container_port_confusion(snap: Snapshot, ctx: Context) -> list[Finding]:
    port = ctx.target.port
    out: list[Finding] = []
    for c in _containers(snap):
        for p in c.get("ports") or []:
            if p.get("container_port") == port and p.get("host_port") != port:
                eng, name = _engine(snap), _name(c)
                hp = p["host_port"]
                summary = (f"Port {port} is container {name}'s port inside the container; on this host it is "
                           f"published as port {hp} ({_mapping_text(p)}). Connect to port {hp}, or publish "
                           f"{port}:{port}.")
                fixes = [Fix(f"connect to {endpoint_key(ctx.target.host, hp)} instead"),
                         Fix(f"or publish host port {port}",
                             f"{eng} run ... {_publish_flag(p.get('host_ip', ''), port, port)} {c.get('image')}"),
                         Fix(f"in {_compose(c)}: ports: [\"{port}:{port}\"] (host:container)")]
                inside = [x for x in c.get("listeners") or [] if x["port"] == port and not _is_loopback(x["address"])]
                ev = (f"published: {_mapping_text(p)} (container {name}, state {c.get('state')})",
                      f"the client used port {port}; nothing on this host publishes or listens on it",
                      *([f"inside container {name}, {endpoint_key(inside[0]['address'], port)} listens"] if inside else []))
                weight = 0.88 if inside and c.get("state") == "running" else 0.75
                out.append(Finding(Cause.WRONG_PORT, CHECK, Severity.ERROR, summary, ev, tuple(fixes), weight))
    return out


def _unpublished(snap: Snapshot, ctx: Context) -> list[Finding]:
    port = ctx.target.port
    out: list[Finding] = []
    for c in _containers(snap):
        if c.get("state") != "running" or c.get("same_netns"):
            continue
        lns = [x for x in c.get("listeners") or [] if x["port"] == port]
        if not lns or any(p.get("container_port") == port for p in c.get("ports") or []):
            continue
        eng, name, ip = _engine(snap), _name(c), _ip(c)
        summary = (f"Container {name} listens on port {port} inside its own network namespace but publishes no "
                   f"host port for it, so port {port} on this host refuses.")
        fixes = [Fix(f"publish it: host {port} -> container {port}",
                     f"{eng} run ... -p {port}:{port} {c.get('image')}"),
                 Fix(f"in {_compose(c)}: ports: [\"{port}:{port}\"]")]
        if ip and not all(_is_loopback(x["address"]) for x in lns):
            fixes.append(Fix(f"or, from this host, connect to the container's address {endpoint_key(ip, port)}"))
        ev = (f"listening inside container {name}: " + ", ".join(endpoint_key(x['address'], x['port']) for x in lns),
              f"published ports of {name}: " + (", ".join(_mapping_text(p) for p in c.get("ports") or []) or "none"))
        out.append(Finding(Cause.PORT_MAPPING, CHECK, Severity.ERROR, summary, ev, tuple(fixes), 0.75))
    return out


def _client_in_container(snap: Snapshot, ctx: Context) -> list[Finding]:
    """The client runs in a container and used localhost for a service that lives elsewhere."""
    doc = _doc(snap)
    port = ctx.target.port
    if not any(_is_loopback(a) for a in _target_addresses(ctx)) and not _is_loopback(ctx.target.host):
        return []
    client: dict[str, Any] | None = None
    host_lns: list[dict[str, Any]] = []
    host_addr: str | None = None
    if doc.get("self"):
        client = next((c for c in _containers(snap) if _name(c) == doc["self"]), None)
        if any(ln.port == port for ln in snap.listeners):
            return []  # something in this container does listen on the port
        host_lns = doc.get("host_listeners") or []
        host_addr = doc.get("gateway")
    elif ctx.from_addr:
        client = next((c for c in _containers(snap) if ctx.from_addr in (c.get("addresses") or [])), None)
        if client is None:
            return []
        host_lns = [{"address": ln.address, "port": ln.port, "family": ln.family} for ln in snap.listeners]
        host_addr = next((n.get("gateway") for n in client.get("networks") or [] if n.get("gateway")), None)
    if client is None:
        return []
    name = _name(client)
    out: list[Finding] = []
    on_host = [x for x in host_lns if x["port"] == port]
    if on_host:
        lo_only = all(_is_loopback(x["address"]) for x in on_host)
        where = ", ".join(endpoint_key(x["address"], x["port"]) for x in on_host)
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
    for other in _containers(snap):
        if other is client or other.get("state") != "running":
            continue
        lns = [x for x in other.get("listeners") or [] if x["port"] == port and not _is_loopback(x["address"])]
        if not lns:
            continue
        oname, oip = _name(other), _ip(other)
        summary = (f"The client runs in container {name}, where localhost is the container itself; the service "
                   f"on port {port} runs in container {oname}.")
        fixes = [Fix(f"connect to {oname}:{port} (the container name resolves on a shared user-defined network)"),
                 Fix(f"or to its address {endpoint_key(oip, port)}" if oip else "or to its address")]
        out.append(Finding(Cause.PORT_MAPPING, CHECK, Severity.ERROR, summary,
                           (f"client container: {name}",
                            f"listening in container {oname}: " + ", ".join(endpoint_key(x['address'], x['port']) for x in lns)),
                           tuple(fixes), 0.9))
    return out


def check_mapping(snap: Snapshot, ctx: Context) -> list[Finding]:
    """Findings about the container path behind the target port."""
    if not _doc(snap):
        return []
    if ctx.probe.state is State.OPEN and not ctx.from_addr:
        return []
    if not target_is_local(snap, ctx):
        return []  # this host's containers say nothing about another host's port
    port = ctx.target.port
    addrs = _target_addresses(ctx)
    findings: list[Finding] = []
    findings += _client_in_container(snap, ctx)
    publishing = [(c, p) for c, p in _publishing(snap, port) if _host_ip_covers(p.get("host_ip", ""), addrs)
                  or _loopback_published(snap, ctx, c, p) or _other_address_published(snap, ctx, c, p)]
    for c, p in publishing:
        lp = _loopback_published(snap, ctx, c, p)
        if lp is None and not _host_ip_covers(p.get("host_ip", ""), addrs):
            lp = _other_address_published(snap, ctx, c, p)
        if lp is not None:
            findings.append(lp)
            continue
        if ctx.probe.state is State.OPEN:
            continue
        if c.get("state") != "running":
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
    pubs = [(c, p) for c in _containers(snap) if c.get("state") == "running" for p in c.get("ports") or []
            if p.get("host_port") != port]
    if not pubs:
        return []
    listed = ", ".join(f"{_mapping_text(p)} ({_name(c)})" for c, p in pubs[:6])
    summary = (f"No container publishes port {port}; the containers here publish {listed}. "
               f"If the service runs in one of them, connect to its published host port.")
    return [Finding(Cause.WRONG_PORT, CHECK, Severity.WARNING, summary,
                    tuple(f"published: {_mapping_text(p)} (container {_name(c)})" for c, p in pubs[:6]), (), 0.5)]
