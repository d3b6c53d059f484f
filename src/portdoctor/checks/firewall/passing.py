"""Past the SYN: the handshake's ACK and the server's SYN-ACK on its way out, and the info finding
that vouches for the --from clients when only this host's own probe is stopped."""

from __future__ import annotations

from typing import TYPE_CHECKING

from portdoctor.checks import endpoint_key, facts
from portdoctor.checks.firewall.walk import CHECK, Checked
from portdoctor.checks.firewall.wording import (
    assumption_words,
    counter,
    decided,
    endpoint,
    flow_words,
    listeners_line,
    path_lines,
    rule_line,
)
from portdoctor.firewall.advice import (
    client_error,
    command_tool,
    established_fixes,
    reject_words,
)
from portdoctor.firewall.evaluate import FlowVerdict, Outcome
from portdoctor.model import Cause, Finding, Fix, Severity, State
from portdoctor.snapshot import Snapshot

if TYPE_CHECKING:
    from portdoctor.checks import Context


def _clean(c: Checked) -> bool:
    """Every way of the flow is accepted, for certain, and so are its reply and the handshake's ACK."""
    outs = c.evaluation.outcomes
    if not outs or any(o.verdict is not FlowVerdict.ACCEPT or not o.definite for o in outs):
        return False
    for ev in (c.established, c.reply):
        if ev is not None and any(o.verdict is not FlowVerdict.ACCEPT for o in ev.outcomes):
            return False
    return True

def _accepted_by(o: Outcome) -> str:
    if o.step is None:
        return "no rule (nothing on the way stops it)"
    return rule_line(o.step) if o.step.rule is not None else o.step.where

def vouch(snap: Snapshot, ctx: Context, checked: list[Checked], local_only: list[Checked]) -> list[Finding]:
    """Say that the clients of --from get through when this host's own probe fails for a reason they
    do not meet: a rule on lo, or a DNAT that nat PREROUTING applies to remote clients only."""
    from_flows = [c for c in checked if c.kind == "from"]
    probes = [c for c in checked if c.kind == "probe"]
    if ctx.probe.state is State.OPEN or not from_flows or not all(_clean(c) for c in from_flows):
        return []
    out: list[Finding] = []
    for c in from_flows:
        o = c.evaluation.outcomes[0]
        who = flow_words(c)
        if o.nat is not None and o.original is not None:
            key = endpoint_key(o.flow.dst, o.flow.dport)
            res = ctx.followups.get(key)
            if res is None or res.state is not State.OPEN:
                continue
            probe_natted = any(p.kind == "probe" and any(x.nat is not None and x.flow.dst == o.flow.dst
                                                         and x.flow.dport == o.flow.dport
                                                         for x in p.evaluation.outcomes)
                               for p in probes)
            if probe_natted:
                continue
            out.append(Finding(
                cause=Cause.OK, check=CHECK, severity=Severity.INFO,
                summary=f"{who} are DNATed to {key} by {o.nat.where}, which accepts (a connection from this host "
                        f"to {key} opened); this host's own connections are not DNATed (nat PREROUTING does "
                        "not see them), so a test from this host is refused while those clients get through",
                evidence=(f"NAT rule: {rule_line(o.nat)}", f"a connection from this host to {key} was open",
                          f"let through by {_accepted_by(o)}",
                          "the server's answers and the rest of the handshake are accepted too"),
                weight=0.85))
        elif local_only and facts.accepting(snap, o.flow.dst, o.flow.dport):
            socks = facts.accepting(snap, o.flow.dst, o.flow.dport)
            bad = [decided(p) for p in local_only]
            rules = "; ".join(dict.fromkeys(x.step.where if x.step else x.note for x in bad if x is not None))
            out.append(Finding(
                cause=Cause.OK, check=CHECK, severity=Severity.INFO,
                summary=f"{who} are accepted and a service listens there; only this host's own connections "
                        f"are stopped ({rules}), which is why the test from this host failed",
                evidence=(f"let through by {_accepted_by(o)}", "a listener takes them: " + facts.describe(snap, socks[0]),
                          "the server's answers and the rest of the handshake are accepted too"),
                weight=0.85))
    return out

