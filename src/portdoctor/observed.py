"""What a snapshot could not see, asked by commands that must not read "not seen" as "absent"
(`verify`, `audit`): a listener table that could not be read is not an empty one."""

from __future__ import annotations

from portdoctor.snapshot import Snapshot


def listeners_blind(snap: Snapshot) -> str | None:
    """Why the listener table is not known (it could not be read), or None when it was read."""
    for lim in snap.limitations:
        text = str(lim)
        if "listening sockets are unknown" in text or text.startswith(("listeners could not be read",
                                                                       "collect_listeners")):
            return text
    return None


def owners_blind(snap: Snapshot) -> str | None:
    """Why the owners of some listening sockets are not known, or None."""
    for lim in snap.limitations:
        text = str(lim)
        if text.startswith(("owners of", "processes could not be read", "collect_processes")) \
                or "no owner among" in text:
            return text
    return None
