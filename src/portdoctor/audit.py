"""`portdoctor audit`: this host's exposure (which listening ports other hosts can reach, once
bind scope, firewall and NAT are combined) and its difference from a saved baseline.

The exposure is read off the port map (`portdoctor.portmap`: listeners, owners, ways in through
DNAT and published ports) and the compiled firewall of `hostview.Exposure`: for each port and
each address of this host a remote client could connect to, the firewall walk says `open` (every
client gets in), `partial` (some sources are stopped, by the rules named), `closed` or
`unknown`. Saved as `portdoctor.audit/1` JSON, it is the baseline a later run is compared with:
ports newly exposed, newly blocked, with a changed owner or a changed bind scope.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from portdoctor import addresses, hostview
from portdoctor.errors import BadInput, ExitCode, Incomplete
from portdoctor.observed import firewall_blind, listeners_blind
from portdoctor.portmap import PortEntry, build_map
from portdoctor.snapshot import Snapshot

SCHEMA = "portdoctor.audit/1"
MAX_ADDRESSES = 8
FAMILY = {4: "IPv4", 6: "IPv6"}
KINDS = ("newly_exposed", "newly_blocked", "changed_owner", "changed_bind_scope", "new_listener", "closed")


@dataclass(frozen=True, slots=True)
class Reach:
    """Whether clients on other hosts reach a port at one of this host's addresses."""

    address: str
    ifname: str
    state: str  # open | partial | closed | unknown
    rules: tuple[str, ...] = ()  # the rules that stop some (partial) or all (closed) clients

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "ifname": self.ifname, "state": self.state, "rules": list(self.rules)}


@dataclass(frozen=True, slots=True)
class PortExposure:
    """One listening port of one address family: bind, owners, reach, ways in."""

    port: int
    family: int
    bound: tuple[str, ...]  # the addresses its sockets are bound to
    scope: str  # loopback | all | specific | mixed
    owners: tuple[str, ...]
    exposed: bool | None  # some other host gets in (portmap's `exposed`)
    reach: tuple[Reach, ...] = ()
    via: tuple[str, ...] = ()  # "dnat *:15432", "publish 0.0.0.0:18090"

    @property
    def key(self) -> str:
        return f"{self.port}/{FAMILY[self.family]}"

    def to_json(self) -> dict[str, Any]:
        return {"port": self.port, "family": self.family, "bound": list(self.bound), "scope": self.scope,
                "owners": list(self.owners), "exposed": self.exposed, "reach": [r.to_json() for r in self.reach],
                "via": list(self.via)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PortExposure:
        return cls(int(d["port"]), int(d["family"]), tuple(d.get("bound") or ()), str(d.get("scope") or ""),
                   tuple(d.get("owners") or ()), d.get("exposed"),
                   tuple(Reach(str(r["address"]), str(r.get("ifname") or ""), str(r["state"]),
                               tuple(r.get("rules") or ())) for r in d.get("reach") or ()),
                   tuple(d.get("via") or ()))


@dataclass(frozen=True, slots=True)
class Difference:
    """One change between the baseline and now."""

    kind: str  # one of KINDS
    key: str  # "8080/IPv4"
    summary: str
    before: Any = None
    after: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "port": self.key, "summary": self.summary, "before": self.before,
                "after": self.after}


@dataclass(frozen=True, slots=True)
class Audit:
    """This host's exposure, and its differences from a baseline when one was given."""

    host: str
    taken_at: str
    ports: tuple[PortExposure, ...]
    limitations: tuple[str, ...] = ()
    baseline: str | None = None  # the baseline's file
    baseline_taken_at: str | None = None
    differences: tuple[Difference, ...] = ()

    @property
    def exit_code(self) -> ExitCode:
        """1 when the exposure differs from the baseline, else 0."""
        return ExitCode.PROBLEM if self.differences else ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        """The `portdoctor.audit/1` document (a baseline for a later run)."""
        out: dict[str, Any] = {"schema": SCHEMA, "host": self.host, "taken_at": self.taken_at,
                               "ports": [p.to_json() for p in self.ports], "limitations": list(self.limitations)}
        if self.baseline is not None:
            out["baseline"] = {"file": self.baseline, "taken_at": self.baseline_taken_at}
            out["differences"] = [d.to_json() for d in self.differences]
        return out


# --------------------------------------------------------------------------- exposure


def _rule_words(o: Any) -> str:
    where = o.step.where if o.step is not None else (o.note or "no rule")
    text = f": {o.step.rule.text}" if o.step is not None and o.step.rule is not None else ""
    return f"{o.verdict.value} by {where}{text}"


