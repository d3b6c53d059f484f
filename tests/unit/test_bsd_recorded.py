"""macOS and FreeBSD hosts recorded per cause (tests/data/hosts/mac-*, fbsd-*; made by
bsd_build.py there from outputs typed after public ones, see its docstring): the real darwin /
freebsd collectors run on a RecordedHost, with every direct way to this machine closed, and the
diagnosis must name the recorded cause and its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portdoctor.diagnose import diagnose
from portdoctor.host import RecordedHost
from portdoctor.model import AddressResult, ProbeResult, State
from portdoctor.probe import errno_number
from portdoctor.target import parse_target

from test_host_recorded import machine_out_of_reach  # type: ignore[import-not-found]

HOSTS = Path(__file__).resolve().parents[1] / "data" / "hosts"
CASES = sorted(p.name for p in HOSTS.iterdir() if (p / "case.json").exists())


def _probe(target, case: dict, platform: str) -> ProbeResult:
    """The client's view recorded on that machine: errno numbers are that platform's."""
    addrs = tuple(AddressResult(a["address"], a["family"], State(a["state"]), a["errno"], a["seconds"],
                                errno_number=errno_number(a["errno"], platform)) for a in case["probe"])
    top = State.OPEN if any(a.state is State.OPEN for a in addrs) else addrs[0].state
    return ProbeResult(target, top, addrs, 3.0)


def _diagnose(name: str, monkeypatch: pytest.MonkeyPatch):
    case = json.loads((HOSTS / name / "case.json").read_text())
    host = RecordedHost(HOSTS / name)
    target = parse_target(case["target"])
    with machine_out_of_reach(monkeypatch) as seen:
        result = diagnose(target, from_addr=case.get("from"), probe=_probe(target, case, host.platform), followups={}, system=host)
    assert seen == []
    return case, result


def test_every_platform_and_cause_is_recorded() -> None:
    assert {n.split("-")[0] for n in CASES} == {"mac", "fbsd"}
    causes = {json.loads((HOSTS / n / "case.json").read_text())["expected"] for n in CASES}
    assert causes >= {"service_not_running", "wrong_port", "wrong_interface", "firewall_reject", "firewall_drop",
                      "resource_exhaustion", "port_mapping"}


@pytest.mark.parametrize("name", CASES)
def test_recorded_host_verdict_and_fix(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    case, result = _diagnose(name, monkeypatch)
    assert result.snapshot is not None
    assert result.snapshot.platform.startswith("darwin" if name.startswith("mac") else "freebsd")
    # no collector failed into a limitation
    assert not [x for x in result.limitations if "could not be read (" in x], result.limitations
    assert result.verdict.cause.value == case["expected"], (result.verdict, [f.summary for f in result.findings])
    top = next(f for f in result.findings if f.cause is result.verdict.cause)
    text = " ".join([top.summary, *top.evidence, *(f"{x.description} {x.command or ''}" for x in top.fix)])
    assert case["fix"] in " ".join(f"{x.description} {x.command or ''}" for x in top.fix), top.fix
    if case.get("evidence"):
        assert case["evidence"] in text, text
    if case.get("limitation"):
        assert any(case["limitation"] in x for x in result.limitations), result.limitations


def test_mac_without_root_names_the_developers_server_and_what_it_missed(monkeypatch: pytest.MonkeyPatch) -> None:
    """`diagnose :PORT` as the developer (no root): own server named through lsof, others' owners
    unknown, pf unread, each said once as a limitation."""
    _, result = _diagnose("mac-wrong-port", monkeypatch)
    snap = result.snapshot
    pg = [x for x in snap.listeners if x.port == 5433]
    assert {x.family for x in pg} == {4, 6} and all(snap.processes[p].name == "postgres" for x in pg for p in x.pids)
    assert snap.processes[812].user == "dev" and "-p" in snap.processes[812].cmdline
    (other,) = [x for x in snap.listeners if x.port == 7000]
    assert other.pids == (498,) and other.v6only is False  # tcp46: dual-stack; its owner from netstat only
    lims = " | ".join(result.limitations)
    assert "lsof without root shows only your own processes" in lims
    assert "pf rules were not read (pfctl needs root)" in lims
    assert "5433" in result.verdict.summary
    # Homebrew runs it: the restart goes through brew, not systemctl or `service`
    fixes = [x.command for x in result.findings[0].fix]
    assert "brew services restart postgresql@15" in fixes, fixes


def test_queues_and_somaxconn_come_from_netstat_and_sysctl(monkeypatch: pytest.MonkeyPatch) -> None:
    _, result = _diagnose("mac-accept-queue", monkeypatch)
    (li,) = result.snapshot.listeners
    assert (li.queue, li.backlog, li.v6only) == (128, 128, False)
    assert result.snapshot.sysctls["kern.ipc.somaxconn"] == "128"


def test_pf_tables_are_read_and_the_probe_from_lo0_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    _, result = _diagnose("mac-pf-return", monkeypatch)
    (pf,) = result.snapshot.bsd.filters
    assert pf.tables == {"lab_blocked": ("192.0.2.0/24", "198.51.100.7")}
    assert [r.number for r in pf.rules if r.action == "block"] == [2]
    # this host's own probe (lo0) passes: only the --from client is refused
    assert [f.cause.value for f in result.findings if f.check == "bsd"] == ["firewall_reject"]


def test_errno_numbers_are_the_platforms_in_json() -> None:
    case, result = None, None
    for name, want in (("mac-launchd-stopped", 61), ("fbsd-rcd-stopped", 61), ("mac-accept-queue", 60)):
        case = json.loads((HOSTS / name / "case.json").read_text())
        host = RecordedHost(HOSTS / name)
        probe = _probe(parse_target(case["target"]), case, host.platform).to_json()
        assert {a["errno_number"] for a in probe["addresses"]} == {want}
    assert errno_number("EHOSTUNREACH", "darwin") == 65 and errno_number("ENETUNREACH", "freebsd14") == 51
    assert errno_number("ECONNREFUSED", "linux") == 111


@pytest.mark.parametrize("name", ["mac-launchd-stopped", "mac-docker-loopback", "fbsd-ipfw-reset"])
def test_cli_replays_a_recorded_bsd_diagnosis(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The snapshot of a macOS / FreeBSD host round-trips through a recording (`diagnose
    --record`) and `portdoctor diagnose --replay` says the same in text and JSON."""
    import subprocess
    import sys

    from portdoctor.diagnose import recording

    case, result = _diagnose(name, monkeypatch)
    doc = recording(result, from_addr=case.get("from"))
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(doc))
    run = [sys.executable, "-m", "portdoctor", "diagnose", case["target"], "--replay", str(path)]
    out = subprocess.run(run + ["--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    js = json.loads(out.stdout)
    assert js["verdict"]["cause"] == case["expected"]
    assert js["probe"]["addresses"][0].get("errno_number") == result.probe.addresses[0].errno_number
    txt = subprocess.run(run, capture_output=True, text=True, timeout=60).stdout
    assert case["fix"] in txt and result.verdict.summary[:40] in txt
