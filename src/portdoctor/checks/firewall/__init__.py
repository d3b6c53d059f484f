"""Firewall and NAT: which rule rejects, drops or redirects this connection (firewall_reject,
firewall_drop, port_mapping).

The flows checked: the probe this host made (a local connection: output, then input on lo),
the connection from --from (in on the interface that routes back to it), and without --from,
"any client from elsewhere" on each interface, where a rule that depends on the source address
is reported "for some sources". A rule that stops every such client on the interface owning the
target's (non-loopback) address is an error even when the local probe connects: that probe came
in on lo, every real client comes in there. A DNAT sends the flow to a backend that `followups` asks
diagnose to probe; a backend that refuses or does not answer is port_mapping.

Past the SYN: the handshake's ACK (a rule that stops packets after the SYN) and the server's
answer, the SYN-ACK, on its way out through output and postrouting (a rule on OUTPUT --sport). With
--from, those clients are what the user asks about: a rule that stops only this host's own probe
(one on lo) is a warning, and when the --from clients get through (accepted, or DNATed by
PREROUTING, which this host's probe never meets, to a backend that accepts) an info finding of
cause ok says so. A reject or drop whose match cannot be evaluated (its kernel state was not read)
and is the only thing in the way of those clients is an error of low weight, unless its counter
shows it has never stopped a packet. Stateful rules (recent, limit, hashlimit, connlimit, owner)
are judged from the kernel state in the snapshot; one that refuses only some connections is told
with its condition and that state (stateful.py), an error when the state or this host's mixed
probe attempts show it refusing now.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from portdoctor.checks import endpoint_key
from portdoctor.checks.firewall.blocking import (
    finding_for,
    undecidable,
    unknown_finding,
)
from portdoctor.checks.firewall.nat import mapping_findings, redirected
from portdoctor.checks.firewall.passing import handshake_findings, reply_findings, vouch
from portdoctor.checks.firewall.walk import (
    CHECK,
    Checked,
    evaluate,
    evaluator,
    flows,
)
from portdoctor.checks.firewall.wording import decided
from portdoctor.firewall.evaluate import FlowVerdict
from portdoctor.model import Cause, Finding, Severity, Target
from portdoctor.snapshot import Snapshot

if TYPE_CHECKING:
    from portdoctor.checks import Context

__all__ = ["check_firewall", "evaluate", "evaluator", "flows", "followups", "redirected"]

MAX_FOLLOWUPS = 8


def check_firewall(snap: Snapshot, ctx: Context) -> list[Finding]:
    """Findings for the rules that reject, drop or redirect the target's connections."""
    try:
        return _check(snap, ctx)
    except Exception as exc:  # a ruleset we misread must not cost the user the other checks
        return [Finding(cause=Cause.UNKNOWN, check=CHECK, severity=Severity.WARNING,
                        summary=f"the firewall rules could not be evaluated ({type(exc).__name__}: {exc})",
                        evidence=("please report this with `diagnose --record FILE`",), weight=0.05)]

def _check(snap: Snapshot, ctx: Context) -> list[Finding]:
    checked = evaluate(snap, ctx)
    if not checked:
        return []
    findings: list[Finding] = []
    done: set[tuple[str, str]] = set()
    undecidable_seen: set[str] = set()
    order = {"from": 0, "probe": 1, "local": 2, "remote": 3}  # the user's clients first: their fix is scoped to them
    checked = sorted(checked, key=lambda c: order[c.kind])
    from_flows = [c for c in checked if c.kind == "from"]
    local_only: list[Checked] = []  # probe flows stopped by a rule the --from clients do not meet
    for c in checked:
        o = decided(c)
        if o is not None:
            key = (o.step.where if o.step else o.note, o.verdict)
            if key in done:
                continue
            done.add(key)
            f = finding_for(snap, ctx, c, o, definite=True)
            if c.kind == "probe" and from_flows and f.severity is Severity.ERROR:
                # --from names the clients the user asks about; this host's own probe is a side note
                f = replace(f, severity=Severity.WARNING, weight=min(f.weight, 0.4),
                            summary=f"{f.summary}; this host's own connections are stopped, the clients from "
                                    f"{ctx.from_addr} do not meet that rule")
                local_only.append(c)
            findings.append(f)
            continue
        for o in c.evaluation.outcomes:
            if o.verdict is FlowVerdict.UNKNOWN:
                key = (o.step.where if o.step else "?", FlowVerdict.UNKNOWN)
                if key not in done:
                    done.add(key)
                    findings.append(unknown_finding(c, o))
        findings.extend(undecidable(snap, ctx, c, undecidable_seen))
        for o in c.evaluation.outcomes:
            if o.verdict not in (FlowVerdict.DROP, FlowVerdict.REJECT):
                continue
            if any(a.unevaluated is not None for a in o.assumptions):
                continue  # reported as "could not evaluate" above
            key = (o.step.where if o.step else o.note, o.verdict)
            if key in done:
                continue
            done.add(key)
            findings.append(finding_for(snap, ctx, c, o, definite=False))
    findings.extend(mapping_findings(snap, ctx, checked))
    findings.extend(reply_findings(snap, ctx, checked, done))
    findings.extend(handshake_findings(snap, ctx, checked, done))
    findings.extend(vouch(snap, ctx, checked, local_only))
    return findings

def followups(snap: Snapshot, ctx: Context) -> list[Target]:
    """The DNAT destinations of the checked flows, for diagnose to probe."""
    out: list[Target] = []
    seen: set[tuple[str, int]] = set()
    try:
        checked = evaluate(snap, ctx)
    except Exception:  # check_firewall reports it
        return []
    for c in checked:
        for o in c.evaluation.outcomes:
            if o.nat is None or o.verdict is not FlowVerdict.ACCEPT:
                continue
            key = (o.flow.dst, o.flow.dport)
            if key in seen or len(out) >= MAX_FOLLOWUPS:
                continue
            seen.add(key)
            out.append(Target(input=endpoint_key(*key), host=o.flow.dst, port=o.flow.dport))
    return out


# --------------------------------------------------------------------------- evidence
