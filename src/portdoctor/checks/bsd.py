"""macOS and FreeBSD causes: pf / ipfw rules, the Application Firewall, launchd / Homebrew /
rc.d services that are not running, and Docker Desktop's published ports.

Pure: everything comes from `snap.bsd` (portdoctor.platformfacts) and the probe. What the
platforms do, as the checks rely on it:

- pf: last matching rule wins unless `quick`; `block return` / `return-rst` / `return-icmp`
  refuse, `block drop` and plain `block` (block-policy drop) leave the client to time out.
  ipfw: first match; `reset` and `unreach port` refuse, `deny` drops. Both evaluated by
  portdoctor.firewall.bsdfilter. A connection a Mac makes to one of its own addresses goes
  over lo0.
- The Application Firewall (socketfilterfw) filters per application and never answers a
  blocked connection: the client hangs until it times out. It does not filter loopback.
- Docker Desktop: a published port is held on the Mac by com.docker.backend (older releases:
  vpnkit), which accepts every connection and then forwards it into the VM; when nothing in the
  container listens on the container's own interface (the app bound its 127.0.0.1), the
  forward fails and the Mac's client sees the accepted connection reset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from portdoctor.addresses import endpoint, is_loopback
from portdoctor.checks import facts
from portdoctor.firewall.bsdfilter import FilterFlow, FilterRule, evaluate, first_match_order
from portdoctor.model import Cause, Finding, Fix, Severity, State
from portdoctor.platformfacts import BsdFacts, PacketFilter
from portdoctor.snapshot import Snapshot

if TYPE_CHECKING:
    from portdoctor.checks import Context

CHECK = "bsd"
DOCKER_HOLDERS = ("com.docker.backend", "com.docker.vpnkit", "vpnkit", "vpnkit-bridge", "com.docker.supervisor")
ALF = "/usr/libexec/ApplicationFirewall/socketfilterfw"


def check_bsd(snap: Snapshot, ctx: Context) -> list[Finding]:
    """Findings from the macOS / FreeBSD facts (nothing on Linux: `snap.bsd` is None there)."""
    bsd = snap.bsd
    if bsd is None:
        return []
    out: list[Finding] = []
    local = facts.target_is_local(snap, ctx)
    if local:
        for fw in bsd.filters:
            out += _filter(snap, ctx, fw)
        out += _services(snap, ctx, bsd)
        out += _docker(snap, ctx, bsd)
    out += _app_firewall(snap, ctx, bsd, local)
    return out


# --------------------------------------------------------------------------- pf / ipfw


def _flows(snap: Snapshot, ctx: Context) -> list[tuple[FilterFlow, str]]:
    """(flow, who) for this host's own probe of each failing address and for --from clients."""
    port = ctx.target.port
    out = []
    addrs = facts.failed_addresses(ctx) or [a.address for a in ctx.probe.addresses]
    for a in addrs:
        # macOS and FreeBSD route a connection to one of the host's own addresses over lo0
        out.append((FilterFlow(a, port, src=a, iface="lo0"), "this host's own probe"))
    if ctx.from_addr and not facts.is_local(snap, ctx.from_addr):
        dst = facts.client_address(snap, ctx) or next((a for a in addrs if not is_loopback(a)), None)
        if dst is None:
            dst = next((x.address for x in snap.addresses if not is_loopback(x.address)
                        and x.family == (6 if ":" in ctx.from_addr else 4)), None)
        if dst:
            out.append((FilterFlow(dst, port, src=ctx.from_addr, iface=_arrival_iface(snap, ctx.from_addr, dst)),
                        f"clients from {ctx.from_addr}"))
    return out


def _arrival_iface(snap: Snapshot, client: str, dst: str) -> str | None:
    """The interface a client's packets arrive on: the one whose subnet holds the client, else
    the one that owns the destination address (None when neither is known)."""
    import ipaddress

    try:
        cip = ipaddress.ip_address(client)
    except ValueError:
        return None
    for a in snap.addresses:
        try:
            if cip in ipaddress.ip_interface(f"{a.address}/{a.prefixlen}").network and not is_loopback(a.address):
                return a.ifname
        except ValueError:
            continue
    return next((a.ifname for a in snap.addresses if a.address == dst), None)


