"""Prometheus metrics of `watch`, built fresh from the live state at each scrape.

Names follow blackbox_exporter where they mean the same thing (`probe_success`,
`probe_duration_seconds`); what blackbox has no word for is `portdoctor_*`:

    probe_success{target,name,...}                      1 when the last check passed
    probe_duration_seconds{...}                         duration of the last check
    portdoctor_probe_duration_seconds_bucket{...,le}    histogram of check durations
    portdoctor_target_status{...,status}                1 for the current status: up | down | dns | unknown
    portdoctor_target_state{...,state}                  1 for the last check's state (open, refused, ...)
    portdoctor_target_cause{...,cause}                  1 for the current cause (ok, service_not_running, ...)
    portdoctor_target_flapping{...}                     1 while the target flaps
    portdoctor_probe_failures_total{...,state,cause}    failed checks by state and cause
    portdoctor_watch_*                                  the monitor itself (lag, storage, alerts)

Every target's user labels are added to its series (empty where a target has no such label).
Status, state and cause are emitted for their current value only (one series each), so a
scrape of 5,000 targets stays a few MB. Reading the live state at scrape time costs nothing
per probe, which matters at 500 probes a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from portdoctor.monitor.state import DURATION_BUCKETS, UP

if TYPE_CHECKING:
    from portdoctor.monitor.service import Watch


# (name, type, help) of the per-target families, in exposition order
TARGET_FAMILIES: list[tuple[str, str, str]] = [
    ("probe_success", "gauge", "Whether the last check of the target passed (1) or failed (0)."),
    ("probe_duration_seconds", "gauge", "How long the last check took, in seconds."),
    ("portdoctor_probe_duration_seconds", "histogram", "Durations of the checks of the target, in seconds."),
    ("portdoctor_target_status", "gauge", "The target's status: up, down, dns or unknown (the current one, 1)."),
    ("portdoctor_target_state", "gauge", "The state the last check saw: open, refused, timeout, ... (1)."),
    ("portdoctor_target_cause", "gauge", "The current cause: ok, or why the target fails (1)."),
    ("portdoctor_target_flapping", "gauge", "1 while the target changes status too often."),
    ("portdoctor_target_status_since_seconds", "gauge", "Unix time of the last status change."),
    ("portdoctor_probe_failures_total", "counter", "Failed checks by state and cause."),
]


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float) -> str:
    return repr(float(v))


def label_text(watch: Watch, live: Any) -> str:
    """`target="...",name="...",<user labels>` of one target (cached on the target)."""
    extra = watch.config.extra_labels
    cached = live.label_cache
    if cached is not None and cached[0] == extra:
        return cached[1]
    labels = dict(live.spec.labels)
    pairs = [("target", live.spec.target.input), ("name", live.name), *((k, labels.get(k, "")) for k in extra)]
    text = ",".join(f'{k}="{_esc(v)}"' for k, v in pairs)
    live.label_cache = (extra, text)
    return text


async def render_targets(watch: Watch, chunk: int = 250) -> str:
    """The per-target families in the text exposition format (version 0.0.4).

    Written directly rather than through prometheus_client's generic path: at 5,000 targets
    that path takes seconds per scrape and holds the GIL, which would delay checks. The
    event loop gets a turn every `chunk` targets. Tests parse the output with
    prometheus_client's parser, and a real Prometheus scrapes it in the lab.
    """
    import asyncio


    edges = [repr(float(e)) for e in DURATION_BUCKETS]
    fam: dict[str, list[str]] = {name: [] for name, _t, _h in TARGET_FAMILIES}
    success, duration, hist = fam["probe_success"], fam["probe_duration_seconds"], \
        fam["portdoctor_probe_duration_seconds"]
    status, state, cause = fam["portdoctor_target_status"], fam["portdoctor_target_state"], \
        fam["portdoctor_target_cause"]
    flapping, since, failures = fam["portdoctor_target_flapping"], \
        fam["portdoctor_target_status_since_seconds"], fam["portdoctor_probe_failures_total"]
    for i, live in enumerate(list(watch.lives.values())):
        lv = label_text(watch, live)
        tr = live.tracker
        last = live.last
        if last is not None:
            success.append(f"probe_success{{{lv}}} {'1.0' if last.ok else '0.0'}\n")
            duration.append(f"probe_duration_seconds{{{lv}}} {_num(last.seconds)}\n")
            state.append(f'portdoctor_target_state{{{lv},state="{last.state}"}} 1.0\n')
        running = 0
        for edge, n in zip(edges, live.buckets):
            running += n
            hist.append(f'portdoctor_probe_duration_seconds_bucket{{{lv},le="{edge}"}} {_num(running)}\n')
        hist.append(f'portdoctor_probe_duration_seconds_bucket{{{lv},le="+Inf"}} {_num(live.dur_count)}\n'
                    f"portdoctor_probe_duration_seconds_count{{{lv}}} {_num(live.dur_count)}\n"
                    f"portdoctor_probe_duration_seconds_sum{{{lv}}} {_num(live.dur_sum)}\n")
        status.append(f'portdoctor_target_status{{{lv},status="{tr.status}"}} 1.0\n')
        c = live.cause or ("ok" if tr.status == UP else "unknown")
        cause.append(f'portdoctor_target_cause{{{lv},cause="{_esc(c)}"}} 1.0\n')
        flapping.append(f"portdoctor_target_flapping{{{lv}}} {'1.0' if tr.flapping else '0.0'}\n")
        if tr.since:
            since.append(f"portdoctor_target_status_since_seconds{{{lv}}} {_num(tr.since)}\n")
        for (st, ca), n in live.failures.items():
            failures.append(f'portdoctor_probe_failures_total{{{lv},state="{st}",cause="{_esc(ca)}"}} {_num(n)}\n')
        if i % chunk == chunk - 1:
            await asyncio.sleep(0)
    out: list[str] = []
    for name, kind, doc in TARGET_FAMILIES:
        base = name.removesuffix("_total") if kind == "counter" else name
        out.append(f"# HELP {base} {doc}\n# TYPE {base} {kind}\n")
        out.extend(fam[name])
    return "".join(out)


class WatchCollector:
    """A prometheus_client collector of the monitor's own metrics (lag, storage, alerts)."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        w = self.watch
        targets = GaugeMetricFamily("portdoctor_watch_targets", "Targets watched.")
        targets.add_metric([], float(len(w.lives)))
        probes = CounterMetricFamily("portdoctor_watch_probes", "Checks run since start.")
        probes.add_metric([], float(w.probes))
        yield targets
        yield probes
        if w.scheduler is not None:
            stats = w.scheduler.lag_stats(last=10_000)
            lag = GaugeMetricFamily("portdoctor_watch_schedule_lag_seconds",
                                    "Lag of recent checks behind their planned start.", labels=["quantile"])
            for q, v in (("0.5", stats.p50), ("0.99", stats.p99), ("1", stats.max)):
                lag.add_metric([q], v)
            skipped = CounterMetricFamily("portdoctor_watch_skipped_checks",
                                          "Checks skipped because the previous one was still running.")
            skipped.add_metric([], float(stats.skipped))
            yield lag
            yield skipped
        ok = GaugeMetricFamily("portdoctor_watch_history_ok", "1 when the last history write succeeded.")
        ok.add_metric([], 0.0 if w.storage_ok is False else 1.0)
        errors = CounterMetricFamily("portdoctor_watch_history_errors", "Failed history writes.")
        errors.add_metric([], float(w.storage_errors))
        yield ok
        yield errors
        if w.router is not None:
            alerts = CounterMetricFamily("portdoctor_watch_alerts", "Webhook deliveries by outcome.",
                                         labels=["outcome"])
            for outcome, n in w.router.counts.items():
                alerts.add_metric([outcome], float(n))
            yield alerts
        cfg = GaugeMetricFamily("portdoctor_watch_config_ok", "0 when the last reload was rejected.")
        cfg.add_metric([], 0.0 if w.config_error else 1.0)
        yield cfg


def registry_for(watch: Watch) -> Any:
    """A CollectorRegistry of its own (never the global one) with the watch and process metrics."""
    from prometheus_client import CollectorRegistry, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(WatchCollector(watch))
    ProcessCollector(registry=registry)
    return registry


def exposition(registry: Any) -> bytes:
    """The text exposition format of `registry` (the monitor's own and process metrics)."""
    from prometheus_client import generate_latest

    return generate_latest(registry)


async def scrape(watch: Watch, registry: Any) -> bytes:
    """The whole /metrics body: every target's families, then the monitor's own."""
    return (await render_targets(watch)).encode() + exposition(registry)
