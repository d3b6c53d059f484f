"""`portdoctor verify` on a lab server whose faults are known: a port nobody listens on, a
loopback-only bind where `all` was expected, a source the firewall rejects (and an IPv6 source
it drops), a wrong HTTP status, and the dual-stack
cases (`[::]` with and without IPV6_V6ONLY). Each failure must carry the right cause in the
text, the JSON and the JUnit file; a spec generated from the host passes on it; a run that
cannot see socket owners (not root) exits 3 instead of guessing."""

from __future__ import annotations

import xml.etree.ElementTree as ET
import sys
from pathlib import Path

from netlab import Host

SPEC = """\
timeout: 1
checks:
  - port: 8080
    name: shop
    bind: all
    families: [4]
    process: shop-server
    reachable_from: [10.0.0.1, 127.0.0.1, 10.0.0.2]
  - port: 6379
    name: cache
    bind: all
    families: [4]
  - port: 5432
    name: db
  - port: 9000
    name: dual
    bind: all
    families: [4, 6]
    reachable_from: [fd00::1, 10.0.0.1]
  - port: 9001
    name: v6only
    bind: all
    families: [4, 6]
    reachable_from: ["fd00::1"]
  - port: 7000
    listening: false
  - port: 8088
    name: web
    http: {path: /, status: 200}
    blocked_from: [10.0.0.1]
  - port: 8088
    name: web-page
    http: {path: /missing.html, status: [200, 204]}
  - target: http://10.0.0.2:8088/
    http: {status: 200}
  - port: 9000
    name: elsewhere
    bind: [10.0.0.1]
"""


def _results(doc: dict) -> dict[tuple[str, str], dict]:
    return {(c["name"], r["check"]): r for c in doc["checks"] for r in c["results"]}


def _cases(path: Path) -> dict[tuple[str, str], ET.Element]:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    return {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}