def _rule_words(fw: PacketFilter, rule: FilterRule) -> str:
    return f"pf rule @{rule.number}: {rule.text}" if fw.tool == "pf" else f"ipfw rule {rule.number}: {rule.text}"


def _effect(rule: FilterRule) -> str:
    if rule.verdict == "reject":
        how = "an ICMP port unreachable" if rule.block in ("return-icmp", "unreach-port") else "a TCP reset"
        return f"answers with {how}, so the client gets ECONNREFUSED (connection refused)"
    if rule.verdict == "unreachable":
        return "answers with ICMP unreachable, so the client gets EHOSTUNREACH"
    return "drops the SYN without an answer, so the client waits until it times out"


def _table_entry(fw: PacketFilter, rule: FilterRule, src: str | None) -> tuple[str, str] | None:
    """(table, entry) of the pf table in the rule's source that holds the client, if any."""
    import ipaddress

    if not src:
        return None
    for spec in rule.src:
        if spec.startswith("<") and spec.endswith(">"):
            for entry in fw.tables.get(spec[1:-1], ()):
                try:
                    if ipaddress.ip_address(src) in ipaddress.ip_network(entry.lstrip("!"), strict=False):
                        return spec[1:-1], entry
                except ValueError:
                    continue
    return None


def _filter_fixes(snap: Snapshot, fw: PacketFilter, rule: FilterRule | None, port: int, src: str | None) -> list[Fix]:
    who = f"from {src} " if src else ""
    if fw.tool == "pf":
        pass_rule = f"pass in quick proto tcp {'from ' + src + ' ' if src else ''}to any port {port}"
        conf = "/etc/pf.conf"
        fixes = []
        hit = _table_entry(fw, rule, src) if rule is not None else None
        if hit:
            fixes.append(Fix(f"Take {hit[1]} out of pf table <{hit[0]}> (at once; also remove it from the file or "
                             f"pf.conf line that fills the table, or it comes back at the next reload)",
                             f"sudo pfctl -t {hit[0]} -T delete {hit[1]}"))
        reload = f"sudo pfctl -nf {conf} && sudo pfctl -f {conf}"
        let_through = Fix(f"Let port {port} {who}through: add `{pass_rule}` to {conf}"
                          + (f" above `{rule.text}`" if rule is not None else "")
                          + " (`quick` makes it decide at once; a rule without quick would have to come after "
                            "every block rule, since pf's last match wins), then reload pf", reload)
        specific = rule is not None and bool(rule.dport or rule.src)
        if specific:
            fixes.append(Fix(f"Delete or narrow the rule `{rule.text}` in {conf} (or the anchor file that loads "
                             f"it), then reload pf", reload))
        fixes.append(let_through)
        fixes.append(Fix("Check the loaded rules and their counters afterwards",
                         f"sudo pfctl -vvsr | grep -A2 'port = {port}'"))
        return fixes
    allow = f"allow tcp from {src or 'any'} to me {port} setup"
    n = max(1, (rule.number if rule else 65535) - 1)
    fixes = []
    if rule is not None and rule.number != 65535:
        fixes.append(Fix(f"Remove ipfw rule {rule.number} (and from the firewall script in /etc/rc.conf's "
                         f"firewall_script / firewall_myservices so it does not come back)",
                         f"sudo ipfw delete {rule.number}"))
    fixes.append(Fix(f"or allow port {port} {who}before it", f"sudo ipfw add {n} {allow}"))
    return fixes


