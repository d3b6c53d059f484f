"""Fail loudly: a misspelt registry entry raises; a check that raises becomes a limitation
naming it (the diagnosis goes on), and `--debug` shows its traceback."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from portdoctor import checks, collectors
from portdoctor.checks import reachability
from portdoctor.cli import main
from portdoctor.diagnose import replay_recording

RECORDING = Path(__file__).resolve().parents[1] / "data" / "recordings" / "diagnose_lab--test_absent_host.json"


@pytest.mark.parametrize("load", [collectors.load_entry, checks.load_entry], ids=["collectors", "checks"])
@pytest.mark.parametrize("spec, words", [
    ("portdoctor.collectors.lnux:collect_listeners", "no module portdoctor.collectors.lnux"),
    ("portdoctor.checks.bind:check_bnd", "portdoctor.checks.bind has no function check_bnd"),
    ("portdoctor.checks.bind.check_bind", "is not of the form 'module:function'"),
])
def test_a_misspelt_entry_raises(load, spec: str, words: str) -> None:
    with pytest.raises(LookupError, match=words.replace(".", r"\.")):
        load(spec)


def test_every_registered_entry_loads() -> None:
    for specs in (*collectors.COLLECTORS.values(), *collectors.BEFORE.values(), checks.CHECKS, checks.FOLLOWUPS):
        for spec in specs:
            assert callable(collectors.load_entry(spec))


def test_collect_raises_on_a_misspelt_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(collectors.COLLECTORS, collectors.platform_key(),
                        ["portdoctor.collectors.system:collect_sytem"])
    with pytest.raises(collectors.RegistryError, match="collect_sytem"):
        collectors.collect(collectors.Request(port=1))


def test_run_checks_raises_on_a_misspelt_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "CHECKS", [*checks.CHECKS, "portdoctor.checks.firewal:check_firewall"])
    with pytest.raises(checks.RegistryError, match="no module portdoctor.checks.firewal"):
        replay_recording(json.loads(RECORDING.read_text()))


def _boom(snap: object, ctx: object) -> list:
    raise ZeroDivisionError("a bug in a check")


def test_a_failing_check_becomes_a_limitation_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = json.loads(RECORDING.read_text())
    before = replay_recording(doc)
    monkeypatch.setattr(reachability, "check_reachability", _boom)
    after = replay_recording(doc)
    failed = [x for x in after.limitations if x.startswith("check check_reachability failed")]
    assert failed == ["check check_reachability failed (ZeroDivisionError: a bug in a check); its cause was not "
                      "judged. This is a bug: `portdoctor --debug diagnose ... --record FILE` captures the case "
                      "for a bug report"]
    # the other checks still ran
    others = [f for f in before.findings if f.check != "reachability"]
    assert [f.check for f in after.findings] == [f.check for f in others]


def test_debug_shows_the_traceback_of_a_failing_check(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(reachability, "check_reachability", _boom)
    logger = logging.getLogger("portdoctor")
    handlers, level = list(logger.handlers), logger.level
    try:
        target = json.loads(RECORDING.read_text())["target"]["input"]
        for argv in (["diagnose", target, "--replay", str(RECORDING), "--json"],
                     ["--debug", "diagnose", target, "--replay", str(RECORDING), "--json"]):
            with pytest.raises(SystemExit):
                main(argv)
            out, err = capsys.readouterr()
            assert "check check_reachability failed" in "\n".join(json.loads(out)["limitations"])
            if "--debug" in argv:
                assert "Traceback" in err and "ZeroDivisionError: a bug in a check" in err
                assert "portdoctor.checks.reachability:check_reachability" in err
            else:
                assert "Traceback" not in err
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
