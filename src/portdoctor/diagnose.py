"""The main job: probe the target, collect host facts once, run the checks, rank, conclude.

target -> probe (client view) -> collectors (snapshot) -> follow-up probes of backends that
checks asked for -> checks (pure) -> verdict.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from portdoctor.checks import Context, endpoint_key, followup_targets, run_checks
from portdoctor.collectors import Request, collect, collect_before
from portdoctor.model import Diagnosis, ProbeResult, Snapshot, Target
from portdoctor.probe import DEFAULT_TIMEOUT
from portdoctor.probe import probe as run_probe
from portdoctor.verdict import decide, rank


def diagnose(target: Target, from_addr: str | None = None, service: str | None = None,
             timeout: float = DEFAULT_TIMEOUT, snapshot: Snapshot | None = None,
             probe: ProbeResult | None = None) -> Diagnosis:
    """Diagnose `target` from this host. Pass `snapshot` and `probe` to judge recorded facts
    (nothing is read from the system then, except follow-up probes when no probe was given)."""
    req = Request(port=target.port, host=target.host, service=service, from_addr=from_addr)
    if snapshot is None:
        req = replace(req, before=collect_before(req))
    if probe is None:
        probe = run_probe(target, timeout=timeout)
    if snapshot is None:
        req = replace(req, addresses=tuple(a.address for a in probe.addresses))
        snapshot = collect(req)
    ctx = Context(target=target, probe=probe, from_addr=from_addr, service=service)
    ctx = replace(ctx, followups=probe_followups(followup_targets(snapshot, ctx), timeout))
    findings = rank(run_checks(snapshot, ctx))
    verdict = decide(target, probe, findings)
    from portdoctor.checks.reachability import server_side_limitations

    limitations = [str(x) for x in snapshot.limitations] + server_side_limitations(snapshot, ctx)
    return Diagnosis(target, probe, verdict, tuple(findings), tuple(limitations), snapshot)


def probe_followups(targets: list[Target], timeout: float) -> dict[str, ProbeResult]:
    """Probe every backend a check asked about, in parallel; keyed by endpoint_key."""
    if not targets:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
        results = list(pool.map(lambda t: run_probe(t, timeout=min(timeout, 3.0)), targets))
    return {endpoint_key(t.host, t.port): r for t, r in zip(targets, results)}
