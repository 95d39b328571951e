"""Inline SVG charts, written by hand so the HTML report needs no script, library or network to render.

Two shapes cover the report: a time series with interval bands (uplift by day, with the fixed-horizon band
inside the wider always-valid band) and a forest plot (uplift per cut with both intervals). Values outside
the plotted range are drawn at the edge with an arrow mark rather than stretching the axis: one tiny cut with
an interval of +-900% must not flatten every other row. The arrow sits inside the plot area, never over the
value label beside it (whose sign must stay readable), and a forest label too long for its column is shortened
in its name, never in its contact count.

SVG cannot measure text without a script, so widths are estimated with `CHAR_WIDTH`, a bound on DejaVu Sans
(the font the page asks for) at 11 px; the layout test in headless Chromium checks that no label is clipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

FIXED_COLOR = "#2b6cb0"
ANYTIME_COLOR = "#9ec5ee"
POINT_COLOR = "#1a365d"
MUTED = "#a0aec0"
FONT = 'font-family="DejaVu Sans, Arial, sans-serif" font-size="11"'
#: Upper bound of one character's advance at 11 px (DejaVu Sans: digits 7.0, most letters under 7.5).
CHAR_WIDTH = 7.6
#: The widest a forest plot's label column gets, in px of a 600-px chart.
MAX_LABEL_WIDTH = 300


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One day of a series: the estimate and its two intervals (None where not estimable)."""

    x: int
    y: float | None
    fixed: tuple[float | None, float | None]
    anytime: tuple[float | None, float | None]


@dataclass(frozen=True, slots=True)
class ForestRow:
    """One cut of a forest plot: `label` names the cut and `count` (its contacts) is always shown after it."""

    label: str
    y: float | None
    fixed: tuple[float | None, float | None]
    anytime: tuple[float | None, float | None]
    muted: bool = False
    note: str = ""
    count: str = ""


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [low, high]."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks, value = [], first
    while value <= high + 1e-12:
        ticks.append(round(value, 12))
        value += step
    return ticks


def value_range(values: Sequence[float | None], floor: float = -1.0, cap: float = 3.0) -> tuple[float, float]:
    """A plotting range around the values (always including 0), limited to [floor, cap]."""
    finite = [v for v in values if v is not None and math.isfinite(v)] + [0.0]
    low, high = max(floor, min(finite)), min(cap, max(finite))
    pad = (high - low) * 0.08 or 0.1
    return max(floor, low - pad), min(cap, high + pad)


class _Scale:
    def __init__(self, low: float, high: float, start: float, end: float) -> None:
        self.low, self.high, self.start, self.end = low, high, start, end

    def __call__(self, value: float) -> float:
        clipped = min(max(value, self.low), self.high)
        return self.start + (clipped - self.low) / (self.high - self.low) * (self.end - self.start)


def _pct(value: float) -> str:
    return f"{value * 100:+.0f}%" if value else "0%"


