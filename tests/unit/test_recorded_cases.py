"""Replay diagnoses recorded in the namespace lab: same checks, recorded facts, no system access.

Each file in tests/data/recordings was written by `portdoctor diagnose --record` during a lab
test whose assertions checked the verdict against what a real client saw (PD_RECORD_DIR=...
scripts/test.sh tests/lab/test_diagnose_lab.py refreshes them). Replaying proves the checks are
pure functions of the snapshot and the probe, and pins their verdicts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portdoctor.diagnose import replay_recording
from portdoctor.errors import BadInput
from portdoctor.snapshot import SCHEMA, Snapshot

CASES = sorted((Path(__file__).resolve().parent.parent / "data" / "recordings").glob("*.json"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_replayed_verdict_matches_the_lab(path: Path) -> None:
    doc = json.loads(path.read_text())
    result = replay_recording(doc)
    assert result.verdict.cause.value == doc["expected"]
    # every finding carries evidence, and every error finding says what to do
    for f in result.findings:
        assert f.evidence, f
        if f.severity.value == "error":
            assert f.fix, f


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_snapshot_round_trips_through_json(path: Path) -> None:
    doc = json.loads(path.read_text())
    assert doc["snapshot"]["schema"] == SCHEMA
    snap = Snapshot.from_json(doc["snapshot"])
    assert Snapshot.from_json(json.loads(json.dumps(snap.to_json()))) == snap


V1 = sorted((Path(__file__).resolve().parent.parent / "data" / "snapshot-v1").glob("*.json"))


@pytest.mark.parametrize("path", V1, ids=[p.stem for p in V1])
def test_first_snapshot_format_is_still_read(path: Path) -> None:
    """Recordings made before snapshot/2 (facts under `extra`) read into the same typed facts."""
    old = json.loads(path.read_text())
    assert "extra" in old["snapshot"] and "schema" not in old["snapshot"]
    new = json.loads((path.parent.parent / "recordings" / path.name).read_text())
    assert Snapshot.from_json(old["snapshot"]) == Snapshot.from_json(new["snapshot"])
    assert replay_recording(old).verdict == replay_recording(new).verdict


def test_unknown_snapshot_format_is_bad_input() -> None:
    with pytest.raises(BadInput, match="unknown snapshot format"):
        Snapshot.from_json({"schema": "portdoctor.snapshot/99"})
    with pytest.raises(BadInput, match="not a portdoctor snapshot"):
        Snapshot.from_json({"schema": SCHEMA, "listeners": [{"port": 1}]})


def test_there_are_recordings() -> None:
    assert len(CASES) >= 10
