"""The main job: probe the target, collect host facts once, run the checks, rank, conclude.

target -> probe (client view) -> collectors (snapshot) -> follow-up probes of backends that
checks asked for -> checks (pure) -> verdict.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from portdoctor.checks import Context, endpoint_key, followup_targets, run_checks
from portdoctor.collectors import Request, collect, collect_before
from typing import Any, Callable

from portdoctor.host import Host

from portdoctor.model import Diagnosis, ProbeResult, State, Target
from portdoctor.plain import from_plain, to_plain
from portdoctor.remedy.actions import attach as attach_actions
from portdoctor.snapshot import Snapshot
from portdoctor.probe import DEFAULT_TIMEOUT
from portdoctor.probe import probe as run_probe
from portdoctor.verdict import decide, rank


def diagnose(target: Target, from_addr: str | None = None, service: str | None = None,
             timeout: float = DEFAULT_TIMEOUT, snapshot: Snapshot | None = None,
             probe: ProbeResult | None = None,
             followups: dict[str, ProbeResult] | None = None, system: Host | None = None,
             attempts: int = 1) -> Diagnosis:
    """Diagnose `target` from this host. Pass `snapshot` and `probe` to judge recorded facts
    (nothing is read from the system then, except follow-up probes when no probe was given);
    pass `system` (a RecordedHost) to run the collectors on a recorded machine. `attempts` > 1 connects
    that many times, so an intermittent refusal shows as mixed results."""
    req = Request(port=target.port, host=target.host, service=service, from_addr=from_addr, system=system)
    if snapshot is None:
        req = replace(req, before=collect_before(req))
    if probe is None:
        from portdoctor.clientview import widen

        probe = widen(run_probe(target, timeout=timeout, attempts=attempts), service)  # a refused remote target: nearby ports, sender
    if snapshot is None:
        req = replace(req, addresses=tuple(a.address for a in probe.addresses),
                      dns_failed=probe.state is State.DNS_ERROR)
        snapshot = collect(req)
    ctx = Context(target=target, probe=probe, from_addr=from_addr, service=service)
    if followups is None:
        followups = probe_followups(followup_targets(snapshot, ctx), timeout)
    ctx = replace(ctx, followups=followups)
    ran = run_checks(snapshot, ctx)
    findings = rank(attach_actions(ran.findings, snapshot, ctx))
    verdict = decide(target, probe, findings)
    from portdoctor.checks.reachability import server_side_limitations

    limitations = [str(x) for x in snapshot.limitations] + server_side_limitations(snapshot, ctx) + ran.limitations
    if probe.refusal is not None and probe.refusal.limitation:
        limitations.append(f"who sent the refusal: {probe.refusal.limitation}")
    return Diagnosis(target, probe, verdict, tuple(findings), tuple(limitations), snapshot, ctx.followups)


def take_snapshot(target: Target, from_addr: str | None = None, service: str | None = None,
                  timeout: float = DEFAULT_TIMEOUT, between: Callable[[], None] | None = None) -> Snapshot:
    """This host's facts about `target`, as `diagnose` gathers them (the probe runs too, for the
    counters sampled around it and the addresses it resolved), without judging them: what
    `portdoctor snapshot` writes for `diagnose --snapshot FILE` elsewhere. `between` runs after
    the first counter sample, before the probe: the client's own probe (`diagnose --ssh`), so
    the counters cover its packets too."""
    req = Request(port=target.port, host=target.host, service=service, from_addr=from_addr)
    req = replace(req, before=collect_before(req))
    if between is not None:
        between()
    probe = run_probe(target, timeout=timeout)
    return collect(replace(req, addresses=tuple(a.address for a in probe.addresses),
                           dns_failed=probe.state is State.DNS_ERROR))


def probe_followups(targets: list[Target], timeout: float) -> dict[str, ProbeResult]:
    """Probe every backend a check asked about, in parallel; keyed by endpoint_key."""
    if not targets:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
        results = list(pool.map(lambda t: run_probe(t, timeout=min(timeout, 3.0)), targets))
    return {endpoint_key(t.host, t.port): r for t, r in zip(targets, results)}


def recording(result: Diagnosis, from_addr: str | None = None, service: str | None = None) -> dict[str, Any]:
    """Everything a diagnosis was judged on, as JSON data (see `replay_recording`)."""
    return {
        "schema": "portdoctor.recording/2",
        "target": to_plain(result.target),
        "from_addr": from_addr,
        "service": service,
        "probe": to_plain(result.probe),
        "followups": {k: to_plain(v) for k, v in result.followups.items()},
        "snapshot": result.snapshot.to_json() if result.snapshot is not None else None,
        "expected": result.verdict.cause.value,
    }


def replay_recording(doc: dict[str, Any]) -> Diagnosis:
    """Judge a recorded case again: same checks, no probe, nothing read from this host."""
    return diagnose(
        from_plain(Target, doc["target"]),
        from_addr=doc.get("from_addr"),
        service=doc.get("service"),
        snapshot=Snapshot.from_json(doc["snapshot"]),
        probe=from_plain(ProbeResult, doc["probe"]),
        followups={k: from_plain(ProbeResult, v) for k, v in (doc.get("followups") or {}).items()},
    )