def reply_findings(snap: Snapshot, ctx: Context, checked: list[Checked],
                    done: set[tuple[str, str]]) -> list[Finding]:
    """A SYN let in but the server's answer (SYN-ACK) stopped on its way out (OUTPUT, POSTROUTING)."""
    out: list[Finding] = []
    for c in checked:
        rep = c.reply
        # stopped on its way out; a local client's answer stopped in input (on lo) is a packet after the
        # SYN like the handshake's ACK, which handshake_findings reports
        if rep is None or not rep.outcomes or any(o.verdict not in (FlowVerdict.DROP, FlowVerdict.REJECT) or o.hook not in
                                                  ("output", "postrouting") for o in rep.outcomes):
            continue
        o = min(rep.outcomes, key=lambda x: len(x.assumptions))
        key = ((o.step.where if o.step else o.note) + " (reply)", o.verdict)
        if key in done:
            continue
        done.add(key)
        f = c.evaluation.flow
        syn = c.evaluation.outcomes[0].flow
        server = endpoint(syn.dst, syn.dport)
        place = o.step.where if o.step else f"the {o.hook} path"
        evidence = [rule_line(o.step) if o.step else o.note, *path_lines(o),
                    f"the SYN of {flow_words(c)} is accepted (by {_accepted_by(c.evaluation.outcomes[0])}); "
                    f"the server's answer, from {server} (source port {syn.dport}) to {f.src}, leaves through "
                    f"the {o.hook} hook, where this rule {reject_words(o)} it",
                    "a reject there answers this host itself, not the client (the rejected packet comes from "
                    "here): the client gets nothing back and retries until it times out"]
        if not o.definite:
            evidence.extend(assumption_words(o))
        listening, lline = listeners_line(snap, c.evaluation.outcomes[0])
        if lline:
            evidence.append(lline)
        counts = counter(snap, o.step)
        if counts is not None:
            evidence.append(f"packet counter of that rule: {counts[0]} before the probe, {counts[1]} after")
        fixes = []
        if o.step is not None and o.step.rule is not None:
            tool = command_tool(o.step.table)
            if tool == "nft":
                t = o.step.table
                if o.step.rule.handle is not None:
                    fixes.append(Fix(f"delete the rule that {reject_words(o)} the server's answers (check first "
                                     "what else it blocks)",
                                     f"nft delete rule {t.family} {t.name} {o.step.chain} handle {o.step.rule.handle}"))
            else:
                t = "" if o.step.table.name == "filter" else f"-t {o.step.table.name} "
                fixes.append(Fix(f"delete the rule that {reject_words(o)} the server's answers (rule "
                                 f"{o.step.rule.position} of {o.step.chain}; check first what else it blocks)",
                                 f"{tool} {t}-D {o.step.chain} {o.step.rule.position}"))
        fixes.extend(Fix(x.description.replace("connections already let in", "connections already let in "
                                               "(the server's answers among them)"), x.command)
                     for x in established_fixes(o))
        definite = o.definite
        weight = (0.85 if listening else 0.5) if definite else 0.35
        sev = Severity.ERROR if c.kind != "probe" or not any(x.kind == "from" for x in checked) else Severity.WARNING
        if sev is Severity.WARNING:
            weight = min(weight, 0.4)
        out.append(Finding(
            cause=Cause.FIREWALL_DROP, check=CHECK, severity=sev,
            summary=f"{place} {reject_words(o)} the server's answers (SYN-ACK from {server}, --sport {syn.dport}) "
                    f"to {f.src}: {flow_words(c)} are let in, but the answer never leaves this host, so the "
                    "client sees a timeout (ETIMEDOUT)" + ("" if definite else " (for some cases)"),
            evidence=tuple(evidence), fix=tuple(fixes), weight=weight))
    return out

def handshake_findings(snap: Snapshot, ctx: Context, checked: list[Checked],
                        done: set[tuple[str, str]]) -> list[Finding]:
    """A SYN let through but the rest of the connection refused: "forgot established,related"."""
    out: list[Finding] = []
    for c in checked:
        est = c.established
        if est is None or not est.outcomes or any(o.verdict not in (FlowVerdict.DROP, FlowVerdict.REJECT) for o in est.outcomes):
            continue
        o = min(est.outcomes, key=lambda x: len(x.assumptions))
        key = ((o.step.where if o.step else o.note) + " (established)", o.verdict)
        if key in done:
            continue
        done.add(key)
        if o.verdict is FlowVerdict.REJECT and (o.reject_with or "").lower() == "tcp-reset":
            seen = "the connection opens and is reset at once (ECONNRESET)"
            cause = Cause.FIREWALL_REJECT
        elif o.verdict is FlowVerdict.REJECT:
            errno, words = client_error(o)
            seen = (f"the connection opens, then fails with {words} ({errno}) as soon as the client "
                    "checks it (non-blocking clients see it at connect)")
            cause = Cause.FIREWALL_REJECT
        else:
            seen = "the connection opens on the client, then hangs: the server never completes the handshake"
            cause = Cause.FIREWALL_DROP
        place = o.step.where if o.step else f"the {o.hook} path"
        evidence = [rule_line(o.step) if o.step else o.note, *path_lines(o),
                    "the first packet (SYN) is accepted; the next ones are in conntrack state ESTABLISHED, "
                    "which no rule before it accepts"]
        listening, lline = listeners_line(snap, o) if facts.is_local(snap, o.flow.dst) else (True, "")
        if lline:
            evidence.append(lline)
        out.append(Finding(
            cause=cause, check=CHECK, severity=Severity.ERROR,
            summary=f"{place} {reject_words(o)} the packets after the SYN of {flow_words(c)}: {seen}",
            evidence=tuple(evidence), fix=tuple(established_fixes(o)), weight=0.7 if listening else 0.5))
    return out
