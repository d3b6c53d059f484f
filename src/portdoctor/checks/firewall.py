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
cause ok says so. A reject or drop whose match cannot be evaluated (connlimit, recent, limit) and is
the only thing in the way of those clients is an error of low weight, unless its counter shows it
has never stopped a packet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from portdoctor.checks import endpoint_key, facts
from portdoctor.firewall.advice import (
    allow_fixes, client_error, command_tool, established_fixes, kube_service_of, manager, mapping_fixes, nat_manager,
    reject_words,
)
from portdoctor.firewall.evaluate import Evaluation, Evaluator, Flow, Outcome, Step
from portdoctor.firewall.model import counter_key
from portdoctor.hostview import firewall_evaluator
from portdoctor.model import Cause, Finding, Fix, Severity, State, Target
from portdoctor.snapshot import Snapshot

if TYPE_CHECKING:
    from portdoctor.checks import Context

CHECK = "firewall"
MAX_INTERFACES = 4
MAX_FOLLOWUPS = 8

@dataclass(frozen=True)
class _Checked:
    kind: str  # probe (this host's own probe), from (--from), remote (any client elsewhere)
    evaluation: Evaluation
    established: Evaluation | None = None  # the handshake's ACK, when the SYN is accepted
    reply: Evaluation | None = None  # the server's SYN-ACK back to the client, when the SYN is accepted


def evaluator(snap: Snapshot, ctx: Context) -> Evaluator | None:
    """The snapshot's compiled ruleset, compiled once per diagnosis (kept on its Context)."""
    return ctx.derive("firewall.evaluator", lambda: firewall_evaluator(snap))


def _route_of(snap: Snapshot, address: str) -> Any:
    for r in snap.routes:
        if r.destination == address:
            return r
    return None


def _destinations(ctx: Context) -> list[str]:
    addrs = [a.address for a in ctx.probe.addresses]
    if not addrs and facts.ip(ctx.target.host) is not None:
        addrs = [str(facts.ip(ctx.target.host))]
    return addrs


def _interfaces(snap: Snapshot, ev: Evaluator) -> list[str | None]:
    names: list[str] = []
    for a in snap.addresses:
        if a.ifname != "lo" and a.ifname not in names:
            names.append(a.ifname)
    for dev in ev.host.local_addresses.values():
        if dev and dev != "lo" and dev not in names:
            names.append(dev)
    return list(names[:MAX_INTERFACES]) or [None]


def flows(snap: Snapshot, ctx: Context, ev: Evaluator) -> list[tuple[str, Flow]]:
    """The flows to evaluate, each labelled probe, from or remote."""
    port = ctx.target.port
    dests = _destinations(ctx)
    out: list[tuple[str, Flow]] = []
    for d in dests:
        r = _route_of(snap, d)
        src = r.source if r is not None and r.source else (d if ev.is_local(d) else None)
        out.append(("probe", Flow(dst=d, dport=port, src=src, local_src=True)))
    local_target = any(ev.is_local(d) for d in dests) or facts.target_is_local(snap, ctx)
    if ctx.from_addr:
        f = ctx.from_addr
        fam6 = ":" in f
        if ev.is_local(f):
            for d in dests:
                if (":" in d) == fam6:
                    out.append(("from", Flow(dst=d, dport=port, src=f, local_src=True)))
        elif local_target:
            r = _route_of(snap, f)
            iif = r.ifname if r is not None and r.ifname else ev.route(f)[0]
            seen = set()
            for d in dests:
                if (":" in d) != fam6:
                    continue
                if facts.is_loopback(d):  # remote clients reach the address that routes back to them
                    d = (r.source if r is not None and r.source else None) or d
                if d in seen or facts.is_loopback(d):
                    continue
                seen.add(d)
                out.append(("from", Flow(dst=d, dport=port, src=f, iif=iif, not_lo=True)))
    elif local_target:
        remote_dests = [d for d in dests if not facts.is_loopback(d)]
        if not remote_dests and ctx.target.is_this_host:  # `:port`: clients elsewhere use our addresses
            remote_dests = [a for a, dev in ev.host.local_addresses.items()
                            if dev != "lo" and not facts.is_loopback(a) and not a.startswith("fe80")][:4]
        for d in remote_dests:
            if d.startswith("fe80") or facts.ip(d) is None:
                continue
            for iface in _interfaces(snap, ev):
                out.append(("remote", Flow(dst=d, dport=port, src=None, iif=iface, not_lo=True)))
    return out


