"""A verify spec written from this host as it is now (`verify --generate`): one check per
listening port, with its bind scope, address families and owner, so that the spec passes on
an unchanged host and fails when a port closes, moves, widens or changes hands.

Built on the port map (`portdoctor.portmap`), the same facts `ports` shows.
"""

from __future__ import annotations

import json
from typing import Any

from portdoctor import addresses, hostview
from portdoctor.snapshot import Snapshot
from portdoctor.verify.run import LOOPBACK, covers_all, effective_v6only, takes

HEADER = """\
# portdoctor verify spec, written by `portdoctor verify --generate` on {host}.
# Every port that listened then; edit it to what this host MUST look like, then run
#   portdoctor verify THIS_FILE [--junit report.xml]
# Keys per check: port | target, listening, bind (all | loopback | [addresses]), families,
# process, reachable_from, blocked_from, address, http: {{path, status}}.
"""


def _q(value: Any) -> str:
    """A YAML scalar: JSON's quoting is valid YAML for strings."""
    return json.dumps(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def entries(snap: Snapshot) -> list[dict[str, Any]]:
    """The checks of a generated spec, as plain data in port order."""
    out: list[dict[str, Any]] = []
    ports = sorted({s.port for s in snap.listeners})
    for port in ports:
        socks = hostview.listeners_on_port(snap, port)
        entry: dict[str, Any] = {"port": port, "listening": True}
        all_fams = [f for f in (4, 6) if any(covers_all(snap, s, f) for s in socks)]
        if all(addresses.is_loopback(s.address) for s in socks):
            entry["bind"] = "loopback"
            entry["families"] = [f for f in (4, 6) if any(takes(snap, s, LOOPBACK[f]) for s in socks)]
        elif all_fams and all(addresses.is_wildcard(s.address) for s in socks):
            entry["bind"] = "all"
            entry["families"] = all_fams
        else:
            entry["bind"] = sorted({addresses.unmapped(s.address) for s in socks})
        owner = None
        for s in socks:
            held = hostview.holder_container(snap, s)
            if held is not None and held.name:
                owner = held.name
                break
            procs = hostview.owners(snap, s)
            if procs:
                owner = hostview.process_name(snap, procs[0].pid)
                break
        name = f"{owner}:{port}" if owner else f"port {port}"
        if owner:
            entry["process"] = owner
        if entry["bind"] == "loopback":
            entry["reachable_from"] = [LOOPBACK[f] for f in entry["families"]]
        dual = [s for s in socks if s.family == 6 and addresses.is_wildcard(s.address)]
        note = None
        if dual:
            v6 = effective_v6only(snap, dual[0])
            note = "[::] with IPV6_V6ONLY: IPv6 only" if v6 else "[::] without IPV6_V6ONLY: IPv4 too" \
                if v6 is False else None
        out.append({"name": name, **entry, "_note": note})
    return out


def generate(snap: Snapshot) -> str:
    """The YAML text of a spec describing `snap`'s listening ports."""
    lines = [HEADER.format(host=snap.hostname or "this host")]
    lines.append("version: 1\ntimeout: 2\nchecks:")
    checks = entries(snap)
    if not checks:
        lines.append("  []  # nothing listened")
    for c in checks:
        note = c.pop("_note")
        first = True
        for key, value in c.items():
            text = "[" + ", ".join(_q(v) for v in value) + "]" if isinstance(value, list) else _q(value)
            comment = f"  # {note}" if note and key == "bind" else ""
            lines.append(f"  {'- ' if first else '  '}{key}: {text}{comment}")
            first = False
    for lim in snap.limitations:
        lines.append(f"# could not see: {lim}")
    return "\n".join(lines) + "\n"


def generate_here() -> str:
    """Collect this host's facts and write a spec of them."""
    from portdoctor.collectors import Request, collect

    return generate(collect(Request(port=0)))
