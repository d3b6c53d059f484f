"""SQLite history: named migrations, rollups, events, incidents, retention, lock errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from portdoctor.monitor.history import (
    MIGRATIONS,
    Batch,
    Event,
    Incident,
    Rollup,
    SqliteStore,
    StorageError,
    TargetState,
    migrate,
)

NOW = 1_780_002_000.0  # a fixed time on an hour boundary


def batch_with(checks: list[tuple[str, float, bool, float]]) -> Batch:
    b = Batch()
    for name, at, ok, secs in checks:
        b.rollups.setdefault((name, int(at // 60)), Rollup()).add(ok, secs)
    return b


def test_migrations_are_named_steps_applied_once(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "h.db"))
    assert store.open() == [name for name, _sql in MIGRATIONS]
    conn = sqlite3.connect(tmp_path / "h.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert migrate(conn) == []  # nothing left to do
    extra = [("0099_test_column", "ALTER TABLE targets ADD COLUMN note TEXT")]
    assert migrate(conn, MIGRATIONS + extra) == ["0099_test_column"]
    assert migrate(conn, MIGRATIONS + extra) == []
    store.close()


def test_checks_roll_up_into_minutes_and_hours(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "h.db"))
    store.write(batch_with([("web", NOW + 1, True, 0.002), ("web", NOW + 11, False, 0.004)]))
    store.write(batch_with([("web", NOW + 21, True, 0.001), ("web", NOW + 61, True, 0.003)]))
    minutes = store.minutes("web", NOW - 60)
    assert [(m.minute * 60, m.checks, m.ok) for m in minutes] == [(NOW, 3, 2), (NOW + 60, 1, 1)]
    assert minutes[0].dur_max == 0.004 and abs(minutes[0].dur_avg - 0.007 / 3) < 1e-9
    (hour,) = store.hours("web", NOW)
    assert (hour.checks, hour.ok) == (4, 3)
    avail = store.availability([86400.0], NOW + 120)
    assert avail == {"web": [0.75]}
    store.close()


def test_events_incidents_and_state_round_trip(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "h.db"))
    b = Batch()
    b.targets["web"] = ("10.0.0.2:80", {"team": "a"})
    b.events.append(Event("web", NOW, "down", "refused", "service_not_running", "nothing listens",
                          {"diagnosis": {"verdict": {"cause": "service_not_running"}}}, 7, "up"))
    b.incidents[7] = Incident(7, "web", NOW, None, "down", "service_not_running", "nothing listens")
    b.states["web"] = TargetState("web", "down", "refused", "service_not_running", "nothing listens", NOW, 3, 0, 7, NOW)
    store.write(b)
    b = Batch()
    b.events.append(Event("web", NOW + 30, "up", "open", "ok", "accepted", {}, 7, "down"))
    b.incidents[7] = Incident(7, "web", NOW + 30, NOW + 30, "down", None, "")  # closing keeps cause, summary, opened
    store.write(b)
    events = store.events("web")
    assert [(e.status, e.cause, e.previous) for e in events] == [("up", "ok", "down"),
                                                                  ("down", "service_not_running", "up")]
    assert events[1].detail["diagnosis"]["verdict"]["cause"] == "service_not_running"
    (inc,) = store.incidents("web")
    assert (inc.opened, inc.closed, inc.cause, inc.summary) == (NOW, NOW + 30, "service_not_running", "nothing listens")
    assert store.load_states()["web"].fails == 3
    assert store.max_incident() == 7
    assert store.names() == [("web", "10.0.0.2:80")]
    store.close()


def test_retention_prunes_each_resolution(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "h.db"))
    old = NOW - 3 * 86400
    b = batch_with([("web", old, True, 0.001), ("web", NOW, True, 0.001)])
    b.events.append(Event("web", old, "up", "open", "ok", "accepted"))
    store.write(b)
    removed = store.prune(NOW, keep_minutes=86400, keep_hours=400 * 86400, keep_events=86400)
    assert removed == 2  # the old minute row and the old event; the old hour row stays
    assert len(store.minutes("web", 0)) == 1 and len(store.hours("web", 0)) == 2
    assert store.events("web") == []
    store.close()


def test_a_locked_database_raises_storage_error_and_the_batch_can_be_retried(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    store = SqliteStore(str(path))
    store.open()
    locker = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    b = batch_with([("web", NOW, True, 0.001)])
    with pytest.raises(StorageError, match="locked"):
        store.write(b)
    locker.execute("COMMIT")
    locker.close()
    store.write(b)
    assert store.minutes("web", 0)[0].checks == 1
    store.close()


def test_batches_merge_when_a_write_failed() -> None:
    older = batch_with([("web", NOW, True, 0.002)])
    newer = batch_with([("web", NOW + 5, False, 0.005)])
    newer.events.append(Event("web", NOW + 5, "down", "refused", None, "x"))
    older.absorb(newer)
    r = older.rollups[("web", int(NOW // 60))]
    assert (r.checks, r.ok, r.dur_max) == (2, 1, 0.005)
    assert len(older.events) == 1


def test_reading_a_missing_database_is_empty(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "none.db"))
    assert store.events() == [] and store.availability([3600.0], NOW) == {} and store.load_states() == {}


def test_a_year_of_ten_second_checks_stays_small(tmp_path: Path) -> None:
    """Downsampled as written: a year of one target is hour rows, plus 48 h of minute rows."""
    store = SqliteStore(str(tmp_path / "h.db"))
    start = NOW - 365 * 86400
    for day in range(365):
        b = Batch()
        for hour in range(24):
            t = start + day * 86400 + hour * 3600
            r = Rollup()
            for _ in range(360):  # a check every 10 s
                r.add(True, 0.001)
            b.rollups[("web", int(t // 60))] = r
        store.write(b)
    b = Batch()
    for minute in range(48 * 60):
        r = Rollup()
        for _ in range(6):
            r.add(True, 0.001)
        b.rollups[("web", int((NOW - 48 * 3600) // 60) + minute)] = r
    store.write(b)
    store.prune(NOW)
    store.close()
    size = sum(p.stat().st_size for p in tmp_path.glob("h.db*"))
    assert len(SqliteStore(str(tmp_path / "h.db")).hours("web", 0)) == 365 * 24
    assert size < 2_000_000, size  # 3.2 million checks in about 1 MB


def test_the_opening_event_of_an_incident_is_the_one_with_the_diagnosis(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "h.db"))
    b = Batch()
    b.events += [Event("web", NOW, "down", "refused", "unknown", "refused", {}, 5),
                 Event("web", NOW + 1, "down", "refused", "service_not_running", "nothing listens",
                       {"diagnosis": {"verdict": {"cause": "service_not_running"}}}, 5),
                 Event("web", NOW + 2, "down", "timeout", "unknown", "no answer", {}, 5),
                 Event("web", NOW + 3, "up", "open", "ok", "accepted", {}, 5),
                 Event("web", NOW + 9, "down", "refused", "unknown", "refused", {}, 6)]
    store.write(b)
    got = store.opening_events([5, 6, 7])
    assert got[5].cause == "service_not_running" and got[6].at == NOW + 9 and 7 not in got
    assert store.opening_events([]) == {}
    store.close()
