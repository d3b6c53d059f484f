"""What the `watch` and `history` commands call: run the monitor, and render its answers.

The CLI stays thin: it parses arguments and calls `watch_forever`, `watch_once` or
`history`, then one of the `render_*` functions for the chosen format.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from portdoctor.errors import BadInput, Incomplete
from portdoctor.monitor.config import ConfigError, load_config, parse_duration

ONCE_SCHEMA = "portdoctor.watch/1"
HISTORY_SCHEMA = "portdoctor.history/1"


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
                           "level": record.levelname.lower(), "message": record.getMessage()})


def setup_logging(fmt: str, stream: Any = None) -> None:
    """Log lines of the monitor to stderr: text, or one JSON object a line with --format json."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s portdoctor watch: %(levelname)s %(message)s",
                                               "%Y-%m-%dT%H:%M:%S%z"))
    logger = logging.getLogger("portdoctor.watch")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def watch_forever(path: str, fmt: str = "text") -> int:
    """Run the monitor of config `path` until SIGTERM; return the exit code."""
    import asyncio

    from portdoctor.monitor.service import Watch

    config = load_config(path)
    setup_logging(fmt)

    async def main() -> int:
        watch = Watch(config)
        try:
            return await watch.run()
        except OSError as exc:
            if exc.errno in (98, 99, 13):  # EADDRINUSE, EADDRNOTAVAIL, EACCES on bind
                raise Incomplete(f"the dashboard cannot listen on {config.web.host}:{config.web.port}: "
                                 f"{exc.strerror}") from None
            raise

    return asyncio.run(main())


def watch_once(path: str) -> dict[str, Any]:
    """Check every target once, record and alert; return the `portdoctor.watch/1` document."""
    import asyncio

    from portdoctor.monitor.service import Watch

    config = load_config(path)
    setup_logging("text")

    async def main() -> dict[str, Any]:
        watch = Watch(config)
        lives = await watch.once()
        doc: dict[str, Any] = {"schema": ONCE_SCHEMA, "targets": [watch.target_json(lv) for lv in lives]}
        doc["history"] = {"path": config.history.path, "ok": watch.storage_ok is not False,
                          "error": watch.storage_error}
        return doc

    return asyncio.run(main())


def history(name: str, config_path: str | None, db: str | None, since: str) -> dict[str, Any]:
    """State changes, incidents and availability of one target, from the history database."""
    from portdoctor.monitor.config import default_db_path
    from portdoctor.monitor.history import SqliteStore, StorageError

    if db is None and config_path is not None:
        db = load_config(config_path).history.path
    db = db or default_db_path()
    try:
        seconds = parse_duration(since)
    except ValueError as exc:
        raise BadInput(f"--since: {exc}") from None
    import os

    if not os.path.exists(db):
        raise BadInput(f"no history at {db}: give --db FILE or --config CONFIG of the watch that writes it")
    if not os.access(db, os.R_OK):
        raise Incomplete(f"cannot read the history at {db} (permission denied: run as its owner or root)")
    store = SqliteStore(db)
    now = time.time()
    try:
        known = store.names()
        match = [n for n, t in known if n == name] or [n for n, t in known if t == name]
        if not match:
            names = ", ".join(n for n, _t in known[:8]) + (" ..." if len(known) > 8 else "")
            raise BadInput(f"no target {name!r} in {db} (known: {names or 'none'})")
        key = match[0]
        events = store.events(key, now - seconds, 1000)
        incidents = store.incidents(key, now - seconds, 200)
        avail = store.availability((86400.0, 7 * 86400.0, 30 * 86400.0), now).get(key, [None, None, None])
        state = store.load_states().get(key)
    except StorageError as exc:
        raise Incomplete(str(exc)) from None
    finally:
        store.close()
    target = next(t for n, t in known if n == key)
    return {
        "schema": HISTORY_SCHEMA,
        "name": key,
        "target": target,
        "db": db,
        "since": _iso(now - seconds),
        "current": None if state is None else {
            "status": state.status, "state": state.state, "cause": state.cause, "summary": state.summary,
            "since": _iso(state.since)},
        "availability": {"24h": avail[0], "7d": avail[1], "30d": avail[2]},
        "events": [{"at": _iso(e.at), "status": e.status, "previous": e.previous, "state": e.state,
                    "cause": e.cause, "summary": e.summary, "incident": e.incident,
                    "evidence": _evidence(e.detail)} for e in events],
        "incidents": [{"id": i.id, "opened": _iso(i.opened), "closed": _iso(i.closed) if i.closed else None,
                       "kind": i.kind, "cause": i.cause, "summary": i.summary, "changes": i.changes}
                      for i in incidents],
    }


