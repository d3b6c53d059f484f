"""A listener exists on the port, but not on the address the client uses: wrong_interface.

Covers a loopback-only bind reached from outside, a bind to one specific address reached on
another, and the address-family traps: `localhost` resolving to ::1 while the server listens
on 127.0.0.1 (and the reverse), and IPv6 sockets with IPV6_V6ONLY.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from portdoctor.checks import facts
from portdoctor.checks.listener import known_service, restart_fix
from portdoctor.hostview import holder_container
from portdoctor.model import COMMAND_LINE, Cause, Finding, Fix, Listener, Scope, Severity, State
from portdoctor.snapshot import Snapshot

if TYPE_CHECKING:
    from portdoctor.checks import Context

CHECK = "bind"

# What "listen everywhere" is called in each server's own configuration.
_WIDE_VALUE = {
    "postgresql": "'*'",
    "redis": "* -::*",
    "mysql": "0.0.0.0",
    "mariadb": "0.0.0.0",
    "mongodb": "0.0.0.0",
    "memcached": "0.0.0.0",
    "elasticsearch": "0.0.0.0",
}

_CAVEATS = {
    "postgresql": "PostgreSQL also needs a pg_hba.conf `host` line for the clients' network, or it "
                "rejects them after connecting.",
    "redis": "Redis keeps protected-mode on without a password and then answers outside clients with "
             "an error: set `requirepass` (or an ACL user) before opening it.",
    "mongodb": "Enable authorization before binding MongoDB to a public address.",
}


def check_bind(snap: Snapshot, ctx: Context) -> list[Finding]:
    """wrong_interface when listeners on the port exist but none accepts the client's address."""
    if not facts.target_is_local(snap, ctx):
        return []
    port = ctx.target.port
    socks = facts.listeners_on_port(snap, port)
    if not socks:
        return []
    if all(holder_container(snap, s) is not None and s.scope is not Scope.ALL for s in socks):
        return []  # a container engine holds the port on the address a `-p` named: the mapping check says so
    findings: list[Finding] = []
    done: set[str] = set()
    for address in facts.addresses_to_check(snap, ctx):
        if facts.accepting(snap, address, port):
            continue
        key = facts.unmapped(address)
        if key in done:
            continue
        done.add(key)
        findings.append(_finding(snap, ctx, address, socks))
    return findings