def test_verify_names_each_failure_with_its_cause(pair: tuple[Host, Host], tmp_path: Path) -> None:
    c, s = pair
    s.listen(8080, "0.0.0.0", argv0="shop-server")
    s.listen(6379, "127.0.0.1", argv0="cache-server")
    s.listen(9000, "::", v6only=False, argv0="dual-server")
    s.listen(9001, "::", v6only=True, argv0="v6-server")
    s.start([sys.executable, "-m", "http.server", "8088", "--bind", "0.0.0.0", "--directory", str(tmp_path)],
            ready_port=8088)
    s.iptables("-A", "INPUT", "-s", "10.0.0.1", "-p", "tcp", "--dport", "8080", "-j", "REJECT",
               "--reject-with", "tcp-reset")
    s.ip6tables("-A", "INPUT", "-s", "fd00::1", "-p", "tcp", "--dport", "9001", "-j", "DROP")
    spec = tmp_path / "host.yaml"
    spec.write_text(SPEC)
    junit = tmp_path / "verify.xml"

    code, doc = s.json_of("verify", str(spec), "--junit", str(junit))
    assert code == 1, doc
    assert doc["schema"] == "portdoctor.verify/1" and doc["status"] == "fail"
    res = _results(doc)
    want = {  # (entry, check) -> (status, cause)
        ("shop", "listening"): ("pass", None),
        ("shop", "bind"): ("pass", None),
        ("shop", "process"): ("pass", None),
        ("shop", "reachable_from 10.0.0.1"): ("fail", "firewall_reject"),
        ("shop", "reachable_from 127.0.0.1"): ("pass", None),
        ("shop", "reachable_from 10.0.0.2"): ("pass", None),
        ("cache", "listening"): ("pass", None),
        ("cache", "bind"): ("fail", "wrong_interface"),
        ("db", "listening"): ("fail", "service_not_running"),
        ("dual", "listening"): ("pass", None),
        ("dual", "bind"): ("pass", None),
        ("dual", "reachable_from fd00::1"): ("pass", None),
        ("dual", "reachable_from 10.0.0.1"): ("pass", None),
        ("v6only", "listening"): ("pass", None),
        ("v6only", "bind"): ("fail", "wrong_interface"),
        ("v6only", "reachable_from fd00::1"): ("fail", "firewall_drop"),
        ("port 7000", "listening"): ("pass", None),
        ("web", "listening"): ("pass", None),
        ("web", "http"): ("pass", None),
        ("web", "blocked_from 10.0.0.1"): ("fail", None),
        ("web-page", "listening"): ("pass", None),
        ("web-page", "http"): ("fail", None),
        ("http://10.0.0.2:8088/", "listening"): ("pass", None),
        ("http://10.0.0.2:8088/", "http"): ("pass", None),
        ("elsewhere", "listening"): ("pass", None),
        ("elsewhere", "bind"): ("fail", None),
    }
    assert {k: (r["status"], r["cause"]) for k, r in res.items()} == want, doc
    blocked = res[("shop", "reachable_from 10.0.0.1")]
    assert any("REJECT" in e for e in blocked["evidence"]), blocked
    assert any("10.0.0.1" in (f["command"] or "") and "ACCEPT" in (f["command"] or "") for f in blocked["fix"])
    assert "loopback" in res[("cache", "bind")]["summary"]
    assert res[("cache", "bind")]["fix"], res[("cache", "bind")]
    assert "IPv6 only" in res[("v6only", "bind")]["observed"], res[("v6only", "bind")]
    assert res[("db", "listening")]["fix"]
    elsewhere = res[("elsewhere", "bind")]  # the client's address: named, never connected to
    assert "not an address of this host" in elsewhere["summary"], elsewhere
    assert not any("10.0.0.1" in e for e in elsewhere["evidence"]), elsewhere
    page = res[("web-page", "http")]
    assert "404" in page["observed"] and "404" in page["summary"], page
    open_to = res[("web", "blocked_from 10.0.0.1")]
    assert "iptables -I INPUT -s 10.0.0.1 -p tcp --dport 8088 -j REJECT" in open_to["fix"][0]["command"], open_to

    # the JUnit file says the same, with the cause as the failure type
    cases = _cases(junit)
    assert len(cases) == len(want)
    for key, (status, cause) in want.items():
        case = cases[key]
        failure = case.find("failure")
        if status == "fail":
            assert failure is not None and failure.get("type") == (cause or "mismatch"), ET.tostring(case)
            assert (cause or "") in failure.get("message", "") and "fix 1:" in (failure.text or "")
        else:
            assert failure is None and case.find("error") is None, ET.tostring(case)
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "8" and root.get("errors") == "0"

    # the text names the causes too
    cp = s.portdoctor("verify", str(spec))
    assert cp.returncode == 1
    for word in ("firewall_reject", "firewall_drop", "wrong_interface", "service_not_running",
                 "FAIL  reachable_from 10.0.0.1"):
        assert word in cp.stdout, cp.stdout

    # what the client really sees agrees with the verdicts
    assert c.connect_errno("10.0.0.2", 8080) != 0
    assert c.connect_errno("10.0.0.2", 9000) == 0

    # a spec generated from this host passes on it, unchanged
    generated = tmp_path / "generated.yaml"
    cp = s.portdoctor("verify", "--generate", str(generated))
    assert cp.returncode == 0, cp.stderr
    text = generated.read_text()
    assert "process: \"shop-server\"" in text and "bind: \"loopback\"" in text, text
    code, doc = s.json_of("verify", str(generated))
    assert code == 0, doc
    assert doc["counts"]["fail"] == 0 and doc["counts"]["pass"] >= 10

    # not root: owners cannot be seen, so the process check is "could not observe", exit 3
    spec2 = s.write_etc("owner.yaml", "checks:\n  - port: 9000\n    process: dual-server\n"
                                      "  - port: 7000\n    listening: false\n"
                                      "  - port: 8080\n    reachable_from: [10.0.0.1]\n")  # nobody can read it there
    code, doc = s.json_of("verify", str(spec2), user="nobody")
    assert code == 3, doc
    assert _results(doc)[("port 9000", "process")]["status"] == "unknown"
    assert _results(doc)[("port 7000", "listening")]["status"] == "pass"  # sockets are seen without root
    unread = _results(doc)[("port 8080", "reachable_from 10.0.0.1")]  # the REJECT rule cannot be read
    assert unread["status"] == "unknown" and "needs root" in unread["observed"], unread
    code, doc = s.json_of("verify", str(spec2))  # as root: the owner is seen, and the rule
    assert code == 1, doc
    assert {k: (r["status"], r["cause"]) for k, r in _results(doc).items()} == {
        ("port 9000", "listening"): ("pass", None), ("port 9000", "process"): ("pass", None),
        ("port 7000", "listening"): ("pass", None), ("port 8080", "listening"): ("pass", None),
        ("port 8080", "reachable_from 10.0.0.1"): ("fail", "firewall_reject")}
