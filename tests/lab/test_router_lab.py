"""portdoctor run on a router: the client and the server sit behind two of its interfaces, and its
FORWARD chain decides. This host's own probe of the server never meets that chain, so the
diagnosis must walk the --from clients' forwarded flow.

    c (10.1.0.5) --- r (10.1.0.1 | 10.2.0.1, ip_forward=1) --- s (10.2.0.2, listens on 8080)
"""

from __future__ import annotations

import errno

import pytest

from netlab import Host, Lab


@pytest.fixture
def routed(lab: Lab) -> tuple[Host, Host, Host]:
    c, r, s = lab.host("c"), lab.host("r"), lab.host("s")
    lab.link(c, r, "10.1.0.5/24", "10.1.0.1/24")
    lab.link(r, s, "10.2.0.1/24", "10.2.0.2/24")
    c.run(["ip", "route", "add", "default", "via", "10.1.0.1"])
    s.run(["ip", "route", "add", "default", "via", "10.2.0.1"])
    r.sysctl("net.ipv4.ip_forward", 1)
    s.listen(8080)
    return c, r, s


def _text(doc: dict) -> str:
    return "\n".join([doc["verdict"]["summary"], *(e for f in doc["findings"] for e in f["evidence"]),
                      *(f"{x['description']} {x['command'] or ''}" for f in doc["findings"] for x in f["fix"])])


def test_forward_chain_rejects_the_client(routed: tuple[Host, Host, Host]) -> None:
    c, r, _s = routed
    r.iptables("-A", "FORWARD", "-s", "10.1.0.5", "-p", "tcp", "--dport", "8080", "-j", "REJECT",
               "--reject-with", "tcp-reset")
    assert c.connect_errno("10.2.0.2", 8080) == errno.ECONNREFUSED
    assert r.connect_errno("10.2.0.2", 8080) == 0  # the router itself gets through: OUTPUT, not FORWARD
    rc, doc = r.json_of("diagnose", "10.2.0.2:8080", "--from", "10.1.0.5")
    assert rc == 1 and doc["verdict"]["cause"] == "firewall_reject", doc["verdict"]
    t = _text(doc)
    assert "chain FORWARD" in t and "10.1.0.5" in t, t
    assert "iptables -I FORWARD" in t, t


def test_forward_chain_drop_is_a_timeout_for_the_client(routed: tuple[Host, Host, Host]) -> None:
    c, r, _s = routed
    r.iptables("-P", "FORWARD", "DROP")
    assert c.connect_errno("10.2.0.2", 8080, timeout=0.5) in (errno.ETIMEDOUT, errno.EINPROGRESS, errno.EAGAIN)
    rc, doc = r.json_of("diagnose", "10.2.0.2:8080", "--from", "10.1.0.5")
    assert doc["verdict"]["cause"] == "firewall_drop", doc["verdict"]
    assert "policy DROP of chain FORWARD" in _text(doc)


def test_open_forwarding_is_ok(routed: tuple[Host, Host, Host]) -> None:
    c, r, _s = routed
    assert c.connect_errno("10.2.0.2", 8080) == 0
    rc, doc = r.json_of("diagnose", "10.2.0.2:8080", "--from", "10.1.0.5")
    assert rc == 0 and doc["verdict"]["cause"] == "ok", doc["verdict"]