def _filter(snap: Snapshot, ctx: Context, fw: PacketFilter) -> list[Finding]:
    if fw.enabled is False or not fw.rules:
        return []
    port = ctx.target.port
    ordered = first_match_order(fw.rules) if fw.tool == "pf" else [r for r in fw.rules if r.action != "none"]
    local = tuple(x.address for x in snap.addresses)
    ifaddrs: dict[str, tuple[str, ...]] = {}
    for x in snap.addresses:
        ifaddrs[x.ifname] = ifaddrs.get(x.ifname, ()) + (f"{x.address}/{x.prefixlen}",)
    failing = ctx.probe.state is not State.OPEN
    out: list[Finding] = []
    seen: set[int] = set()
    maybe_seen: set[int] = set()
    default = fw.default
    opened = {a.address for a in ctx.probe.addresses if a.state is State.OPEN}
    for flow, who in reversed(_flows(snap, ctx)):  # the --from clients first: their verdict is definite
        if flow.iface is not None and flow.iface in fw.skip:
            continue  # `set skip on IFACE`: pf does not look at this interface
        res = evaluate(ordered, flow, fw.tables, local, default, ifaddrs)
        if who == "this host's own probe" and flow.dst in opened and res.verdict != "pass":
            # the kernel let this very connection through: something the rules do not show
            # (an anchor, `set skip`) passes it; do not contradict what was seen
            continue
        order_note = ("pf: the last matching rule decides unless one is `quick`" if fw.tool == "pf"
                      else "ipfw: the first matching rule decides")
        if res.verdict != "pass" and res.rule is not None and res.rule.number not in seen:
            seen.add(res.rule.number)
            rule = res.rule
            cause = Cause.FIREWALL_REJECT if rule.verdict in ("reject", "unreachable") else Cause.FIREWALL_DROP
            is_probe = who == "this host's own probe"
            weight = 0.93 if (not is_probe or failing) else 0.5
            # ipfw rules before it that may send the packet elsewhere (skipto, nat, divert, ...)
            steer = [r for r in fw.rules if fw.tool == "ipfw" and r.action == "none" and r.unsupported
                     and r.number < rule.number]
            if steer:
                weight = min(weight, 0.75)
                order_note += "; not modelled, and may take the packet elsewhere first: " + ", ".join(
                    f"rule {r.number} ({r.unsupported})" for r in steer[:3])
            out.append(Finding(
                cause, CHECK, Severity.ERROR if (failing or not is_probe) else Severity.WARNING,
                f"{fw.tool} blocks {endpoint(flow.dst, port)} for {who}: {_rule_words(fw, rule)} {_effect(rule)}.",
                (_rule_words(fw, rule) + (f" (matched {rule.packets} packets)" if rule.packets else ""),
                 f"flow: {flow.src or 'any client'} -> {endpoint(flow.dst, port)}/tcp"
                 + (f" on {flow.iface}" if flow.iface else ""), order_note),
                tuple(_filter_fixes(snap, fw, rule, port, None if is_probe else flow.src)), weight))
        elif res.verdict != "pass" and res.rule is None:
            cause = Cause.FIREWALL_DROP if default == "drop" else Cause.FIREWALL_REJECT
            out.append(Finding(cause, CHECK, Severity.ERROR,
                               f"{fw.tool}'s default rule blocks {endpoint(flow.dst, port)} for {who}.",
                               (f"no {fw.tool} rule passes port {port}; the default is {default}", order_note),
                               tuple(_filter_fixes(snap, fw, None, port, flow.src if who != "this host's own probe"
                                                   else None)), 0.85))
        for rule in res.some_clients:
            if rule.action != "block" or rule.number in seen or rule.number in maybe_seen:
                continue
            maybe_seen.add(rule.number)
            cause = Cause.FIREWALL_REJECT if rule.verdict in ("reject", "unreachable") else Cause.FIREWALL_DROP
            srcs = ", ".join(rule.src) if rule.src else "some clients"
            out.append(Finding(
                cause, CHECK, Severity.WARNING,
                f"{fw.tool} blocks port {port} for clients from {'not ' if rule.src_neg else ''}{srcs}: "
                f"{_rule_words(fw, rule)} {_effect(rule)}. This host's own connection is not affected; "
                f"pass --from ADDR to judge a given client.",
                (_rule_words(fw, rule), order_note),
                tuple(_filter_fixes(snap, fw, rule, port, None)), 0.5))
    return out


# --------------------------------------------------------------------------- the Application Firewall


