"""Is anything listening on the port at all? service_not_running and wrong_port.

Runs only when the target is this host. When no socket listens on the port, the question is
whether the service the user means runs elsewhere (another port: wrong_port) or not at all
(service_not_running). Candidates for "the service the user means", strongest first:
the process named by --service; a process whose environment or command line names the port
(PORT=8080, --port 8080) but that listens elsewhere; the well-known server of this port
(postgres for 5432) on another port; a listener on a neighbouring port.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from portdoctor import services
from portdoctor.checks import endpoint_key, facts
from portdoctor.model import COMMAND_LINE, Cause, Finding, Fix, Process, ServiceConfig, Severity, State
from portdoctor.snapshot import Snapshot
from portdoctor.services import ServiceInfo

if TYPE_CHECKING:
    from portdoctor.checks import Context

CHECK = "listener"

_PORT_FLAGS = {"--port", "-p", "--listen", "--listen-port", "--http-port", "--bind", "-b", "--server.port",
               "--http.port", "--web.listen-address", "-l", "--addr", "--address", "--host-port"}
_HTTP_PORTS = {80, 443, 591, 3000, 4000, 5000, 8000, 8008, 8080, 8081, 8088, 8443, 8888, 9000}
_RUNTIMES = {"node", "python", "gunicorn", "uvicorn", "java", "ruby", "php"}
_ENV_PORT = re.compile(r"(^|_)(PORT|HTTP_PORT|LISTEN_PORT|SERVER_PORT)$")


def intended_ports(proc: Process) -> dict[int, str]:
    """Ports a process's environment or command line asks for, each with where it was seen."""
    out: dict[int, str] = {}
    for key, value in proc.env.items():
        if _ENV_PORT.search(key.upper()) and value.strip().isdigit():
            out.setdefault(int(value), f"{key}={value} in its environment")
        else:
            m = re.search(r":(\d{1,5})$", value.strip())
            if m and re.search(r"ADDR|LISTEN|BIND", key.upper()):
                out.setdefault(int(m.group(1)), f"{key}={value} in its environment")
    args = list(proc.cmdline[1:])
    for i, arg in enumerate(args):
        flag, eq, val = arg.partition("=")
        candidate = None
        if eq and flag in _PORT_FLAGS:
            candidate = val
        elif arg in _PORT_FLAGS and i + 1 < len(args):
            candidate = args[i + 1]
        if candidate is None:
            continue
        m = re.search(r"(?:^|:)(\d{1,5})$", candidate)
        if m and 0 < int(m.group(1)) < 65536:
            out.setdefault(int(m.group(1)), f"`{arg}{'' if eq else ' ' + candidate}` on its command line")
    return {p: why for p, why in out.items() if 0 < p < 65536}


def matches_service(proc: Process, name: str) -> bool:
    """Whether `--service NAME` designates this process (name, command fragment or unit)."""
    n = name.lower().removesuffix(".service")
    if n == proc.name.lower() or n in proc.command.lower():
        return True
    return bool(proc.unit and proc.unit.lower().removesuffix(".service") == n)


def listening_ports(snap: Snapshot, proc: Process) -> list[int]:
    """TCP ports this process listens on."""
    return sorted({s.port for s in snap.listeners if proc.pid in s.pids})


def known_service(proc: Process) -> ServiceInfo | None:
    return services.service_for_process(proc)


def _services_for_port(port: int) -> list[ServiceInfo]:
    return services.by_port(port)


def _ident(proc: Process) -> str:
    return f"{proc.name} (pid {proc.pid})"


def restart_fix(snap: Snapshot, proc: Process | None, name: str) -> Fix:
    """How to restart a service on this host, in the words of whatever supervises it."""
    if proc is not None and proc.unit:
        return Fix(f"Restart {proc.unit} so it picks up the change", f"systemctl restart {proc.unit}")
    if proc is not None and proc.container:
        return Fix(f"Recreate the container {proc.container[:12]} with the new setting",
                   f"docker restart {proc.container[:12]}")
    if snap.init == "systemd":
        return Fix(f"Restart {name}", f"systemctl restart {name}")
    brewed = [b.name for b in (snap.bsd.brew if snap.bsd else ()) if b.name.split("@")[0] in (name, _brew_base(name))]
    if brewed:  # macOS: Homebrew runs it under launchd
        return Fix(f"Restart {brewed[0]} (a Homebrew service)", f"brew services restart {brewed[0]}")
    return Fix(f"Restart {name} (no systemd here: restart it the way it was started)", None)


