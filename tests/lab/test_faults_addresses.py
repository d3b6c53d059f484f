"""Fault catalogue: bind address and family: V6ONLY wildcards, loopback aliases, localhost resolving to ::1 first, IPv4-only and IPv6-only listeners.

Each test builds the fault for real in namespaces, checks what a real client saw, then asserts
the verdict an operator should act on and the evidence behind it (helpers: faults.py).
"""

from __future__ import annotations

import errno
import socket

import pytest

from netlab import Host
from verdicts import brief, diagnose, everything, verdict
from faults import (  # noqa: F401  (_root and tmpdir are fixtures)
    _root,
    diagnosed_as,
    diagnosed_at,
    diagnosed_locally_as,
)

pytestmark = pytest.mark.lab


def test_v6only_wildcard_reached_over_ipv4(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, "::", v6only=True, argv0="java")
    assert c.connect_errno("10.0.0.2", 8080) == errno.ECONNREFUSED
    assert c.connect_errno("fd00::2", 8080) == 0
    doc = diagnose(s, "10.0.0.2:8080", "--from", "10.0.0.1")
    verdict(doc, "wrong_interface")
    t = everything(doc)
    assert "IPv6" in t and ("V6ONLY" in t.upper() or "v6only" in t), t

def test_listener_on_127_0_0_2_reached_via_127_0_0_1(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.listen(8080, "127.0.0.2", argv0="devserver")
    doc = diagnosed_locally_as(s, "127.0.0.1", 8080, errno.ECONNREFUSED, "wrong_interface")
    assert "127.0.0.2" in doc["verdict"]["summary"], brief(doc)

def test_localhost_is_only_ipv6_while_server_is_ipv4_loopback(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.hosts("::1 localhost ip6-localhost\n")
    s.listen(3000, "127.0.0.1", argv0="node")
    assert socket.getaddrinfo  # the client resolves localhost through this host's /etc/hosts
    rc, probe = s.json_of("probe", "localhost:3000")
    assert [a["address"] for a in probe["addresses"]] == ["::1"], probe
    assert probe["state"] == "refused"
    doc = diagnose(s, "localhost:3000")
    verdict(doc, "wrong_interface")
    t = everything(doc)
    assert "::1" in t and "127.0.0.1" in t, t

def test_localhost_tries_ipv6_first_while_server_is_ipv4_loopback(pair: tuple[Host, Host]) -> None:
    """Both addresses resolve; a client that tries only the first (Node < 20, many libraries) fails."""
    _c, s = pair
    s.hosts("::1 localhost\n127.0.0.1 localhost\n")
    s.listen(3000, "127.0.0.1", argv0="node")
    rc, probe = s.json_of("probe", "localhost:3000")
    states = {a["address"]: a["state"] for a in probe["addresses"]}
    assert states == {"::1": "refused", "127.0.0.1": "open"}, probe
    doc = diagnose(s, "localhost:3000")
    # the service answers on one of the two addresses: not a dead service, a family mismatch
    assert doc["verdict"]["cause"] in ("ok", "wrong_interface"), brief(doc)
    t = everything(doc)
    assert "::1" in t and "127.0.0.1" in t, brief(doc)
    assert any(f["cause"] == "wrong_interface" for f in doc["findings"]), brief(doc)

def test_ipv4_only_listener_reached_over_ipv6(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, "0.0.0.0", argv0="app-server")
    assert c.connect_errno("fd00::2", 8080, timeout=2) == errno.ECONNREFUSED
    doc = diagnose(s, "[fd00::2]:8080", "--from", "fd00::1")
    verdict(doc, "wrong_interface")
    t = everything(doc)
    assert "0.0.0.0" in t and "IPv4" in t, t

def test_listener_on_the_external_address_reached_via_loopback(pair: tuple[Host, Host]) -> None:
    _c, s = pair
    s.listen(8080, "10.0.0.2", argv0="app-server")
    doc = diagnosed_locally_as(s, "127.0.0.1", 8080, errno.ECONNREFUSED, "wrong_interface")
    assert "10.0.0.2" in doc["verdict"]["summary"], brief(doc)

def test_two_specific_listeners_reached_via_a_third_address(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.add_addr("10.0.0.3/24", "veth1")
    s.listen(8080, "127.0.0.1", argv0="app-server")
    s.listen(8080, "10.0.0.2", argv0="app-server")
    assert c.connect_errno("10.0.0.3", 8080) == errno.ECONNREFUSED
    doc = diagnose(s, "10.0.0.3:8080", "--from", "10.0.0.1")
    verdict(doc, "wrong_interface")
    t = everything(doc)
    assert "10.0.0.2" in t and "127.0.0.1" in t, t

def test_dual_stack_wildcard_reached_over_ipv4_is_ok(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.listen(8080, "::", v6only=False, argv0="java")
    doc = diagnosed_as(c, s, 0, "ok")

def test_v6_listener_on_another_v6_address(pair: tuple[Host, Host]) -> None:
    c, s = pair
    s.add_addr("fd00::3/64", "veth1")
    s.listen(8080, "fd00::3", argv0="api-server")
    doc = diagnosed_at(c, s, "fd00::2", errno.ECONNREFUSED, "wrong_interface", src="fd00::1")
    assert "fd00::3" in doc["verdict"]["summary"], brief(doc)
