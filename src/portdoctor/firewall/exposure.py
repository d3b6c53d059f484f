"""Firewall answers for `ports` and `audit`: is a listener reachable from other hosts, and which
NAT rules lead to it.

>>> from portdoctor.model import Snapshot
>>> exposed(Snapshot(), "0.0.0.0", 8080) is None   # no ruleset read: cannot be judged
True
"""

from __future__ import annotations

import ipaddress
from typing import Any

from portdoctor.firewall.evaluate import Evaluator, Flow
from portdoctor.model import Snapshot

MAX_INTERFACES = 8


def _evaluator(snap: Snapshot) -> Evaluator | None:
    from portdoctor.checks.firewall import evaluator  # the check owns the per-snapshot cache

    return evaluator(snap)


def _targets(snap: Snapshot, ev: Evaluator, address: str, family: int) -> list[tuple[str, str]]:
    """(local address, interface) pairs a client elsewhere could connect to for this bind address."""
    pairs: list[tuple[str, str]] = []
    local = dict(ev.host.local_addresses)
    for a in snap.addresses:
        local.setdefault(a.address, a.ifname)
    for addr, dev in local.items():
        try:
            ip = ipaddress.ip_address(addr.split("%")[0])
        except ValueError:
            continue
        if ip.is_loopback or ip.is_link_local or dev in (None, "lo"):
            continue
        wildcard = address in ("0.0.0.0", "::")
        if (wildcard and (ip.version == family or (address == "::" and ip.version == 4))) or addr == address:
            pairs.append((addr, dev))
    return pairs[:MAX_INTERFACES]


def exposed(snap: Snapshot, address: str, port: int, family: int = 4) -> bool | None:
    """Whether a client on another host could reach a listener on address:port, by the rules.

    True when some local address on some interface lets a new connection in from any client;
    False when every path ends in drop or reject; None without a ruleset or when undecidable.
    Bind scope is the caller's business (a loopback listener is not exposed whatever the rules).
    """
    ev = _evaluator(snap)
    if ev is None:
        return None
    verdicts: set[str] = set()
    for addr, dev in _targets(snap, ev, address, family):
        e = ev.evaluate(Flow(dst=addr, dport=port, src=None, iif=dev, not_lo=True))
        for o in e.outcomes:
            if o.verdict == "accept" and o.nat is None:
                if o.definite:
                    return True
                verdicts.add("maybe")
            else:
                verdicts.add(o.verdict if o.verdict in ("drop", "reject") else "maybe")
    if not verdicts or "maybe" in verdicts:
        return None
    return False


def dnat_rules(snap: Snapshot) -> list[dict[str, Any]]:
    """Every DNAT / REDIRECT rule of the snapshot: {"from": "port or addr:port", "to": ..., "detail": rule}."""
    fw = snap.extra.get("firewall")
    ev = _evaluator(snap)
    if ev is None or not isinstance(fw, dict):
        return []
    out: list[dict[str, Any]] = []
    for t in ev.ruleset.tables:
        for c in t.chains:
            for r in c.rules:
                a = r.action
                if a.kind not in ("dnat", "redirect"):
                    continue
                dports = [v for m in r.matches if m.kind == "dport" and not m.neg for v in m.values]
                daddrs = [v for m in r.matches if m.kind == "daddr" and not m.neg for v in m.values]
                front = f"{daddrs[0] if daddrs else '*'}:{dports[0] if dports else '*'}"
                to = f"{a.addr or '(incoming address)'}:{a.port or '(same port)'}"
                out.append({"kind": "dnat", "from": front, "to": to, "table": t.name, "chain": c.name,
                            "position": r.position, "detail": r.text})
    return out
