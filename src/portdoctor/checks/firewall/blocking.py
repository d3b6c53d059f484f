"""Findings for a rule that rejects or drops the connection's SYN (firewall_reject / firewall_drop),
and for a rule whose match portdoctor cannot evaluate but which decides the outcome."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from portdoctor.checks import facts
from portdoctor.checks.firewall.stateful import condition, intermittent, state_lines, stateful_fixes
from portdoctor.checks.firewall.walk import CHECK, Checked
from portdoctor.checks.firewall.wording import (
    assumption_words,
    cause_of,
    counter,
    endpoint,
    flow_words,
    listeners_line,
    path_lines,
    probe_state,
    remote_clients_of_target,
    rule_line,
)
from portdoctor.firewall.advice import (
    allow_fixes,
    client_error,
    command_tool,
    kube_service_of,
    manager,
    reject_words,
)
from portdoctor.firewall.evaluate import FlowVerdict, Outcome, Step
from portdoctor.model import Cause, Finding, Severity, State
from portdoctor.snapshot import Snapshot

if TYPE_CHECKING:
    from portdoctor.checks import Context


def finding_for(snap: Snapshot, ctx: Context, c: Checked, o: Outcome, definite: bool) -> Finding:
    errno, words = client_error(o)
    who = f"{flow_words(c)}"
    every_remote = definite and remote_clients_of_target(snap, ctx, c)
    step = o.step
    place = step.where if step is not None else f"the {o.hook} path"
    kube = kube_service_of(o)
    evidence: list[str] = []
    if step is not None:
        evidence.append(rule_line(step))
    elif o.note:
        evidence.append(o.note)
    evidence.extend(path_lines(o))
    listening, lline = listeners_line(snap, o) if facts.is_local(snap, o.flow.dst) else (True, "")
    if lline:
        evidence.append(lline)
    weight = 0.9 if listening else 0.6
    cond = condition(o)
    evidence.extend(state_lines(snap, o))
    mixed = intermittent(ctx, c.evaluation.flow.dst) if c.kind == "probe" and cond else ""
    if mixed:
        evidence.append(f"{mixed}: some connections get through, others are refused by this rule")
    counts = counter(snap, step)
    if counts is not None:
        b, a = counts
        if a > b:
            evidence.append(f"packet counter of that rule: {b} before the probe, {a} after: it rose, "
                            "so a connection attempt hit it")
            # proof the rule fires; it outranks "not running" only when something listens
            weight = 0.95 if listening else 0.65
        else:
            evidence.append(f"packet counter of that rule: {b} before the probe, {a} after")
    contradicted = False
    if c.kind == "probe":
        seen = probe_state(ctx, c.evaluation.flow.dst)
        if seen is not None:
            evidence.append(f"the probe from this host saw {seen.state.value}"
                            + (f" ({seen.errno})" if seen.errno else ""))
            if seen.state is State.OPEN:  # reality disagrees: the rules read are not the whole story
                evidence.append("yet it connected: something outside the rules read lets it through")
                contradicted = True
                weight = min(weight, 0.3)
    if kube is not None:
        # the port belongs to a Service: nothing is expected to listen on the node itself
        weight = max(weight, 0.9)
        listening = True
    if not definite:
        evidence.extend(assumption_words(o))
    verb = reject_words(o)
    if kube is not None:
        ns, svc, _p = kube
        summary = (f"kube-proxy rejects {who}: Service {ns}/{svc} has no endpoints ({place}); "
                   f"the client sees {words} ({errno})")
    elif every_remote:
        f = c.evaluation.flow
        summary = (f"{place} {verb} every client from other hosts to {endpoint(f.dst, f.dport)} (they come in on "
                   f"{f.iif}, the interface of {f.dst}); they see {words} ({errno}), while connections from "
                   "this host get through (they use lo), so a check from this host passes")
        if o.definite:
            evidence.append(f"no match on the way depends on the client's address: every client that comes "
                            f"in on {f.iif} is stopped, whatever its source")
        else:
            evidence.append(f"every way through the rules ends in a drop or a reject for clients coming in on "
                            f"{f.iif}, whatever their source")
    elif cond:
        summary = f"{place} {verb} {who} {cond}; a client it stops sees {words} ({errno})"
        if mixed:
            summary = f"intermittent refusal: {summary}"
    elif definite:
        summary = f"{place} {verb} {who}; the client sees {words} ({errno})"
    else:
        summary = f"{place} {verb} {who} for some sources or cases; a client it matches sees {words} ({errno})"
    if o.nat is not None and o.original is not None:
        summary += f", after {o.nat.where} DNATs it to {endpoint(o.flow.dst, o.flow.dport)}"
    if definite and not listening and facts.is_local(snap, o.flow.dst) and snap.listeners:
        summary += f"; nothing listens on port {o.flow.dport} either, so the service is down too"
    mgr = manager(o)
    if mgr and kube is None:
        summary += f" (chains written by {mgr})"
    source = ctx.from_addr if c.kind == "from" else None
    fixes = tuple(allow_fixes(o, source)) + tuple(stateful_fixes(o))
    rose = counts is not None and counts[1] > counts[0]
    if mixed or (cond and definite and c.kind != "remote" and not contradicted):
        # the kernel's own state (or the probe's mixed attempts) shows this rule refusing now
        severity, weight = Severity.ERROR, max(weight, 0.9 if mixed else 0.85)
    elif cond and rose and c.kind != "remote":
        severity, weight = Severity.ERROR, min(weight, 0.75)
    elif cond and c.kind == "from" and not contradicted:
        # the --from clients fail and a rate or count limit stands in their way: the likely cause,
        # though the state read does not show it refusing them right now
        severity, weight = Severity.ERROR, min(weight, 0.45)
    elif every_remote and not contradicted:
        # the answer for the user's remote clients, not a side note: about as sure as --from would be
        severity, weight = Severity.ERROR, min(weight, 0.8) if listening else min(weight, 0.55)
    elif c.kind == "remote" or not definite or contradicted:
        severity, weight = Severity.WARNING, min(weight, 0.4)
    else:
        severity = Severity.ERROR
    return Finding(cause=cause_of(o), check=CHECK, severity=severity, summary=summary, evidence=tuple(evidence),
                   fix=fixes, weight=weight)

def unknown_finding(c: Checked, o: Outcome) -> Finding:
    step = o.step
    text = step.rule.text if step is not None and step.rule is not None else ""
    pos = f"rule {step.rule.position} of chain {step.chain}" if step is not None and step.rule else "a rule"
    return Finding(cause=Cause.UNKNOWN, check=CHECK, severity=Severity.WARNING,
                   summary=f"could not evaluate {pos}: its verdict ({o.note or 'unknown action'}) is decided "
                           f"outside the ruleset, for {flow_words(c)}",
                   evidence=tuple([f"{step.where}: {text}" if step else o.note, *assumption_words(o)]),
                   weight=0.2)

_RECENT_NAME = re.compile(r"--name\s+(\S+)")

def _how_to_check(snap: Snapshot, ctx: Context, c: Checked, step: Step, reason: str) -> list[str]:
    """How the user can tell whether the rule portdoctor could not evaluate matches their clients."""
    f = c.evaluation.flow
    src = f.src or "<client address>"
    out: list[str] = []
    low = reason.lower()
    if "connlimit" in low or "ct count" in low:
        out.append(f"it counts the connections the client already has, which the ruleset does not show; count "
                   f"them with `conntrack -L -p tcp --dport {f.dport} --src {src}` (or `ss -tn 'sport = :{f.dport}'`)")
    if "recent" in low:
        m = _RECENT_NAME.search(reason)
        name = m.group(1) if m else "DEFAULT"
        out.append(f"it checks the client's address against the list {name} of xt_recent; see whether {src} is on "
                   f"it with `grep -w {src} /proc/net/xt_recent/{name}` (remove it: "
                   f"`echo -{src} > /proc/net/xt_recent/{name}`)")
    if "limit" in low.replace("connlimit", "") or "quota" in low:
        out.append("it depends on the recent rate of packets (a rate or burst limit), which the ruleset does not "
                   "show; watch the rule's counters while the client connects")
    tool = command_tool(step.table)
    if tool == "nft":
        out.append(f"counters: `nft -a list chain {step.table.family} {step.table.name} {step.chain}` (add a "
                   "`counter` to the rule if it has none) while the client connects")
    else:
        t = "" if step.table.name == "filter" else f"-t {step.table.name} "
        out.append(f"counters: `{tool} {t}-L {step.chain} -v -n -x --line-numbers` before and after the client "
                   "connects: a rising count on that rule means it stops the client")
    return out

def undecidable(snap: Snapshot, ctx: Context, c: Checked, seen: set[str]) -> list[Finding]:
    """'could not evaluate rule N' when an unmodelled match decides between accept and refuse.

    For the clients the user asks about (--from, or every client from elsewhere on the target's
    interface) a rule that could stop them, when nothing else on their path does, is an error of
    low weight: the likeliest cause, not a certain one (this host's own probe may pass it)."""
    outs = c.evaluation.outcomes
    verdicts = {o.verdict for o in outs}
    if len(verdicts) < 2:
        return []
    bad = [x for x in outs if x.verdict in (FlowVerdict.DROP, FlowVerdict.REJECT)]
    at_stake = (c.kind == "from" or remote_clients_of_target(snap, ctx, c)) and bool(bad) and all(
        any(a.unevaluated is not None for a in x.assumptions) for x in bad)
    out: list[Finding] = []
    for o in outs:
        for a in o.assumptions:
            if a.unevaluated is None or a.step.where in seen:
                continue
            seen.add(a.step.where)
            stop = next((x for x in bad if x.step == a.step), bad[0] if bad else None)
            cause = cause_of(stop) if stop is not None else Cause.UNKNOWN
            rule = f"rule {a.step.rule.position if a.step.rule else '?'} of chain {a.step.chain}"
            evidence = [rule_line(a.step), a.reason]
            counts = counter(snap, stop.step) if stop is not None else None
            if counts is not None and stop is not None and stop.step is not None and counts[1] == 0:
                # it has never stopped a packet since its counters were reset: not what stops the clients
                evidence.append(f"packet counter of {stop.step.where}: 0, so it has not stopped any packet since "
                                "the counters were last reset")
            elif at_stake and stop is not None:
                errno, words = client_error(stop)
                took = next((x.matched for x in stop.assumptions if x.step == a.step), a.matched)
                stopper = stop.step.where if stop.step else f"the {stop.hook} path"
                action = (f"it {reject_words(stop)} them when its match holds" if stop.step == a.step else
                          f"when its match {'holds' if took else 'does not hold'}, {stopper} {reject_words(stop)} "
                          "them")
                summary = (f"{rule} ({a.step.table_words} table) could stop {flow_words(c)}: {action}, "
                           f"and portdoctor could not evaluate that match ({a.unevaluated})"
                           f"; nothing else on their way stops them, so it is the likely cause if they see {words} "
                           f"({errno})")
                if ctx.probe.state is State.OPEN:
                    summary += "; this host's own test passes it"
                weight = 0.35 if c.kind == "from" else 0.3
                if counts is not None and stop.step is not None:
                    evidence.append(f"packet counter of {stop.step.where}: {counts[1]}: it has stopped packets "
                                    "before (since the counters were last reset)")
                    weight += 0.05
                evidence.extend(_how_to_check(snap, ctx, c, a.step, a.reason))
                out.append(Finding(cause=cause, check=CHECK, severity=Severity.ERROR, summary=summary,
                                   evidence=tuple(evidence), fix=tuple(allow_fixes(stop, ctx.from_addr if
                                                                                    c.kind == "from" else None)),
                                   weight=weight))
                continue
            out.append(Finding(
                cause=cause, check=CHECK, severity=Severity.WARNING,
                summary=f"could not evaluate {rule}: whether it matches decides if {flow_words(c)} "
                        f"{'are' if c.kind != 'probe' else 'is'} let through",
                evidence=(f"{a.step.where}: {a.step.rule.text if a.step.rule else ''}", a.reason, *evidence[2:]),
                weight=0.3))
    return out
