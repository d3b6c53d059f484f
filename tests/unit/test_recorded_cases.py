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
from portdoctor.model import Snapshot

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


@pytest.mark.parametrize("path", CASES[:3], ids=[p.stem for p in CASES[:3]])
def test_snapshot_round_trips_through_json(path: Path) -> None:
    doc = json.loads(path.read_text())
    snap = Snapshot.from_json(doc["snapshot"])
    assert Snapshot.from_json(json.loads(json.dumps(snap.to_json()))) == snap


def test_there_are_recordings() -> None:
    assert len(CASES) >= 10