def reach_of(snap: Snapshot, exposure: hostview.Exposure, address: str, ifname: str, port: int) -> Reach:
    """What the firewall does with clients from elsewhere connecting to address:port."""
    from portdoctor.firewall.evaluate import Flow, FlowVerdict

    if exposure.unreadable:
        return Reach(address, ifname, "unknown", ("the firewall rules could not be compiled",))
    blind = firewall_blind(snap)
    if blind:  # an unread ruleset is not an empty one
        return Reach(address, ifname, "unknown", (blind,))
    if exposure.evaluator is None:
        return Reach(address, ifname, "open")
    outcomes = exposure.evaluator.evaluate(Flow(dst=address, dport=port, src=None, iif=ifname,
                                                not_lo=True)).outcomes
    verdicts = {o.verdict for o in outcomes}
    stops = tuple(dict.fromkeys(_rule_words(o) for o in outcomes
                                if o.verdict in (FlowVerdict.DROP, FlowVerdict.REJECT)))
    if verdicts == {FlowVerdict.ACCEPT}:
        return Reach(address, ifname, "open")
    if verdicts and verdicts <= {FlowVerdict.DROP, FlowVerdict.REJECT}:
        return Reach(address, ifname, "closed", stops)
    if FlowVerdict.ACCEPT in verdicts and stops:
        return Reach(address, ifname, "partial", stops)
    return Reach(address, ifname, "unknown", tuple(_rule_words(o) for o in outcomes
                                                    if o.verdict is FlowVerdict.UNKNOWN))


def _scope(bound: list[str]) -> str:
    scopes = {addresses.scope(a) for a in bound}
    return scopes.pop() if len(scopes) == 1 else "mixed"


def exposure_of(snap: Snapshot) -> list[PortExposure]:
    """Every listening port of this host (per family) with its reach from other hosts."""
    exposure = hostview.Exposure(snap)
    pmap = build_map(snap)
    groups: dict[tuple[int, int], list[PortEntry]] = {}
    for e in pmap.listeners:
        if e.container is None:  # a container's own listener: its published port is a host entry
            groups.setdefault((e.port, e.family), []).append(e)
    out: list[PortExposure] = []
    for (port, fam), entries in sorted(groups.items()):
        socks = [s for s in hostview.listeners_on_port(snap, port) if s.family == fam]
        reach: list[Reach] = []
        for a in exposure.external[:MAX_ADDRESSES]:
            if any(hostview.takes(s, a.address) for s in socks):
                reach.append(reach_of(snap, exposure, a.address, a.ifname, port))
        owners = sorted({(p.container or p.name or f"pid {p.pid}") for e in entries for p in e.processes})
        exposed_values = [e.exposed for e in entries]
        exposed = True if True in exposed_values else None if None in exposed_values else False
        if reach and all(r.state == "unknown" for r in reach):
            exposed = None  # the port map counts unread rules as none; the audit does not guess
        via = sorted({f"{v.kind} {v.source}" for e in entries for v in e.via})
        bound = sorted({e.address for e in entries})
        out.append(PortExposure(port, fam, tuple(bound), _scope(bound), tuple(owners), exposed, tuple(reach),
                                tuple(via)))
    out += _published_without_holder(snap, exposure, pmap.listeners, set(groups))
    return sorted(out, key=lambda p: (p.port, p.family))


def _published_without_holder(snap: Snapshot, exposure: hostview.Exposure, entries: tuple[PortEntry, ...],
                              seen: set[tuple[int, int]]) -> list[PortExposure]:
    """Published container ports that no host socket holds (Docker without its userland proxy:
    the engine's DNAT alone leads to the container), keyed by the host port."""
    out: list[PortExposure] = []
    for e in entries:
        if e.container is None:
            continue
        for v in e.via:
            if v.kind != "publish":
                continue
            host_ip, _, host_port = v.source.rpartition(":")
            host_ip = host_ip.strip("[]") or "0.0.0.0"
            if not host_port.isdigit():
                continue
            fam = addresses.family(host_ip)
            if (int(host_port), fam) in seen:
                continue
            seen.add((int(host_port), fam))
            reach = [reach_of(snap, exposure, a.address, a.ifname, int(host_port))
                     for a in exposure.external[:MAX_ADDRESSES]
                     if addresses.accepts(host_ip, fam, None, a.address)]
            out.append(PortExposure(int(host_port), fam, (host_ip,), addresses.scope(host_ip), (e.container,),
                                    e.exposed, tuple(reach), (f"publish {v.source}",)))
    return out


def take(snap: Snapshot | None = None) -> Audit:
    """The exposure of this host now (or of `snap`)."""
    if snap is None:
        from portdoctor.collectors import Request, collect

        snap = collect(Request(port=0))
    blind = listeners_blind(snap)
    if blind:  # an unreadable table is not an empty one: every port would read as closed
        raise Incomplete(f"the listening sockets could not be read, so there is no exposure to audit: {blind}")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Audit(snap.hostname, now, tuple(exposure_of(snap)), tuple(str(x) for x in snap.limitations))


# --------------------------------------------------------------------------- baseline