def _brew_base(name: str) -> str:
    """The Homebrew formula a server process belongs to (postgres -> postgresql, redis-server -> redis)."""
    return {"postgres": "postgresql", "redis-server": "redis", "mysqld": "mysql", "mongod": "mongodb-community"
            }.get(name, name)


def start_fixes(snap: Snapshot, name: str | None, port: int) -> list[Fix]:
    """How to start a stopped service and learn why it stopped."""
    if name and snap.init == "systemd":
        return [
            Fix(f"See why {name} is not running", f"systemctl status {name}; journalctl -u {name} -n 50"),
            Fix(f"Start {name} (and enable it at boot)", f"systemctl enable --now {name}"),
        ]
    if name and snap.platform == "darwin":  # no `service` on macOS; Homebrew wraps launchd
        return [Fix(f"Start {name} (installed with Homebrew: `brew services list` shows it), then check its log "
                    f"for why it stopped or failed to bind port {port}", f"brew services start {name}")]
    if name:
        return [Fix(f"Start {name}, then check its log for why it stopped or failed to bind port {port}",
                    f"service {name} start")]
    return [Fix(f"Start the service that should listen on {port}, and read its log for a bind error "
                f"('Address already in use', 'Permission denied' for ports below 1024)", None)]


def _config_fix(snap: Snapshot, proc: Process, key_kind: str, new_value: str) -> tuple[list[str], list[Fix]]:
    """Evidence and a fix naming the config line that sets port or bind for a known server."""
    info = known_service(proc)
    if info is None:
        return [], []
    keys = tuple(k for spec in info.configs for k in (spec.port_keys if key_kind == "port" else spec.bind_keys))
    lines = [c for c in snap.configs if c.service == info.name and c.key in keys]
    if lines and lines[-1].path == COMMAND_LINE:
        c = lines[-1]
        return ([f"{info.name}'s command line: {c.text}"],
                [Fix(f"set {key_kind} to {new_value} where {info.name} is started: its command line has "
                     f"`{c.text}`", f"# started as: {proc.command}")])
    if lines:
        c = lines[-1]  # the last setting wins in these formats
        return ([f"{c.path}:{c.line}: {c.text.strip()}"],
                [Fix(f"Set {c.key} in {c.path} (line {c.line}) to {new_value}",
                     f"# {c.path}, line {c.line}\n{_replace_value(c, new_value)}")])
    hint = info.port_key_hint if key_kind == "port" else info.bind_key_hint
    return [], ([Fix(f"set {key_kind} to {new_value} in the {info.name} configuration (the setting looks "
                     f"like `{hint}`)", None)] if hint else [])


def _replace_value(c, new_value: str) -> str:
    text = c.text.strip().lstrip("#").strip()
    if c.value and c.value in text:
        return text.replace(c.value, new_value, 1)
    return f"{c.key} {new_value}"


@dataclass(frozen=True)
class _Suspect:
    """A process that may be the service the client wants: where it listens, and why we think so."""

    proc: Process
    ports: list[int]  # the ports it listens on; empty: it listens on none
    why: str
    weight: float


