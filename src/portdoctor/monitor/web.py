"""The dashboard and /metrics of `watch`, served by the monitor's own process (aiohttp).

Pages are rendered on the server as plain HTML with inline CSS and inline SVG charts
(portdoctor.monitor.charts): no script, no external asset, nothing to vendor. The server binds
127.0.0.1 by default; bound wider, every request needs the access token (a Bearer header, or
once as ?token=, which sets an HttpOnly cookie).

    /                    every target: status, cause, availability 24 h / 7 d / 30 d; incidents
    /target?name=NAME    one target: diagnosis, latency and state charts, its state changes
    /metrics             Prometheus exposition
    /api/targets         current state of every target (JSON)
    /api/status          the monitor itself: scheduling lag, storage, alerts (JSON)
    /healthz             "ok" (no token needed)
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from portdoctor.monitor import charts
from portdoctor.monitor.state import DNS, DOWN, UNKNOWN, UP

if TYPE_CHECKING:
    from aiohttp import web

    from portdoctor.monitor.service import Watch

WINDOWS = (86400.0, 7 * 86400.0, 30 * 86400.0)
STATUS_ORDER = {DOWN: 0, DNS: 1, UNKNOWN: 2, UP: 3}
STATUS_LABEL = {UP: "Up", DOWN: "Down", DNS: "DNS failure", UNKNOWN: "Pending"}
COOKIE = "pd_watch_token"


# --------------------------------------------------------------------------- helpers


def _ago(t: float | None, now: float) -> str:
    if not t:
        return "-"
    d = max(0, now - t)
    if d < 60:
        return f"{d:.0f} s ago"
    if d < 3600:
        return f"{d / 60:.0f} min ago"
    if d < 86400:
        return f"{d / 3600:.1f} h ago"
    return f"{d / 86400:.1f} days ago"


def _dur(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _utc(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)) if t else "-"


def _pct(v: float | None) -> str:
    if v is None:
        return '<span class="muted">-</span>'
    cls = "good" if v >= 0.999 else "warn" if v >= 0.95 else "bad"
    text = "100%" if v >= 0.99995 else f"{v * 100:.2f}%"
    return f'<span class="pct {cls}">{text}</span>'


def _pill(status: str, flapping: bool = False) -> str:
    label = "Flapping" if flapping else STATUS_LABEL.get(status, status)
    cls = "flap" if flapping else status
    return f'<span class="pill {cls}"><i></i>{escape(label)}</span>'


def _cause(cause: str | None) -> str:
    if not cause:
        return '<span class="muted">-</span>'
    cls = "ok" if cause == "ok" else "unknown" if cause == "unknown" else "bad"
    return f'<span class="cause {cls}">{escape(cause)}</span>'


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1000
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def _link(name: str) -> str:
    return f"/target?name={quote(name, safe='')}"


CSS = """
:root{--bg:#f4f6f9;--card:#fff;--ink:#1b2430;--muted:#6b7785;--line:#e3e8ee;--up:#1f9d55;--down:#d64545;
--dns:#b7791f;--pending:#8795a1;--accent:#3b6fd4}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",
Arial,sans-serif;background:var(--bg);color:var(--ink)}a{color:var(--accent);text-decoration:none}
a:hover{text-decoration:underline}header{background:#141b26;color:#e8edf3;padding:0 28px;display:flex;
align-items:center;gap:18px;height:56px}header .brand{font-weight:700;font-size:17px;letter-spacing:.2px;color:#fff}
header .brand b{color:#7fb0ff}header nav a{color:#c4cfdc;margin-right:14px}header .meta{margin-left:auto;
color:#93a1b3;font-size:13px}main{max-width:1320px;margin:0 auto;padding:22px 28px 48px}
.banner{border-radius:8px;padding:10px 14px;margin-bottom:16px;font-weight:500}.banner.err{background:#fdecec;
color:#8a1f1f;border:1px solid #f5c2c2}.banner.warn{background:#fff6e0;color:#7a5200;border:1px solid #f1dca5}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:14px;margin-bottom:22px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px;
box-shadow:0 1px 2px rgba(16,24,40,.04)}.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;
letter-spacing:.6px}.card .v{font-size:26px;font-weight:650;margin-top:4px}.card.up .v{color:var(--up)}
.card.down .v{color:var(--down)}.card.dns .v{color:var(--dns)}section{background:var(--card);border:1px solid var(--line);
border-radius:10px;margin-bottom:22px;box-shadow:0 1px 2px rgba(16,24,40,.04)}section>h2{font-size:15px;margin:0;
padding:14px 18px;border-bottom:1px solid var(--line);display:flex;align-items:center;gap:12px}
section>h2 .sub{color:var(--muted);font-weight:400;font-size:13px}section .body{padding:14px 18px}
table{width:100%;border-collapse:collapse}th{text-align:left;font-size:12px;color:var(--muted);font-weight:600;
text-transform:uppercase;letter-spacing:.5px;padding:9px 12px;border-bottom:1px solid var(--line);background:#fafbfc}
td{padding:9px 12px;border-bottom:1px solid var(--line);vertical-align:top}tr:last-child td{border-bottom:0}
tr.bad td{background:#fff8f8}td.summary{color:#3c4856;max-width:460px}td.num{text-align:right;white-space:nowrap}
.pill{display:inline-flex;align-items:center;gap:6px;border-radius:999px;padding:2px 10px 2px 8px;font-size:12px;
font-weight:600;white-space:nowrap}.pill i{width:8px;height:8px;border-radius:50%;display:inline-block}
.pill.up{background:#e5f6ec;color:#16703d}.pill.up i{background:var(--up)}.pill.down{background:#fdeaea;color:#a12c2c}
.pill.down i{background:var(--down)}.pill.dns{background:#fdf3e0;color:#8a5a00}.pill.dns i{background:var(--dns)}
.pill.unknown{background:#eef1f4;color:#5a6774}.pill.unknown i{background:var(--pending)}.pill.flap{background:#f1e8fd;
color:#5b2a9a}.pill.flap i{background:#7c3aed}.cause{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
font-size:12px;padding:1px 7px;border-radius:5px;white-space:nowrap}.cause.bad{background:#fdeaea;color:#a12c2c}
.cause.ok{background:#e5f6ec;color:#16703d}.cause.unknown{background:#eef1f4;color:#5a6774}.muted{color:var(--muted)}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}.pct.good{color:var(--up)}
.pct.warn{color:var(--dns)}.pct.bad{color:var(--down);font-weight:600}.filters{display:flex;gap:8px;margin-left:auto}
.filters a{font-weight:500;font-size:13px;padding:3px 10px;border-radius:6px;color:var(--muted)}
.filters a.on{background:#e8effc;color:var(--accent)}.timeline{list-style:none;margin:0;padding:0}
.timeline li{display:grid;grid-template-columns:150px 1fr;gap:14px;padding:12px 18px;border-bottom:1px solid var(--line)}
.timeline li:last-child{border-bottom:0}.timeline .when{color:var(--muted);font-size:12.5px}
.timeline .what{display:flex;flex-direction:column;gap:4px}.timeline .head{display:flex;gap:10px;align-items:center;
flex-wrap:wrap}details{margin-top:4px}details summary{cursor:pointer;color:var(--accent);font-size:12.5px}
ul.ev{margin:6px 0 0;padding-left:18px}ul.ev li{display:list-item;border:0;padding:2px 0;grid-template-columns:none}
code.fix{display:block;background:#0f1722;color:#d6e2f0;border-radius:6px;padding:8px 10px;margin:4px 0 8px;
white-space:pre-wrap;font-size:12.5px}.grid2{display:grid;grid-template-columns:2fr 1fr;gap:22px}
.kv{display:grid;grid-template-columns:130px 1fr;gap:6px 12px}.kv div:nth-child(odd){color:var(--muted)}
svg.chart{width:100%;height:auto;display:block}svg .grid{stroke:#eef1f4;stroke-width:1}svg .axis{fill:#7b8794;
font-size:11px;font-family:system-ui,sans-serif}svg .frame{fill:none;stroke:#dfe5ec}svg .line{fill:none;
stroke:#3b6fd4;stroke-width:1.6}svg .area{fill:#3b6fd4;opacity:.13}svg .line-dot{fill:#3b6fd4}
svg .empty{fill:#9aa5b1;font-size:13px}
.verdict{font-size:15px;font-weight:500;margin:4px 0 10px}.labels span{background:#eef2f7;border-radius:5px;
padding:1px 7px;margin-right:6px;font-size:12px;color:#44505c}h1{font-size:22px;margin:0 0 6px;display:flex;
gap:12px;align-items:center}.subtitle{color:var(--muted);margin-bottom:18px}.legend{font-size:12px;color:var(--muted)}
.legend b{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 10px;vertical-align:-1px}
.finding{margin:8px 0 12px;padding-left:10px;border-left:3px solid #e3e8ee}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:10px}
"""


def _page(w: Watch, title: str, body: str, refresh: int | None = 30) -> str:
    now = time.time()
    banners = ""
    if w.storage_ok is False:
        banners += (f'<div class="banner err">History is not being written: {escape(w.storage_error or "")}. '
                    "Probing and alerts go on; records wait in memory and are written when the database "
                    "accepts them again.</div>")
    if w.config_error:
        banners += ('<div class="banner warn">The last config reload was rejected; the running config stays. '
                    + "; ".join(escape(e) for e in w.config_error[:3]) + "</div>")
    if w.router is not None and w.router.last_error and w.router.counts.get("failed"):
        banners += f'<div class="banner warn">Webhook: {escape(w.router.last_error)}</div>'
    meta = f'{escape(w.hostname)} · {len(w.lives)} targets · up {_dur(now - w.started)}'
    head_refresh = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} · portdoctor watch'
            f'</title><meta name="viewport" content="width=device-width,initial-scale=1">{head_refresh}'
            f"<style>{CSS}</style></head><body><header><a class=\"brand\" href=\"/\">port<b>doctor</b> watch</a>"
            f'<nav><a href="/">Overview</a><a href="/metrics">Metrics</a><a href="/api/targets">API</a></nav>'
            f'<span class="meta">{meta}</span></header><main>{banners}{body}'
            f"<footer>Rendered {_utc(now)} · refreshes every {refresh or '-'} s</footer></main></body></html>")


# --------------------------------------------------------------------------- pages


class Dashboard:
    """Handlers of the web server; reads live state from the Watch and history from its store."""

    def __init__(self, watch: Watch, token: str | None) -> None:
        self.w = watch
        self.token = token
        self._reads = ThreadPoolExecutor(2, thread_name_prefix="pd-web")
        self._avail: tuple[float, dict[str, list[float | None]]] = (0.0, {})
        from portdoctor.monitor.metrics import registry_for

        self.registry = registry_for(watch)

    async def _read(self, fn: Any, *args: Any) -> Any:
        from portdoctor.monitor.history import StorageError

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._reads, fn, *args)
        except StorageError:
            return None

    async def availability(self) -> dict[str, list[float | None]]:
        """Availability per target over 24 h / 7 d / 30 d, cached for 30 s."""
        at, cached = self._avail
        now = time.time()
        if now - at < 30 and cached:
            return cached
        got = await self._read(self.w.store.availability, WINDOWS, now)
        if got is not None:
            self._avail = (now, got)
            return got
        return cached

    # ------------------------------------------------------------------ auth

    def authorized(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        offered = request.headers.get("Authorization", "")
        if offered.startswith("Bearer "):
            return hmac.compare_digest(offered[7:].strip().encode(), self.token.encode())
        cookie = request.cookies.get(COOKIE)
        if cookie is not None:
            return hmac.compare_digest(cookie.encode(), self.token.encode())
        return False

    # ------------------------------------------------------------------ overview

    async def overview(self, request: web.Request) -> web.Response:
        from aiohttp import web

        w = self.w
        now = time.time()
        show = request.query.get("show", "all")
        avail = await self.availability()
        incidents = await self._read(w.store.incidents, None, now - 30 * 86400, 25) or []
        counts = w.status_counts()
        lives = sorted(w.lives.values(), key=lambda lv: (STATUS_ORDER.get(lv.tracker.status, 9), lv.name))
        if show == "problems":
            lives = [lv for lv in lives if lv.tracker.status in (DOWN, DNS) or lv.tracker.flapping]
        elif show == "up":
            lives = [lv for lv in lives if lv.tracker.status == UP]
        total = [0, 0]
        for shares in avail.values():
            if shares[0] is not None:
                total[0] += 1
                total[1] += shares[0]
        overall = total[1] / total[0] if total[0] else None
        open_incidents = sum(1 for lv in w.lives.values() if lv.tracker.incident is not None)
        cards = (f'<div class="cards"><div class="card up"><div class="k">Up</div><div class="v">{counts[UP]}</div></div>'
                 f'<div class="card down"><div class="k">Down</div><div class="v">{counts[DOWN]}</div></div>'
                 f'<div class="card dns"><div class="k">DNS failures</div><div class="v">{counts[DNS]}</div></div>'
                 f'<div class="card"><div class="k">Pending</div><div class="v">{counts[UNKNOWN]}</div></div>'
                 f'<div class="card"><div class="k">Open incidents</div><div class="v">{open_incidents}</div></div>'
                 f'<div class="card"><div class="k">Availability 24 h</div><div class="v">{_pct(overall)}</div></div>'
                 "</div>")
        rows = []
        for lv in lives:
            tr = lv.tracker
            a = avail.get(lv.name, [None, None, None])
            bad = tr.status in (DOWN, DNS)
            rows.append(
                f'<tr class="{"bad" if bad else ""}"><td>{_pill(tr.status, tr.flapping)}</td>'
                f'<td><a href="{_link(lv.name)}">{escape(lv.name)}</a>'
                + (f'<div class="muted mono">{escape(lv.spec.target.input)}</div>' if lv.name != lv.spec.target.input else "")
                + f'</td><td class="mono">{escape(tr.state)}</td><td>{_cause(lv.cause)}</td>'
                f'<td class="summary">{escape(lv.summary)}</td>'
                f'<td class="num" title="{_utc(tr.since)}">{_ago(tr.since, now)}</td>'
                f'<td class="num">{_pct(a[0])}</td><td class="num">{_pct(a[1])}</td><td class="num">{_pct(a[2])}</td>'
                f'<td class="num">{_ms(lv.last.seconds if lv.last else None)}</td></tr>')
        if not rows:
            rows.append('<tr><td colspan="10" class="muted">No target matches this filter.</td></tr>')

        def tab(key: str, label: str) -> str:
            return f'<a class="{"on" if show == key else ""}" href="/?show={key}">{label}</a>'

        table = ('<section><h2>Targets <span class="sub">problems first</span><span class="filters">'
                 + tab("all", "All") + tab("problems", "Problems") + tab("up", "Up") + "</span></h2>"
                 "<table><thead><tr><th>Status</th><th>Target</th><th>State</th><th>Cause</th><th>Last check</th>"
                 '<th class="num">Since</th><th class="num">24 h</th><th class="num">7 d</th><th class="num">30 d</th>'
                 '<th class="num">Latency</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table></section>")
        timeline = await self._timeline(incidents, now)
        body = cards + table + ('<section><h2>Incidents <span class="sub">last 30 days, newest first</span></h2>'
                                + timeline + "</section>")
        return web.Response(text=_page(w, "Overview", body), content_type="text/html")

    async def _timeline(self, incidents: list[Any], now: float) -> str:
        if not incidents:
            return '<div class="body muted">No incident in this period.</div>'
        openings = await self._read(self.w.store.opening_events, [i.id for i in incidents]) or {}
        items = []
        for inc in incidents:
            live = self.w.lives.get(inc.name)
            end = inc.closed or now
            state = "open" if inc.closed is None else f"resolved after {_dur(end - inc.opened)}"
            kind = {"flapping": "Flapping", "dns": "DNS failure", "down": "Down"}.get(inc.kind, inc.kind)
            changes = f" · {inc.changes} state changes" if inc.changes > 1 else ""
            evidence = ""
            opening = openings.get(inc.id)
            if opening is not None and opening.detail.get("diagnosis"):
                evidence = _diagnosis_details(opening.detail["diagnosis"])
            elif live is not None and live.diagnosis and inc.closed is None:
                evidence = _diagnosis_details(live.diagnosis)
            items.append(
                f'<li><div class="when">{_utc(inc.opened)}<br>{_ago(inc.opened, now)}</div><div class="what">'
                f'<div class="head"><b>{escape(kind)}</b> <a href="{_link(inc.name)}">{escape(inc.name)}</a> '
                f'{_cause(inc.cause)} <span class="muted">{escape(state)}{changes}</span></div>'
                f"<div>{escape(inc.summary)}</div>{evidence}</div></li>")
        return '<ul class="timeline">' + "".join(items) + "</ul>"

    # ------------------------------------------------------------------ one target

    async def target(self, request: web.Request) -> web.Response:
        from aiohttp import web

        w = self.w
        name = request.query.get("name", "")
        live = w.lives.get(name)
        if live is None:
            body = f'<section><div class="body">No target named <b>{escape(name)}</b> is watched.</div></section>'
            return web.Response(text=_page(w, "Not found", body), content_type="text/html", status=404)
        now = time.time()
        ranges = {"1h": 3600.0, "6h": 6 * 3600.0, "24h": 86400.0, "48h": 2 * 86400.0}
        minutes = await self._read(w.store.minutes, name, now - 2 * 86400.0) or []
        span_key = request.query.get("range", "")
        if span_key not in ranges:  # by default, the shortest range that holds all the data
            first = minutes[0].minute * 60 if minutes else now
            span_key = next((k for k, v in ranges.items() if now - first <= v * 0.9), "48h")
        span = ranges[span_key]
        day = now - span
        minutes = [m for m in minutes if m.minute * 60 >= day - 60]
        hours = await self._read(w.store.hours, name, now - 30 * 86400) or []
        events = await self._read(w.store.events, name, 0.0, 50) or []
        incidents = await self._read(w.store.incidents, name, now - 30 * 86400, 20) or []
        avail = (await self.availability()).get(name, [None, None, None])
        tr = live.tracker
        spec = live.spec
        labels = "".join(f"<span>{escape(k)}={escape(v)}</span>" for k, v in spec.labels)
        head = (f"<h1>{escape(name)} {_pill(tr.status, tr.flapping)}</h1>"
                f'<div class="subtitle mono">{escape(spec.target.input)} · every {spec.interval:g} s, timeout '
                f'{spec.timeout:g} s, down after {spec.failures} failed check{"s" if spec.failures > 1 else ""}'
                f' · diagnosis: {escape(spec.diagnose)} <span class="labels">{labels}</span></div>')
        cards = (f'<div class="cards"><div class="card"><div class="k">State</div><div class="v mono" '
                 f'style="font-size:20px">{escape(tr.state)}</div></div>'
                 f'<div class="card"><div class="k">Cause</div><div class="v" style="font-size:16px">{_cause(live.cause)}'
                 f'</div></div><div class="card"><div class="k">Since</div><div class="v" style="font-size:18px">'
                 f'{_ago(tr.since, now)}</div></div>'
                 f'<div class="card"><div class="k">Availability 24 h</div><div class="v">{_pct(avail[0])}</div></div>'
                 f'<div class="card"><div class="k">7 days</div><div class="v">{_pct(avail[1])}</div></div>'
                 f'<div class="card"><div class="k">30 days</div><div class="v">{_pct(avail[2])}</div></div></div>')
        verdict = (f'<section><h2>Now</h2><div class="body"><div class="verdict">{escape(live.summary)}</div>'
                   + (_diagnosis_details(live.diagnosis, open_=True) if live.diagnosis else
                      ('<div class="muted">No local diagnosis: set <span class="mono">diagnose: local</span> for '
                       "a target on this host to record why it fails.</div>" if spec.diagnose != "local"
                       and tr.status != UP else ""))
                   + "</div></section>")
        pts = [(m.minute * 60 + 30, m.dur_avg, m.dur_max) for m in minutes if m.checks]
        label = {3600.0: "last hour", 6 * 3600.0: "last 6 hours", 86400.0: "last 24 hours",
                 2 * 86400.0: "last 48 hours"}[span]
        lat = charts.latency_chart(pts, day, now, f"Latency of {name}, {label}")
        cells = [(m.minute * 60, m.minute * 60 + 60, (m.ok / m.checks) if m.checks else None,
                  f"{time.strftime('%H:%M', time.gmtime(m.minute * 60))} UTC: {m.ok}/{m.checks} checks passed")
                 for m in minutes]
        band = charts.state_band(cells, day, now, f"State of {name}, {label}")
        month = [(h.minute * 3600, h.minute * 3600 + 3600, (h.ok / h.checks) if h.checks else None,
                  f"{time.strftime('%b %d %H:00', time.gmtime(h.minute * 3600))} UTC: "
                  f"{h.ok}/{h.checks} checks passed") for h in hours]
        band30 = charts.state_band(month, now - 30 * 86400, now, f"State of {name}, last 30 days")
        legend = ('<div class="legend"><b style="background:#1f9d55"></b>every check passed<b style="background:'
                  '#d99a1e"></b>some failed<b style="background:#d64545"></b>all failed<b style="background:#cfd6de">'
                  "</b>no data</div>")
        tabs = "".join(f'<a class="{"on" if k == span_key else ""}" href="{_link(name)}&amp;range={k}">{k}</a>'
                       for k in ranges)
        chart_sec = (f'<section><h2>Latency and state <span class="sub">{label}, per minute (UTC)</span>'
                     f'<span class="filters">{tabs}</span></h2>'
                     f'<div class="body">{lat}{band}{legend}</div></section>'
                     f'<section><h2>State <span class="sub">last 30 days, per hour</span></h2>'
                     f'<div class="body">{band30}</div></section>')
        ev_rows = []
        for e in events:
            more = ""
            diag = e.detail.get("diagnosis") if isinstance(e.detail, dict) else None
            if diag:
                more = _diagnosis_details(diag)
            ev_rows.append(f'<tr><td class="muted" title="{_utc(e.at)}">{_utc(e.at)}</td><td>{_pill(e.status)}</td>'
                           f'<td class="mono">{escape(e.state)}</td><td>{_cause(e.cause)}</td>'
                           f'<td class="summary">{escape(e.summary)}{more}</td></tr>')
        if not ev_rows:
            ev_rows.append('<tr><td colspan="5" class="muted">No state change recorded yet.</td></tr>')
        ev_sec = ('<section><h2>State changes <span class="sub">newest first</span></h2><table><thead><tr><th>When</th>'
                  "<th>Status</th><th>State</th><th>Cause</th><th>What was seen</th></tr></thead><tbody>"
                  + "".join(ev_rows) + "</tbody></table></section>")
        inc_sec = ('<section><h2>Incidents <span class="sub">last 30 days</span></h2>'
                   + await self._timeline(incidents, now) + "</section>")
        body = head + cards + verdict + chart_sec + ev_sec + inc_sec
        return web.Response(text=_page(w, name, body), content_type="text/html")

    # ------------------------------------------------------------------ machine-readable

    async def metrics(self, request: web.Request) -> web.Response:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST

        from portdoctor.monitor.metrics import scrape

        body = await scrape(self.w, self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def api_targets(self, request: web.Request) -> web.Response:
        from aiohttp import web

        doc = {"schema": "portdoctor.watch/1", "targets": [self.w.target_json(lv) for lv in self.w.lives.values()]}
        return web.json_response(doc, dumps=lambda d: json.dumps(d, indent=1))

    async def api_status(self, request: web.Request) -> web.Response:
        from aiohttp import web

        w = self.w
        last = request.query.get("last", "")
        n = int(last) if last.isdigit() and int(last) > 0 else None
        stats = w.scheduler.lag_stats(last=n) if w.scheduler is not None else None
        doc = {
            "targets": len(w.lives),
            "probes": w.probes,
            "status": w.status_counts(),
            "lag": None if stats is None else {"count": stats.count, "p50": stats.p50, "p99": stats.p99,
                                               "max": stats.max, "skipped": stats.skipped},
            "history": {"ok": w.storage_ok, "error": w.storage_error, "errors": w.storage_errors},
            "alerts": dict(w.router.counts) if w.router else {},
            "config_errors": w.config_error,
        }
        return web.json_response(doc)

    async def healthz(self, request: web.Request) -> web.Response:
        from aiohttp import web

        return web.Response(text="ok\n")


def _diagnosis_details(diag: dict[str, Any], open_: bool = False) -> str:
    """The findings of a diagnosis: evidence and fix commands, in a <details> block."""
    findings = diag.get("findings") or []
    if not findings:
        return ""
    parts = []
    for f in findings[:3]:
        ev = "".join(f"<li class=\"mono\">{escape(e)}</li>" for e in f.get("evidence", []))
        fx = "".join(f"<div>{escape(x.get('description', ''))}</div>"
                     + (f'<code class="fix">{escape(x["command"])}</code>' if x.get("command") else "")
                     for x in f.get("fix", []))
        parts.append(f"<div class=\"finding\"><b>{escape(f.get('summary', ''))}</b> {_cause(f.get('cause'))}"
                     f'<ul class="ev">{ev}</ul>{fx}</div>')
    verdict = diag.get("verdict", {})
    conf = verdict.get("confidence")
    label = f"Diagnosis: {verdict.get('cause', '?')}" + (f" ({conf * 100:.0f}% confidence)" if conf else "")
    return (f'<details{" open" if open_ else ""}><summary>{escape(label)}: evidence and fix</summary>'
            + "".join(parts) + "</details>")


# --------------------------------------------------------------------------- server


def make_app(watch: Watch, token: str | None) -> web.Application:
    """The aiohttp application (routes and the token check)."""
    from aiohttp import web

    d = Dashboard(watch, token)

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/healthz":
            return await handler(request)
        offered = request.query.get("token")
        if token is not None and offered is not None:
            if hmac.compare_digest(offered.encode(), token.encode()):
                query = {k: v for k, v in request.query.items() if k != "token"}
                target = request.path + ("?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())
                                         if query else "")
                resp = web.HTTPFound(target)
                resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
                raise resp
        if not d.authorized(request):
            return web.Response(status=401, text="portdoctor watch: an access token is required "
                                "(Authorization: Bearer TOKEN, or open /?token=TOKEN once)\n",
                                headers={"WWW-Authenticate": 'Bearer realm="portdoctor watch"'})
        resp = await handler(request)
        resp.headers["Content-Security-Policy"] = ("default-src 'none'; style-src 'unsafe-inline'; "
                                                   "img-src data:; frame-ancestors 'none'")
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        return resp

    app = web.Application(middlewares=[guard])
    app.router.add_get("/", d.overview)
    app.router.add_get("/target", d.target)
    app.router.add_get("/metrics", d.metrics)
    app.router.add_get("/api/targets", d.api_targets)
    app.router.add_get("/api/status", d.api_status)
    app.router.add_get("/healthz", d.healthz)
    return app


async def start_web(watch: Watch) -> web.AppRunner:
    """Serve the dashboard on the configured address; return the runner (call .cleanup())."""
    from aiohttp import web

    cfg = watch.config.web
    token = cfg.token()
    app = make_app(watch, token)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port, reuse_address=True)
    await site.start()
    return runner