def series_chart(title: str, points: Sequence[SeriesPoint], x_label: str = "day", width: int = 560,
                 height: int = 240, bands: bool = True) -> str:
    """A time series of relative uplift with the always-valid band, the fixed-horizon band and the estimate."""
    left, right, top, bottom = 56, 12, 26, 34
    # Early days have huge intervals: fit the range to the second half of the series.
    later = points[len(points) // 2 :] or points
    values = [p.y for p in points] + [v for p in later for v in (*p.fixed, *(p.anytime if bands else ()))]
    low, high = value_range(values)
    xs = [p.x for p in points] or [0]
    sx = _Scale(min(xs), max(max(xs), min(xs) + 1), left, width - right)
    sy = _Scale(low, high, height - bottom, top)
    parts = [_frame(title, width, height), _y_axis(sy, low, high, left, width - right)]
    parts.append(_x_axis(sx, min(xs), max(xs), height - bottom, x_label))
    if bands:
        parts += _bands([(p.x, *p.anytime) for p in points], sx, sy, ANYTIME_COLOR, "always-valid")
        parts += _bands([(p.x, *p.fixed) for p in points], sx, sy, FIXED_COLOR, "fixed-horizon", opacity=0.35)
        parts += _polylines([(p.x, p.y) for p in points], sx, sy)
    else:
        for p in points:
            if p.y is None:
                continue
            x = sx(p.x)
            if p.fixed[0] is not None and p.fixed[1] is not None:
                parts.append(_line(x, sy(p.fixed[0]), x, sy(p.fixed[1]), FIXED_COLOR, 1.2))
            parts.append(f'<circle cx="{x:.1f}" cy="{sy(p.y):.1f}" r="2.6" fill="{POINT_COLOR}"/>')
    parts.append("</svg>")
    return "".join(parts)


def forest_chart(title: str, rows: Sequence[ForestRow], width: int = 600) -> str:
    """One row per cut: the always-valid interval (thin, light), the fixed-horizon interval and the estimate."""
    texts = [_fit_label(r.label, r.count) for r in rows]
    longest = max((len(t) for t in texts), default=10)
    label_w, right, top, row_h = int(min(MAX_LABEL_WIDTH, 12 + CHAR_WIDTH * longest)), 70, 26, 18
    height = top + row_h * max(len(rows), 1) + 30
    values = [v for r in rows for v in (r.y, *r.fixed)]
    low, high = value_range(values)
    sx = _Scale(low, high, label_w, width - right)
    parts = [_frame(title, width, height)]
    axis_y = height - 30
    for tick in nice_ticks(low, high):
        x = sx(tick)
        color = "#4a5568" if tick == 0 else "#e2e8f0"
        parts.append(_line(x, top - 4, x, axis_y, color, 1))
        parts.append(f'<text x="{x:.1f}" y="{axis_y + 14}" text-anchor="middle" {FONT}>{_pct(tick)}</text>')
    for i, row in enumerate(rows):
        y = top + row_h * i + row_h / 2
        color = MUTED if row.muted else POINT_COLOR
        label = escape(texts[i])
        parts.append(f'<text class="label" x="{label_w - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT} '
                     f'fill="{color}">{label}</text>')
        if row.anytime[0] is not None and row.anytime[1] is not None:
            parts.append(_line(sx(row.anytime[0]), y, sx(row.anytime[1]), y, ANYTIME_COLOR, 5))
        if row.fixed[0] is not None and row.fixed[1] is not None:
            parts.append(_line(sx(row.fixed[0]), y, sx(row.fixed[1]), y, MUTED if row.muted else FIXED_COLOR, 2))
            parts += _clip_marks(row.fixed, low, high, sx, y)
        if row.y is not None:
            parts.append(f'<circle cx="{sx(row.y):.1f}" cy="{y:.1f}" r="3.2" fill="{color}"/>')
        text = escape(row.note) if row.y is None else _pct(row.y)
        parts.append(f'<text class="value" x="{width - right + 8}" y="{y + 4:.1f}" {FONT} fill="{color}">{text}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _fit_label(name: str, count: str) -> str:
    """The label text, its name shortened with "…" so that it and the whole count fit the label column."""
    room = int((MAX_LABEL_WIDTH - 12) / CHAR_WIDTH) - (len(count) + 1 if count else 0)
    if len(name) > room:
        name = name[: max(room - 1, 1)] + "…"
    return f"{name} {count}" if count else name


def legend() -> str:
    """The key shared by every chart."""
    return (
        '<svg class="legend" width="470" height="22" viewBox="0 0 470 22" role="img" aria-label="legend">'
        f'<rect x="2" y="6" width="22" height="10" fill="{ANYTIME_COLOR}"/>'
        f'<text x="30" y="15" {FONT}>always-valid interval</text>'
        f'<rect x="170" y="6" width="22" height="10" fill="{FIXED_COLOR}" fill-opacity="0.6"/>'
        f'<text x="198" y="15" {FONT}>fixed-horizon interval</text>'
        f'<circle cx="350" cy="11" r="3.5" fill="{POINT_COLOR}"/><text x="358" y="15" {FONT}>estimate</text>'
        "</svg>"
    )


def _frame(title: str, width: int, height: int) -> str:
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<rect width="{width}" height="{height}" fill="#fff"/>'
        f'<text x="8" y="16" {FONT} font-weight="bold">{escape(title)}</text>'
    )


def _line(x1: float, y1: float, x2: float, y2: float, color: str, stroke: float) -> str:
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" stroke-width="{stroke}"/>'


def _y_axis(sy: _Scale, low: float, high: float, left: float, right: float) -> str:
    parts = []
    for tick in nice_ticks(low, high):
        y = sy(tick)
        parts.append(_line(left, y, right, y, "#4a5568" if tick == 0 else "#e2e8f0", 1))
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT}>{_pct(tick)}</text>')
    return "".join(parts)