def evaluate(snap: Snapshot, ctx: Context) -> list[_Checked]:
    """Evaluate every flow of `flows`; [] when the snapshot has no ruleset. The firewall check,
    its follow-ups and the listener check all ask: the walk is done once per diagnosis."""
    return ctx.derive("firewall.walk", lambda: _evaluate(snap, ctx))


def _evaluate(snap: Snapshot, ctx: Context) -> list[_Checked]:
    ev = evaluator(snap, ctx)
    if ev is None:
        return []
    out = []
    for kind, fl in flows(snap, ctx, ev):
        e = ev.evaluate(fl)
        est = rep = None
        if kind != "remote" and e.outcomes and all(o.verdict == "accept" for o in e.outcomes):
            est = ev.evaluate_established(e, e.outcomes[0])
            rep = ev.evaluate_reply(e, e.outcomes[0], fl.src or "")
        out.append(_Checked(kind, e, est, rep))
    return out


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
            if o.nat is None or o.verdict != "accept":
                continue
            key = (o.flow.dst, o.flow.dport)
            if key in seen or len(out) >= MAX_FOLLOWUPS:
                continue
            seen.add(key)
            out.append(Target(input=endpoint_key(*key), host=o.flow.dst, port=o.flow.dport))
    return out


# --------------------------------------------------------------------------- evidence


def _rule_line(step: Step) -> str:
    if step.rule is None:
        return step.where
    comment = f" (comment: {step.rule.comment})" if step.rule.comment and step.rule.comment not in step.rule.text \
        else ""
    text = step.rule.text
    if step.table.source == "nft" and not text.startswith("["):  # as a user would type it
        text = f"nft add rule {step.table.family} {step.table.name} {step.chain} {text}"
    return f"{step.where}: {text}{comment}"


def _counter(snap: Snapshot, step: Step | None) -> tuple[int, int] | None:
    """The packet counter of a rule just before and just after the probe, when both were read."""
    fw = snap.firewall
    if fw is None or fw.counters_before is None or step is None or step.rule is None:
        return None
    key = counter_key(step.table, step.chain, step.rule)
    if key in fw.counters_before and key in fw.counters_after:
        return int(fw.counters_before[key]), int(fw.counters_after[key])
    return None


def _path_lines(o: Outcome) -> list[str]:
    lines = []
    if o.nat is not None and o.original is not None:
        lines.append(f"NAT: {_rule_line(o.nat)} rewrites {o.original.dst}:{o.original.dport} -> "
                     f"{_ep(o.flow.dst, o.flow.dport)}")
    for s in o.path:
        lines.append(f"reached through {_rule_line(s)}")
    return lines


def _ep(host: str, port: int) -> str:
    return endpoint_key(host, port)


def _assumption_words(o: Outcome) -> list[str]:
    out = []
    for a in o.assumptions:
        verb = "matches" if a.matched else "does not match"
        out.append(f"if {a.step.where} {verb} (depends on the {a.reason}): {a.step.rule.text if a.step.rule else ''}"
                   .rstrip(": "))
    return out


def _probe_state(ctx: Context, address: str) -> Any:
    for a in ctx.probe.addresses:
        if a.address == address:
            return a
    return None


def _listeners_line(snap: Snapshot, o: Outcome) -> tuple[bool, str]:
    socks = facts.accepting(snap, o.flow.dst, o.flow.dport)
    if socks:
        return True, "a listener is there, so the firewall is what stops it: " + facts.describe(snap, socks[0])
    if snap.listeners:
        return False, f"nothing listens on {_ep(o.flow.dst, o.flow.dport)} either"
    return False, "no listener list was read for this host"