def _evidence(detail: dict[str, Any]) -> list[str]:
    diag = detail.get("diagnosis") if isinstance(detail, dict) else None
    if not diag:
        return []
    return [e for f in diag.get("findings", [])[:1] for e in f.get("evidence", [])]


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# --------------------------------------------------------------------------- rendering


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f}%"


def render_once(doc: dict[str, Any], fmt: str) -> str:
    """The `watch --once` document as text, Markdown or JSON."""
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    rows = doc["targets"]
    if fmt == "markdown":
        lines = ["## portdoctor watch --once", "", "| status | name | target | state | cause | summary |",
                 "|---|---|---|---|---|---|"]
        for t in rows:
            lines.append(f"| **{t['status']}** | {_md(t['name'])} | `{t['target']}` | {t['state']} | "
                         f"{t['cause'] or ''} | {_md(t['summary'])} |")
        return "\n".join(lines) + "\n"
    width = max((len(t["name"]) for t in rows), default=4)
    out = [f"{'status':8} {'name':{width}}  {'state':11} {'cause':20} summary"]
    for t in rows:
        out.append(f"{t['status']:8} {t['name']:{width}}  {t['state']:11} {t['cause'] or '-':20} {t['summary']}")
    if not doc["history"]["ok"]:
        out.append(f"history not written: {doc['history']['error']}")
    return "\n".join(out) + "\n"


def render_history(doc: dict[str, Any], fmt: str) -> str:
    """The `history TARGET` document as text, Markdown or JSON."""
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    a = doc["availability"]
    cur = doc["current"]
    if fmt == "markdown":
        lines = [f"## history of `{doc['name']}` ({doc['target']})", "",
                 f"availability: 24 h {_pct(a['24h'])}, 7 d {_pct(a['7d'])}, 30 d {_pct(a['30d'])}", ""]
        if cur:
            lines += [f"now: **{cur['status']}** ({cur['state']}, {cur['cause'] or '-'}) since {cur['since']}: "
                      f"{_md(cur['summary'])}", ""]
        lines += ["| at | status | state | cause | summary |", "|---|---|---|---|---|"]
        for e in doc["events"]:
            lines.append(f"| {e['at']} | **{e['status']}** | {e['state']} | {e['cause'] or ''} | {_md(e['summary'])} |")
        return "\n".join(lines) + "\n"
    out = [f"{doc['name']}  ({doc['target']})",
           f"availability  24 h {_pct(a['24h'])}   7 d {_pct(a['7d'])}   30 d {_pct(a['30d'])}"]
    if cur:
        out.append(f"now           {cur['status']} ({cur['state']}, {cur['cause'] or '-'}) since {cur['since']}")
    out.append("")
    if not doc["events"]:
        out.append(f"no state change since {doc['since']}")
    for e in doc["events"]:
        out.append(f"{e['at']}  {e['status']:7} {e['state']:11} {e['cause'] or '-':20} {e['summary']}")
        for ev in e["evidence"][:4]:
            out.append(f"{'':22}  evidence: {ev}")
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


__all__ = ["ConfigError", "watch_forever", "watch_once", "history", "render_once", "render_history"]
