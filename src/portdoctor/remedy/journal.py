"""The journal of applied fixes: what was changed, when, and the backups that undo it.

One folder per `fix` run under STATE_DIR/fixes (default /var/lib/portdoctor, or
$PORTDOCTOR_STATE_DIR), mode 0700: journal.json and the backups of edited files. Each step is
written as soon as it is done, so a crash halfway still leaves what `fix --undo` needs.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from portdoctor.errors import BadInput

DEFAULT_STATE_DIR = "/var/lib/portdoctor"
SCHEMA = "portdoctor.fix-journal/1"


def state_dir() -> Path:
    """Where journals live: $PORTDOCTOR_STATE_DIR, else /var/lib/portdoctor."""
    return Path(os.environ.get("PORTDOCTOR_STATE_DIR") or DEFAULT_STATE_DIR)


class Journal:
    """One fix run's record, kept on disk as it grows."""

    def __init__(self, folder: Path, doc: dict[str, Any]) -> None:
        self.folder = folder
        self.doc = doc

    @classmethod
    def create(cls, target: str, cause: str) -> Journal:
        """A new journal folder for a fix of `target`."""
        base = state_dir() / "fixes"
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(state_dir(), 0o700)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        folder = base / f"{stamp}-{os.getpid()}"
        n = 1
        while folder.exists():
            n += 1
            folder = base / f"{stamp}-{os.getpid()}-{n}"
        (folder / "backups").mkdir(parents=True, mode=0o700)
        j = cls(folder, {"schema": SCHEMA, "target": target, "cause": cause,
                         "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "status": "applying", "steps": []})
        j.save()
        return j

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The records of the steps done, in order."""
        return self.doc["steps"]

    def backup(self, path: str) -> str:
        """Copy `path` (mode and times kept) into the journal; return the copy's path."""
        dest = self.folder / "backups" / f"{len(self.steps):02d}-{Path(path).name}"
        shutil.copy2(path, dest)
        return str(dest)

    def add(self, record: dict[str, Any]) -> None:
        """Record one step as done."""
        self.steps.append(record)
        self.save()

    def set_status(self, status: str, **extra: Any) -> None:
        """applying, applied, rolled_back, undone, failed_rollback."""
        self.doc["status"] = status
        self.doc[f"{status}_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.doc.update(extra)
        self.save()

    def save(self) -> None:
        tmp = self.folder / "journal.json.tmp"
        tmp.write_text(json.dumps(self.doc, indent=2) + "\n")
        os.replace(tmp, self.folder / "journal.json")


def last_applied() -> Journal | None:
    """The newest journal whose fix is applied (not rolled back, not undone yet)."""
    base = state_dir() / "fixes"
    if not base.is_dir():
        return None
    for folder in sorted(base.iterdir(), key=lambda p: p.name, reverse=True):
        try:
            doc = json.loads((folder / "journal.json").read_text())
        except (OSError, ValueError):
            continue
        if doc.get("schema") != SCHEMA:
            raise BadInput(f"{folder}/journal.json is not a portdoctor fix journal")
        if doc.get("status") == "applied":
            return Journal(folder, doc)
    return None
