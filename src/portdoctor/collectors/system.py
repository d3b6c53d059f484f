"""Facts about the host as a whole: its init system, its resolver, its hosts file.

DNS is asked directly (dnspython) only on a live host: that is a probe, not a host read.
"""

from __future__ import annotations

from portdoctor.collectors import Facts, Request
from portdoctor.host import Host
from portdoctor.hostfacts import DnsAnswer, HostsEntry, NameFacts
from portdoctor.plain import from_plain


def _read(host: Host, path: str) -> str | None:
    try:
        return host.read_text(path)
    except OSError:
        return None


def init_name(host: Host) -> str | None:
    """The name of PID 1 ('systemd', 'init', 'tini', ...), or None when unreadable."""
    comm = _read(host, f"{host.proc_root}/1/comm")
    return comm.strip() if comm else None


def nameservers(text: str) -> list[str]:
    """`nameserver` entries of a resolv.conf text, in order."""
    out = []
    for line in text.splitlines():
        parts = line.split("#")[0].split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            out.append(parts[1])
    return out


def hosts_entries(text: str, name: str) -> list[tuple[int, str, str]]:
    """(line number, address, line) of every hosts-file line that names `name`."""
    out = []
    wanted = name.lower().rstrip(".")
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split("#")[0].split()
        if len(fields) >= 2 and wanted in (f.lower() for f in fields[1:]):
            out.append((n, fields[0], line.strip()))
    return out


def collect_system(req: Request) -> Facts:
    """Init system, nameservers and /etc/hosts lines for the target's name."""
    resolv = _read(req.system, "/etc/resolv.conf")
    servers = tuple(nameservers(resolv)) if resolv else ()
    entries: tuple[HostsEntry, ...] = ()
    answers: DnsAnswer | None = None
    if req.host:
        hosts = _read(req.system, "/etc/hosts")
        entries = tuple(HostsEntry(*e) for e in hosts_entries(hosts, req.host)) if hosts else ()
        # ask DNS itself when it can tell more than getaddrinfo did: /etc/hosts overrides it, the
        # name did not resolve, or a short name was completed with the search list
        short = "." not in req.host.strip(".") and not _is_ip(req.host)
        if (entries or req.dns_failed or short) and servers and not _is_local_name(req.host) \
                and req.system.live:
            answers = from_plain(DnsAnswer, dns_answers(req.host))
    names = NameFacts(nameservers=servers, hosts_entries=entries, dns_answers=answers)
    return Facts(fields={"init": init_name(req.system), "names": names})


def _is_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return False
    return True


def _is_local_name(name: str) -> bool:
    name = name.lower().rstrip(".")
    return name in ("localhost", "ip6-localhost", "ip6-loopback") or name.endswith(".localhost")


def dns_answers(name: str, timeout: float = 1.5) -> dict:
    """A and AAAA records of `name` from the resolvers of /etc/resolv.conf, bypassing /etc/hosts:
    {"addresses": [...], "error": None | "NXDOMAIN" | "..."}."""
    import dns.exception
    import dns.resolver

    out: dict = {"addresses": [], "error": None}
    try:
        resolver = dns.resolver.Resolver(configure=True)
    except (dns.exception.DNSException, OSError) as exc:
        return {"addresses": [], "error": f"no resolver: {exc}"}
    resolver.lifetime = timeout
    for rdtype in ("A", "AAAA"):
        try:
            answer = resolver.resolve(name, rdtype, search=True)
        except dns.resolver.NXDOMAIN as exc:
            out["error"] = "NXDOMAIN"
            out["qnames"] = [str(q).rstrip(".") for q in exc.qnames()]
            break
        except dns.resolver.NoAnswer as exc:
            out["error"] = "NoAnswer"
            chain = _cname_chain(exc.response())
            if chain:
                out["cname"] = chain
            continue
        except dns.exception.DNSException as exc:
            out["error"] = type(exc).__name__
            break
        out["qname"] = str(answer.qname).rstrip(".")
        if str(answer.canonical_name).rstrip(".") != out["qname"]:
            out["canonical"] = str(answer.canonical_name).rstrip(".")
        out["addresses"] += [r.address for r in answer]
    if out["addresses"]:
        out["error"] = None
    return out


def _cname_chain(response) -> list[str]:
    """The CNAME targets in a DNS response, in order (alias -> ... -> final name)."""
    import dns.rdatatype

    chain = []
    for rrset in getattr(response, "answer", []) or []:
        if rrset.rdtype == dns.rdatatype.CNAME:
            chain += [str(r.target).rstrip(".") for r in rrset]
    return chain
