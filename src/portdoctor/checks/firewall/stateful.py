"""How a refusal that depends on kernel state is told: a rate limit, an xt_recent list, the
client's open connections, the local user. Such a rule refuses some connections and lets others
through (an intermittent refusal: "it works, then it doesn't"); the finding names the condition,
and the state read from the kernel that shows where the client stands (list stamps, hashlimit
credit, connection count, the rule's counters over the probe's window)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from portdoctor.checks.firewall.wording import counter
from portdoctor.firewall.evaluate import Outcome, Step
from portdoctor.firewall.model import Match
from portdoctor.firewall.stateful import connections_of, match_words, options
from portdoctor.model import Fix, State
from portdoctor.snapshot import Snapshot

if TYPE_CHECKING:
    from portdoctor.checks import Context

STATEFUL = ("recent", "limit", "hashlimit", "connlimit", "owner")


def stateful_matches(o: Outcome) -> list[tuple[Step, Match]]:
    """The stateful matches that decided this outcome: on its deciding rule, on the jumps that
    led there, and on the rules whose match it had to assume."""
    steps = [s for s in (o.step, *o.path, *(a.step for a in o.assumptions if a.stateful)) if s is not None]
    out: list[tuple[Step, Match]] = []
    for s in steps:
        if s.rule is None:
            continue
        for m in s.rule.matches:
            if m.kind in STATEFUL and not (m.kind == "recent" and options(m).get("mode") == "set"):
                if (s, m) not in out:
                    out.append((s, m))
    return out


def condition(o: Outcome) -> str:
    """'only above 3 per minute (burst 5): an intermittent refusal', or '' when no stateful
    match decides the outcome."""
    found = stateful_matches(o)
    if not found:
        return ""
    _s, m = found[0]
    o_ = options(m)
    if m.kind in ("limit", "hashlimit"):
        what = match_words(m)
        if o_.get("over") != "1":  # an accept up to the rate: what passes above it is refused
            what = what.replace("up to", "above", 1)
        return f"only {what}: an intermittent refusal"
    if m.kind == "recent":
        return f"only for {match_words(m)}: an intermittent refusal (clients are refused while they stay on it)"
    if m.kind == "connlimit" and "all" in o_:
        return f"only when {match_words(m).replace(' in all', '')} are open in all: an intermittent refusal"
    if m.kind == "connlimit":
        return f"only when a client has {match_words(m).replace(' from one client', '')} open: an intermittent refusal"
    if m.kind == "owner":
        return f"only when made by {match_words(m)} (the local process's user)"
    return ""


def stateful_fixes(o: Outcome) -> list[Fix]:
    """What clears the state that refuses the client now: its entry on an xt_recent list."""
    f = o.original or o.flow
    out = []
    for _s, m in stateful_matches(o):
        if m.kind == "recent" and f.src is not None and "rdest" not in options(m):
            name = options(m).get("name") or "DEFAULT"
            cmd = f"echo -{f.src} > /proc/net/xt_recent/{name}"
            fix = Fix(f"let {f.src} in now by removing it from xt_recent list {name} (it comes back if it connects "
                      "as often again)", cmd)
            if fix not in out:
                out.append(fix)
    return out


def state_lines(snap: Snapshot, o: Outcome) -> list[str]:
    """What the kernel state says about this flow's client for each stateful match."""
    fw = snap.firewall
    facts = fw.stateful if fw is not None else None
    f = o.original or o.flow
    out: list[str] = []
    for step, m in stateful_matches(o):
        o_ = options(m)
        if m.kind == "recent" and facts is not None and facts.recent is not None:
            name = o_.get("name") or "DEFAULT"
            entries = [e for e in facts.recent.get(name, ()) if e.address == f.src] if f.src else []
            secs = float(o_.get("seconds") or 0)
            if f.src is None:
                n = len(facts.recent.get(name, ()))
                out.append(f"xt_recent list {name} holds {n} address{'es' if n != 1 else ''} "
                           f"(/proc/net/xt_recent/{name})")
            elif not entries:
                out.append(f"{f.src} is not on xt_recent list {name}")
            else:
                e = entries[0]
                within = sum(1 for a in e.ages if not secs or a <= secs)
                out.append(f"xt_recent list {name} holds {len(e.ages)} stamps of {f.src}, the newest {min(e.ages):g} s "
                           f"old; {within} within the last {secs:g} s" if secs else
                           f"xt_recent list {name} holds {len(e.ages)} stamps of {f.src}")
        elif m.kind == "hashlimit" and facts is not None and facts.hashlimit is not None:
            name = o_.get("name", "")
            buckets = [b for b in facts.hashlimit.get(name, ()) if f.src is not None and b.src == f.src]
            if buckets:
                b = buckets[0]
                state = "used up: its next packets are over the limit" if b.credit < b.cost else "left"
                out.append(f"hashlimit table {name}: the bucket of {f.src} has credit {b.credit} for a cost of "
                           f"{b.cost} per packet ({state}; /proc/net/ipt_hashlimit/{name})")
            else:
                out.append(f"hashlimit table {name} has {len(facts.hashlimit.get(name, ()))} buckets, none for "
                           f"{f.src or 'this client'}")
        elif m.kind == "connlimit" and (f.src is not None or "all" in o_):
            n = connections_of(facts, None if "all" in o_ else f.src, f.dport, o_.get("mask", ""))
            if n is not None and facts is not None:
                src = "conntrack" if facts.connections_source == "conntrack" else "this host's sockets"
                who = "clients have" if "all" in o_ else f"{f.src} has"
                out.append(f"{who} {n} connection{'s' if n != 1 else ''} open to port {f.dport} ({src}); "
                           f"a new one makes {n + 1}")
        elif m.kind == "owner" and facts is not None and facts.uid is not None:
            out.append(f"this host's probe ran as uid {facts.uid}, gid {facts.gid}")
        line = rate_line(snap, step)
        if line and line not in out:
            out.append(line)
    return out


def rate_line(snap: Snapshot, step: Step) -> str:
    """'packet counter of rule 3 of chain INPUT (...): 10 -> 16 over 1.2 s (5 per second)'."""
    counts = counter(snap, step)
    fw = snap.firewall
    window = fw.stateful.window if fw is not None and fw.stateful is not None else None
    if counts is None:
        return ""
    b, a = counts
    rate = f" ({(a - b) / window:.3g} per second seen)" if window else ""
    return f"packet counter of {step.where}: {b} before the probe, {a} after{rate}"


def intermittent(ctx: Context, address: str) -> str:
    """'the probe saw open ×3, timeout ×3' when its attempts at `address` both connected and
    failed, else ''."""
    for a in ctx.probe.addresses:
        if a.address != address or not a.attempts:
            continue
        states = a.attempts
        if states.get(State.OPEN.value) and any(n for k, n in states.items() if k != State.OPEN.value):
            return "the probe saw " + ", ".join(f"{k} ×{n}" for k, n in sorted(states.items()))
    return ""
