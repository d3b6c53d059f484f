"""How a firewall path is told to a user: the rule as typed, its chain and position, its packet
counter around the probe, the path that led to it, and the assumptions a verdict rests on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from portdoctor.checks import endpoint_key, facts
from portdoctor.checks.firewall.walk import Checked, destinations, evaluator
from portdoctor.firewall.evaluate import FlowVerdict, Outcome, Step
from portdoctor.firewall.model import counter_key
from portdoctor.model import Cause
from portdoctor.snapshot import Snapshot

if TYPE_CHECKING:
    from portdoctor.checks import Context


def rule_line(step: Step) -> str:
    if step.rule is None:
        return step.where
    comment = f" (comment: {step.rule.comment})" if step.rule.comment and step.rule.comment not in step.rule.text \
        else ""
    text = step.rule.text
    if step.table.source == "nft" and not text.startswith("["):  # as a user would type it
        text = f"nft add rule {step.table.family} {step.table.name} {step.chain} {text}"
    return f"{step.where}: {text}{comment}"

def counter(snap: Snapshot, step: Step | None) -> tuple[int, int] | None:
    """The packet counter of a rule just before and just after the probe, when both were read."""
    fw = snap.firewall
    if fw is None or fw.counters_before is None or step is None or step.rule is None:
        return None
    key = counter_key(step.table, step.chain, step.rule)
    if key in fw.counters_before and key in fw.counters_after:
        return int(fw.counters_before[key]), int(fw.counters_after[key])
    return None

def path_lines(o: Outcome) -> list[str]:
    lines = []
    if o.nat is not None and o.original is not None:
        lines.append(f"NAT: {rule_line(o.nat)} rewrites {o.original.dst}:{o.original.dport} -> "
                     f"{endpoint(o.flow.dst, o.flow.dport)}")
    for s in o.path:
        lines.append(f"reached through {rule_line(s)}")
    return lines

def endpoint(host: str, port: int) -> str:
    return endpoint_key(host, port)

def assumption_words(o: Outcome) -> list[str]:
    out = []
    for a in o.assumptions:
        verb = "matches" if a.matched else "does not match"
        out.append(f"if {a.step.where} {verb} (depends on the {a.reason}): {a.step.rule.text if a.step.rule else ''}"
                   .rstrip(": "))
    return out

def probe_state(ctx: Context, address: str) -> Any:
    for a in ctx.probe.addresses:
        if a.address == address:
            return a
    return None

def listeners_line(snap: Snapshot, o: Outcome) -> tuple[bool, str]:
    socks = facts.accepting(snap, o.flow.dst, o.flow.dport)
    if socks:
        return True, "a listener is there, so the firewall is what stops it: " + facts.describe(snap, socks[0])
    if snap.listeners:
        return False, f"nothing listens on {endpoint(o.flow.dst, o.flow.dport)} either"
    return False, "no listener list was read for this host"


# --------------------------------------------------------------------------- findings

def cause_of(o: Outcome) -> Cause:
    return Cause.FIREWALL_DROP if o.verdict is FlowVerdict.DROP else Cause.FIREWALL_REJECT

def flow_words(c: Checked) -> str:
    f = c.evaluation.flow
    if c.kind == "probe":
        return f"this host's own connection to {endpoint(f.dst, f.dport)}"
    if c.kind == "local":
        return f"connections made on this host by other users to {endpoint(f.dst, f.dport)}"
    if c.kind == "from":
        return f"connections from {f.src} to {endpoint(f.dst, f.dport)}" + (f" (in on {f.iif})" if f.iif else "")
    return f"clients from other hosts to {endpoint(f.dst, f.dport)}" + (f" (in on {f.iif})" if f.iif else "")

def decided(c: Checked) -> Outcome | None:
    """The bad outcome when every way the flow can go ends in drop or reject."""
    outs = c.evaluation.outcomes
    bad = [o for o in outs if o.verdict in (FlowVerdict.DROP, FlowVerdict.REJECT)]
    if outs and len(bad) == len(outs):
        return min(bad, key=lambda o: len(o.assumptions))
    return None

def remote_clients_of_target(snap: Snapshot, ctx: Context, c: Checked) -> bool:
    """True for the "any client from elsewhere" flow to the target's own (non-loopback) address
    that comes in on the interface owning that address: the way every remote client arrives,
    while this host's own probe goes through lo and so cannot see what they meet."""
    f = c.evaluation.flow
    if c.kind != "remote" or not f.iif or facts.is_loopback(f.dst) or f.dst not in destinations(ctx):
        return False
    ev = evaluator(snap, ctx)
    return ev is not None and ev.host.local_addresses.get(f.dst) == f.iif
