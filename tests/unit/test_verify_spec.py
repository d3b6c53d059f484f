"""The verify spec loader: every error of a bad spec in one pass, each with its file and line;
the JUnit writer; the CLI's exit codes for bad specs."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from portdoctor.model import Fix
from portdoctor.verify import SpecError, load_spec, parse_spec
from portdoctor.verify.junit import to_xml
from portdoctor.verify.run import Report, Result, Status

DATA = Path(__file__).resolve().parents[1] / "data" / "verify"


def errors_of(name: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(str(DATA / name))
    return info.value.errors


def test_unknown_keys_and_wrong_types_are_all_listed_with_their_lines() -> None:
    f = str(DATA / "bad-keys-types.yaml")
    assert errors_of("bad-keys-types.yaml") == [
        f"{f}:4: checks[0].bind: write all, loopback, or a list of the addresses the port must be bound to",
        f"{f}:5: checks[0].listen: unknown key",
        f"{f}:6: checks[1].port: Input should be a valid integer",
        f"{f}:8: checks[1].reachable_from: Input should be a valid list",
        f"{f}:10: checks[2].listening: Input should be a valid boolean",
        f"{f}:11: checks[2].process: only for a port on this host (port: N), not for a target",
        f"{f}:13: checks[3].families[1]: Input should be 4 or 6",
        f"{f}:14: checks[3].http.path: must start with / and hold no spaces or line breaks",
        f"{f}:14: checks[3].http.status: an HTTP status (100-599) or a list of them",
        f"{f}:14: checks[3].http.verbose: unknown key",
        f"{f}:15: checks[3].reachable_from[1]: '300.1.1.1' is not an IP address",
    ]


def test_yaml_syntax_errors_name_the_line() -> None:
    f = str(DATA / "bad-syntax.yaml")
    assert errors_of("bad-syntax.yaml") == [f"{f}:5: not valid YAML: mapping values are not allowed here"]
    f = str(DATA / "bad-unclosed.yaml")
    assert errors_of("bad-unclosed.yaml") == [
        f"{f}:4: not valid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence on line 3)"]


@pytest.mark.parametrize("text, error", [
    ("", "x.yaml:1: the spec is empty: it needs a list of checks"),
    ("- port: 1\n", "x.yaml:1: the spec must be a mapping with a 'checks' list"),
    ("checks: []\n", "x.yaml:1: checks: List should have at least 1 item after validation, not 0"),
    ("checks:\n  - port: 1\n    target: a:1\n", "x.yaml:2: checks[0]: give either port (a port on this host) or "
                                             "target (host:port)"),
    ("checks:\n  - port: 1\n    listening: false\n    process: x\n",
     "x.yaml:4: checks[0].process: meaningless with listening: false"),
    ("checks:\n  - port: 1\n  - port: 1\n", "x.yaml:3: checks[1]: the name 'port 1' is used already (line 2); "
                                          "give each check its own name"),
    ("checks:\n  - port: 1\n    port: 2\n", "x.yaml:3: checks[0].port: this key is given twice"),
    ("checks:\n  - target: 'a b:1'\n", "x.yaml:2: checks[0].target: "),
    ("timeout: 0\nchecks:\n  - port: 1\n", "x.yaml:1: timeout: Input should be greater than 0"),
    ("checks:\n  - port: true\n", "x.yaml:2: checks[0].port: Input should be a valid integer"),
    ("checks:\n  - port: '80'\n", "x.yaml:2: checks[0].port: Input should be a valid integer"),
    ("checks:\n  - 8080\n", "x.yaml:2: checks[0]: must be a mapping (key: value lines)"),
    ("checks:\n  - port: 1\n    bind: [all]\n", "x.yaml:3: checks[0].bind: 'all' is not an IP address"),
])
def test_one_error_each(text: str, error: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "x.yaml")
    assert len(info.value.errors) == 1 and info.value.errors[0].startswith(error), info.value.errors


def test_a_good_spec_with_every_key() -> None:
    spec = load_spec(str(DATA / "good.yaml"))
    assert spec.timeout == 1.5
    shop, cache, telnet, db = spec.entries
    assert (shop.name, shop.line, shop.port, shop.bind, shop.families) == ("shop", 5, 8080, "all", (4, 6))
    assert shop.reachable_from == ("10.0.0.7", "::1") and shop.blocked_from == ("192.0.2.10",)
    assert shop.http is not None and shop.http.status == (200, 204) and shop.http.path == "/health"
    assert cache.bind == ("127.0.0.1", "::1") and cache.name == "port 6379"
    assert parse_spec("checks:\n  - {port: 1, bind: '10.0.0.2'}\n").entries[0].bind == ("10.0.0.2",)
    assert telnet.listening is False and telnet.local
    assert db.target is not None and db.port == 8443 and db.http is not None and db.http.tls


def test_junit_carries_cause_and_fix_of_failures_and_errors_for_unknowns() -> None:
    spec = parse_spec("checks:\n  - port: 8080\n    name: shop\n", "s.yaml")
    entry = spec.entries[0]
    results = (
        Result("shop", 2, "listening", Status.PASS, "listening", "bound to 0.0.0.0:8080"),
        Result("shop", 2, "reachable_from 10.0.0.7", Status.FAIL, "reachable", "blocked",
               ("rule 1 of chain INPUT",), "firewall_reject", "rule 1 rejects 10.0.0.7",
               (Fix("accept it first", "iptables -I INPUT 1 -s 10.0.0.7 -j ACCEPT"),)),
        Result("shop", 2, "process", Status.UNKNOWN, "nginx", "owner not known: run as root"),
    )
    report = Report("s.yaml", "h", ((entry, results),), ("owners unknown",), 0.5)
    assert report.exit_code == 1 and report.status is Status.FAIL
    root = ET.fromstring(ET.tostring(to_xml(report)))
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in root.iter("testcase")}
    fail = cases["reachable_from 10.0.0.7"].find("failure")
    assert fail is not None and fail.get("type") == "firewall_reject"
    assert fail.get("message") == "firewall_reject: rule 1 rejects 10.0.0.7"
    assert "iptables -I INPUT 1 -s 10.0.0.7 -j ACCEPT" in (fail.text or "")
    err = cases["process"].find("error")
    assert err is not None and err.get("type") == "unknown"
    assert cases["listening"].find("failure") is None and cases["listening"].get("classname") == "shop"
    blind = Report("s.yaml", "h", ((entry, (results[0], results[2])),))
    assert blind.exit_code == 3


def test_cli_bad_spec_exit_2_with_every_error(tmp_path: Path) -> None:
    cp = subprocess.run([sys.executable, "-m", "portdoctor", "verify", str(DATA / "bad-keys-types.yaml")],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 2 and cp.stdout == ""
    lines = cp.stderr.splitlines()
    assert len(lines) == 11 and all(x.startswith("portdoctor: error: ") and ".yaml:" in x for x in lines)
    cp = subprocess.run([sys.executable, "-m", "portdoctor", "verify", str(tmp_path / "missing.yaml")],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 2 and "cannot read the spec" in cp.stderr and len(cp.stderr.splitlines()) == 1


def test_text_and_markdown_explain_failures() -> None:
    from portdoctor.render.verify import markdown, text

    spec = parse_spec("checks:\n  - port: 8080\n    name: shop\n", "s.yaml")
    bad = Result("shop", 2, "bind", Status.FAIL, "all addresses (IPv4)", "bound to 127.0.0.1:8080",
                 ("LISTEN 127.0.0.1:8080",), "wrong_interface", "listens on loopback only",
                 (Fix("listen on 0.0.0.0", "app --host 0.0.0.0"),))
    ok = Result("shop", 2, "listening", Status.PASS, "listening", "bound to 127.0.0.1:8080", ("LISTEN x",))
    report = Report("s.yaml", "h", ((spec.entries[0], (ok, bad)),))
    out = text(report)
    assert "FAIL  bind: expected all addresses (IPv4); bound to 127.0.0.1:8080" in out
    assert "cause: wrong_interface: listens on loopback only" in out and "app --host 0.0.0.0" in out
    assert "LISTEN x" not in out and "LISTEN x" in text(report, verbose=True)
    md = markdown(report)
    assert "| shop | bind | fail | all addresses (IPv4) | bound to 127.0.0.1:8080 | wrong_interface |" in md
    assert "## shop: bind (fail)" in md


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    existing = tmp_path / "host.yaml"
    existing.write_text("keep me\n")
    cp = subprocess.run([sys.executable, "-m", "portdoctor", "verify", "--generate", str(existing)],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 2 and "--force" in cp.stderr and existing.read_text() == "keep me\n"
    cp = subprocess.run([sys.executable, "-m", "portdoctor", "verify"], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 2 and "give the SPEC file" in cp.stderr


def test_the_path_of_a_target_url_is_the_http_path_unless_given() -> None:
    spec = parse_spec("checks:\n  - target: http://127.0.0.1:8080/health?x=1\n    http: true\n"
                      "  - target: http://127.0.0.1:8081/a\n    http: {path: /b}\n")
    assert [e.http.path for e in spec.entries if e.http] == ["/health?x=1", "/b"]
