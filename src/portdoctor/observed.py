"""What a snapshot could not see, asked by commands that must not read "not seen" as "absent"
(`verify`, `audit`): a listener table that could not be read is not an empty one."""

from __future__ import annotations

from portdoctor.snapshot import Snapshot


# How the collectors (Linux, macOS, FreeBSD, psutil) say that listeners were not, or not all, seen
_LISTENERS_UNSEEN = ("listening sockets are unknown", "listeners are not known",
                     "listening sockets of other users' processes are not seen", "only lsof's listeners are known")


def listeners_blind(snap: Snapshot) -> str | None:
    """Why the listener table is not known, or not wholly (it could not be read), or None when it was."""
    for lim in snap.limitations:
        text = str(lim)
        if text.startswith("owners of"):  # "owners of N listening sockets are unknown": the sockets were seen
            continue
        if any(x in text for x in _LISTENERS_UNSEEN) or text.startswith(("listeners could not be read",
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


def firewall_blind(snap: Snapshot) -> str | None:
    """Why the firewall's verdict cannot be known (no facts, or a ruleset dump that failed, e.g.
    without root), or None when every ruleset tool answered. An unread ruleset is not an empty one."""
    fw = snap.firewall
    if fw is None:
        return next((str(x) for x in snap.limitations if "rules not read" in str(x) or "firewall" in str(x)),
                    "the firewall rules were not collected")
    failed = [t.tool for t in fw.tools if not t.ok]
    if not failed:
        return None
    said = [str(x) for x in snap.limitations if "rules not read" in str(x) or " not read: " in str(x)]
    return "; ".join(said) if said else f"{', '.join(failed)} failed: the firewall rules are not known"
