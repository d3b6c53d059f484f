"""portmap.build on recorded snapshots and on a hand-made one; the Markdown rendering."""

from __future__ import annotations

import json
from pathlib import Path

from portdoctor.model import InterfaceAddress, Limitation, Listener, Process
from portdoctor.snapshot import Snapshot
from portdoctor.portmap import SCHEMA, build
from portdoctor.render import ports as render

REC = Path(__file__).parent.parent / "data" / "proxy" / "recorded"


def _snap(name: str) -> Snapshot:
    return Snapshot.from_json(json.loads((REC / f"{name}.json").read_text())["snapshot"])


def _row(doc, address, port):
    return next(e for e in doc["listeners"] if e["address"] == address and e["port"] == port)


def test_recorded_host_with_podman_and_nginx():
    doc = build(_snap("127_0_0_1_18082"))
    assert doc["schema"] == SCHEMA
    nginx = _row(doc, "0.0.0.0", 8080)
    assert {p["name"] for p in nginx["processes"]} == {"nginx"}
    assert nginx["scope"] == "all" and nginx["exposed"] is True and nginx["via"] == []
    conmon = _row(doc, "0.0.0.0", 18080)
    assert conmon["processes"][0]["name"] == "conmon" and conmon["processes"][0]["container"] == "pdxweb"
    # the app inside pdxweb, on the container's loopback: published, yet unreachable
    inner = next(e for e in doc["listeners"] if e.get("container") == "pdxweb")
    assert (inner["address"], inner["port"], inner["scope"], inner["exposed"]) == ("127.0.0.1", 8080, "loopback", False)
    assert inner["via"][0]["kind"] == "publish" and inner["via"][0]["from"] == "0.0.0.0:18080"
    # pdxwrong publishes 18082->8080 but listens on 8081: its listener has no way in
    wrong = next(e for e in doc["listeners"] if e.get("container") == "pdxwrong")
    assert (wrong["port"], wrong["via"], wrong["exposed"]) == (8081, [], False)
    # the exited container has no listener
    assert not any(e.get("container") == "pdxexit" for e in doc["listeners"])
    ports = [e["port"] for e in doc["listeners"]]
    assert ports == sorted(ports)


def from_json_parts(doc: dict) -> dict:
    """Typed fact groups of a snapshot, from their JSON form (docs/snapshot.md)."""
    full = Snapshot.from_json({"schema": "portdoctor.snapshot/2", **doc})
    return {k: getattr(full, k) for k in doc}


