"""Charts of the dashboard, drawn as inline SVG by this module: no script, no vendored asset.

Each function returns an `<svg>` string sized by its viewBox (it scales with its container).
"""

from __future__ import annotations

import math
import time
from html import escape
from typing import Sequence

GREEN, RED, AMBER, GREY = "#1f9d55", "#d64545", "#d99a1e", "#cfd6de"


def _nice_step(span: float, target_ticks: int = 4) -> float:
    """A round step (1, 2, 5 x 10^n) giving about `target_ticks` ticks over `span`."""
    if span <= 0:
        return 1.0
    raw = span / target_ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _time_ticks(t0: float, t1: float) -> list[tuple[float, str]]:
    span = t1 - t0
    for step, fmt in ((300, "%H:%M"), (600, "%H:%M"), (900, "%H:%M"), (1800, "%H:%M"), (3600, "%H:%M"), (3 * 3600, "%H:%M"), (6 * 3600, "%H:%M"), (86400, "%b %d"),
                      (2 * 86400, "%b %d"), (7 * 86400, "%b %d")):
        if span / step <= 8:
            break
    first = math.ceil(t0 / step) * step
    return [(t, time.strftime(fmt, time.gmtime(t))) for t in _frange(first, t1, step)]


def _frange(a: float, b: float, step: float) -> list[float]:
    out = []
    x = a
    while x <= b:
        out.append(x)
        x += step
    return out


def _ms(v: float) -> str:
    if v >= 1:
        return f"{v:.1f} s"
    ms = v * 1000
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms" if ms >= 1 else f"{ms:.2f} ms"


def latency_chart(points: Sequence[tuple[float, float, float]], t0: float, t1: float, title: str,
                  width: int = 900, height: int = 220) -> str:
    """Mean (line) and worst (shaded) latency per time bucket: points are (time, mean, max)."""
    left, right, top, bottom = 62, 12, 14, 26
    pw, ph = width - left - right, height - top - bottom
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>"]
    vmax = max((p[2] for p in points), default=0.0)
    if vmax <= 0:
        vmax = 0.001
    step = _nice_step(vmax)
    vtop = step * math.ceil(vmax / step)

    def x(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * pw

    def y(v: float) -> float:
        return top + ph - (v / vtop) * ph

    for v in _frange(0.0, vtop + step / 2, step):
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" class="axis" text-anchor="end">{_ms(v)}</text>')
    for t, label in _time_ticks(t0, t1):
        parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{top + ph}" class="grid"/>')
        parts.append(f'<text x="{x(t):.1f}" y="{height - 8}" class="axis" text-anchor="middle">{label}</text>')
    if not points:
        parts.append(f'<text x="{left + pw / 2}" y="{top + ph / 2}" class="empty" text-anchor="middle">'
                     "no checks recorded in this period yet</text>")
    else:
        # split into runs where buckets are adjacent, so gaps (no data) stay gaps
        runs: list[list[tuple[float, float, float]]] = [[]]
        gap = (t1 - t0) / 200
        prev = None
        for p in points:
            if prev is not None and p[0] - prev > max(gap, 120):
                runs.append([])
            runs[-1].append(p)
            prev = p[0]
        for run in runs:
            if len(run) == 1:
                t, mean, _mx = run[0]
                parts.append(f'<circle cx="{x(t):.1f}" cy="{y(mean):.1f}" r="2" class="line-dot"/>')
                continue
            area = " ".join(f"{x(t):.1f},{y(mx):.1f}" for t, _m, mx in run)
            area += " " + " ".join(f"{x(t):.1f},{y(0):.1f}" for t, _m, _mx in reversed(run))
            parts.append(f'<polygon points="{area}" class="area"/>')
            line = " ".join(f"{x(t):.1f},{y(m):.1f}" for t, m, _mx in run)
            parts.append(f'<polyline points="{line}" class="line"/>')
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>')
    parts.append("</svg>")
    return "".join(parts)


def state_band(cells: Sequence[tuple[float, float, float | None, str]], t0: float, t1: float, title: str,
               width: int = 900, height: int = 54) -> str:
    """A band of coloured cells over time: (start, end, share of good checks or None, tooltip)."""
    left, right, top, bottom = 62, 12, 6, 20
    pw, ph = width - left - right, height - top - bottom
    parts = [f'<svg class="chart band" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="{GREY}" opacity="0.45"/>']

    def x(t: float) -> float:
        return left + (min(max(t, t0), t1) - t0) / (t1 - t0) * pw

    for start, end, share, tip in cells:
        if share is None:
            continue
        colour = GREEN if share >= 0.999 else RED if share <= 0.001 else AMBER
        w = max(x(end) - x(start), 0.8)
        parts.append(f'<rect x="{x(start):.1f}" y="{top}" width="{w:.1f}" height="{ph}" fill="{colour}">'
                     f"<title>{escape(tip)}</title></rect>")
    for t, label in _time_ticks(t0, t1):
        parts.append(f'<text x="{x(t):.1f}" y="{height - 5}" class="axis" text-anchor="middle">{label}</text>')
    parts.append(f'<text x="{left - 6}" y="{top + ph / 2 + 4}" class="axis" text-anchor="end">state</text>')
    parts.append("</svg>")
    return "".join(parts)