# --------------------------------------------------------------------------- findings


def _cause(o: Outcome) -> Cause:
    return Cause.FIREWALL_DROP if o.verdict == "drop" else Cause.FIREWALL_REJECT


def _flow_words(c: _Checked) -> str:
    f = c.evaluation.flow
    if c.kind == "probe":
        return f"this host's own connection to {_ep(f.dst, f.dport)}"
    if c.kind == "from":
        return f"connections from {f.src} to {_ep(f.dst, f.dport)}" + (f" (in on {f.iif})" if f.iif else "")
    return f"clients from other hosts to {_ep(f.dst, f.dport)}" + (f" (in on {f.iif})" if f.iif else "")


def _decided(c: _Checked) -> Outcome | None:
    """The bad outcome when every way the flow can go ends in drop or reject."""
    outs = c.evaluation.outcomes
    bad = [o for o in outs if o.verdict in ("drop", "reject")]
    if outs and len(bad) == len(outs):
        return min(bad, key=lambda o: len(o.assumptions))
    return None


def _remote_clients_of_target(snap: Snapshot, ctx: Context, c: _Checked) -> bool:
    """True for the "any client from elsewhere" flow to the target's own (non-loopback) address
    that comes in on the interface owning that address: the way every remote client arrives,
    while this host's own probe goes through lo and so cannot see what they meet."""
    f = c.evaluation.flow
    if c.kind != "remote" or not f.iif or facts.is_loopback(f.dst) or f.dst not in _destinations(ctx):
        return False
    ev = evaluator(snap, ctx)
    return ev is not None and ev.host.local_addresses.get(f.dst) == f.iif


def _finding_for(snap: Snapshot, ctx: Context, c: _Checked, o: Outcome, definite: bool) -> Finding:
    errno, words = client_error(o)
    who = f"{_flow_words(c)}"
    every_remote = definite and _remote_clients_of_target(snap, ctx, c)
    step = o.step
    place = step.where if step is not None else f"the {o.hook} path"
    kube = kube_service_of(o)
    evidence: list[str] = []
    if step is not None:
        evidence.append(_rule_line(step))
    elif o.note:
        evidence.append(o.note)
    evidence.extend(_path_lines(o))
    listening, lline = _listeners_line(snap, o) if facts.is_local(snap, o.flow.dst) else (True, "")
    if lline:
        evidence.append(lline)
    weight = 0.9 if listening else 0.6
    counts = _counter(snap, step)
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
        seen = _probe_state(ctx, c.evaluation.flow.dst)
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
        evidence.extend(_assumption_words(o))
    verb = reject_words(o)
    if kube is not None:
        ns, svc, _p = kube
        summary = (f"kube-proxy rejects {who}: Service {ns}/{svc} has no endpoints ({place}); "
                   f"the client sees {words} ({errno})")
    elif every_remote:
        f = c.evaluation.flow
        summary = (f"{place} {verb} every client from other hosts to {_ep(f.dst, f.dport)} (they come in on "
                   f"{f.iif}, the interface of {f.dst}); they see {words} ({errno}), while connections from "
                   "this host get through (they use lo), so a check from this host passes")
        if o.definite:
            evidence.append(f"no match on the way depends on the client's address: every client that comes "
                            f"in on {f.iif} is stopped, whatever its source")
        else:
            evidence.append(f"every way through the rules ends in a drop or a reject for clients coming in on "
                            f"{f.iif}, whatever their source")
    elif definite:
        summary = f"{place} {verb} {who}; the client sees {words} ({errno})"
    else:
        summary = f"{place} {verb} {who} for some sources or cases; a client it matches sees {words} ({errno})"
    if o.nat is not None and o.original is not None:
        summary += f", after {o.nat.where} DNATs it to {_ep(o.flow.dst, o.flow.dport)}"
    if definite and not listening and facts.is_local(snap, o.flow.dst) and snap.listeners:
        summary += f"; nothing listens on port {o.flow.dport} either, so the service is down too"
    mgr = manager(o)
    if mgr and kube is None:
        summary += f" (chains written by {mgr})"
    source = ctx.from_addr if c.kind == "from" else None
    fixes = tuple(allow_fixes(o, source))
    if every_remote and not contradicted:
        # the answer for the user's remote clients, not a side note: about as sure as --from would be
        severity, weight = Severity.ERROR, min(weight, 0.8) if listening else min(weight, 0.55)
    elif c.kind == "remote" or not definite or contradicted:
        severity, weight = Severity.WARNING, min(weight, 0.4)
    else:
        severity = Severity.ERROR
    return Finding(cause=_cause(o), check=CHECK, severity=severity, summary=summary, evidence=tuple(evidence),
                   fix=fixes, weight=weight)