def check_listener(snap: Snapshot, ctx: Context) -> list[Finding]:
    """service_not_running / wrong_port when no socket listens on the target port here.

    The suspects come from the strongest evidence first: the service the user named, a process
    whose own arguments or environment name the port, the service the URL's scheme names, the
    usual server of the port, another HTTP server; each process is judged once, by its strongest
    evidence. With no suspect: a listener on a neighbouring port, then "nothing listens".
    """
    if not facts.target_is_local(snap, ctx) or facts.listeners_on_port(snap, ctx.target.port):
        return []
    findings = _named_service_missing(snap, ctx)
    suspects: dict[int, _Suspect] = {}
    for step in (_named_service, _told_this_port, _named_by_scheme, _usual_server, _other_http_server):
        for s in step(snap, ctx):
            if s.proc.pid != snap.observer_pid:  # portdoctor itself (a `watch` and its dashboard)
                suspects.setdefault(s.proc.pid, s)
    reported: set[frozenset[int]] = set()
    for s in suspects.values():
        if not s.ports:
            findings.append(_unix_only(snap, ctx, s) or _not_listening(snap, ctx, s))
            continue
        # nginx's master and workers (postgres's backends, ...) share one set of sockets: say it once
        inodes = frozenset(x.inode for x in snap.listeners if s.proc.pid in x.pids and x.inode)
        if inodes and inodes in reported:
            continue
        reported.add(inodes)
        findings.append(_wrong_port(snap, ctx, s))
    if findings:
        return findings
    near = sorted({x.port for x in snap.listeners if _near(x.port, ctx.target.port)},
                  key=lambda p: abs(p - ctx.target.port))
    return _neighbour(snap, ctx, near[:1]) + [_nothing_listens(snap, ctx, bool(near))]


def _named_service(snap: Snapshot, ctx: Context) -> list[_Suspect]:
    """The processes of the service the user named with --service."""
    if not ctx.service:
        return []
    out = []
    for proc in snap.processes.values():
        if matches_service(proc, ctx.service):
            ports = listening_ports(snap, proc)
            out.append(_Suspect(proc, ports, f"you named it with --service {ctx.service}", 0.9) if ports
                       else _Suspect(proc, [], f"matches --service {ctx.service}", 0.8))
    return out


def _named_service_missing(snap: Snapshot, ctx: Context) -> list[Finding]:
    """--service names a service of which no process runs."""
    if not ctx.service or any(matches_service(p, ctx.service) for p in snap.processes.values()):
        return []
    port = ctx.target.port
    return [Finding(
        Cause.SERVICE_NOT_RUNNING, CHECK, Severity.ERROR,
        f"Nothing listens on port {port} and no process matches --service {ctx.service}: "
        f"the service is not running.",
        (f"nothing listens on port {port}", f"no process name, command line or unit matches "
         f"{ctx.service!r} among {len(snap.processes)} processes inspected"),
        tuple(start_fixes(snap, ctx.service, port)), 0.9)]


def _told_this_port(snap: Snapshot, ctx: Context) -> list[_Suspect]:
    """Processes whose arguments or environment name the target port, listening elsewhere or nowhere."""
    out = []
    for proc in snap.processes.values():
        want = intended_ports(proc)
        if ctx.target.port in want:
            ports = listening_ports(snap, proc)
            out.append(_Suspect(proc, ports, want[ctx.target.port], 0.88 if ports else 0.75))
    return out


def _named_by_scheme(snap: Snapshot, ctx: Context) -> list[_Suspect]:
    """The service the URL's scheme names (redis://host:6380 while redis listens on 6379)."""
    by_scheme = _service_of_scheme(ctx.target.scheme)
    if by_scheme is None:
        return []
    out = []
    for proc in snap.processes.values():
        info = known_service(proc)
        if info is not None and info.name == by_scheme.name:
            ports = listening_ports(snap, proc)
            if ports and ctx.target.port not in ports:
                out.append(_Suspect(proc, ports, f"the URL's scheme {ctx.target.scheme}:// names {info.name}", 0.85))
    return out


