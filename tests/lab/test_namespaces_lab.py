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
    other.listen(8080, argv0="billing-api")
    assert c.connect_errno("10.0.0.2", 8080) == errno.ECONNREFUSED
    rc, doc = s.json_of("diagnose", "10.0.0.2:8080", "--from", "10.0.0.1")
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