def _unknown_finding(c: _Checked, o: Outcome) -> Finding:
    step = o.step
    text = step.rule.text if step is not None and step.rule is not None else ""
    pos = f"rule {step.rule.position} of chain {step.chain}" if step is not None and step.rule else "a rule"
    return Finding(cause=Cause.UNKNOWN, check=CHECK, severity=Severity.WARNING,
                   summary=f"could not evaluate {pos}: its verdict ({o.note or 'unknown action'}) is decided "
                           f"outside the ruleset, for {_flow_words(c)}",
                   evidence=tuple([f"{step.where}: {text}" if step else o.note, *_assumption_words(o)]),
                   weight=0.2)


_RECENT_NAME = re.compile(r"--name\s+(\S+)")


def _how_to_check(snap: Snapshot, ctx: Context, c: _Checked, step: Step, reason: str) -> list[str]:
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


def _undecidable(snap: Snapshot, ctx: Context, c: _Checked, seen: set[str]) -> list[Finding]:
    """'could not evaluate rule N' when an unmodelled match decides between accept and refuse.

    For the clients the user asks about (--from, or every client from elsewhere on the target's
    interface) a rule that could stop them, when nothing else on their path does, is an error of
    low weight: the likeliest cause, not a certain one (this host's own probe may pass it)."""
    outs = c.evaluation.outcomes
    verdicts = {o.verdict for o in outs}
    if len(verdicts) < 2:
        return []
    bad = [x for x in outs if x.verdict in ("drop", "reject")]
    at_stake = (c.kind == "from" or _remote_clients_of_target(snap, ctx, c)) and bool(bad) and all(
        any(a.unevaluated is not None for a in x.assumptions) for x in bad)
    out: list[Finding] = []
    for o in outs:
        for a in o.assumptions:
            if a.unevaluated is None or a.step.where in seen:
                continue
            seen.add(a.step.where)
            stop = next((x for x in bad if x.step == a.step), bad[0] if bad else None)
            cause = _cause(stop) if stop is not None else Cause.UNKNOWN
            rule = f"rule {a.step.rule.position if a.step.rule else '?'} of chain {a.step.chain}"
            evidence = [_rule_line(a.step), a.reason]
            counts = _counter(snap, stop.step) if stop is not None else None
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
                summary = (f"{rule} ({a.step.table_words} table) could stop {_flow_words(c)}: {action}, "
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
                summary=f"could not evaluate {rule}: whether it matches decides if {_flow_words(c)} "
                        f"{'are' if c.kind != 'probe' else 'is'} let through",
                evidence=(f"{a.step.where}: {a.step.rule.text if a.step.rule else ''}", a.reason, *evidence[2:]),
                weight=0.3))
    return out


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
    exact_bad = False
    undecidable_seen: set[str] = set()
    order = {"from": 0, "probe": 1, "remote": 2}  # the user's clients first: their fix is scoped to them
    checked = sorted(checked, key=lambda c: order[c.kind])
    from_flows = [c for c in checked if c.kind == "from"]
    local_only: list[_Checked] = []  # probe flows stopped by a rule the --from clients do not meet
    for c in checked:
        o = _decided(c)
        if o is not None:
            key = (o.step.where if o.step else o.note, o.verdict)
            if c.kind != "remote":
                exact_bad = True
            if key in done:
                continue
            done.add(key)
            f = _finding_for(snap, ctx, c, o, definite=True)
            if c.kind == "probe" and from_flows and f.severity is Severity.ERROR:
                # --from names the clients the user asks about; this host's own probe is a side note
                f = replace(f, severity=Severity.WARNING, weight=min(f.weight, 0.4),
                            summary=f"{f.summary}; this host's own connections are stopped, the clients from "
                                    f"{ctx.from_addr} do not meet that rule")
                local_only.append(c)
            findings.append(f)
            continue
        for o in c.evaluation.outcomes:
            if o.verdict == "unknown":
                key = (o.step.where if o.step else "?", "unknown")
                if key not in done:
                    done.add(key)
                    findings.append(_unknown_finding(c, o))
        findings.extend(_undecidable(snap, ctx, c, undecidable_seen))
        for o in c.evaluation.outcomes:
            if o.verdict not in ("drop", "reject"):
                continue
            if any(a.unevaluated is not None for a in o.assumptions):
                continue  # reported as "could not evaluate" above
            key = (o.step.where if o.step else o.note, o.verdict)
            if key in done:
                continue
            done.add(key)
            findings.append(_finding_for(snap, ctx, c, o, definite=False))
    findings.extend(_mapping_findings(snap, ctx, checked, exact_bad))
    findings.extend(_reply_findings(snap, ctx, checked, done))
    findings.extend(_handshake_findings(snap, ctx, checked, done))
    findings.extend(_vouch(snap, ctx, checked, local_only))
    return findings


