"""History of `watch`: check counts per minute and per hour, state changes, incidents.

Storage sits behind the small `Store` protocol so another database (PostgreSQL) can be added
without touching the monitor; `SqliteStore` is the default: one file, WAL mode, schema changes
as named steps recorded in a `migrations` table (the sqlite-utils way).

Size stays bounded: a check is never stored on its own. Each one adds to its target's minute
row and hour row (downsampled as it is written); minute rows are kept 48 h, hour rows and state
changes 400 days by default. A year of 10 s checks of one target is about 9,000 hour rows
plus its state changes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol


class StorageError(Exception):
    """The history could not be read or written (locked, read-only, full, corrupt)."""


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Event:
    """A state change of one target, with what was seen and (when diagnosed) why."""

    name: str
    at: float
    status: str  # up | down | dns | unknown
    state: str  # the probe state: open, refused, timeout, unreachable, dns_error, error, http_error
    cause: str | None
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)  # evidence, fix, probe, http
    incident: int | None = None
    previous: str | None = None  # the status before


@dataclass(frozen=True, slots=True)
class Incident:
    """A stretch of trouble of one target: opened when it went down, closed when it recovered."""

    id: int
    name: str
    opened: float
    closed: float | None
    kind: str  # down | dns | flapping
    cause: str | None
    summary: str
    changes: int = 1


@dataclass(frozen=True, slots=True)
class TargetState:
    """The state machine of one target, kept so that a restart (or the next --once) goes on."""

    name: str
    status: str
    state: str
    cause: str | None
    summary: str
    since: float
    fails: int
    oks: int
    incident: int | None
    updated: float


@dataclass
class Rollup:
    """Counts of checks of one target in one minute (deltas, added to what is stored)."""

    checks: int = 0
    ok: int = 0
    dur_sum: float = 0.0
    dur_max: float = 0.0

    def add(self, ok: bool, seconds: float) -> None:
        self.checks += 1
        self.ok += ok
        self.dur_sum += seconds
        if seconds > self.dur_max:
            self.dur_max = seconds

    def merge(self, other: Rollup) -> None:
        self.checks += other.checks
        self.ok += other.ok
        self.dur_sum += other.dur_sum
        self.dur_max = max(self.dur_max, other.dur_max)


@dataclass
class Batch:
    """Everything waiting to be written; merged into the next batch when a write fails."""

    rollups: dict[tuple[str, int], Rollup] = field(default_factory=dict)  # (name, minute)
    events: list[Event] = field(default_factory=list)
    incidents: dict[int, Incident] = field(default_factory=dict)
    states: dict[str, TargetState] = field(default_factory=dict)
    targets: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)  # name -> (target, labels)

    MAX_EVENTS = 100_000

    def empty(self) -> bool:
        return not (self.rollups or self.events or self.incidents or self.states or self.targets)

    def absorb(self, newer: Batch) -> None:
        """Put `newer` on top of this (older, unwritten) batch."""
        for key, r in newer.rollups.items():
            mine = self.rollups.get(key)
            if mine is None:
                self.rollups[key] = r
            else:
                mine.merge(r)
        self.events.extend(newer.events)
        if len(self.events) > self.MAX_EVENTS:  # bounded: the oldest go first
            del self.events[: len(self.events) - self.MAX_EVENTS]
        self.incidents.update(newer.incidents)
        self.states.update(newer.states)
        self.targets.update(newer.targets)

    def size(self) -> int:
        return len(self.rollups) + len(self.events) + len(self.incidents) + len(self.states)


@dataclass(frozen=True, slots=True)
class MinutePoint:
    """One minute of one target: checks, good checks, mean and worst duration."""

    minute: int
    checks: int
    ok: int
    dur_avg: float
    dur_max: float


class Store(Protocol):
    """What the monitor needs from a history backend."""

    path: str

    def open(self) -> list[str]: ...
    def names(self) -> list[tuple[str, str]]: ...
    def write(self, batch: Batch) -> None: ...
    def load_states(self) -> dict[str, TargetState]: ...
    def max_incident(self) -> int: ...
    def events(self, name: str | None = None, since: float = 0.0, limit: int = 200) -> list[Event]: ...
    def incidents(self, name: str | None = None, since: float = 0.0, limit: int = 100) -> list[Incident]: ...
    def availability(self, windows: Iterable[float], now: float) -> dict[str, list[float | None]]: ...
    def opening_events(self, incidents: Iterable[int]) -> dict[int, Event]: ...
    def minutes(self, name: str, since: float) -> list[MinutePoint]: ...
    def hours(self, name: str, since: float) -> list[MinutePoint]: ...
    def prune(self, now: float, keep_minutes: float, keep_hours: float, keep_events: float) -> int: ...
    def close(self) -> None: ...


# --------------------------------------------------------------------------- SQLite

# Named schema steps, applied in order, each once; never edit a step that has shipped.
MIGRATIONS: list[tuple[str, str]] = [
    ("0001_initial", """
        CREATE TABLE targets (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            target TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE checks_minute (
            target_id INTEGER NOT NULL REFERENCES targets(id),
            minute INTEGER NOT NULL,
            checks INTEGER NOT NULL,
            ok INTEGER NOT NULL,
            dur_sum REAL NOT NULL,
            dur_max REAL NOT NULL,
            PRIMARY KEY (target_id, minute)
        ) WITHOUT ROWID;
        CREATE TABLE checks_hour (
            target_id INTEGER NOT NULL REFERENCES targets(id),
            hour INTEGER NOT NULL,
            checks INTEGER NOT NULL,
            ok INTEGER NOT NULL,
            dur_sum REAL NOT NULL,
            dur_max REAL NOT NULL,
            PRIMARY KEY (target_id, hour)
        ) WITHOUT ROWID;
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            target_id INTEGER NOT NULL REFERENCES targets(id),
            at REAL NOT NULL,
            status TEXT NOT NULL,
            previous TEXT,
            state TEXT NOT NULL,
            cause TEXT,
            summary TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}',
            incident INTEGER
        );
        CREATE INDEX events_target_at ON events (target_id, at);
        CREATE TABLE incidents (
            id INTEGER PRIMARY KEY,
            target_id INTEGER NOT NULL REFERENCES targets(id),
            opened REAL NOT NULL,
            closed REAL,
            kind TEXT NOT NULL,
            cause TEXT,
            summary TEXT NOT NULL,
            changes INTEGER NOT NULL DEFAULT 1
        );
        CREATE INDEX incidents_opened ON incidents (opened);
        CREATE TABLE target_state (
            target_id INTEGER PRIMARY KEY REFERENCES targets(id),
            status TEXT NOT NULL,
            state TEXT NOT NULL,
            cause TEXT,
            summary TEXT NOT NULL,
            since REAL NOT NULL,
            fails INTEGER NOT NULL,
            oks INTEGER NOT NULL,
            incident INTEGER,
            updated REAL NOT NULL
        );
    """),
    # retention deletes by time across every target: index the time columns
    ("0002_retention_indexes", """
        CREATE INDEX checks_minute_minute ON checks_minute (minute);
        CREATE INDEX checks_hour_hour ON checks_hour (hour);
        CREATE INDEX events_at ON events (at);
    """),
]


def _connect(path: str, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        from urllib.parse import quote

        conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, check_same_thread=False, timeout=2.0)
    else:
        conn = sqlite3.connect(path, check_same_thread=False, timeout=2.0, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 2000")
    return conn


def migrate(conn: sqlite3.Connection, steps: list[tuple[str, str]] | None = None) -> list[str]:
    """Apply the migrations `conn` has not seen yet; return their names."""
    steps = MIGRATIONS if steps is None else steps
    conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    done = {row[0] for row in conn.execute("SELECT name FROM migrations")}
    applied: list[str] = []
    for name, sql in steps:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in sql.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


def _guard(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Turn sqlite3 and OS errors of a store method into StorageError naming `what`."""
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: SqliteStore, *args: Any, **kw: Any) -> Any:
            try:
                return fn(self, *args, **kw)
            except (sqlite3.Error, OSError) as exc:
                raise StorageError(f"cannot {what} {self.path}: {exc}{_why_not_writable(self.path)}") from exc
        wrapper.__doc__ = fn.__doc__
        wrapper.__name__ = fn.__name__
        return wrapper
    return deco


