"""An audit (`portdoctor audit`) as plain text or Markdown; JSON is `Audit.to_json`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from portdoctor.audit import Audit, PortExposure

_EXPOSED = {True: "yes", False: "no", None: "?"}
_TITLE = {"newly_exposed": "newly exposed", "newly_blocked": "newly blocked", "changed_owner": "changed owner",
          "changed_bind_scope": "changed bind scope", "new_listener": "new listener", "closed": "closed"}


def _reach(p: PortExposure) -> str:
    parts = []
    for r in p.reach:
        rules = f" ({'; '.join(r.rules)})" if r.rules and r.state != "open" else ""
        parts.append(f"{r.address}: {r.state}{rules}")
    return "; ".join(parts) or ("this host only" if p.scope == "loopback" else "-")


def _headline(a: Audit) -> str:
    exposed = sum(1 for p in a.ports if p.exposed)
    head = f"portdoctor audit of {a.host} at {a.taken_at}: {len(a.ports)} listening ports, {exposed} reachable " \
           "from other hosts"
    if a.baseline is None:
        return head
    if not a.differences:
        return head + f"; no difference from the baseline {a.baseline} ({a.baseline_taken_at})"
    return head + f"; {len(a.differences)} difference{'s' if len(a.differences) != 1 else ''} from the baseline " \
                  f"{a.baseline} ({a.baseline_taken_at})"


def text(a: Audit) -> str:
    """Differences first (when a baseline was given), then every port."""
    out = [_headline(a)]
    if a.differences:
        out.append("")
        for d in a.differences:
            out.append(f"  {_TITLE[d.kind]:<19} {d.summary}")
    out += ["", f"{'port':<12} {'bound to':<28} {'owner':<20} {'exposed':<8} reach from other hosts"]
    for p in a.ports:
        out.append(f"{p.key:<12} {', '.join(p.bound):<28} {', '.join(p.owners) or '?':<20} "
                   f"{_EXPOSED[p.exposed]:<8} {_reach(p)}" + (f"  via {', '.join(p.via)}" if p.via else ""))
    out += [f"could not see: {x}" for x in a.limitations]
    return "\n".join(out) + "\n"


def markdown(a: Audit) -> str:
    """A document for a ticket: the differences, then the exposure table."""
    out = [f"# Exposure audit of `{a.host}`", "", _headline(a) + "."]
    if a.baseline is not None:
        out += ["", "## Differences from the baseline", ""]
        out += [f"- **{_TITLE[d.kind]}**: {d.summary}" for d in a.differences] or ["None."]
    out += ["", "## Listening ports", "", "| port | bound to | owner | exposed | reach from other hosts | via |",
            "| --- | --- | --- | --- | --- | --- |"]
    for p in a.ports:
        out.append(f"| {p.key} | {', '.join(f'`{b}`' for b in p.bound)} | {', '.join(p.owners) or '?'} | "
                   f"{_EXPOSED[p.exposed]} | {_reach(p).replace('|', '/')} | {', '.join(p.via) or '-'} |")
    if a.limitations:
        out += ["", "## Could not see", ""] + [f"- {x}" for x in a.limitations]
    return "\n".join(out) + "\n"
