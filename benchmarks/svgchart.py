"""A small line chart as SVG text: cost against fleet size, for benchmarks/results/. Written here
rather than taken from a plotting library, so that a fresh clone draws it with what the suite
already installs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


@dataclass
class Series:
    label: str
    points: list[tuple[float, float]]  # (x, y), y > 0 (log scale); None-valued points are left out


@dataclass
class Panel:
    title: str
    unit: str
    series: list[Series]


def _log_ticks(low: float, high: float) -> list[float]:
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    return [10.0 ** e for e in range(first, last + 1)]


def _fmt(v: float) -> str:
    return f"{v:g}" if v >= 1 else f"{v:.2g}"


def chart(panels: list[Panel], *, title: str, width: int = 460, height: int = 300, columns: int = 2) -> str:
    """Panels side by side, each with log-scaled axes (sizes and costs span decades)."""
    rows = math.ceil(len(panels) / columns)
    total_w, total_h = width * columns, height * rows + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{total_h}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{total_w / 2}" y="24" text-anchor="middle" font-size="15">{escape(title)}</text>']
    for i, panel in enumerate(panels):
        ox, oy = (i % columns) * width, 40 + (i // columns) * height
        out += _panel(panel, ox, oy, width, height)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _panel(panel: Panel, ox: float, oy: float, width: int, height: int) -> list[str]:
    left, right, top, bottom = 60, 130, 24, 36
    pw, ph = width - left - right, height - top - bottom
    points = [p for s in panel.series for p in s.points if p[1] > 0]
    out = [f'<text x="{ox + left + pw / 2}" y="{oy + 14}" text-anchor="middle" font-size="12">'
           f'{escape(panel.title)} ({escape(panel.unit)})</text>']
    if not points:
        return out
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    xt, yt = _log_ticks(min(xs), max(xs)), _log_ticks(min(ys), max(ys))

    def px(x: float) -> float:
        lo, hi = math.log10(xt[0]), math.log10(xt[-1])
        return ox + left + (math.log10(x) - lo) / ((hi - lo) or 1) * pw

    def py(y: float) -> float:
        lo, hi = math.log10(yt[0]), math.log10(yt[-1])
        return oy + top + ph - (math.log10(y) - lo) / ((hi - lo) or 1) * ph

    out.append(f'<rect x="{ox + left}" y="{oy + top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    for x in xt:
        out.append(f'<line x1="{px(x)}" y1="{oy + top}" x2="{px(x)}" y2="{oy + top + ph}" stroke="#eee"/>')
        out.append(f'<text x="{px(x)}" y="{oy + top + ph + 14}" text-anchor="middle">{_fmt(x)}</text>')
    for y in yt:
        out.append(f'<line x1="{ox + left}" y1="{py(y)}" x2="{ox + left + pw}" y2="{py(y)}" stroke="#eee"/>')
        out.append(f'<text x="{ox + left - 4}" y="{py(y) + 4}" text-anchor="end">{_fmt(y)}</text>')
    out.append(f'<text x="{ox + left + pw / 2}" y="{oy + top + ph + 30}" text-anchor="middle">nodes</text>')
    for n, series in enumerate(panel.series):
        colour = COLOURS[n % len(COLOURS)]
        shown = sorted(p for p in series.points if p[1] > 0)
        if shown:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in shown)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
            out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>' for x, y in shown]
        ly = oy + top + 12 + n * 16
        out.append(f'<rect x="{ox + left + pw + 8}" y="{ly - 8}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{ox + left + pw + 22}" y="{ly + 1}">{escape(series.label)}</text>')
    return out