def _usual_server(snap: Snapshot, ctx: Context) -> list[_Suspect]:
    """The well-known server of the target port, running on another port."""
    port = ctx.target.port
    known_names = {s.name for s in _services_for_port(port)}
    out = []
    idle: set[str] = set()  # services already named for a process on no TCP port (postgres's workers too)
    for proc in snap.processes.values():
        info = known_service(proc)
        if info is None or info.name not in known_names:
            continue
        ports = listening_ports(snap, proc)
        if not ports and info.name not in _RUNTIMES and info.name not in idle:
            idle.add(info.name)  # runs, on no TCP port at all: starting, failed to bind, or unix socket only
            out.append(_Suspect(proc, [], f"{info.name}'s usual port is {port}", 0.8))
        if ports and port not in ports:
            if info.name in _RUNTIMES:  # any app may run on node or python: weaker evidence
                out.append(_Suspect(proc, ports, f"a {info.name} server, and {port} is a usual port of such servers",
                                    0.5))
            else:
                out.append(_Suspect(proc, ports, f"{info.name}'s usual port is {port}", 0.8))
    return out


def _other_http_server(snap: Snapshot, ctx: Context) -> list[_Suspect]:
    """An HTTP server on another HTTP port (nginx on 80 while clients use 8080)."""
    if ctx.target.port not in _HTTP_PORTS:
        return []
    out = []
    for proc in snap.processes.values():
        info = known_service(proc)
        if info is None or info.name in _RUNTIMES or not set(info.ports) & {80, 443}:
            continue
        ports = [p for p in listening_ports(snap, proc) if p in _HTTP_PORTS]
        if ports:
            out.append(_Suspect(proc, ports, f"an HTTP server, and {ctx.target.port} is an HTTP port too", 0.75))
    return out


def _wrong_port(snap: Snapshot, ctx: Context, s: _Suspect) -> Finding:
    """wrong_port: the suspect listens on other ports than the client's."""
    proc, port, why, weight = s.proc, ctx.target.port, s.why, s.weight
    # the process's own arguments, environment or config name the port it listens on: that fact,
    # not a table of usual ports, is the evidence (and it is strong)
    told = intended_ports(proc)
    own = [told[p] for p in s.ports if p in told]
    own += [f"{c.path}:{c.line}: {c.text}" for c in _own_port_settings(snap, proc, s.ports)]
    if own and weight < 0.85:
        why, weight = f"it was told to listen there: {own[0]}", 0.85
    where = ", ".join(str(p) for p in s.ports)
    ev = [why, *(facts.describe(snap, x) for x in snap.listeners if proc.pid in x.pids and x.port in s.ports)]
    ev.append(f"nothing listens on port {port}")
    other = s.ports[0]
    fixes = [Fix(f"Either point the clients at port {other}, where {proc.name} listens",
                 f"portdoctor probe {endpoint_key(ctx.target.host, other)}")]
    cfg_ev, cfg_fix = _config_fix(snap, proc, "port", str(port))
    ev += cfg_ev
    if cfg_fix:
        fixes += [Fix("or make the server listen on " + str(port) + ": " + cfg_fix[0].description[0].lower()
                      + cfg_fix[0].description[1:], cfg_fix[0].command), restart_fix(snap, proc, proc.name)]
    elif "environment" in why:
        fixes.append(Fix(f"or make {proc.name} honour its PORT variable: it listens on {other} although "
                         f"its environment says {port}, so the port is hard-coded or read from elsewhere "
                         f"(e.g. in Node `app.listen(process.env.PORT || {other})`)", None))
    else:
        fixes.append(Fix(f"or start {proc.name} with port {port}", None))
    return Finding(Cause.WRONG_PORT, CHECK, Severity.ERROR,
                   f"Nothing listens on port {port}, but {_ident(proc)} listens on {where}"
                   + (f" ({why})." if why else "."),
                   tuple(ev), tuple(fixes), weight)


def _own_port_settings(snap: Snapshot, proc: Process, ports: list[int]) -> list[ServiceConfig]:
    """Settings of this process's own service (file or command line) that name one of `ports`."""
    info = known_service(proc)
    if info is None:
        return []
    return [c for c in snap.configs if c.service == info.name and c.key == "port"
            and c.value.strip().isdigit() and int(c.value) in ports]