def read_baseline(path: str) -> tuple[list[PortExposure], str | None]:
    """The ports of a saved audit (`--save FILE`), and when it was taken; BadInput if it is not one."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BadInput(f"cannot read the baseline {path}: {reason}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise BadInput(f"{path} is not a portdoctor audit baseline (written by `portdoctor audit --save FILE`)")
    try:
        return [PortExposure.from_json(p) for p in doc.get("ports") or []], doc.get("taken_at")
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInput(f"{path}: a port entry is damaged ({type(exc).__name__}: {exc})") from None


def _who(p: PortExposure) -> str:
    return ", ".join(p.owners) or "owner unknown"


def _reach_words(p: PortExposure) -> str:
    return "; ".join(f"{r.address}: {r.state}" for r in p.reach) or "no address other hosts can use"


def compare(before: list[PortExposure], after: list[PortExposure]) -> list[Difference]:
    """What changed between two exposures, port by port."""
    old = {p.key: p for p in before}
    new = {p.key: p for p in after}
    out: list[Difference] = []
    for key, p in new.items():
        b = old.get(key)
        if b is None:
            opened = [r for r in p.reach if r.state in ("open", "partial")]
            if p.exposed or opened:
                at = ", ".join(f"{r.address} ({r.ifname})" for r in opened) or "other hosts"
                out.append(Difference("newly_exposed", key, f"{key} ({_who(p)}, bound to {', '.join(p.bound)}) "
                                      f"is new and reachable from other hosts at {at}", None, p.to_json()))
            else:
                out.append(Difference("new_listener", key, f"{key} ({_who(p)}, bound to {', '.join(p.bound)}) is "
                                      "new; other hosts cannot reach it", None, p.to_json()))
            continue
        if set(b.owners) != set(p.owners) and b.owners and p.owners:
            out.append(Difference("changed_owner", key, f"{key} was held by {_who(b)}, now by {_who(p)}",
                                  list(b.owners), list(p.owners)))
        if set(b.bound) != set(p.bound):
            out.append(Difference("changed_bind_scope", key, f"{key} was bound to {', '.join(b.bound)} ({b.scope}), "
                                  f"now to {', '.join(p.bound)} ({p.scope})", list(b.bound), list(p.bound)))
        out += _reach_changes(key, b, p)
        for v in sorted(set(p.via) - set(b.via)):
            out.append(Difference("newly_exposed", key, f"{key}: a new way in: {v}", None, v))
        for v in sorted(set(b.via) - set(p.via)):
            out.append(Difference("newly_blocked", key, f"{key}: a way in is gone: {v}", v, None))
    for key, b in old.items():
        if key not in new:
            was = " (it was reachable from other hosts)" if b.exposed else ""
            out.append(Difference("closed", key, f"{key} ({_who(b)}) no longer listens{was}", b.to_json(), None))
    return out


_RANK = {"closed": 0, "partial": 1, "open": 2}


def _reach_changes(key: str, b: PortExposure, p: PortExposure) -> list[Difference]:
    out: list[Difference] = []
    old = {addresses.unmapped(r.address): r for r in b.reach}
    for r in p.reach:
        o = old.pop(addresses.unmapped(r.address), None)
        before_state = o.state if o is not None else "closed"  # not reachable there before (bind)
        if r.state == "unknown" or before_state == "unknown":
            continue
        at = f"{key} at {r.address} ({r.ifname})"
        added = [x for x in r.rules if o is None or x not in o.rules]
        removed = [x for x in (o.rules if o is not None else ()) if x not in r.rules]
        if _RANK[r.state] < _RANK[before_state] or (r.state == before_state == "partial" and added):
            rules = "; ".join(added or r.rules)
            out.append(Difference("newly_blocked", key, f"{at}: {before_state} -> {r.state}"
                                  + (f" ({rules})" if rules else ""), before_state, r.to_json()))
        elif _RANK[r.state] > _RANK[before_state] or (r.state == before_state == "partial" and removed):
            why = f" (no longer: {'; '.join(removed)})" if removed else ""
            out.append(Difference("newly_exposed", key, f"{at}: {before_state} -> {r.state}{why}",
                                  before_state, r.to_json()))
    for o in old.values():  # an address clients reached before that the socket no longer takes
        if o.state in ("open", "partial"):
            out.append(Difference("newly_blocked", key, f"{key} at {o.address}: {o.state} -> not listening there",
                                  o.to_json(), None))
    return out


def audit(baseline: str | None = None, snap: Snapshot | None = None) -> Audit:
    """This host's exposure now, compared with the baseline file when one is given."""
    base = read_baseline(baseline) if baseline else None
    now = take(snap)
    if base is None:
        return now
    ports, taken_at = base
    return Audit(now.host, now.taken_at, now.ports, now.limitations, baseline, taken_at,
                 tuple(compare(ports, list(now.ports))))