def _app_firewall(snap: Snapshot, ctx: Context, bsd: BsdFacts, local: bool) -> list[Finding]:
    alf = bsd.app_firewall
    if alf is None or not alf.enabled:
        return []
    timed_out = any(a.state is State.TIMEOUT for a in ctx.probe.addresses)
    remote_probe = not all(is_loopback(a.address) for a in ctx.probe.addresses) and not local
    from_elsewhere = bool(ctx.from_addr) and not facts.is_local(snap, ctx.from_addr)
    # it filters what comes from other machines only: this host's own connections (lo0) pass
    clients_hang = (timed_out and remote_probe) or from_elsewhere
    socks = facts.listeners_on_port(snap, ctx.target.port)
    procs = [p for s in socks for p in facts.owners(snap, s)]
    names = {p.name for p in procs} | {p.cmdline[0].rsplit("/", 1)[-1] for p in procs if p.cmdline}
    blocked = [a for a in alf.blocked_apps if a.rstrip("/").rsplit("/", 1)[-1] in names]
    evidence = [f"socketfilterfw --getglobalstate: enabled"
                + ("; block all incoming connections" if alf.block_all else ""),
                f"stealth mode {'on' if alf.stealth else 'off'}"]
    evidence += [f"socketfilterfw --listapps: {a} ( Block incoming connections )" for a in blocked]
    fixes = []
    for a in blocked:
        fixes.append(Fix(f"Allow {a} to accept incoming connections", f"sudo {ALF} --unblockapp {a}"))
    if alf.block_all:
        fixes.append(Fix("Stop blocking all incoming connections", f"sudo {ALF} --setblockall off"))
    if not fixes:
        fixes.append(Fix("Allow the server's program in the Application Firewall (System Settings > Network > "
                         "Firewall > Options), or from a shell", f"sudo {ALF} --add PROGRAM && sudo {ALF} "
                                                                 f"--unblockapp PROGRAM"))
    blocking = bool(blocked or alf.block_all)
    if not (clients_hang or blocking):
        return []
    weight = (0.85 if blocking else 0.45) if clients_hang else 0.3
    return [Finding(
        Cause.FIREWALL_DROP, CHECK, Severity.ERROR if weight > 0.5 else Severity.WARNING,
        "The macOS Application Firewall is on"
        + (f" and blocks {', '.join(blocked)}" if blocked else " and blocks all incoming connections"
           if alf.block_all else "")
        + ": it does not refuse a blocked connection, it leaves it unanswered, so "
        + ("the client hangs until it times out" if clients_hang else "clients from other machines will hang until "
           "they time out") + " (connections from this Mac itself are not filtered).",
        tuple(evidence), tuple(fixes), weight)]


# --------------------------------------------------------------------------- launchd, Homebrew, rc.d


def _services(snap: Snapshot, ctx: Context, bsd: BsdFacts) -> list[Finding]:
    port = ctx.target.port
    if facts.listeners_on_port(snap, port):
        return []
    out: list[Finding] = []
    brew = {b.label: b for b in bsd.brew if b.label}
    for job in bsd.launchd:
        if job.pid is not None and job.state in (None, "running"):
            continue
        b = brew.get(job.label)
        name = b.name if b else job.label
        ev = [f"launchctl print {job.domain + '/' if job.domain else ''}{job.label}: state = {job.state or 'not running'}"
              + (f", last exit code = {job.last_exit}" if job.last_exit is not None else "")]
        if job.program:
            ev.append(f"program = {job.program}")
        if b:
            ev.append(f"brew services list: {b.name} {b.status}" + (f" (exit code {b.exit_code})" if b.exit_code
                                                                    is not None else ""))
        log = job.stderr_path or job.stdout_path
        fixes = []
        if log:
            fixes.append(Fix(f"Read why {name} stopped", f"tail -n 50 {log}"))
        if b:
            fixes.append(Fix(f"Start {name} again once the cause is fixed (Homebrew keeps it loaded in launchd)",
                             f"brew services restart {b.name}"))
        else:
            target = f"{job.domain}/{job.label}" if job.domain else job.label
            fixes.append(Fix(f"Start {job.label} again once the cause is fixed",
                             f"launchctl kickstart -k {target}"))
        crashed = job.last_exit not in (None, 0)
        out.append(Finding(
            Cause.SERVICE_NOT_RUNNING, CHECK, Severity.ERROR,
            f"Nothing listens on port {port}: launchd job {job.label} is loaded but not running"
            + (f" (it last exited with status {job.last_exit})" if crashed else "") + ".",
            tuple(ev), tuple(fixes), 0.9 if crashed else 0.85))
    done = {j.label for j in bsd.launchd}
    for b in bsd.brew:
        if b.label in done or b.status in ("started", "scheduled", "none"):
            continue
        if not _brew_related(b.name, ctx):
            continue
        out.append(Finding(
            Cause.SERVICE_NOT_RUNNING, CHECK, Severity.ERROR,
            f"Nothing listens on port {port}: Homebrew service {b.name} is {b.status}"
            + (f" (exit code {b.exit_code})" if b.exit_code is not None else "") + ".",
            (f"brew services list: {b.name} {b.status}",),
            (Fix(f"Start {b.name}", f"brew services restart {b.name}"),), 0.85))
    for rc in bsd.rcd:
        if rc.running is not False:
            continue
        fixes = [Fix(f"Read why {rc.name} is not running", f"tail -n 50 /var/log/messages")]
        if not rc.enabled:
            fixes.append(Fix(f"Enable {rc.name} at boot", f"sysrc {rc.name}_enable=YES"))
        fixes.append(Fix(f"Start {rc.name}", f"service {rc.name} start"))
        out.append(Finding(
            Cause.SERVICE_NOT_RUNNING, CHECK, Severity.ERROR,
            f"Nothing listens on port {port}: the rc.d service {rc.name} is not running"
            + ("" if rc.enabled else f" (and {rc.name}_enable is not set in rc.conf)") + ".",
            (f"service {rc.name} status: {rc.status}", f"service -e: {'lists' if rc.enabled else 'does not list'} "
                                                       f"{rc.name}"),
            tuple(fixes), 0.88))
    return out