def test_hand_made_snapshot_with_proxy_route_and_dnat():
    snap = Snapshot(
        hostname="web1",
        listeners=(Listener("0.0.0.0", 80, 4, pids=(10,)), Listener("127.0.0.1", 9000, 4, pids=(20,)),
                   Listener("10.1.0.5", 5432, 4, pids=(30,)), Listener("::", 22, 6, v6only=False, pids=(40,))),
        processes={10: Process(10, "nginx", user="root"), 20: Process(20, "gunicorn", user="app", unit="app.service"),
                   30: Process(30, "postgres", user="postgres"), 40: Process(40, "sshd", user="root")},
        **from_json_parts({"proxies": {"proxies": [{"kind": "nginx", "pid": 10, "source": "nginx -T",
                                                    "config": {"kind": "nginx", "main": "/etc/nginx/nginx.conf",
                                                               "routes": [{
            "name": "http server _", "location": "/", "binds": [{"address": "0.0.0.0", "port": 80, "file": "/etc/nginx/sites-enabled/app", "line": 2, "text": "listen 80;"}],
            "upstreams": [{"host": "127.0.0.1", "port": 9000, "file": "/etc/nginx/sites-enabled/app", "line": 7,
                           "text": "proxy_pass http://127.0.0.1:9000;", "directive": "proxy_pass"}],
                "file": "/etc/nginx/sites-enabled/app", "line": 3}]}}]},
            "firewall": {"ruleset": {"tables": [{"source": "iptables", "family": "ip", "name": "nat",
                                                 "chains": [{"name": "PREROUTING", "rules": [{"position": 1,
                "text": "iptables -t nat -A PREROUTING -p tcp --dport 15432 -j DNAT --to-destination 10.1.0.5:5432",
                "matches": [{"kind": "dport", "values": ["15432"]}],
                "action": {"kind": "dnat", "addr": "10.1.0.5", "port": "5432"}}]}]}]}}}),
        addresses=(InterfaceAddress("10.1.0.5", 24, 4, "eth0"),),
        limitations=(Limitation("firewall rules not read", "run as root"),),
    )
    doc = build(snap)
    app = _row(doc, "127.0.0.1", 9000)
    assert app["exposed"] is False and app["scope"] == "loopback"
    assert app["processes"] == [{"pid": 20, "name": "gunicorn", "user": "app", "unit": "app.service", "container": None}]
    assert app["via"] == [{"kind": "proxy", "from": "0.0.0.0:80",
                           "detail": "nginx location /: /etc/nginx/sites-enabled/app:7: proxy_pass http://127.0.0.1:9000;"}]
    pg = _row(doc, "10.1.0.5", 5432)
    assert pg["scope"] == "specific"
    assert pg["via"][0]["kind"] == "dnat" and pg["via"][0]["from"] == "*:15432"
    ssh = _row(doc, "::", 22)
    assert ssh["family"] == 6 and ssh["v6only"] is False
    assert doc["limitations"] == ["firewall rules not read (run as root)"]

    md = render.markdown(doc)
    assert md.startswith("# Port map of `web1`")
    assert "| 9000 | `127.0.0.1` | loopback | gunicorn (pid 20, app) unit app.service | - | no | proxy 0.0.0.0:80: " in md
    assert "## Could not see" in md


def test_without_firewall_facts_exposure_is_unknown_except_loopback():
    snap = Snapshot(hostname="h", listeners=(Listener("0.0.0.0", 8080, 4), Listener("127.0.0.1", 8081, 4)))
    doc = build(snap)
    assert [e["exposed"] for e in doc["listeners"]] == [None, False]


def test_text_rendering_runs(capsys):
    from rich.console import Console

    doc = build(_snap("127_0_0_1_18080"))
    console = Console(width=200, record=True)
    render.text(doc, console)
    out = console.export_text()
    assert "conmon" in out and "publish 0.0.0.0:18080" in out


def test_json_text_is_the_same_document_one_listener_per_line():
    doc = build(_snap("127_0_0_1_18082"))
    text = render.json_text(doc)
    assert json.loads(text) == doc
    assert text.count("\n") == len(doc["listeners"]) + 7  # {, 2 fields, [, the entries, ], limitations, }
    empty = {"schema": SCHEMA, "host": "h", "listeners": [], "limitations": []}
    assert json.loads(render.json_text(empty)) == empty


def test_a_ruleset_that_could_not_be_read_is_not_an_open_one():
    """Without root the dumps fail: no rules read does not mean nothing blocks (ports said exposed)."""
    from portdoctor.hostfacts import FirewallFacts, FirewallTool
    from portdoctor.model import InterfaceAddress

    listeners = (Listener("0.0.0.0", 8080, 4),)
    addrs = (InterfaceAddress("10.0.0.2", 24, 4, "eth0"),)
    failed = FirewallFacts(tools=(FirewallTool("iptables-save", False), FirewallTool("nft", False)))
    read = FirewallFacts(tools=(FirewallTool("iptables-save", True), FirewallTool("nft", True)))
    blind = build(Snapshot(hostname="h", listeners=listeners, addresses=addrs, firewall=failed))
    seen = build(Snapshot(hostname="h", listeners=listeners, addresses=addrs, firewall=read))
    assert [e["exposed"] for e in blind["listeners"]] == [None]
    assert [e["exposed"] for e in seen["listeners"]] == [True]