def _x_axis(sx: _Scale, first: int, last: int, y: float, label: str) -> str:
    parts = [_line(sx.start, y, sx.end, y, "#4a5568", 1)]
    for tick in nice_ticks(first, last, 6):
        if float(tick).is_integer():
            x = sx(tick)
            parts.append(f'<text x="{x:.1f}" y="{y + 14}" text-anchor="middle" {FONT}>{int(tick) + 1}</text>')
    parts.append(f'<text x="{(sx.start + sx.end) / 2:.1f}" y="{y + 28}" text-anchor="middle" {FONT}>{label}</text>')
    return "".join(parts)


def _runs(items: Sequence[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
    """Split a series at its not-estimable points (any None), so gaps are drawn as gaps."""
    runs: list[list[tuple[Any, ...]]] = [[]]
    for item in items:
        if any(v is None for v in item):
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(item)
    return [run for run in runs if run]


def _bands(items: Sequence[tuple[float, float | None, float | None]], sx: _Scale, sy: _Scale, color: str,
           name: str, opacity: float = 1.0) -> list[str]:
    shapes = []
    for run in _runs(items):
        upper = [f"{sx(x):.1f},{sy(hi):.1f}" for x, _, hi in run]
        lower = [f"{sx(x):.1f},{sy(lo):.1f}" for x, lo, _ in reversed(run)]
        if len(run) == 1:
            shapes.append(_line(sx(run[0][0]), sy(run[0][1]), sx(run[0][0]), sy(run[0][2]), color, 4))
            continue
        shapes.append(
            f'<polygon class="band {name}" points="{" ".join(upper + lower)}" fill="{color}" '
            f'fill-opacity="{opacity}"/>'
        )
    return shapes


def _polylines(items: Sequence[tuple[int, float | None]], sx: _Scale, sy: _Scale) -> list[str]:
    lines = []
    for run in _runs(items):
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in run)
        lines.append(f'<polyline class="estimate" points="{coords}" fill="none" stroke="{POINT_COLOR}" '
                     'stroke-width="2"/>')
    return lines


def _clip_marks(span: tuple[float | None, float | None], low: float, high: float, sx: _Scale, y: float) -> list[str]:
    """Arrowheads just inside the plot's edge where an interval runs off it (inside: the labels stay clear)."""
    marks = []
    if span[0] is not None and span[0] < low:
        x = sx(low)
        marks.append(f'<polygon class="offscale" points="{x:.1f},{y:.1f} {x + 7:.1f},{y - 4:.1f} {x + 7:.1f},'
                     f'{y + 4:.1f}" fill="{POINT_COLOR}"><title>interval continues below the axis</title></polygon>')
    if span[1] is not None and span[1] > high:
        x = sx(high)
        marks.append(f'<polygon class="offscale" points="{x:.1f},{y:.1f} {x - 7:.1f},{y - 4:.1f} {x - 7:.1f},'
                     f'{y + 4:.1f}" fill="{POINT_COLOR}"><title>interval continues above the axis</title></polygon>')
    return marks
