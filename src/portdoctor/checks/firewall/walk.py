"""The flows of one diagnosis through the firewall: which flows to check (this host's probe, the
--from clients, any client from elsewhere) and their walk through the compiled rules, done once
per diagnosis and kept on its Context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from portdoctor.checks import facts
from portdoctor.firewall.evaluate import Evaluation, Evaluator, Flow, FlowVerdict
from portdoctor.hostview import firewall_evaluator
from portdoctor.snapshot import Snapshot

if TYPE_CHECKING:
    from portdoctor.checks import Context


CHECK = "firewall"

MAX_INTERFACES = 4

@dataclass(frozen=True)
class Checked:
    # probe (this host's own probe), from (--from), remote (any client elsewhere), local (other
    # users' processes on this host: asked only when an owner match tells them apart)
    kind: str
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

def destinations(ctx: Context) -> list[str]:
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
    dests = destinations(ctx)
    out: list[tuple[str, Flow]] = []
    st = snap.firewall.stateful if snap.firewall is not None else None
    uid, gid = (st.uid, st.gid) if st is not None else (None, None)
    for d in dests:
        r = _route_of(snap, d)
        src = r.source if r is not None and r.source else (d if ev.is_local(d) else None)
        out.append(("probe", Flow(dst=d, dport=port, src=src, local_src=True, uid=uid, gid=gid)))
        if "owner" in ev.kinds and uid is not None:
            out.append(("local", Flow(dst=d, dport=port, src=src, local_src=True)))
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
        else:
            out += _forwarded(ctx, ev, f, dests)
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

def _forwarded(ctx: Context, ev: Evaluator, client: str, dests: list[str]) -> list[tuple[str, Flow]]:
    """The --from clients' flow through this host when it routes between them and the target (a
    router or a gateway: IP forwarding on, the client and the target behind different interfaces).
    Its FORWARD chain and NAT hooks decide; this host's own probe never meets them."""
    fam = 6 if ":" in client else 4
    if not ev.host.forwarding.get(fam):
        return []
    iif, kind = ev.route(client)
    out = []
    for d in dests:
        if (":" in d) != (fam == 6) or facts.is_loopback(d):
            continue
        oif, dkind = ev.route(d)
        if iif in (None, "lo") or oif in (None, "lo") or kind not in ("unicast", "local") or dkind != "unicast":
            continue
        out.append(("from", Flow(dst=d, dport=ctx.target.port, src=client, iif=iif, not_lo=True)))
    return out


def evaluate(snap: Snapshot, ctx: Context) -> list[Checked]:
    """Evaluate every flow of `flows`; [] when the snapshot has no ruleset. The firewall check,
    its follow-ups and the listener check all ask: the walk is done once per diagnosis."""
    return ctx.derive("firewall.walk", lambda: _evaluate(snap, ctx))

def _evaluate(snap: Snapshot, ctx: Context) -> list[Checked]:
    ev = evaluator(snap, ctx)
    if ev is None:
        return []
    out = []
    for kind, fl in flows(snap, ctx, ev):
        e = ev.evaluate(fl)
        est = rep = None
        if kind != "remote" and e.outcomes and all(o.verdict is FlowVerdict.ACCEPT for o in e.outcomes):
            est = ev.evaluate_established(e, e.outcomes[0])
            rep = ev.evaluate_reply(e, e.outcomes[0], fl.src or "")
        out.append(Checked(kind, e, est, rep))
    return out