def _finding(snap: Snapshot, ctx: Context, address: str, socks: list[Listener]) -> Finding:
    port = ctx.target.port
    a = facts.ip(facts.unmapped(address))
    fam = 4 if a is not None and a.version == 4 else 6
    probed = {x.address: x for x in ctx.probe.addresses}
    seen_as = probed.get(address)
    symptom = f" (the probe got {seen_as.state.value})" if seen_as is not None else " (the address clients from " \
        f"{ctx.from_addr} reach)"
    evidence = [facts.describe(snap, s) for s in socks]
    evidence.append(f"no listener on port {port} accepts {address}{symptom}")
    open_addrs = [x.address for x in ctx.probe.addresses if x.state is State.OPEN]

    loop_only = all(s.scope is Scope.LOOPBACK for s in socks)
    families = {s.family if not (s.address == "::" and s.v6only is False) else 0 for s in socks}
    family_only = (fam == 4 and families == {6}) or (fam == 6 and families == {4})

    if family_only and facts.is_loopback(address):
        other = "::1" if fam == 4 else "127.0.0.1"
        kind = "IPv6" if fam == 4 else "IPv4"
        summary = (f"The server listens on port {port} over {kind} only ({', '.join(s.address for s in socks)}), "
                   f"but the client connects to {address}.")
        if ctx.target.host == "localhost":
            fams = {x.family for x in ctx.probe.addresses}
            how = "to both families here and the client tried" if fams == {4, 6} else "only to"
            summary += (f" `localhost` resolves {how} {address}: the classic localhost-means-::1 "
                        f"(or 127.0.0.1) trap.")
        fixes = [Fix(f"Connect to the address the server uses: {other}",
                     f"portdoctor probe {'[' + other + ']' if ':' in other else other}:{port}"),
                 _bind_fix(snap, socks, "::" if fam == 4 else "0.0.0.0",
                           "or make the server listen on both families (bind `::` with IPV6_V6ONLY off, or "
                           "bind both 127.0.0.1 and ::1)")]
    elif loop_only:
        summary = (f"The server on port {port} listens on loopback only, so connections to {address} are "
                   f"refused: only clients on this host using {', '.join(sorted({s.address for s in socks}))} "
                   f"get through.")
        fixes = [_bind_fix(snap, socks, None, f"Make the server listen on {address} (or on every address)")]
        fixes.append(Fix("Then allow only the clients that need it through the firewall: binding wider exposes "
                         "the port to every network this host is on", None))
    elif any(s.family == 6 and s.address == "::" and s.v6only for s in socks) and fam == 4:
        # `::` would take IPv4 too but for IPV6_V6ONLY: the fix is an IPv4 listener beside it, not `::` again
        knob = "net.inet6.ip6.v6only" if "net.inet6.ip6.v6only" in snap.sysctls else "net.ipv6.bindv6only"
        why = (f"{knob}=1 on this host makes it the default" if _bindv6only(snap)
               else f"the server sets it itself ({knob} is 0)")
        summary = (f"The server on port {port} listens on `::` with IPV6_V6ONLY set ({why}), so IPv4 "
                   f"connections to {address} are refused.")
        fixes = [_bind_fix(snap, socks, "0.0.0.0", "Also listen on 0.0.0.0 (IPv4), or clear IPV6_V6ONLY with the "
                                                   "server's own v6only option")]
    elif family_only:
        summary = (f"The server on port {port} listens on IPv{4 if fam == 6 else 6} only, but the client "
                   f"connects over IPv{fam} to {address}.")
        fixes = [_bind_fix(snap, socks, "0.0.0.0" if fam == 4 else "::",
                           f"Make the server listen on IPv{fam} too")]
    else:
        bound = ", ".join(sorted({s.address for s in socks}))
        summary = (f"The server on port {port} listens only on {bound}, not on {address}.")
        fixes = [Fix(f"Connect to {bound.split(', ')[0]} instead", None),
                 _bind_fix(snap, socks, None, f"or make the server listen on {address} too (or on every address)")]
    if open_addrs and seen_as is not None:
        summary += f" {', '.join(open_addrs)} accepts."
    info = _service(snap, socks)
    if info is not None and info.name in _CAVEATS and loop_only:
        fixes.append(Fix(_CAVEATS[info.name], None))
    weight = 0.9 if seen_as is not None and seen_as.state is not State.OPEN else 0.8
    severity = Severity.ERROR
    if seen_as is not None and open_addrs and ctx.probe.addresses[0].state is State.OPEN:
        weight, severity = 0.5, Severity.WARNING  # the first address works; only some clients fail
    return Finding(Cause.WRONG_INTERFACE, CHECK, severity, summary,
                   tuple(evidence + _config_evidence(snap, socks)), tuple(fixes), weight)


def _service(snap: Snapshot, socks: list[Listener]):
    for s in socks:
        for proc in facts.owners(snap, s):
            info = known_service(proc)
            if info is not None:
                return info
    return None


def _config_lines(snap: Snapshot, socks: list[Listener]):
    info = _service(snap, socks)
    if info is None:
        return None, []
    # the first bind key a config sets is the address setting (redis lists protected-mode after bind)
    mine = [c for c in snap.configs if c.service == info.name]
    for key in (k for spec in info.configs for k in spec.bind_keys):
        lines = [c for c in mine if c.key == key]
        if lines:
            return info, lines
    return info, []


def _config_evidence(snap: Snapshot, socks: list[Listener]) -> list[str]:
    _info, lines = _config_lines(snap, socks)
    return [f"{c.path}:{c.line}: {c.text.strip()}" for c in lines]