def _clean(c: _Checked) -> bool:
    """Every way of the flow is accepted, for certain, and so are its reply and the handshake's ACK."""
    outs = c.evaluation.outcomes
    if not outs or any(o.verdict != "accept" or not o.definite for o in outs):
        return False
    for ev in (c.established, c.reply):
        if ev is not None and any(o.verdict != "accept" for o in ev.outcomes):
            return False
    return True


def _accepted_by(o: Outcome) -> str:
    if o.step is None:
        return "no rule (nothing on the way stops it)"
    return _rule_line(o.step) if o.step.rule is not None else o.step.where


def _vouch(snap: Snapshot, ctx: Context, checked: list[_Checked], local_only: list[_Checked]) -> list[Finding]:
    """Say that the clients of --from get through when this host's own probe fails for a reason they
    do not meet: a rule on lo, or a DNAT that nat PREROUTING applies to remote clients only."""
    from_flows = [c for c in checked if c.kind == "from"]
    probes = [c for c in checked if c.kind == "probe"]
    if ctx.probe.state is State.OPEN or not from_flows or not all(_clean(c) for c in from_flows):
        return []
    out: list[Finding] = []
    for c in from_flows:
        o = c.evaluation.outcomes[0]
        who = _flow_words(c)
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
                evidence=(f"NAT rule: {_rule_line(o.nat)}", f"a connection from this host to {key} was open",
                          f"let through by {_accepted_by(o)}",
                          "the server's answers and the rest of the handshake are accepted too"),
                weight=0.85))
        elif local_only and facts.accepting(snap, o.flow.dst, o.flow.dport):
            socks = facts.accepting(snap, o.flow.dst, o.flow.dport)
            bad = [_decided(p) for p in local_only]
            rules = "; ".join(dict.fromkeys(x.step.where if x.step else x.note for x in bad if x is not None))
            out.append(Finding(
                cause=Cause.OK, check=CHECK, severity=Severity.INFO,
                summary=f"{who} are accepted and a service listens there; only this host's own connections "
                        f"are stopped ({rules}), which is why the test from this host failed",
                evidence=(f"let through by {_accepted_by(o)}", "a listener takes them: " + facts.describe(snap, socks[0]),
                          "the server's answers and the rest of the handshake are accepted too"),
                weight=0.85))
    return out


