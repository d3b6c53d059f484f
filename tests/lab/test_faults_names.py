"""Fault catalogue: names that resolve to the wrong, a stale or an unroutable address: /etc/hosts, CNAMEs, search domains, AAAA-only records.

Each test builds the fault for real in namespaces, checks what a real client saw, then asserts
the verdict an operator should act on and the evidence behind it (helpers: faults.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from netlab import Host
from servers import need
from verdicts import brief, diagnose, everything, finding, verdict
from faults import (  # noqa: F401  (_root and tmpdir are fixtures)
    _root,
    DNS_QUERY,
    dnsmasq,
    redis,
    tmpdir,
)

pytestmark = pytest.mark.lab


def test_name_points_at_the_wrong_address(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, argv0="api-server")
    c.dns({"api.lab.test": "10.0.0.1"})  # a stale record: the old server's address, now the client's
    s.dns({"api.lab.test": "10.0.0.1"})
    rc, probe = c.json_of("probe", "api.lab.test:8080")
    assert probe["state"] == "refused"
    doc = diagnose(s, "api.lab.test:8080")
    verdict(doc, "dns")
    t = everything(doc)
    assert "10.0.0.1" in t and "10.0.0.2" in t, t


# =========================================================================== firewall

def test_name_with_only_an_aaaa_record_and_an_ipv4_only_server(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, "0.0.0.0", argv0="app-server")
    c.dns({"api.lab.test": "fd00::2"})
    rc, probe = c.json_of("probe", "api.lab.test:8080", "--timeout", "2")
    assert probe["state"] == "refused", probe
    s.dns({"api.lab.test": "fd00::2"})
    doc = diagnose(s, "api.lab.test:8080", "--from", "fd00::1")
    verdict(doc, "wrong_interface")
    t = everything(doc)
    assert "fd00::2" in t and "0.0.0.0" in t, t

def test_hosts_file_sends_the_name_to_this_host(pair: tuple[Host, Host]) -> None:
    """Debian's `127.0.1.1 <name>` line in the client's /etc/hosts shadows the DNS record."""
    c, s = pair
    s.listen(8080, argv0="api-server")
    c.dns({"api.lab.test": "10.0.0.2"})
    c.hosts("127.0.0.1 localhost\n127.0.1.1 api.lab.test api\n")
    rc, probe = c.json_of("probe", "api.lab.test:8080")
    assert probe["state"] == "refused" and probe["addresses"][0]["address"] == "127.0.1.1", probe
    doc = diagnose(c, "api.lab.test:8080")
    verdict(doc, "dns")
    t = everything(doc)
    assert "/etc/hosts" in t and "10.0.0.2" in t, t


# --------------------------------------------------------------------------- more firewall shapes

def test_name_with_a_stale_and_a_current_address(pair: tuple[Host, Host]) -> None:
    """Round-robin record with one stale address: clients that try only the first fail half the time."""
    c, s = pair
    s.listen(8080, argv0="api-server")
    s.dns({"api.lab.test": "10.0.0.1,10.0.0.2"})
    rc, probe = s.json_of("probe", "api.lab.test:8080")
    states = {a["address"]: a["state"] for a in probe["addresses"]}
    assert states == {"10.0.0.1": "refused", "10.0.0.2": "open"}, probe
    doc = diagnose(s, "api.lab.test:8080")
    verdict(doc, "dns")
    assert "10.0.0.1" in finding(doc, "dns")["summary"], brief(doc)

def test_cname_to_a_name_without_an_address(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, argv0="api-server")
    dnsmasq(c, "--cname=api.lab.test,web.lab.test", "--txt-record=web.lab.test,moved")
    # the server answers NOERROR with a CNAME to web.lab.test, which has no A/AAAA (NODATA)
    assert c.run([sys.executable, "-c", DNS_QUERY, "api.lab.test"]).stdout.split() == ["0", "CNAME", "web.lab.test"]
    assert c.run([sys.executable, "-c", DNS_QUERY, "web.lab.test"]).stdout.split() == ["0"]
    rc, probe = c.json_of("probe", "api.lab.test:8080")
    assert probe["state"] == "dns_error", probe
    doc = diagnose(c, "api.lab.test:8080")
    verdict(doc, "dns")
    # the record to fix is the CNAME's target; the name itself exists (not NXDOMAIN)
    assert "web.lab.test" in everything(doc), brief(doc)

def test_name_with_only_a_stale_address_on_the_server(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, argv0="api-server")
    s.dns({"web.lab.test": "10.0.0.9"})  # the old server, gone
    doc = diagnose(s, "http://web.lab.test:8080", "--timeout", "1")
    verdict(doc, "dns")
    t = everything(doc)
    assert "10.0.0.9" in t and "10.0.0.2" in t, brief(doc)

def test_name_with_a_stale_unroutable_address_from_the_client(pair: tuple[Host, Host]) -> None:
    c, s = pair
    c.dns({"web.lab.test": "10.9.9.9"})
    doc = diagnose(c, "http://web.lab.test:8080", "--timeout", "1")
    verdict(doc, "host_unreachable", "dns")
    assert "10.9.9.9" in everything(doc), brief(doc)

def test_search_domain_expands_to_a_stale_record(pair: tuple[Host, Host], tmpdir: Path) -> None:
    need("redis-server")
    c, s = pair
    s.write_etc("resolv.conf", "nameserver 127.0.0.1\nsearch lab.test\n")
    redis(s, tmpdir)
    s.dns({"cache.lab.test": "10.0.0.1"})
    doc = diagnose(s, "redis://cache:6379")
    verdict(doc, "dns")
    t = everything(doc)
    # the short name became cache.lab.test through resolv.conf's search list: that record is stale
    assert "10.0.0.1" in t and "cache.lab.test" in t, brief(doc)
