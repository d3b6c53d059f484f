"""Prometheus metrics of `watch`, built fresh from the live state at each scrape.

Names follow blackbox_exporter where they mean the same thing (`probe_success`,
`probe_duration_seconds`); what blackbox has no word for is `portdoctor_*`:

    probe_success{target,name,...}                      1 when the last check passed
    probe_duration_seconds{...}                         duration of the last check
    portdoctor_probe_duration_seconds_bucket{...,le}    histogram of check durations
    portdoctor_target_status{...,status}                1 for up | down | dns | unknown
    portdoctor_target_state{...,state}                  1 for the last check's state (open, refused, ...)
    portdoctor_target_cause{...,cause}                  1 for the current cause (ok, service_not_running, ...)
    portdoctor_target_flapping{...}                     1 while the target flaps
    portdoctor_probe_failures_total{...,state,cause}    failed checks by state and cause
    portdoctor_watch_*                                  the monitor itself (lag, storage, alerts)

Every target's user labels are added to its series (empty where a target has no such label).
A collector that reads state at scrape time costs nothing per probe, which matters at 500
probes a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from portdoctor.monitor.state import DNS, DOWN, UNKNOWN, UP

if TYPE_CHECKING:
    from portdoctor.monitor.service import Watch


class WatchCollector:
    """A prometheus_client collector over a Watch's live state."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        from portdoctor.monitor.service import DURATION_BUCKETS

        w = self.watch
        extra = list(w.config.extra_labels)
        base = ["target", "name", *extra]

        def g(name: str, doc: str, more: tuple[str, ...] = ()) -> Any:
            return GaugeMetricFamily(name, doc, labels=base + list(more))

        success = g("probe_success", "Whether the last check of the target passed (1) or failed (0).")
        duration = g("probe_duration_seconds", "How long the last check took, in seconds.")
        hist = HistogramMetricFamily("portdoctor_probe_duration_seconds",
                                     "Durations of the checks of the target, in seconds.", labels=base)
        status = g("portdoctor_target_status", "The target's status (1 for the current one).", ("status",))
        state = g("portdoctor_target_state", "The state the last check saw (1 for the current one).", ("state",))
        cause = g("portdoctor_target_cause", "The current cause: ok, or why the target fails.", ("cause",))
        flapping = g("portdoctor_target_flapping", "1 while the target changes status too often.")
        since = g("portdoctor_target_status_since_seconds", "Unix time of the last status change.")
        failures = CounterMetricFamily("portdoctor_probe_failures", "Failed checks by state and cause.",
                                       labels=base + ["state", "cause"])
        edges = [str(e) for e in DURATION_BUCKETS] + ["+Inf"]
        for live in w.lives.values():
            labels = dict(live.spec.labels)
            lv = [live.spec.target.input, live.name, *(labels.get(k, "") for k in extra)]
            tr = live.tracker
            last = live.last
            if last is not None:
                success.add_metric(lv, 1.0 if last.ok else 0.0)
                duration.add_metric(lv, last.seconds)
                state.add_metric(lv + [last.state], 1.0)
            running = 0
            buckets = []
            for edge, n in zip(edges, live.buckets + [0]):
                running += n
                buckets.append((edge, running))
            buckets[-1] = ("+Inf", live.dur_count)
            hist.add_metric(lv, buckets, live.dur_sum)
            for s in (UP, DOWN, DNS, UNKNOWN):
                status.add_metric(lv + [s], 1.0 if tr.status == s else 0.0)
            cause.add_metric(lv + [live.cause or ("ok" if tr.status == UP else "unknown")], 1.0)
            flapping.add_metric(lv, 1.0 if tr.flapping else 0.0)
            if tr.since:
                since.add_metric(lv, tr.since)
            for (st, ca), n in live.failures.items():
                failures.add_metric(lv + [st, ca], float(n))
        yield from (success, duration, hist, status, state, cause, flapping, since, failures)

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
    """The text exposition format of `registry`."""
    from prometheus_client import generate_latest

    return generate_latest(registry)