def _reply_findings(snap: Snapshot, ctx: Context, checked: list[_Checked],
                    done: set[tuple[str, str]]) -> list[Finding]:
    """A SYN let in but the server's answer (SYN-ACK) stopped on its way out (OUTPUT, POSTROUTING)."""
    out: list[Finding] = []
    for c in checked:
        rep = c.reply
        # stopped on its way out; a local client's answer stopped in input (on lo) is a packet after the
        # SYN like the handshake's ACK, which _handshake_findings reports
        if rep is None or not rep.outcomes or any(o.verdict not in ("drop", "reject") or o.hook not in
                                                  ("output", "postrouting") for o in rep.outcomes):
            continue
        o = min(rep.outcomes, key=lambda x: len(x.assumptions))
        key = ((o.step.where if o.step else o.note) + " (reply)", o.verdict)
        if key in done:
            continue
        done.add(key)
        f = c.evaluation.flow
        syn = c.evaluation.outcomes[0].flow
        server = _ep(syn.dst, syn.dport)
        place = o.step.where if o.step else f"the {o.hook} path"
        evidence = [_rule_line(o.step) if o.step else o.note, *_path_lines(o),
                    f"the SYN of {_flow_words(c)} is accepted (by {_accepted_by(c.evaluation.outcomes[0])}); "
                    f"the server's answer, from {server} (source port {syn.dport}) to {f.src}, leaves through "
                    f"the {o.hook} hook, where this rule {reject_words(o)} it",
                    "a reject there answers this host itself, not the client (the rejected packet comes from "
                    "here): the client gets nothing back and retries until it times out"]
        if not o.definite:
            evidence.extend(_assumption_words(o))
        listening, lline = _listeners_line(snap, c.evaluation.outcomes[0])
        if lline:
            evidence.append(lline)
        counts = _counter(snap, o.step)
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
                    f"to {f.src}: {_flow_words(c)} are let in, but the answer never leaves this host, so the "
                    "client sees a timeout (ETIMEDOUT)" + ("" if definite else " (for some cases)"),
            evidence=tuple(evidence), fix=tuple(fixes), weight=weight))
    return out


def _handshake_findings(snap: Snapshot, ctx: Context, checked: list[_Checked],
                        done: set[tuple[str, str]]) -> list[Finding]:
    """A SYN let through but the rest of the connection refused: "forgot established,related"."""
    out: list[Finding] = []
    for c in checked:
        est = c.established
        if est is None or not est.outcomes or any(o.verdict not in ("drop", "reject") for o in est.outcomes):
            continue
        o = min(est.outcomes, key=lambda x: len(x.assumptions))
        key = ((o.step.where if o.step else o.note) + " (established)", o.verdict)
        if key in done:
            continue
        done.add(key)
        if o.verdict == "reject" and (o.reject_with or "").lower() == "tcp-reset":
            seen = "the connection opens and is reset at once (ECONNRESET)"
            cause = Cause.FIREWALL_REJECT
        elif o.verdict == "reject":
            errno, words = client_error(o)
            seen = (f"the connection opens, then fails with {words} ({errno}) as soon as the client "
                    "checks it (non-blocking clients see it at connect)")
            cause = Cause.FIREWALL_REJECT
        else:
            seen = "the connection opens on the client, then hangs: the server never completes the handshake"
            cause = Cause.FIREWALL_DROP
        place = o.step.where if o.step else f"the {o.hook} path"
        evidence = [_rule_line(o.step) if o.step else o.note, *_path_lines(o),
                    "the first packet (SYN) is accepted; the next ones are in conntrack state ESTABLISHED, "
                    "which no rule before it accepts"]
        listening, lline = _listeners_line(snap, o) if facts.is_local(snap, o.flow.dst) else (True, "")
        if lline:
            evidence.append(lline)
        out.append(Finding(
            cause=cause, check=CHECK, severity=Severity.ERROR,
            summary=f"{place} {reject_words(o)} the packets after the SYN of {_flow_words(c)}: {seen}",
            evidence=tuple(evidence), fix=tuple(established_fixes(o)), weight=0.7 if listening else 0.5))
    return out