def _why_not_writable(path: str) -> str:
    """A hint when the file or its folder cannot be written (a read-only mount, permissions)."""
    folder = os.path.dirname(os.path.abspath(path))
    for p in (path, folder):
        if os.path.exists(p) and not os.access(p, os.W_OK):
            return f" ({p} is read-only here)"
    return ""


class SqliteStore:
    """The history in one SQLite file (WAL mode). Safe to call from several threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()
        self._ids: dict[str, int] = {}

    # ------------------------------------------------------------------ connections

    def _writer(self) -> sqlite3.Connection:
        if self._wconn is None:
            folder = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(folder, mode=0o750, exist_ok=True)
            if not os.path.exists(self.path):
                # diagnoses quote process command lines: the file is for its owner only
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            conn = _connect(self.path)
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise sqlite3.OperationalError(f"WAL mode not available (journal mode is {mode})")
                conn.execute("PRAGMA synchronous = NORMAL")
                migrate(conn)
            except BaseException:
                conn.close()
                raise
            self._wconn = conn
            self._ids = {}
        return self._wconn

    def _reader(self) -> sqlite3.Connection | None:
        if self._rconn is None:
            if not os.path.exists(self.path):
                return None
            self._rconn = _connect(self.path, readonly=True)
        return self._rconn

    def _drop_writer(self) -> None:
        if self._wconn is not None:
            try:
                self._wconn.close()
            except sqlite3.Error:
                pass
            self._wconn = None

    @_guard("open")
    def open(self) -> list[str]:
        """Create the file and apply pending migrations; return the steps applied now."""
        with self._wlock:
            conn = self._writer()
            return [r[0] for r in conn.execute("SELECT name FROM migrations ORDER BY name")]

    # ------------------------------------------------------------------ writing

    def _target_id(self, conn: sqlite3.Connection, name: str, target: str = "", labels: str = "{}") -> int:
        tid = self._ids.get(name)
        if tid is not None:
            return tid
        row = conn.execute("SELECT id FROM targets WHERE name = ?", (name,)).fetchone()
        if row is None:
            cur = conn.execute("INSERT INTO targets (name, target, labels) VALUES (?, ?, ?)",
                               (name, target or name, labels))
            tid = int(cur.lastrowid or 0)
        else:
            tid = int(row[0])
        self._ids[name] = tid
        return tid

    @_guard("write history to")
    def write(self, batch: Batch) -> None:
        """Write a batch in one transaction (all or nothing)."""
        if batch.empty():
            return
        with self._wlock:
            try:
                conn = self._writer()
            except BaseException:
                self._drop_writer()
                raise
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error:
                self._drop_writer()  # a lost file or a changed mount: reopen next time
                raise
            try:
                ids_before = dict(self._ids)
                self._write(conn, batch)
                conn.execute("COMMIT")
            except BaseException:
                self._ids = ids_before
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    self._drop_writer()
                raise

    def _write(self, conn: sqlite3.Connection, batch: Batch) -> None:
        for name, (target, labels) in batch.targets.items():
            tid = self._target_id(conn, name, target, json.dumps(labels, sort_keys=True))
            conn.execute("UPDATE targets SET target = ?, labels = ? WHERE id = ?",
                         (target, json.dumps(labels, sort_keys=True), tid))
        minute_rows = []
        hours: dict[tuple[int, int], Rollup] = {}
        for (name, minute), r in batch.rollups.items():
            tid = self._target_id(conn, name)
            minute_rows.append((tid, minute, r.checks, r.ok, r.dur_sum, r.dur_max))
            h = hours.setdefault((tid, minute // 60), Rollup())
            h.merge(r)
        upsert = """INSERT INTO {t} (target_id, {k}, checks, ok, dur_sum, dur_max) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (target_id, {k}) DO UPDATE SET checks = checks + excluded.checks,
                    ok = ok + excluded.ok, dur_sum = dur_sum + excluded.dur_sum,
                    dur_max = max(dur_max, excluded.dur_max)"""
        conn.executemany(upsert.format(t="checks_minute", k="minute"), minute_rows)
        conn.executemany(upsert.format(t="checks_hour", k="hour"),
                         [(tid, hour, r.checks, r.ok, r.dur_sum, r.dur_max) for (tid, hour), r in hours.items()])
        conn.executemany(
            "INSERT INTO events (target_id, at, status, previous, state, cause, summary, detail, incident) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(self._target_id(conn, e.name), e.at, e.status, e.previous, e.state, e.cause, e.summary,
              json.dumps(e.detail, default=str), e.incident) for e in batch.events])
        conn.executemany(
            "INSERT INTO incidents (id, target_id, opened, closed, kind, cause, summary, changes) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET closed = excluded.closed, "
            "kind = excluded.kind, cause = coalesce(excluded.cause, cause), "
            "summary = CASE WHEN excluded.summary = '' THEN summary ELSE excluded.summary END, "
            "changes = max(changes, excluded.changes)",
            [(i.id, self._target_id(conn, i.name), i.opened, i.closed, i.kind, i.cause, i.summary, i.changes)
             for i in batch.incidents.values()])
        conn.executemany(
            "INSERT OR REPLACE INTO target_state (target_id, status, state, cause, summary, since, fails, oks, "
            "incident, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(self._target_id(conn, s.name), s.status, s.state, s.cause, s.summary, s.since, s.fails, s.oks,
              s.incident, s.updated) for s in batch.states.values()])

    @_guard("prune")
    def prune(self, now: float, keep_minutes: float = 48 * 3600, keep_hours: float = 400 * 86400,
              keep_events: float = 400 * 86400) -> int:
        """Delete rows older than their retention; return how many went."""
        with self._wlock:
            conn = self._writer()
            n = 0
            n += conn.execute("DELETE FROM checks_minute WHERE minute < ?", (int((now - keep_minutes) // 60),)).rowcount
            n += conn.execute("DELETE FROM checks_hour WHERE hour < ?", (int((now - keep_hours) // 3600),)).rowcount
            n += conn.execute("DELETE FROM events WHERE at < ?", (now - keep_events,)).rowcount
            n += conn.execute("DELETE FROM incidents WHERE closed IS NOT NULL AND closed < ?",
                              (now - keep_events,)).rowcount
            return n

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close both connections."""
        with self._wlock:
            if self._wconn is not None:
                try:
                    self._wconn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error:
                    pass
            self._drop_writer()
        with self._rlock:
            if self._rconn is not None:
                self._rconn.close()
                self._rconn = None

    # ------------------------------------------------------------------ reading

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._rlock:
            try:
                conn = self._reader()
                if conn is None:
                    return []
                return conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                if self._rconn is not None:
                    self._rconn.close()
                    self._rconn = None
                if "no such table" in str(exc):
                    return []
                raise StorageError(f"cannot read history from {self.path}: {exc}") from exc

    def load_states(self) -> dict[str, TargetState]:
        """The stored state machine of every target."""
        rows = self._query("SELECT t.name, s.status, s.state, s.cause, s.summary, s.since, s.fails, s.oks, "
                           "s.incident, s.updated FROM target_state s JOIN targets t ON t.id = s.target_id")
        return {r[0]: TargetState(*r) for r in rows}

    def max_incident(self) -> int:
        """The highest incident id stored (0 when none)."""
        rows = self._query("SELECT max(id) FROM incidents")
        return int(rows[0][0] or 0) if rows else 0

    def names(self) -> list[tuple[str, str]]:
        """(name, target) of every target ever recorded."""
        return [(r[0], r[1]) for r in self._query("SELECT name, target FROM targets ORDER BY name")]

    def events(self, name: str | None = None, since: float = 0.0, limit: int = 200) -> list[Event]:
        """State changes, newest first."""
        sql = ("SELECT t.name, e.at, e.status, e.state, e.cause, e.summary, e.detail, e.incident, e.previous "
               "FROM events e JOIN targets t ON t.id = e.target_id WHERE e.at >= ?")
        args: tuple = (since,)
        if name is not None:
            sql += " AND t.name = ?"
            args += (name,)
        sql += " ORDER BY e.at DESC, e.id DESC LIMIT ?"
        rows = self._query(sql, args + (limit,))
        return [Event(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6] or "{}"), r[7], r[8]) for r in rows]

    def incidents(self, name: str | None = None, since: float = 0.0, limit: int = 100) -> list[Incident]:
        """Incidents open at or after `since`, newest first."""
        sql = ("SELECT i.id, t.name, i.opened, i.closed, i.kind, i.cause, i.summary, i.changes FROM incidents i "
               "JOIN targets t ON t.id = i.target_id WHERE (i.closed IS NULL OR i.closed >= ?)")
        args: tuple = (since,)
        if name is not None:
            sql += " AND t.name = ?"
            args += (name,)
        sql += " ORDER BY i.opened DESC LIMIT ?"
        return [Incident(*r) for r in self._query(sql, args + (limit,))]

    def opening_events(self, incidents: Iterable[int]) -> dict[int, Event]:
        """The first failing event of each incident (it carries the diagnosis), by incident id."""
        ids = list(incidents)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._query(
            "SELECT t.name, e.at, e.status, e.state, e.cause, e.summary, e.detail, e.incident, e.previous "
            f"FROM events e JOIN targets t ON t.id = e.target_id WHERE e.incident IN ({marks}) "
            "AND e.status != 'up' ORDER BY e.at DESC", tuple(ids))
        out: dict[int, Event] = {}
        for r in rows:  # newest first: the last one kept is the earliest with a diagnosis, or the earliest
            e = Event(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6] or "{}"), r[7], r[8])
            if e.incident not in out or "diagnosis" in e.detail or "diagnosis" not in out[e.incident].detail:
                out[e.incident] = e  # type: ignore[index]
        return out

    def availability(self, windows: Iterable[float], now: float) -> dict[str, list[float | None]]:
        """Share of good checks per target over each window (seconds back from `now`), or None."""
        windows = list(windows)
        out: dict[str, list[float | None]] = {}
        for i, w in enumerate(windows):
            rows = self._query("SELECT t.name, sum(h.ok), sum(h.checks) FROM checks_hour h "
                               "JOIN targets t ON t.id = h.target_id WHERE h.hour >= ? GROUP BY h.target_id",
                               (int((now - w) // 3600),))
            for name, ok, checks in rows:
                out.setdefault(name, [None] * len(windows))[i] = (ok / checks) if checks else None
        return out

    def minutes(self, name: str, since: float) -> list[MinutePoint]:
        """Minute rows of one target since `since`, oldest first."""
        rows = self._query("SELECT m.minute, m.checks, m.ok, m.dur_sum, m.dur_max FROM checks_minute m "
                           "JOIN targets t ON t.id = m.target_id WHERE t.name = ? AND m.minute >= ? "
                           "ORDER BY m.minute", (name, int(since // 60)))
        return [MinutePoint(r[0], r[1], r[2], (r[3] / r[1]) if r[1] else 0.0, r[4]) for r in rows]

    def hours(self, name: str, since: float) -> list[MinutePoint]:
        """Hour rows of one target since `since`, oldest first (`minute` holds the hour number)."""
        rows = self._query("SELECT h.hour, h.checks, h.ok, h.dur_sum, h.dur_max FROM checks_hour h "
                           "JOIN targets t ON t.id = h.target_id WHERE t.name = ? AND h.hour >= ? "
                           "ORDER BY h.hour", (name, int(since // 3600)))
        return [MinutePoint(r[0], r[1], r[2], (r[3] / r[1]) if r[1] else 0.0, r[4]) for r in rows]


def open_store(path: str) -> SqliteStore:
    """The history store for `path` (not yet opened: writes open it, and reopen after errors)."""
    return SqliteStore(path)
