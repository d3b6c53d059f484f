"""Names behind addresses: the DNS answers a traced program received, and /etc/hosts.

A program resolves a name and then connects to an address; the trace shows the connect with the
address only. The DNS answer it read just before (a datagram from port 53) or the hosts file it
opened gives the name back.
"""

from __future__ import annotations

from portdoctor.addresses import ip, unmapped


def parse_dns_answer(wire: bytes) -> tuple[str, list[str], str] | None:
    """(question name, A/AAAA addresses of the answer, response code) of a DNS response, or None.

    A response strace cut short still yields its question name and code when the header and the
    question are complete (then with the addresses that could be read, often none).
    """
    import dns.exception
    import dns.message
    import dns.name
    import dns.rcode
    import dns.rdatatype

    if len(wire) < 12 or not wire[2] & 0x80:  # not a response (QR bit)
        return None
    rcode = dns.rcode.to_text(dns.rcode.Rcode(wire[3] & 0x0F))
    try:
        msg = dns.message.from_wire(wire, ignore_trailing=True)
    except (dns.exception.DNSException, ValueError, IndexError):
        try:
            qname, _used = dns.name.from_wire(wire, 12)
        except (dns.exception.DNSException, ValueError, IndexError):
            return None
        return qname.to_text(omit_final_dot=True), [], rcode
    if not msg.question:
        return None
    qname = msg.question[0].name.to_text(omit_final_dot=True)
    addresses = []
    for rrset in msg.answer:
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            addresses += [r.address for r in rrset]
    return qname, addresses, rcode


RCODE_MEANING = {
    "NXDOMAIN": "no such name (NXDOMAIN): check its spelling, its zone and the search domains of /etc/resolv.conf",
    "SERVFAIL": "the resolver failed to answer (SERVFAIL): an upstream server or the zone is broken",
    "REFUSED": "the resolver refused the query (REFUSED): it does not serve this client or this zone",
    "NOERROR": "the name exists but has no address (no A or AAAA record)",
}


def hosts_names(text: str) -> dict[str, list[str]]:
    """address -> names of a hosts file, in file order (addresses in canonical form).

    >>> hosts_names("127.0.0.1 localhost db # local\\n::1 localhost\\n")["127.0.0.1"]
    ['localhost', 'db']
    """
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or ip(fields[0]) is None:
            continue
        address = unmapped(str(ip(fields[0])))
        names = out.setdefault(address, [])
        names += [n for n in fields[1:] if n not in names]
    return out


def read_hosts(path: str = "/etc/hosts") -> dict[str, list[str]]:
    """`hosts_names` of the hosts file at `path` ({} when it cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return hosts_names(fh.read())
    except OSError:
        return {}
