"""`portdoctor audit` on a lab server: a baseline is saved, then the test changes the host (a
REJECT rule, a new listener, a port rebound to loopback, a port taken over by another program)
and the audit must report each difference, agree with what a client on another host sees,
and exit 1; an unchanged host compares clean (exit 0)."""

from __future__ import annotations

import json
from pathlib import Path

from netlab import Host


def _by_kind(doc: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for d in doc["differences"]:
        out.setdefault(d["kind"], []).append(d)
    return out


def test_audit_reports_the_drift_from_its_baseline(pair: tuple[Host, Host], tmp_path: Path) -> None:
    c, s = pair
    s.listen(8080, "0.0.0.0", argv0="web-server")
    api = s.listen(7000, "0.0.0.0", argv0="api-server")
    old = s.listen(6000, "127.0.0.1", argv0="old-worker")
    base = tmp_path / "baseline.json"

    cp = s.portdoctor("audit", "--save", str(base))
    assert cp.returncode == 0, cp.stderr
    saved = json.loads(base.read_text())
    assert saved["schema"] == "portdoctor.audit/1"
    ports = {p["port"]: p for p in saved["ports"]}
    assert ports[8080]["exposed"] is True and ports[8080]["reach"][0]["state"] == "open"
    assert ports[6000]["exposed"] is False and ports[6000]["scope"] == "loopback"

    code, doc = s.json_of("audit", "--baseline", str(base))
    assert code == 0 and doc["differences"] == [], doc

    # the drift: a REJECT rule, a new listener, a rebind to loopback, a new owner
    s.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "REJECT", "--reject-with", "tcp-reset")
    s.listen(9090, "0.0.0.0", argv0="debug-server")
    for proc in (api, old):
        proc.kill()
        proc.wait(timeout=10)
    s.listen(7000, "127.0.0.1", argv0="api-server")
    s.listen(6000, "127.0.0.1", argv0="new-worker")

    code, doc = s.json_of("audit", "--baseline", str(base))
    assert code == 1, doc
    kinds = _by_kind(doc)
    blocked = {d["port"] for d in kinds.get("newly_blocked", [])}
    exposed = {d["port"] for d in kinds.get("newly_exposed", [])}
    assert "8080/IPv4" in blocked and "7000/IPv4" in blocked, doc["differences"]
    assert exposed == {"9090/IPv4"}, doc["differences"]
    rule = next(d for d in kinds["newly_blocked"] if d["port"] == "8080/IPv4")
    assert "open -> closed" in rule["summary"] and "REJECT" in rule["summary"], rule
    assert [d["port"] for d in kinds["changed_bind_scope"]] == ["7000/IPv4"]
    assert kinds["changed_bind_scope"][0]["after"] == ["127.0.0.1"]
    owner = kinds["changed_owner"]
    assert [d["port"] for d in owner] == ["6000/IPv4"] and owner[0]["after"] == ["new-worker"], owner

    # what a client on another host sees agrees with the audit
    assert c.connect_errno("10.0.0.2", 8080) != 0
    assert c.connect_errno("10.0.0.2", 9090) == 0
    assert c.connect_errno("10.0.0.2", 7000) != 0

    # a ticket: the same differences in Markdown
    cp = s.portdoctor("audit", "--baseline", str(base), "--format", "markdown")
    assert cp.returncode == 1
    assert "## Differences from the baseline" in cp.stdout
    for words in ("**newly exposed**: 9090/IPv4", "**newly blocked**: 8080/IPv4", "**changed owner**: 6000/IPv4",
                  "**changed bind scope**: 7000/IPv4"):
        assert words in cp.stdout, cp.stdout

    # without root the owners and the firewall are not seen: said, never read as a closed port
    code, doc = s.json_of("audit", user="nobody")
    assert code == 0, doc
    assert {p["port"] for p in doc["ports"]} >= {8080, 9090, 7000, 6000}
    assert all(r["state"] == "unknown" for p in doc["ports"] for r in p["reach"]), doc
    assert all(p["exposed"] is (None if p["reach"] else False) for p in doc["ports"]), doc
    assert any("needs root" in x for x in doc["limitations"])

    # a baseline that is not one: one line, exit 2
    bad = tmp_path / "bad.json"
    bad.write_text("{\"schema\": \"portdoctor.ports/1\"}")
    cp = s.portdoctor("audit", "--baseline", str(bad))
    assert cp.returncode == 2 and len(cp.stderr.strip().splitlines()) == 1, cp.stderr