def _brew_related(name: str, ctx: Context) -> bool:
    from portdoctor import services

    base = name.split("@")[0].lower()
    if ctx.service and ctx.service.lower().split("@")[0] == base:
        return True
    return any(base == s.name.lower() or base in (n.lower() for n in s.process_names)
               for s in services.by_port(ctx.target.port))


# --------------------------------------------------------------------------- Docker Desktop


def _docker(snap: Snapshot, ctx: Context, bsd: BsdFacts) -> list[Finding]:
    port = ctx.target.port
    socks = facts.listeners_on_port(snap, port)
    holders = [(s, p) for s in socks for p in facts.owners(snap, s) if p.name in DOCKER_HOLDERS]
    published = [(c, p) for c in bsd.docker or () for p in c.ports if p.host_port == port]
    if not holders and not published:
        return []
    holder = holders[0][1] if holders else None
    who = f"{holder.name} (pid {holder.pid})" if holder else "Docker Desktop"
    ev = [facts.describe(snap, s) for s, _ in holders[:2]]
    ev += [f"docker ps: {c.name} ({c.image}) {c.state}, {p.host_ip}:{p.host_port}->{p.container_port}/tcp"
           for c, p in published]
    if published:
        c, p = published[0]
        if c.state and c.state != "running":
            return [Finding(Cause.SERVICE_NOT_RUNNING, CHECK, Severity.ERROR,
                            f"Port {port} is published by Docker Desktop for container {c.name}, which is {c.state}.",
                            tuple(ev), (Fix(f"See why {c.name} stopped", f"docker logs --tail 50 {c.name}"),
                                        Fix(f"Start it", f"docker start {c.name}")), 0.9)]
    reset = any(a.errno == "ECONNRESET" for a in ctx.probe.addresses)
    accepted = reset or ctx.probe.state is State.OPEN
    if not accepted:
        return []
    target_c = f"container {published[0][0].name} port {published[0][1].container_port}" if published else \
        "the container's port"
    cport = published[0][1].container_port if published else "PORT"
    cname = published[0][0].name if published else "CONTAINER"
    summary = (f"Port {port} is a Docker Desktop published port: {who} accepts on the Mac and forwards to "
               f"{target_c}"
               + (", and the connection is then reset: nothing in the container answers on its port "
                  f"{cport}, most often because the app listens on the container's own 127.0.0.1 "
                  f"(reachable only from inside the container)." if reset else "."))
    fixes = (Fix(f"Make the app inside {cname} listen on 0.0.0.0 (all the container's interfaces), "
                 f"not 127.0.0.1 or localhost: e.g. `--host 0.0.0.0`, HOST=0.0.0.0, or bind 0.0.0.0:{cport} in its "
                 f"config; then recreate the container", None),
             Fix(f"Check where it listens inside the container", f"docker exec {cname} netstat -ltn"),
             Fix("and read its log", f"docker logs --tail 50 {cname}"))
    return [Finding(Cause.PORT_MAPPING, CHECK, Severity.ERROR if reset else Severity.INFO, summary, tuple(ev),
                    fixes if reset else fixes[1:], 0.9 if reset else 0.2)]
