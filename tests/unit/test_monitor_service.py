"""The Watch on loopback: checks feed history, metrics and the dashboard (served for real)."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from portdoctor.monitor.config import parse_config
from portdoctor.monitor.history import SqliteStore
from portdoctor.monitor.metrics import registry_for, scrape
from portdoctor.monitor.service import Watch
from portdoctor.monitor.web import make_app


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_watch(tmp_path: Path, open_port: int, closed_port: int, extra: str = "") -> Watch:
    cfg = parse_config(f"""
history: {{path: {tmp_path / 'h.db'}}}
defaults: {{failures: 2, timeout: 1s, interval: 5s, labels: {{env: test}}}}
targets:
  - {{target: "127.0.0.1:{open_port}", name: api}}
  - {{target: "127.0.0.1:{closed_port}", name: "db/main", diagnose: local, labels: {{team: data}}}}
{extra}""", str(tmp_path / "w.yaml"))
    return Watch(cfg)


def metric(text: str, metric_name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(metric_name + "{"):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_checks_flow_into_history_metrics_and_dashboard(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    open_port = listener.getsockname()[1]
    closed = _closed_port()

    async def main() -> dict[str, Any]:
        w = make_watch(tmp_path, open_port, closed)
        await w._load_state()
        for _ in range(3):
            for live in w.lives.values():
                await w.check(live)
        assert await w.flush()
        metrics = (await scrape(w, registry_for(w))).decode()
        app = make_app(w, token=None)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            overview = await (await client.get("/")).text()
            page = await (await client.get("/target", params={"name": "db/main"})).text()
            missing = await client.get("/target", params={"name": "nope"})
            api = await (await client.get("/api/targets")).json()
            served_metrics = await (await client.get("/metrics")).text()
        w.store.close()
        return {"w": w, "metrics": metrics, "overview": overview, "page": page, "missing": missing.status,
                "api": api, "served": served_metrics}

    r = asyncio.run(main())
    listener.close()
    w = r["w"]
    assert w.lives["api"].tracker.status == "up"
    db = w.lives["db/main"]
    assert db.tracker.status == "down" and db.cause == "service_not_running"
    # history: the down event carries the diagnosis
    store = SqliteStore(str(tmp_path / "h.db"))
    (event,) = [e for e in store.events("db/main") if e.status == "down"]
    assert event.cause == "service_not_running" and event.state == "refused"
    assert event.detail["diagnosis"]["verdict"]["cause"] == "service_not_running"
    assert store.minutes("db/main", 0)[0].checks == 3
    (inc,) = store.incidents("db/main")
    assert inc.closed is None and inc.cause == "service_not_running"
    store.close()
    # metrics, blackbox names and our own
    m = r["metrics"]
    assert metric(m, "probe_success", name="api", env="test", team="") == 1.0
    assert metric(m, "probe_success", name="db/main", team="data") == 0.0
    assert metric(m, "portdoctor_target_state", name="db/main", state="refused") == 1.0
    assert metric(m, "portdoctor_target_cause", name="db/main", cause="service_not_running") == 1.0
    assert metric(m, "portdoctor_target_status", name="db/main", status="down") == 1.0
    assert metric(m, "portdoctor_target_status", name="db/main", status="up") is None  # the current one only
    # failures by cause: the first one before the diagnosis named it
    assert metric(m, "portdoctor_probe_failures_total", name="db/main", state="refused", cause="unknown") == 1.0
    assert metric(m, "portdoctor_probe_failures_total", name="db/main", state="refused",
                  cause="service_not_running") == 2.0
    assert metric(m, "portdoctor_probe_duration_seconds_count", name="api") == 3.0
    assert "process_cpu_seconds_total" in m and r["served"].count("probe_success{") == 2
    # the whole body is valid exposition format, as prometheus_client's own parser reads it
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(m)}
    assert families["portdoctor_probe_duration_seconds"].type == "histogram"
    assert families["portdoctor_probe_failures"].type == "counter"
    hist = [s for s in families["portdoctor_probe_duration_seconds"].samples
            if s.name.endswith("_bucket") and s.labels["name"] == "api"]
    assert [s.labels["le"] for s in hist][-1] == "+Inf" and hist[-1].value == 3.0
    assert all(a.value <= b.value for a, b in zip(hist, hist[1:]))  # cumulative
    # dashboard: the down target first, its cause, a link to its page; the page has charts
    ov = r["overview"]
    assert ov.index("db/main") < ov.index(">api<")
    assert "service_not_running" in ov and "/target?name=db%2Fmain" in ov
    assert "<svg" in r["page"] and "Nothing listens on port" in r["page"] and "evidence and fix" in r["page"]
    assert r["missing"] == 404
    assert {t["name"]: t["status"] for t in r["api"]["targets"]} == {"api": "up", "db/main": "down"}


def test_a_token_guards_every_page_but_healthz(tmp_path: Path) -> None:
    async def main() -> list[int]:
        w = make_watch(tmp_path, _closed_port(), _closed_port())
        app = make_app(w, token="t0ken")
        codes = []
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            for path, headers in (("/", {}), ("/metrics", {}), ("/healthz", {}),
                                  ("/metrics", {"Authorization": "Bearer t0ken"}),
                                  ("/metrics", {"Authorization": "Bearer wrong"})):
                codes.append((await client.get(path, headers=headers)).status)
            # ?token= once: a cookie, and a redirect that drops the token from the address
            resp = await client.get("/?token=t0ken&show=up", allow_redirects=False)
            codes.append(resp.status)
            assert resp.headers["Location"] == "/?show=up"
            codes.append((await client.get("/")).status)
        return codes

    assert asyncio.run(main()) == [401, 401, 200, 200, 401, 302, 200]


def test_restart_takes_up_the_stored_state(tmp_path: Path) -> None:
    closed = _closed_port()

    async def first() -> int | None:
        w = make_watch(tmp_path, closed, closed)
        await w._load_state()
        for _ in range(2):
            await w.check(w.lives["api"])
        await w.flush()
        w.store.close()
        return w.lives["api"].tracker.incident

    async def second() -> tuple[str, int | None, list]:
        w = make_watch(tmp_path, closed, closed)
        await w._load_state()
        changes = await w.check(w.lives["api"])
        w.store.close()
        return w.lives["api"].tracker.status, w.lives["api"].tracker.incident, changes

    incident = asyncio.run(first())
    status, again, changes = asyncio.run(second())
    assert status == "down" and again == incident and changes == []  # no second down alert after a restart
