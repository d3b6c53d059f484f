"""Can the client reach the host at all? dns and host_unreachable, and what a client-side run
can and cannot tell about a remote server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from portdoctor.addresses import endpoint
from portdoctor.checks import facts
from portdoctor.hostfacts import DnsAnswer
from portdoctor.model import Cause, Finding, Fix, Severity, State
from portdoctor.snapshot import Snapshot

if TYPE_CHECKING:
    from portdoctor.checks import Context

CHECK = "reachability"


def _route_text(snap: Snapshot, address: str) -> str | None:
    for r in snap.routes:
        if r.destination == address:
            if r.kind in ("unreachable", "prohibit", "blackhole", "none"):
                return f"route to {address}: {r.kind} (this host has no usable route)"
            via = f" via {r.gateway}" if r.gateway else " (on-link)"
            return f"route to {address}: dev {r.ifname}{via}, source {r.source}"
    return None


def _route(snap: Snapshot, address: str):
    return next((r for r in snap.routes if r.destination == address), None)


def check_reachability(snap: Snapshot, ctx: Context) -> list[Finding]:
    """dns when the name does not resolve (or resolves away from this server);
    host_unreachable when no route or no host answers."""
    t = ctx.target
    if ctx.probe.state is State.DNS_ERROR:
        evidence = [f"getaddrinfo({t.host!r}): {ctx.probe.dns_error}"]
        ns = snap.names.nameservers if snap.names else ()
        if ns:
            evidence.append("resolvers in /etc/resolv.conf: " + ", ".join(ns))
        told = _dns_words(snap.names.dns_answers if snap.names else None, t.host)
        if told is not None:
            what, line, fix = told
            evidence.append(line)
            return [Finding(Cause.DNS, CHECK, Severity.ERROR,
                            f"{t.host!r} does not resolve: {what}. No connection was attempted.",
                            tuple(evidence), (fix, Fix("Check what the resolver answers", f"getent ahosts {t.host}")),
                            0.95)]
        fixes = [Fix(f"Check the spelling of {t.host!r} and ask the resolver directly",
                     f"getent ahosts {t.host}")]
        if "resolver did not answer" in (ctx.probe.dns_error or ""):
            fixes.append(Fix("The resolver itself did not answer: check that a nameserver from "
                             "/etc/resolv.conf is reachable", None))
        fixes.append(Fix("For a name only this network knows, add it to /etc/hosts (or to the DNS zone)",
                         f"echo '<address> {t.host}' >> /etc/hosts"))
        return [Finding(Cause.DNS, CHECK, Severity.ERROR,
                        f"{t.host!r} does not resolve ({ctx.probe.dns_error}): no connection was attempted.",
                        tuple(evidence), tuple(fixes), 0.95)]

    shadow = _hosts_file_override(snap, ctx)
    if shadow:
        return shadow
    if facts.target_is_local(snap, ctx):
        return _stale_addresses(snap, ctx)

    findings: list[Finding] = []
    addrs = ctx.probe.addresses
    is_name = facts.ip(t.host) is None
    # A name that resolves away from this host while a listener here has the port.
    if is_name and facts.listeners_on_port(snap, t.port) and snap.addresses:
        here = ", ".join(sorted({a.address for a in snap.addresses if not facts.is_loopback(a.address)})[:4])
        entries = snap.names.hosts_entries if snap.names else ()
        fqdn = snap.names.dns_answers.qname if snap.names and snap.names.dns_answers else None
        via = (f" (as {fqdn}, completed with the search list of /etc/resolv.conf)"
               if fqdn and fqdn.rstrip(".") != t.host.rstrip(".") else "")
        ev = [f"{t.host}{via} resolves to {', '.join(a.address for a in addrs)}; this host's addresses are {here}",
              *(facts.describe(snap, s) for s in facts.listeners_on_port(snap, t.port))]
        ev += [f"/etc/hosts:{e.line}: {e.text}" for e in entries]
        findings.append(Finding(
            Cause.DNS, CHECK, Severity.ERROR if ctx.probe.state is not State.OPEN else Severity.WARNING,
            f"{t.host}{via} resolves to {addrs[0].address}, which is not this host, although a service here "
            f"listens on port {t.port}: clients using the name reach another machine (a stale DNS record "
            f"or /etc/hosts entry?).",
            tuple(ev),
            (Fix(f"Point {fqdn or t.host} at this host's address (DNS record or /etc/hosts)",
                 f"getent ahosts {t.host}"),
             Fix(f"If the service is meant to run on {addrs[0].address}, run this diagnosis there instead", None)),
            0.7 if ctx.probe.state is not State.OPEN else 0.35))

    unreachable = [a for a in addrs if a.state is State.UNREACHABLE]
    if unreachable and ctx.probe.state is not State.OPEN:
        a = unreachable[0]
        route = _route(snap, a.address)
        ev = [f"connect to {a.address}: {a.errno} after {a.seconds:.2f} s"]
        rt = _route_text(snap, a.address)
        if rt:
            ev.append(rt)
        if route is not None and route.kind in ("unreachable", "prohibit", "blackhole", "none"):
            summary = f"This host has no route to {a.address}: the packet never leaves."
            fixes = (Fix("Add a route (or fix the address)", f"ip route get {a.address}"),)
        elif a.errno == "ENETUNREACH":
            summary = f"The network of {a.address} is unreachable from this host."
            fixes = (Fix("Check this host's routes and gateway", f"ip route get {a.address}"),)
        elif route is not None and not route.gateway and a.seconds >= 2.5:
            summary = (f"{a.address} is on this host's link ({route.ifname}) but did not answer ARP/neighbour "
                       f"discovery: the host is down, or the address is wrong.")
            fixes = (Fix("Check the host is up and owns this address", f"ip neigh show {a.address}"),
                     Fix("Check the client uses the right address (a changed IP or a stale DNS record)", None))
        else:
            summary = (f"{a.address} is unreachable ({a.errno}): a router or the host answered with ICMP "
                       f"unreachable (a firewall rejecting with icmp-host-prohibited does this too), or the "
                       f"host is down.")
            fixes = (Fix("Trace where the path stops", f"tracepath -n {a.address}"),
                     Fix(f"On the server, look for a rule rejecting with icmp-host-prohibited: run "
                         f"`portdoctor diagnose :{t.port}` there", None))
        findings.append(Finding(Cause.HOST_UNREACHABLE, CHECK, Severity.ERROR, summary, tuple(ev),
                                fixes, 0.9))
        return findings

    if ctx.probe.state is State.TIMEOUT:
        a = addrs[0]
        ev = [f"connect to {a.address}: no answer within {ctx.probe.timeout:g} s"]
        rt = _route_text(snap, a.address)
        if rt:
            ev.append(rt)
        findings.append(Finding(
            Cause.FIREWALL_DROP, CHECK, Severity.ERROR,
            f"{a.address} did not answer at all: most often a firewall drops the packets (on the server, "
            f"or in between); a host that is down or a server whose accept queue is full look the same "
            f"from here.",
            tuple(ev),
            (Fix(f"On the server, run `portdoctor diagnose :{t.port} --from <this host's address>` to find the "
                 f"rule or the full queue", None),),
            0.4))
    elif ctx.probe.state is State.REFUSED:
        a = next(x for x in addrs if x.state is State.REFUSED)
        findings.append(Finding(
            Cause.UNKNOWN, CHECK, Severity.ERROR,
            f"{a.address} answered but nothing accepted on port {t.port}. From this side the causes look "
            f"alike (service down, another port, loopback-only bind, a firewall reject); the server can tell "
            f"them apart.",
            (f"connect to {a.address}:{t.port}: {a.errno} after {a.seconds * 1000:.1f} ms",),
            (Fix("Run portdoctor on the server", f"portdoctor diagnose :{t.port} --from "
                 f"{_source(snap, a.address) or '<this host address>'}"),
             Fix("or, with SSH access to it, from here: both ends in one diagnosis",
                 f"portdoctor diagnose {endpoint(t.host, t.port)} --ssh <user>@{a.address}")),
            0.3))
    return findings


def _source(snap: Snapshot, address: str) -> str | None:
    r = _route(snap, address)
    return r.source if r is not None else None


def server_side_limitations(snap: Snapshot, ctx: Context) -> list[str]:
    """What a run on a client cannot see of a remote server, and the command to run there."""
    if ctx.probe.state is State.DNS_ERROR or facts.target_is_local(snap, ctx):
        return []
    first = ctx.probe.addresses[0].address if ctx.probe.addresses else ctx.target.host
    src = _source(snap, first)
    return [f"{ctx.target.host} ({first}) is not this host, so the listeners, bind addresses, firewall and "
            f"resources of {first} were not inspected: run `portdoctor diagnose :{ctx.target.port}"
            + (f" --from {src}" if src else "") + f"` on {first}, or `portdoctor diagnose "
            f"{endpoint(ctx.target.host, ctx.target.port)} --ssh <user>@{first}` from here"]


def _stale_addresses(snap: Snapshot, ctx: Context) -> list[Finding]:
    """A name with several addresses, some of them this host's, and others that fail: a stale or
    wrong record sends part of the clients elsewhere (those that do not try the next address)."""
    t = ctx.target
    if facts.ip(t.host) is not None or t.is_this_host or len(ctx.probe.addresses) < 2:
        return []
    away = [a for a in ctx.probe.addresses if not facts.is_local(snap, a.address) and a.state is not State.OPEN]
    here = [a for a in ctx.probe.addresses if facts.is_local(snap, a.address)]
    if not away or not here:
        return []
    first_fails = ctx.probe.addresses[0] in away
    bad = ", ".join(a.address for a in away)
    return [Finding(
        Cause.DNS, CHECK, Severity.ERROR,
        f"{t.host} resolves to {bad} as well as to this host ({', '.join(a.address for a in here)}); {bad} is "
        f"not this host and is {away[0].state.value}: a stale or wrong record sends "
        + ("every client that tries the first address only" if first_fails else "part of the clients")
        + " to a host that does not serve the port.",
        tuple([f"{t.host} -> " + ", ".join(f"{a.address} ({a.state.value})" for a in ctx.probe.addresses),
               *(f"{a.address} is not an address of this host" for a in away)]),
        (Fix(f"Remove {bad} from the record of {t.host} (DNS or /etc/hosts)", f"getent ahosts {t.host}"),),
        0.75 if first_fails else 0.6)]


def _hosts_file_override(snap: Snapshot, ctx: Context) -> list[Finding]:
    """/etc/hosts sends the name somewhere DNS does not, and the client fails there."""
    names = snap.names
    entries = names.hosts_entries if names else ()
    dns = names.dns_answers if names else None
    in_dns = list(dict.fromkeys(dns.addresses)) if dns else []
    if not entries or not in_dns or ctx.probe.state is State.OPEN:
        return []
    from_hosts = [e.address for e in entries]
    if set(in_dns) <= set(from_hosts):
        return []
    t = ctx.target
    lines = [f"/etc/hosts:{e.line}: {e.text}" for e in entries]
    first = ctx.probe.addresses[0] if ctx.probe.addresses else None
    return [Finding(
        Cause.DNS, CHECK, Severity.ERROR,
        f"{t.host} resolves through /etc/hosts to {', '.join(from_hosts)}"
        + (" (this host)" if all(facts.is_local(snap, a) for a in from_hosts) else "")
        + f", but DNS says {', '.join(in_dns)}: the hosts file wins, so clients here go to the wrong place"
        + (f" and get {first.state.value}" if first is not None else "") + ".",
        tuple([*lines, f"DNS ({', '.join(names.nameservers if names else ())}): {t.host} -> {', '.join(in_dns)}",
               *([f"connect to {first.address}:{t.port}: {first.errno or first.state.value}"] if first else [])]),
        (Fix(f"Remove or correct the /etc/hosts line for {t.host} (Debian adds `127.0.1.1 <hostname>` at "
             f"install time)", f"sed -i.bak '{entries[0].line}d' /etc/hosts  # line {entries[0].line}: {entries[0].text}"),
         Fix(f"Then check what clients get: {', '.join(in_dns)}", f"getent ahosts {t.host}")),
        0.85)]


def _dns_words(answers: DnsAnswer | None, host: str) -> tuple[str, str, Fix] | None:
    """What DNS itself said about a name getaddrinfo could not resolve: (summary, evidence, fix)."""
    error = answers.error if answers else None
    if answers is None or not error:
        return None
    chain = answers.cname
    if error == "NoAnswer" and chain:
        last = chain[-1]
        return (f"it is an alias (CNAME) of {' -> '.join(chain)}, and {last} has no A or AAAA record",
                f"DNS: {host} CNAME {' -> '.join(chain)}; {last} has no address record",
                Fix(f"Give {last} an address record (or point the alias at a name that has one)", None))
    if error == "NoAnswer":
        return ("the name exists in DNS but has no A or AAAA record",
                f"DNS: {host} exists, no A/AAAA record", Fix(f"Add an address record for {host}", None))
    if error == "NXDOMAIN":
        tried = answers.qnames or (host,)
        return (f"DNS says no such name (NXDOMAIN; tried {', '.join(tried)})",
                f"DNS: NXDOMAIN for {', '.join(tried)}",
                Fix(f"Check the spelling of {host}, its zone and the search domains in /etc/resolv.conf", None))
    return (f"the resolver did not give an answer ({error})", f"DNS: {error}",
            Fix("Check that a nameserver from /etc/resolv.conf is reachable and answers", None))