def redirected(snap: Snapshot, ctx: Context) -> list[dict[str, Any]]:
    """Where NAT sends the target's connections: for other checks (a DNATed port needs no listener).

    Each entry: {"from": "10.0.0.2:8080", "to": "172.17.0.2:80", "rule": "...", "flow": "from" | "probe" |
    "remote", "definite": bool}.
    """
    out: list[dict[str, Any]] = []
    try:
        checked = evaluate(snap, ctx)
    except Exception:  # noqa: BLE001 - check_firewall reports it
        return out
    for c in checked:
        for o in c.evaluation.outcomes:
            if o.nat is not None and o.original is not None:
                entry = {"from": endpoint_key(o.original.dst, o.original.dport),
                         "to": endpoint_key(o.flow.dst, o.flow.dport), "rule": _rule_line(o.nat),
                         "flow": c.kind, "definite": o.definite}
                if entry not in out:
                    out.append(entry)
    return out


def _backend_words(snap: Snapshot, host: str, port: int, key: str, state: State) -> tuple[str, list[str]]:
    """What the probe of a DNAT backend showed, for the summary, and what is known of its listeners.

    On this host the listener list tells why it refused; elsewhere (another host, a container's
    namespace) portdoctor only saw the refusal, so it names the likely causes, not one of them.
    """
    if state is State.TIMEOUT:
        return f"a connection from this host to {key} got no answer (timeout)", []
    if state is State.UNREACHABLE:
        return f"a connection from this host to {key} found it unreachable", []
    if facts.is_local(snap, host):  # its listeners are ours: procfs shows them without privilege
        others = facts.listeners_on_port(snap, port)
        taking = facts.accepting(snap, host, port)
        if taking:
            return (f"a connection from this host to {key} was refused although a socket listens there",
                    [facts.describe(snap, x) for x in taking[:3]])
        if not others:
            return f"nothing listens on port {port} on this host (connection refused)", []
        scopes = ", ".join(sorted({s.endpoint for s in others}))
        return (f"port {port} on this host listens on {scopes} only, which does not take connections to "
                f"{host} (connection refused)", [facts.describe(snap, x) for x in others[:3]])
    loop = "::1" if ":" in host else "127.0.0.1"
    return (f"a connection from this host to {key} was refused: either nothing listens there (on port {port}), "
            f"or the service there listens on its own loopback ({loop}) only, which a forwarded connection "
            "cannot reach",
            [f"the listeners of {host} are not visible from this host; run `ss -ltn 'sport = :{port}'` "
             f"(or `portdoctor ports`) where {host} lives to tell which"])


def _mapping_findings(snap: Snapshot, ctx: Context, checked: list[_Checked], exact_bad: bool) -> list[Finding]:
    out: list[Finding] = []
    seen: set[str] = set()
    for c in checked:
        for o in c.evaluation.outcomes:
            if o.nat is None or o.verdict != "accept" or o.original is None:
                continue
            key = endpoint_key(o.flow.dst, o.flow.dport)
            res = ctx.followups.get(key)
            if res is None or res.state not in (State.REFUSED, State.TIMEOUT, State.UNREACHABLE) or key in seen:
                continue
            seen.add(key)
            errno = res.addresses[0].errno if res.addresses else None
            what, seen_there = _backend_words(snap, o.flow.dst, o.flow.dport, key, res.state)
            front = o.original
            summary = f"{front.dport} on {front.dst} is DNATed to {key} by chain {o.nat.chain} ({o.nat.short}); {what}"
            evidence = [f"NAT rule: {_rule_line(o.nat)}",
                        f"a connection from this host to {key} was {res.state.value}" + (f" ({errno})" if errno else "")]
            evidence.extend(seen_there)
            evidence.extend(f"reached through {_rule_line(s)}" for s in o.path)
            if not o.definite:
                evidence.extend(_assumption_words(o))
            mgr = nat_manager(o.nat)
            if mgr:
                summary += f" (chains written by {mgr})"
            weight = 0.85 if c.kind != "remote" else 0.6
            if not o.definite:
                weight -= 0.2
            out.append(Finding(cause=Cause.PORT_MAPPING, check=CHECK, severity=Severity.ERROR, summary=summary,
                               evidence=tuple(evidence), fix=tuple(mapping_fixes(o.nat, key, res.state.value)),
                               weight=weight))
    return out