# settings that keep a server off TCP, per service: (config key, test of its value, the fix's new line)
_OFF_TCP = {
    "postgresql": ("listen_addresses", lambda v: v.strip().strip("'\"").strip() == "",
                   "listen_addresses = 'localhost'  # or '*' for clients on other hosts (then pg_hba.conf)"),
    "redis": ("port", lambda v: v.strip() == "0", "port {port}"),
    "mysql": ("skip-networking", lambda v: v.strip().lower() in ("", "1", "on", "true"),
              "# skip-networking  (removed: the server listens on TCP again)"),
}


def _unix_only(snap: Snapshot, ctx: Context, s: _Suspect) -> Finding | None:
    """wrong_interface: the server runs but serves only its unix socket (listen_addresses = '',
    Redis `port 0`, MySQL skip-networking), so TCP clients are refused."""
    proc, port = s.proc, ctx.target.port
    info = known_service(proc)
    rule = _OFF_TCP.get(info.name) if info is not None else None
    setting = None
    if rule is not None:
        setting = next((c for c in reversed(snap.configs)
                        if c.service == info.name and c.key == rule[0] and rule[1](c.value)), None)
    if setting is None and not proc.unix_listeners:
        return None
    name = info.name if info is not None else proc.name
    where = ", ".join(proc.unix_listeners)
    summary = (f"{_ident(proc)} runs but serves no TCP port, only its unix socket"
               + (f" {where}" if where else "")
               + (f": `{setting.text.strip()}` ({setting.path}:{setting.line}) keeps it off TCP" if setting
                  else "") + f", so TCP clients of port {port} are refused.")
    ev = [f"process {proc.pid}: {proc.command}", f"nothing listens on TCP port {port}"]
    if where:
        ev.append(f"listening unix socket{'s' if len(proc.unix_listeners) > 1 else ''}: {where}")
    if setting is not None:
        ev.append(f"{setting.path}:{setting.line}: {setting.text.strip()}" if setting.path != COMMAND_LINE
                  else f"on its command line: {setting.text.strip()}")
    fixes = []
    if setting is not None and rule is not None:
        new = rule[2].format(port=port)
        if setting.path == COMMAND_LINE:
            fixes.append(Fix(f"start {name} without `{setting.text.strip()}` (it keeps {name} off TCP)",
                             f"# started as: {proc.command}"))
        else:
            fixes.append(Fix(f"make {name} listen on TCP: change {setting.key} in {setting.path} line {setting.line}",
                             f"# {setting.path}, line {setting.line}: change\n{setting.text.strip()}\n# to\n{new}"))
    else:
        hint = f" (`{info.port_key_hint}`, with the port {port})" if info is not None and info.port_key_hint else ""
        fixes.append(Fix(f"configure {name} to listen on TCP port {port} as well as its unix socket{hint}; its "
                         f"settings may say the opposite (Redis `port 0`, PostgreSQL listen_addresses = '', "
                         f"MySQL skip-networking)", None))
    fixes.append(restart_fix(snap, proc, name))
    if where:
        fixes.append(Fix(f"or connect local clients through the unix socket {proc.unix_listeners[0]}", None))
    return Finding(Cause.WRONG_INTERFACE, CHECK, Severity.ERROR, summary, tuple(ev), tuple(fixes), 0.9)


def _not_listening(snap: Snapshot, ctx: Context, s: _Suspect) -> Finding:
    """service_not_running: the suspect runs but listens on no TCP port."""
    proc = s.proc
    return Finding(
        Cause.SERVICE_NOT_RUNNING, CHECK, Severity.ERROR,
        f"{_ident(proc)} runs ({s.why}) but listens on no TCP port: it is still starting, "
        f"failed to bind, or serves only a unix socket.",
        (f"process {proc.pid}: {proc.command}", f"nothing listens on port {ctx.target.port}"),
        (Fix(f"Read {proc.name}'s log for a bind error ('Address already in use', 'Permission denied', "
             f"a bad listen address)", None), restart_fix(snap, proc, proc.name)),
        s.weight)


