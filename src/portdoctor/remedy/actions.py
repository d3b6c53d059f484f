"""Structured actions for the findings of a diagnosis: what `portdoctor fix` would change.

Pure functions of the snapshot and the diagnosis context (nothing is read from the system): for
each cause with an automatic fix, the action that makes it (a firewall rule inserted before the
one that blocks, one setting of the server's config file and the restart that applies it, a
start through the supervisor, a sysctl, an open-files limit), what it exposes, how it is undone,
or why it must be left to a person. `attach` puts them on the findings' fixes, so the diagnosis
JSON carries them (docs/fix.md).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import replace
from typing import TYPE_CHECKING

from portdoctor import addresses
from portdoctor.hostview import holder_container, listeners_on_port, owners
from portdoctor.model import COMMAND_LINE, Action, ActionKind, Cause, Finding, Fix, Process, Severity
from portdoctor.remedy.configedit import EditError, wide_value, with_port
from portdoctor.services import service_for_process
from portdoctor.snapshot import Snapshot

if TYPE_CHECKING:
    from portdoctor.checks import Context
    from portdoctor.firewall.evaluate import Outcome
    from portdoctor.hostfacts import Supervisord

# systemd-like sysctl drop-in written by `fix` (persisting a kernel setting)
SYSCTL_FILE = "/etc/sysctl.d/60-portdoctor.conf"
# nginx too: a reload cannot trade `listen 127.0.0.1:80` for `listen 80` (the wildcard bind fails
# while the old socket is open), a stop and start can
RESPAWNED = ("redis", "postgresql", "mysql", "mongodb", "memcached", "nginx", "haproxy")  # servers `fix` may restart by hand


def ssh_port(environ: dict[str, str] | None = None) -> int | None:
    """The server port of the SSH session portdoctor runs in (SSH_CONNECTION), or None."""
    env = os.environ if environ is None else environ
    parts = (env.get("SSH_CONNECTION") or "").split()
    return int(parts[3]) if len(parts) == 4 and parts[3].isdigit() else None


# --------------------------------------------------------------------------- restart


def restart_action(snap: Snapshot, proc: Process | None, why: str, config: str | None = None) -> Action:
    """How to restart (or reload) the server `proc` through whoever supervises it (`config`: the
    file it reads, for a server started by hand whose command line no longer says so)."""
    if proc is None:
        return Action(ActionKind.RESTART, f"restart the server ({why})", refused="the server process is not known")
    info = service_for_process(proc)
    name = info.name if info else proc.name
    if proc.unit:
        return Action(ActionKind.RESTART, f"restart {proc.unit} ({why})", argv=("systemctl", "restart", proc.unit),
                      undo="restart it again once the change is undone", service=proc.unit, tool="systemd")
    if proc.container:
        return Action(ActionKind.RESTART, f"recreate container {proc.container[:12]} ({why})",
                      service=proc.container[:12], tool="container",
                      refused="the server runs in a container: its setting belongs in the image or the run "
                              "options, and recreating a container is left to you")
    prog = supervised_program(snap, proc)
    if prog is not None:
        ctl, pname = prog
        return Action(ActionKind.RESTART, f"restart supervisord program {pname} ({why})",
                      argv=(*ctl, "restart", pname), undo="restart it again once the change is undone",
                      service=pname, tool="supervisord")
    if name in RESPAWNED:
        top = _nginx_master(snap, proc) if name == "nginx" else _top_server(snap, proc)
        return Action(ActionKind.RESTART,
                      f"stop {name} (pid {top.pid}, started by hand) gracefully and start it again with the same "
                      f"command line, directory, environment, user and namespaces ({why})",
                      undo="restart it the same way once the change is undone", service=name, tool="respawn",
                      pid=top.pid, path=config or _config_file(snap, name))
    return Action(ActionKind.RESTART, f"restart {name} ({why})", service=name,
                  refused=f"{name} (pid {proc.pid}) has no supervisor portdoctor knows; it was started as "
                          f"`{proc.command}`: restart it the same way yourself")


def _config_file(snap: Snapshot, service: str) -> str | None:
    """The config file a server reads, as the collector found it (redis: INFO config_file)."""
    paths = [c.path for c in snap.configs if c.service == service and c.path != COMMAND_LINE]
    return paths[0] if paths else None


def _holders(snap: Snapshot, proc: Process) -> set[int]:
    """proc's pid and the pids sharing its listening sockets (nginx's master and workers)."""
    out = {proc.pid}
    for s in snap.listeners:
        if proc.pid in s.pids:
            out.update(s.pids)
    return out


def supervised_program(snap: Snapshot, proc: Process) -> tuple[tuple[str, ...], str] | None:
    """(supervisorctl argv, program name) when a supervisord of the snapshot runs `proc` (or the
    process that shares its sockets: a worker's master)."""
    sups = snap.supervisors.supervisord if snap.supervisors else ()
    pids = _holders(snap, proc)
    for sup in sups:
        for p in sup.programs:
            if p.pid and p.pid in pids:
                return _ctl(sup), p.name
    return None


def _ctl(sup: Supervisord) -> tuple[str, ...]:
    """supervisorctl for this supervisord: through its config file, as the supervisor check's own
    fix says it (so the action lands on that fix, not beside it), else through its socket."""
    if sup.config:
        return ("supervisorctl", "-c", sup.config)
    if sup.socket:
        sock = sup.socket if "://" in sup.socket else f"unix://{sup.socket}"
        return ("supervisorctl", "-s", sock)
    return ("supervisorctl",)


def _nginx_master(snap: Snapshot, proc: Process) -> Process:
    """The nginx master among the processes holding the same sockets as `proc`."""
    for pid in sorted(_holders(snap, proc)):
        p = snap.processes.get(pid)
        if p is not None and p.name == "nginx" and "master process" in p.command:
            return p
    return proc


def _top_server(snap: Snapshot, proc: Process) -> Process:
    """The lowest-pid process of the same server name holding the port (postgres's postmaster)."""
    same = [p for p in snap.processes.values() if p.name == proc.name and p.cmdline == proc.cmdline]
    return min(same, key=lambda p: p.pid) if same else proc


# --------------------------------------------------------------------------- per cause


def bind_actions(snap: Snapshot, ctx: Context, family: int) -> list[Action]:
    """wrong_interface: widen the bind setting in the server's config file, then restart it."""
    port = ctx.target.port
    socks = [s for s in listeners_on_port(snap, port) if holder_container(snap, s) is None]
    procs = [p for s in socks for p in owners(snap, s)]
    known = [(p, service_for_process(p)) for p in procs]
    known = [(p, i) for p, i in known if i is not None and i.configs]
    if not known:
        who = procs[0] if procs else None
        how = f"; it was started as `{who.command}`" if who else ""
        return [Action(ActionKind.MANUAL, f"make the server on port {port} listen on the address clients use",
                       refused=f"the server chose its address itself (no config file portdoctor can edit){how}")]
    proc, info = known[0]
    keys = [k for spec in info.configs for k in spec.bind_keys]
    lines = [c for c in snap.configs if c.service == info.name and c.key in keys and c.key != "protected-mode"]
    if not lines and info.name == "postgresql" and _pg_config(proc):
        path = _pg_config(proc) or ""
        new = "'*'"
        exposes = (f"port {port}/tcp of postgresql to every network this host is on, as far as the firewall "
                   f"and pg_hba.conf let clients in")
        return [Action(ActionKind.EDIT_SETTING, f"{path}: add listen_addresses = {new} (the default, localhost, "
                       f"applies now)", path=path, key="listen_addresses", new=new, service=info.name,
                       undo=f"restore the backup of {path}", exposes=exposes),
                restart_action(snap, proc, f"to listen on {new}", path),
                Action(ActionKind.MANUAL, "add a pg_hba.conf `host` line for the clients' network, or PostgreSQL "
                       "rejects them after connecting", refused="who may log in is yours to decide")]
    if not lines:
        return [Action(ActionKind.MANUAL, f"set `{info.bind_key_hint}` in {info.name}'s configuration",
                       service=info.name, refused="no bind setting was found to change (the default applies)")]
    c = lines[-1]
    new = wide_value(info.name, c.value, "::" if family == 6 else "0.0.0.0")
    exposes = (f"port {port}/tcp of {info.name} to every network this host is on "
               f"({', '.join(a.address for a in snap.addresses if not addresses.is_loopback(a.address))}), "
               f"as far as the firewall lets clients in")
    if c.path == COMMAND_LINE and info.name == "redis":
        return [redis_config_set(socks, proc, "bind", c.value, new, exposes)]
    if c.path == COMMAND_LINE:
        return [Action(ActionKind.EDIT_SETTING, f"{info.name}'s command line: `{c.text}` -> {c.key} {new}",
                       path=c.path, key=c.key, old=c.value, new=new, service=info.name, exposes=exposes,
                       refused=f"the setting is on {info.name}'s command line (`{proc.command}`): start it "
                               f"with {c.key} {new} the way it is started")]
    edit = Action(ActionKind.EDIT_SETTING, f"{c.path} line {c.line}: {c.key} {c.value} -> {new}",
                  path=c.path, line=c.line, key=c.key, old=c.value, new=new, service=info.name,
                  undo=f"restore the backup of {c.path}", exposes=exposes)
    out = [edit, restart_action(snap, proc, f"to listen on {new}", c.path)]
    if info.name == "redis":
        out.append(Action(ActionKind.MANUAL, "set requirepass (or an ACL user) in redis.conf before clients "
                          "from elsewhere use it: without one, protected mode answers them with an error",
                          needs_root=False, refused="a password is yours to choose"))
    return out


def redis_config_set(socks: list, proc: Process, key: str, old: str, new: str, exposes: str) -> Action:
    """A redis started with the setting on its command line: change it at run time (CONFIG SET),
    which needs no restart; it lasts until redis restarts, so the command line must change too."""
    sock = next((x for x in socks if proc.pid in x.pids), socks[0] if socks else None)
    host = "127.0.0.1"
    if sock is not None and not addresses.is_wildcard(sock.address) and not addresses.is_loopback(sock.address):
        host = sock.address
    elif sock is not None and sock.family == 6 and addresses.is_loopback(sock.address):
        host = "::1"
    port = str(sock.port) if sock is not None else "6379"
    base = ("redis-cli", "-h", host, "-p", port)
    undo_base = (*base[:4], new) if key == "port" else base  # after CONFIG SET port, redis is on the new one
    return Action(ActionKind.COMMAND, f"redis (pid {proc.pid}) at run time: CONFIG SET {key} {new} (was {old})",
                  argv=(*base, "CONFIG", "SET", key, new), undo=shlex.join((*undo_base, "CONFIG", "SET", key, old)),
                  needs_root=False, key=key, old=old, new=new,
                  service="redis", tool="redis-cli", exposes=exposes,
                  persist=f"start redis with --{key} {shlex.quote(new)} instead of --{key} {shlex.quote(old)}")


def _pg_config(proc: Process) -> str | None:
    """postgresql.conf of a postmaster: `-c config_file=FILE`, else `-D DIR`/postgresql.conf."""
    argv = list(proc.cmdline)
    for i, a in enumerate(argv):
        if a.startswith("config_file=") and i and argv[i - 1] == "-c":
            return a.partition("=")[2]
        if a.startswith("--config-file=") or a.startswith("--config_file="):
            return a.partition("=")[2]
    for i, a in enumerate(argv):
        if a == "-D" and i + 1 < len(argv):
            return f"{argv[i + 1].rstrip('/')}/postgresql.conf"
        if a.startswith("-D") and len(a) > 2:
            return f"{a[2:].rstrip('/')}/postgresql.conf"
    return None


def port_actions(snap: Snapshot, ctx: Context) -> list[Action]:
    """wrong_port: with --service, move the named server to the asked port (config + restart)."""
    port = ctx.target.port
    if not ctx.service:
        return [Action(ActionKind.MANUAL, f"either point the client at the port the server uses, or move the "
                       f"server to {port}", refused="which side is wrong is your choice: name the server with "
                       "--service to have it moved to the asked port")]
    from portdoctor.checks.listener import listening_ports, matches_service

    for proc in snap.processes.values():
        if not matches_service(proc, ctx.service):
            continue
        ports = listening_ports(snap, proc)
        info = service_for_process(proc)
        if not ports or info is None:
            continue
        keys = [k for spec in info.configs for k in spec.port_keys]
        lines = [c for c in snap.configs if c.service == info.name and c.key in keys]
        for c in reversed(lines):
            old_port = next((p for p in ports if str(p) in c.value), None)
            if old_port is None:
                continue
            try:
                new = with_port(info.name, c.value, old_port, port)
            except EditError:
                continue
            if c.path == COMMAND_LINE and info.name == "redis":
                socks = [x for x in snap.listeners if proc.pid in x.pids and x.port == old_port]
                return [redis_config_set(socks, proc, "port", str(old_port), str(port),
                                         f"redis on port {port} instead of {old_port}")]
            if c.path == COMMAND_LINE:
                return [Action(ActionKind.EDIT_SETTING, f"{info.name}'s command line: {c.text}", path=c.path,
                               key=c.key, old=c.value, new=new, service=info.name,
                               refused=f"the port is set on {info.name}'s command line (`{proc.command}`): "
                                       f"start it with {c.key} {new} the way it is started")]
            edit = Action(ActionKind.EDIT_SETTING, f"{c.path} line {c.line}: {c.key} {c.value} -> {new}",
                          path=c.path, line=c.line, key=c.key, old=c.value, new=new, service=info.name,
                          undo=f"restore the backup of {c.path}",
                          exposes=f"{info.name} on port {port} instead of {old_port}: clients of {old_port} "
                                  f"lose it")
            return [edit, restart_action(snap, proc, f"to listen on port {port}", c.path)]
    return [Action(ActionKind.MANUAL, f"move {ctx.service} to port {port}",
                   refused=f"no port setting of {ctx.service} was found to change")]


def start_actions(snap: Snapshot, ctx: Context) -> list[Action]:
    """service_not_running: start the stopped program, unit or container through its supervisor."""
    from portdoctor.collectors.processes import mentions_port

    port = ctx.target.port
    svc = (ctx.service or "").lower().removesuffix(".service")
    out: list[Action] = []
    sups = snap.supervisors.supervisord if snap.supervisors else ()
    for sup in sups:
        for p in sup.programs:
            if p.state in ("RUNNING", "STARTING", None):
                continue
            argv = _split(p.command)
            if not ((svc and svc in p.name.lower()) or mentions_port(argv, port)
                    or f":{port}" in (p.command or "")):
                continue
            out.append(Action(ActionKind.START, f"start supervisord program {p.name} ({p.state})",
                              argv=(*_ctl(sup), "start", p.name), undo=shlex.join((*_ctl(sup), "stop", p.name)),
                              service=p.name, tool="supervisord",
                              exposes=f"whatever {p.name} serves on port {port}"))
    units = snap.supervisors.systemd.units if snap.supervisors and snap.supervisors.systemd else ()
    for u in units:
        if not u.id or u.active_state in ("active", "activating", "reloading"):
            continue
        uid = u.id.removesuffix(".service")
        if not ((svc and svc == uid.lower()) or f":{port}" in (u.exec_start or "")
                or mentions_port(_split(u.exec_start), port)):
            continue
        if u.unit_file_state == "masked":
            out.append(Action(ActionKind.START, f"start {u.id}", service=u.id, tool="systemd",
                              refused=f"{u.id} is masked: someone turned it off on purpose"))
            continue
        out.append(Action(ActionKind.START, f"start {u.id} ({u.active_state})", argv=("systemctl", "start", u.id),
                          undo=f"systemctl stop {u.id}", service=u.id, tool="systemd"))
    if snap.containers:
        for c in snap.containers.containers:
            if c.state in ("running", "restarting") or not any(pp.host_port == port for pp in c.ports):
                continue
            eng = snap.containers.engine or "docker"
            out.append(Action(ActionKind.START, f"start container {c.name} ({c.state})", argv=(eng, "start", c.name),
                              undo=f"{eng} stop {c.name}", service=c.name, tool=eng))
    if not out:
        out.append(Action(ActionKind.MANUAL, f"start the service that should listen on port {port}",
                          refused="no supervisor (systemd, supervisord, a container engine) knows it: start it "
                                  "the way it is meant to be started"))
    return out


def resource_actions(snap: Snapshot, ctx: Context, finding: Finding) -> list[Action]:
    """resource_exhaustion: a larger kernel cap on the accept queue and the restart that applies
    it; an open-files limit raised up to the hard limit; a stopped process resumed."""
    port = ctx.target.port
    out: list[Action] = []
    text = " ".join((finding.summary, *finding.evidence, *(f"{x.description} {x.command or ''}" for x in finding.fix)))
    for s in listeners_on_port(snap, port):
        procs = owners(snap, s)
        stopped = [p for p in procs if p.state in ("T", "t")]
        for p in stopped:
            if p.state == "T":
                out.append(Action(ActionKind.COMMAND, f"resume {p.name} (pid {p.pid}, stopped by a signal)",
                                  argv=("kill", "-CONT", str(p.pid)), undo=f"kill -STOP {p.pid}", pid=p.pid))
        if stopped:
            continue
        for p in procs:
            if p.open_fds is not None and p.fd_soft_limit and p.open_fds >= p.fd_soft_limit - 1:
                out.append(_fd_action(snap, p))
        full = s.backlog > 0 and s.queue >= max(1, int(0.9 * s.backlog))
        somax = (snap.sysctls.get("net.core.somaxconn") or "").strip()
        if full and somax.isdigit() and s.backlog == int(somax):
            new = max(4096, int(somax) * 2)
            out.append(sysctl_action("net.core.somaxconn", somax, str(new),
                                     f"the kernel caps listen() backlogs at {somax}"))
            syn = (snap.sysctls.get("net.ipv4.tcp_max_syn_backlog") or "").strip()
            if syn.isdigit() and int(syn) < new:
                out.append(sysctl_action("net.ipv4.tcp_max_syn_backlog", syn, str(new), "the SYN queue grows too"))
            proc = procs[0] if procs else None
            out.append(restart_action(snap, proc, "a new backlog takes effect when it listens again"))
        elif full:
            out.append(Action(ActionKind.MANUAL, f"raise the backlog the server on port {port} asks for "
                              f"(listen({s.backlog})) and find why it does not accept() fast enough",
                              refused="the server's own backlog setting is not one portdoctor edits"))
    if "SYN cookies" in text or "tcp_syncookies" in text:
        cur = (snap.sysctls.get("net.ipv4.tcp_syncookies") or "").strip()
        if cur and cur != "1":
            out.append(sysctl_action("net.ipv4.tcp_syncookies", cur, "1", "SYN cookies keep clients in when the "
                                                                           "SYN queue is full"))
    return out or [Action(ActionKind.MANUAL, "find what exhausts the server", refused="no safe automatic change")]


def _fd_action(snap: Snapshot, p: Process) -> Action:
    """Raise the soft open-files limit of a running process (up to its hard limit, decided when
    applied); a lasting limit belongs where the service is started."""
    soft = p.fd_soft_limit or 0
    prog = supervised_program(snap, p)
    return Action(ActionKind.FD_LIMIT, f"raise the open-files limit of {p.name} (pid {p.pid}) from {soft} "
                  f"(up to its hard limit) while it runs", argv=("prlimit", f"--pid={p.pid}", "--nofile=65536:"),
                  undo=f"prlimit --pid={p.pid} --nofile={soft}:", pid=p.pid, old=str(soft),
                  service=prog[1] if prog else p.unit,
                  persist=("LimitNOFILE= in the unit" if p.unit else
                           "minfds= in supervisord.conf" if prog else "ulimit -n where it is started"))


def sysctl_action(key: str, old: str, new: str, why: str) -> Action:
    """Set a kernel parameter now and keep it in /etc/sysctl.d."""
    return Action(ActionKind.SYSCTL, f"{key} {old} -> {new} ({why}), kept in {SYSCTL_FILE}",
                  argv=("sysctl", "-w", f"{key}={new}"), key=key, old=old, new=new, path=SYSCTL_FILE,
                  undo=f"sysctl -w {key}={old} and remove the line from {SYSCTL_FILE}")


def firewall_actions(snap: Snapshot, ctx: Context) -> list[Action]:
    """firewall_reject / firewall_drop: an accept rule, scoped to --from, ahead of the blocking one,
    written with the tool that owns the ruleset."""
    from portdoctor.checks.firewall import evaluate
    from portdoctor.firewall.evaluate import FlowVerdict

    try:
        checked = evaluate(snap, ctx)
    except Exception:  # the firewall check reports it; nothing to automate
        return []
    kinds = ("from",) if any(c.kind == "from" for c in checked) else ("probe", "remote")
    out: list[Action] = []
    seen: set[tuple] = set()
    for c in checked:
        if c.kind not in kinds:
            continue
        for o in c.evaluation.outcomes:
            if o.verdict not in (FlowVerdict.DROP, FlowVerdict.REJECT) or o.step is None:
                continue
            key = (o.step.table.family, o.step.table.name, o.step.chain,
                   o.step.rule.position if o.step.rule else None, o.flow.family)
            if key in seen:
                continue
            seen.add(key)
            out.append(firewall_action(o, ctx.from_addr if c.kind == "from" else None))
    return out


def firewall_action(o: Outcome, source: str | None) -> Action:
    """One accept rule ahead of the outcome's deciding rule (or before its chain's policy)."""
    from portdoctor.firewall.advice import command_tool, manager

    step = o.step
    assert step is not None
    port = o.flow.dport
    src = source
    to_whom = f"clients from {src}" if src else "every client that reaches this host"
    exposes = f"port {port}/tcp to {to_whom}"
    who = manager(o)
    sshp = ssh_port()
    refused = (f"this session's SSH connection uses port {port}: a firewall change there could cut it"
               if sshp == port else None)
    if who in ("kube-proxy", "docker", "podman"):
        return Action(ActionKind.FIREWALL_RULE, f"{who} writes the rule that blocks port {port}", tool=who,
                      exposes=exposes, refused=f"{who} owns these rules and rewrites them: change the service or "
                                               f"container instead")
    if who == "ufw":
        spec = (("from", src, "to", "any", "port", str(port), "proto", "tcp") if src
                else ("to", "any", "port", str(port), "proto", "tcp"))
        return Action(ActionKind.FIREWALL_RULE, f"ufw: allow {' '.join(spec)} ahead of the rule that blocks it",
                      argv=("ufw", "insert", "1", "allow", *spec), undo=shlex.join(("ufw", "delete", "allow", *spec)),
                      tool="ufw", exposes=exposes, refused=refused)
    if who == "firewalld":
        from portdoctor.firewall.advice import allow_fixes

        cmd = next((f.command for f in allow_fixes(o, src) if f.command and f.command.startswith("firewall-cmd")), None)
        argv = tuple(shlex.split(cmd)) if cmd else ()
        undo = shlex.join(a.replace("--add-", "--remove-") for a in argv) if argv else None
        return Action(ActionKind.FIREWALL_RULE, f"firewalld: {cmd}", argv=argv, undo=undo, tool="firewall-cmd",
                      exposes=exposes, refused=refused, persist="firewall-cmd --runtime-to-permanent")
    tool = command_tool(step.table)
    chain = step.chain
    if tool == "nft":
        fam = "ip6" if o.flow.family == 6 else "ip"
        match = ((fam, "saddr", src) if src else ()) + ("tcp", "dport", str(port))
        where = (step.table.family, step.table.name, chain)
        if step.rule is not None and step.rule.handle is not None:
            argv = ("nft", "insert", "rule", *where, "position", str(step.rule.handle), *match, "accept")
            what = f"nft: accept {' '.join(match)} before rule handle {step.rule.handle} of {' '.join(where)}"
        else:
            argv = ("nft", "add", "rule", *where, *match, "accept")
            what = f"nft: accept {' '.join(match)} at the end of {' '.join(where)} (before its policy)"
        return Action(ActionKind.FIREWALL_RULE, what, argv=argv, tool="nft", exposes=exposes, refused=refused,
                      undo=f"nft delete rule {' '.join(where)} handle <the new rule's handle>",
                      persist="nft list ruleset > /etc/nftables.conf (or your ruleset file)")
    table = () if step.table.name == "filter" else ("-t", step.table.name)
    match = ("-p", "tcp") + (("-s", src) if src else ()) + ("--dport", str(port), "-j", "ACCEPT")
    if step.rule is not None:
        argv = (tool, "-w", *table, "-I", chain, str(step.rule.position), *match)
        what = f"{tool}: accept before rule {step.rule.position} of {chain}"
    else:
        argv = (tool, "-w", *table, "-A", chain, *match)
        what = f"{tool}: accept at the end of {chain} (before its policy)"
    save = "ip6tables-save > /etc/iptables/rules.v6" if tool.startswith("ip6") else \
        "iptables-save > /etc/iptables/rules.v4"
    return Action(ActionKind.FIREWALL_RULE, f"{what}: {' '.join(match)}", argv=argv, tool=tool, exposes=exposes,
                  refused=refused, undo=shlex.join((tool, "-w", *table, "-D", chain, *match)),
                  persist=f"{save} (netfilter-persistent save)")


def proxy_address_actions(snap: Snapshot, ctx: Context) -> list[Action]:
    """proxy_upstream where the upstream runs on this host on the same port but another address
    (loopback only, or `localhost` resolving to the other family): point the proxy's line at the
    address the upstream listens on (narrower than binding the upstream wider), then restart the
    proxy. Empty when no upstream is like that."""
    from portdoctor.checks.proxy import hops
    from portdoctor.checks import endpoint_key

    out: list[Action] = []
    for h in hops(snap, ctx.target):
        if h.unix:
            continue
        seen = ctx.followups.get(endpoint_key(h.host, h.port)) if not h.name else None
        if seen is not None and seen.state.value == "open":
            continue
        on_port = [x for x in snap.listeners if x.port == h.port and not addresses.is_wildcard(x.address)]
        if not on_port or (not h.name and any(addresses.same_address(x.address, h.host) for x in on_port)):
            continue
        if h.name and h.host not in ("localhost", "localhost.localdomain"):
            continue
        up = h.upstream
        raw = (up.host or "").strip()
        old = f"{raw}:{h.port}"
        if up.line is None or old not in up.text:
            continue
        new_addr = on_port[0].address
        new = f"{addresses.endpoint(new_addr, h.port)}"
        proc = snap.processes.get(h.proxy.pid)
        edit = Action(ActionKind.EDIT_SETTING, f"{up.file} line {up.line}: {up.directive} {old} -> {new} "
                      f"(the upstream listens on {on_port[0].endpoint})", path=up.file, line=up.line,
                      key=up.directive, old=old, new=new, service=h.proxy.kind, undo=f"restore the backup of {up.file}")
        out += [edit, restart_action(snap, proc, "so it uses the new upstream address")]
        break
    return out


def _split(command: str | None) -> list[str]:
    if not command:
        return []
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


# --------------------------------------------------------------------------- attach


def actions_for(snap: Snapshot, ctx: Context, finding: Finding) -> list[Action]:
    """The actions that fix one finding (empty when its cause has none)."""
    if finding.severity is Severity.INFO:
        return []
    cause = finding.cause
    if cause in (Cause.FIREWALL_REJECT, Cause.FIREWALL_DROP):
        return ctx.derive("remedy.firewall", lambda: firewall_actions(snap, ctx))
    if cause is Cause.WRONG_INTERFACE:
        fam = 6 if any(":" in w for w in finding.summary.split() if w.count(":") >= 2) else 4
        return bind_actions(snap, ctx, fam)
    if cause is Cause.WRONG_PORT:
        return port_actions(snap, ctx)
    if cause is Cause.SERVICE_NOT_RUNNING:
        return start_actions(snap, ctx)
    if cause is Cause.PORT_MAPPING:
        return [a for a in start_actions(snap, ctx) if a.tool in ("podman", "docker")]
    if cause is Cause.RESOURCE_EXHAUSTION:
        return resource_actions(snap, ctx, finding)
    return []


def attach(findings: list[Finding], snap: Snapshot, ctx: Context) -> list[Finding]:
    """The findings with an action on their fixes: on the fix whose command is the action's own,
    else as an extra fix after them. A finding of another cause is returned unchanged."""
    out = []
    for f in findings:
        try:
            acts = actions_for(snap, ctx, f)
        except Exception:  # an action we cannot build must not cost the user the diagnosis
            acts = []
        if not acts:
            out.append(f)
            continue
        fixes = list(f.fix)
        for a in acts:
            cmd = shlex.join(a.argv) if a.argv else None
            at = next((i for i, x in enumerate(fixes) if x.action is None and cmd and x.command
                       and x.command.strip() == cmd), None)
            if at is not None:
                fixes[at] = replace(fixes[at], action=a)
            elif a.automatic:
                fixes.append(Fix(f"portdoctor fix: {a.changes}", cmd, a))
            else:  # said as what `fix` will not do, not as a step it offers
                why = a.refused or "how to undo it is not known"
                fixes.append(Fix(f"(not automated by `portdoctor fix`: {why})", None, a))
        out.append(replace(f, fix=tuple(fixes)))
    return out
