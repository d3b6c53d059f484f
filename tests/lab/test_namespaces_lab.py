"""A server that listens, but in another network namespace of this machine (started with
`ip netns exec`, or in a container that publishes nothing): the cause is that namespace, not
"the service is not running".
"""

from __future__ import annotations

import errno

from netlab import Host, Lab


def test_server_started_in_another_namespace(lab: Lab, pair: tuple[Host, Host]) -> None:
    c, s = pair
    other = lab.host("x")  # the namespace the operator started the server in by mistake
    other.listen(18096, argv0="billing-api")
    assert c.connect_errno("10.0.0.2", 18096) == errno.ECONNREFUSED
    rc, doc = s.json_of("diagnose", "10.0.0.2:18096", "--from", "10.0.0.1")
    assert rc == 1 and doc["verdict"]["cause"] == "port_mapping", doc["verdict"]
    top = doc["findings"][0]
    assert top["check"] == "namespaces" and other.ns in top["summary"], top
    assert "billing-api" in top["summary"]
    assert any(other.ns in (x["command"] or "") for x in top["fix"]), top["fix"]
    # the generic "nothing listens here" is still said, below it
    assert any(f["cause"] == "service_not_running" for f in doc["findings"][1:])


def test_listener_elsewhere_on_another_port_changes_nothing(lab: Lab, pair: tuple[Host, Host]) -> None:
    _c, s = pair
    lab.host("x").listen(18094)
    _rc, doc = s.json_of("diagnose", "10.0.0.2:18093", "--from", "10.0.0.1")
    assert doc["verdict"]["cause"] == "service_not_running", doc["verdict"]
    assert not any(f["check"] == "namespaces" for f in doc["findings"])


def test_the_clients_own_namespace_is_not_the_servers(pair: tuple[Host, Host]) -> None:
    c, s = pair
    c.listen(18095)  # the client happens to listen on the port too: that says nothing of the server
    _rc, doc = s.json_of("diagnose", "10.0.0.2:18095", "--from", "10.0.0.1")
    assert doc["verdict"]["cause"] == "service_not_running", doc["verdict"]
    assert not any(f["check"] == "namespaces" for f in doc["findings"])


def test_a_dnated_port_is_not_explained_by_a_listener_elsewhere(lab: Lab, pair: tuple[Host, Host]) -> None:
    """The port is DNATed here to a backend that refuses: that is the fault, whatever other
    namespaces of the machine happen to serve on the same port."""
    c, s = pair
    lab.host("x").listen(18096, addr="127.0.0.1")  # someone else's server, unrelated
    s.iptables("-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "18096", "-j", "DNAT",
               "--to-destination", "10.0.0.2:18097")  # nothing listens on 18097
    assert c.connect_errno("10.0.0.2", 18096) == errno.ECONNREFUSED
    _rc, doc = s.json_of("diagnose", "10.0.0.2:18096", "--from", "10.0.0.1")
    assert not any(f["check"] == "namespaces" for f in doc["findings"]), doc["findings"]
    assert "18097" in doc["verdict"]["summary"], doc["verdict"]


def test_several_namespaces_serving_the_port_is_a_question(lab: Lab, pair: tuple[Host, Host]) -> None:
    _c, s = pair
    lab.host("x").listen(18096)
    lab.host("y").listen(18096)
    _rc, doc = s.json_of("diagnose", "10.0.0.2:18096", "--from", "10.0.0.1")
    top = next(f for f in doc["findings"] if f["check"] == "namespaces")
    assert "2 namespaces listen on port 18096" in top["summary"], top