def _bind_fix(snap: Snapshot, socks: list[Listener], wide: str | None, description: str) -> Fix:
    """The bind change, in the server's own configuration file when we know it."""
    info, lines = _config_lines(snap, socks)
    proc = next((p for s in socks for p in facts.owners(snap, s)), None)
    if info is not None and info.configs:
        value = _WIDE_VALUE.get(info.name, wide or "0.0.0.0")
        if lines and lines[-1].path == COMMAND_LINE:
            c = lines[-1]
            flag = c.text.split()[0] if c.text.startswith("-") else f"--{c.key}"
            runtime = (f"\nredis-cli -h {c.value.split()[0].lstrip('-')} CONFIG SET bind '{value}'"
                       if info.name == "redis" else "")
            return Fix(f"{description}: the setting comes from {info.name}'s command line (`{c.text}`), not "
                       f"from a config file: start it with `{flag} {value}` instead"
                       + (", or change it at run time" if runtime else ""),
                       f"# started as: {proc.command if proc else info.name}\n# use: {flag} {value}{runtime}")
        if lines:
            c = lines[-1]
            restart = restart_fix(snap, proc, info.name)
            added = _added_listen(info.name, c.value, wide, _bindv6only(snap))
            if added is not None:  # keep the line that works, add the family it lacks
                cmd = f"# {c.path}: keep line {c.line}\n{c.text.strip()}\n# and add after it\n{added}"
                if restart.command:
                    cmd += f"\n{restart.command}"
                return Fix(f"{description}: add a {c.key} line in {c.path} after line {c.line}", cmd)
            new = _replace(c.text, c.key, c.value, _widened(info.name, c.value, value, wide, _bindv6only(snap)))
            cmd = f"# {c.path}, line {c.line}: change\n{c.text.strip()}\n# to\n{new}"
            if restart.command:
                cmd += f"\n{restart.command}"
            return Fix(f"{description}: set {c.key} in {c.path} line {c.line}", cmd)
        hint = info.bind_key_hint
        if hint:
            where = ", ".join(p for spec in info.configs for p in spec.paths[:1])
            return Fix(f"{description}: in {info.name}'s configuration{f' ({where})' if where else ''} set "
                       f"`{hint}`, then restart it", None)
    if proc is not None:
        examples = f" ({info.bind_key_hint})" if info is not None and info.bind_key_hint else \
            " (e.g. `--host 0.0.0.0`, HOST=0.0.0.0)"
        return Fix(f"{description}: {proc.name} chose the address itself; start it with host 0.0.0.0 "
                   f"(or `::` for both families){examples}", f"# started as: {proc.command}")
    return Fix(description, None)


_HOSTPORT = re.compile(r"^(\[[0-9A-Fa-f:.]*\]|[0-9.]+|localhost|\*):(\d{1,5})(.*)$")


def _bindv6only(snap: Snapshot) -> bool:
    """net.ipv6.bindv6only=1 (Linux) or net.inet6.ip6.v6only=1 (FreeBSD's default): a `::` socket
    takes IPv6 only unless the server clears the option."""
    return (snap.sysctls.get("net.ipv6.bindv6only", "0").strip() == "1"
            or snap.sysctls.get("net.inet6.ip6.v6only", "0").strip() == "1")


def _widened(service: str, old: str, value: str, wide: str | None, bindv6only: bool) -> str:
    """The setting's new value. A value that names a port as well (nginx `listen 127.0.0.1:8080`,
    haproxy `bind`, `host:port` flags) keeps its port and options: only the address widens."""
    m = _HOSTPORT.match(old.strip().rstrip(";"))
    if m is None:
        return value
    port, rest = m.group(2), m.group(3)
    if wide == "::" and not bindv6only:
        host = "[::]"
    else:
        host = "0.0.0.0"
    if service == "nginx":
        # nginx: `listen 8080` is every IPv4 address; `[::]:8080` is IPv6 (and IPv4 unless ipv6only=on,
        # which is nginx's default since 1.3.4: so both families need both lines)
        return f"{port}{rest}" if host == "0.0.0.0" else f"[::]:{port}{rest}"
    return f"{host}:{port}{rest}"


def _added_listen(service: str, old: str, wide: str | None, bindv6only: bool) -> str | None:
    """For nginx, which needs one `listen` per family: the line to add beside the one that works."""
    if service != "nginx":
        return None
    m = _HOSTPORT.match(old.strip().rstrip(";"))
    if m is None:
        return None
    host, port = m.group(1), m.group(2)
    if wide == "0.0.0.0" and host.startswith("[") and host != "[::1]":
        return f"listen {port};"  # an IPv6 wildcard with ipv6only: IPv4 needs a line of its own
    if wide == "::" and not host.startswith("[") and host not in ("127.0.0.1", "localhost"):
        return f"listen [::]:{port};"
    return None


def _replace(text: str, key: str, old: str, new: str) -> str:
    line = text.strip().lstrip("#").strip()
    if old and old in line:
        quoted_old = f"'{old}'"
        if quoted_old in line and new.startswith("'"):
            return line.replace(quoted_old, new, 1)
        return line.replace(old, new.strip("'") if f"'{old}'" in line else new, 1)
    sep = " = " if "=" in line else " "
    return f"{key}{sep}{new}"