def _neighbour(snap: Snapshot, ctx: Context, near: list[int]) -> list[Finding]:
    """Something on a neighbouring port: a typo or an off-by-one in the config."""
    port = ctx.target.port
    out = []
    for other in near:
        socks = [x for x in snap.listeners if x.port == other]
        procs = [p for x in socks for p in facts.owners(snap, x)]
        who = _ident(procs[0]) if procs else "a process"
        out.append(Finding(
            Cause.WRONG_PORT, CHECK, Severity.WARNING,
            f"Nothing listens on port {port}; {who} listens on the neighbouring port {other}. "
            f"If that is the service you want, the client or the server has the wrong port.",
            tuple([*(facts.describe(snap, x) for x in socks), f"nothing listens on port {port}"]),
            (Fix(f"Check which port is configured on each side; to use the running one: "
                 f"connect to {other}", None),),
            0.45))
    return out


def _nothing_listens(snap: Snapshot, ctx: Context, near: bool) -> Finding:
    """service_not_running: no socket on the port at all. Two things weaken it: a NAT rule that sends
    the port elsewhere (then no local listener is needed; the firewall check follows the mapping),
    and a timeout, which a closed port does not produce (it answers with a reset at once)."""
    port = ctx.target.port
    weight = 0.8 if not near else 0.7
    redirect = _redirect(snap, ctx)
    if redirect is not None:
        weight = 0.3
    if ctx.probe.addresses and all(a.state is State.TIMEOUT for a in ctx.probe.addresses):
        weight = min(weight, 0.45)
    known = _services_for_port(port)
    daemons = [s for s in known if s.name not in _RUNTIMES and s.configs]
    known = daemons or known
    if daemons:
        svc_text = f" (usually {', '.join(sorted(s.name for s in daemons))})"
    elif known:
        svc_text = f" (a usual port of {', '.join(sorted(s.name for s in known))} servers)"
    else:
        svc_text = ""
    evidence = [f"no socket listens on port {port} on any address ({len(snap.listeners)} listening sockets seen)"]
    if known:
        procs_names = sorted({n for s in known for n in s.process_names})
        names = procs_names[:6]
        evidence.append(f"no {' or '.join(names) if len(names) <= 2 else ', '.join(names[:-1]) + ' or ' + names[-1]} "
                        f"process is running")
    if redirect:
        evidence.append(f"but NAT sends port {port} on to {redirect['to']} ({redirect['rule']})")
    return Finding(
        Cause.SERVICE_NOT_RUNNING, CHECK, Severity.INFO if redirect else Severity.ERROR,
        f"Nothing listens on port {port} on this host{svc_text}: the service is not running, "
        f"or it has not bound its port.",
        tuple(evidence), tuple(start_fixes(snap, daemons[0].name if daemons else None, port)), weight)


def _redirect(snap: Snapshot, ctx: Context) -> dict | None:
    """The NAT redirection of the target port that the firewall check found, if any."""
    if snap.firewall is None:
        return None
    from portdoctor.checks.firewall.nat import redirected

    return next((r for r in redirected(snap, ctx) if r.get("definite") and r.get("flow") != "remote"), None)




def _near(a: int, b: int) -> bool:
    if a == b:
        return False
    return abs(a - b) <= 10 or str(a).endswith(str(b)) or str(b).endswith(str(a))


_SCHEME_SERVICE = {"postgres": "postgresql", "postgresql": "postgresql", "redis": "redis", "rediss": "redis",
                   "mysql": "mysql", "mariadb": "mysql", "mongodb": "mongodb", "amqp": "rabbitmq",
                   "amqps": "rabbitmq", "memcached": "memcached", "elasticsearch": "elasticsearch",
                   "kafka": "kafka", "zookeeper": "zookeeper", "etcd": "etcd", "clickhouse": "clickhouse",
                   "ssh": "sshd", "sftp": "sshd"}


def _service_of_scheme(scheme: str | None) -> ServiceInfo | None:
    """The well-known service a URL scheme names (postgres:// -> postgresql), if any."""
    if not scheme or scheme not in _SCHEME_SERVICE:
        return None
    return services.by_name(_SCHEME_SERVICE[scheme])
