"""NAT: a DNAT or REDIRECT that sends the target's connections to a backend which refuses or does
not answer (port_mapping)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from portdoctor.checks import endpoint_key, facts
from portdoctor.checks.firewall.walk import CHECK, Checked, evaluate
from portdoctor.checks.firewall.wording import assumption_words, rule_line
from portdoctor.firewall.advice import mapping_fixes, nat_manager
from portdoctor.firewall.evaluate import FlowVerdict
from portdoctor.model import Cause, Finding, Severity, State
from portdoctor.snapshot import Snapshot

if TYPE_CHECKING:
    from portdoctor.checks import Context


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

def mapping_findings(snap: Snapshot, ctx: Context, checked: list[Checked]) -> list[Finding]:
    """port_mapping for each DNAT whose backend refused or did not answer this host's follow-up probe."""
    out: list[Finding] = []
    seen: set[str] = set()
    for c in checked:
        for o in c.evaluation.outcomes:
            if o.nat is None or o.verdict is not FlowVerdict.ACCEPT or o.original is None:
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
            evidence = [f"NAT rule: {rule_line(o.nat)}",
                        f"a connection from this host to {key} was {res.state.value}" + (f" ({errno})" if errno else "")]
            evidence.extend(seen_there)
            evidence.extend(f"reached through {rule_line(s)}" for s in o.path)
            if not o.definite:
                evidence.extend(assumption_words(o))
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
                         "to": endpoint_key(o.flow.dst, o.flow.dport), "rule": rule_line(o.nat),
                         "flow": c.kind, "definite": o.definite}
                if entry not in out:
                    out.append(entry)
    return out
