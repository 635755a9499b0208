"""
Charts drawn on the server as inline SVG: the views work in the Airflow UI's sandboxed frames,
where scripts may not run, and need no JavaScript or network access to render.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_mlflow.plugins.model_views import ChartPoint

GATE_COLOURS = {"passed": "#1a7f37", "rejected": "#cf222e", "waiting": "#9a6700"}
NOT_GATED = "#6e7781"


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high == low:
        return [low]
    step = (high - low) / (count - 1)
    return [low + i * step for i in range(count)]


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _domain(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = (high - low) * 0.12 or abs(high) * 0.05 or 1.0
    return low - pad, high + pad


def model_chart(points: Sequence[ChartPoint], metric: str, width: int = 760, height: int = 300) -> str:
    """
    ``metric`` of each DAG run's candidate, oldest to newest: the marker's colour is the gate's
    verdict, a ring marks versions that were promoted, and the current champion is labelled.
    """
    if not points:
        return ""
    left, right, top, bottom = 64, 56, 28, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    low, high = _domain([p.value for p in points])

    def x(i: int) -> float:
        return left + (plot_w / 2 if len(points) == 1 else plot_w * i / (len(points) - 1))

    def y(value: float) -> float:
        return top + plot_h * (1 - (value - low) / (high - low))

    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'aria-label="{escape(metric)} across retraining runs">',
        f"<title>{escape(metric)} of each DAG run's candidate</title>",
    ]
    for tick in _ticks(low, high):
        ty = y(tick)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{ty:.1f}" y2="{ty:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{left - 8}" y="{ty + 4:.1f}" text-anchor="end">{_fmt(tick)}</text>'
        )
    path = " ".join(f"{'M' if i == 0 else 'L'}{x(i):.1f},{y(p.value):.1f}" for i, p in enumerate(points))
    parts.append(f'<path class="series" d="{path}"/>')
    every = max(1, len(points) // 10)  # at most ~10 x labels
    for i, point in enumerate(points):
        px, py = x(i), y(point.value)
        colour = GATE_COLOURS.get(point.gate, NOT_GATED)
        tip = (
            f"version {point.version} · {point.label} · {metric} {_fmt(point.value)} · gate {point.gate}"
            + (" · promoted" if point.promoted else "")
            + (" · champion" if point.champion else "")
        )
        cls = "point champion" if point.champion else "point"
        parts.append(
            f'<g class="{cls}" data-version="{escape(point.version)}" data-gate="{escape(point.gate)}">'
        )
        parts.append(f"<title>{escape(tip)}</title>")
        if point.promoted or point.champion:
            parts.append(f'<circle class="ring" cx="{px:.1f}" cy="{py:.1f}" r="10" stroke="{colour}"/>')
        parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="5.5" fill="{colour}"/>')
        label_y = py - 14
        parts.append(
            f'<text class="vlabel" x="{px:.1f}" y="{label_y:.1f}" '
            f'text-anchor="middle">v{point.version}</text>'
        )
        if point.champion:
            parts.append(
                f'<text class="champion-label" x="{px:.1f}" y="{py + 26:.1f}" '
                'text-anchor="middle">★ champion</text>'
            )
        parts.append("</g>")
        if i % every == 0 or i == len(points) - 1:
            parts.append(
                f'<text class="axis" x="{px:.1f}" y="{height - bottom + 20}" text-anchor="middle">'
                f"{escape(point.label)}</text>"
            )
    parts.append(
        f'<text class="axis" x="{left + plot_w / 2:.1f}" y="{height - 12}" text-anchor="middle">'
        "DAG run (logical date)</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def sparkline(points: Sequence[tuple[int, float]], width: int = 180, height: int = 36) -> str:
    """A metric's history by step, as a small line; empty for fewer than two points."""
    if len(points) < 2:
        return ""
    steps = [s for s, _ in points]
    low, high = _domain([v for _, v in points])
    first, last = min(steps), max(steps)
    span = (last - first) or 1
    coords = " ".join(
        f"{2 + (width - 4) * (s - first) / span:.1f},{2 + (height - 4) * (1 - (v - low) / (high - low)):.1f}"
        for s, v in points
    )
    return (
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{len(points)} points, steps {first} to {last}"><polyline points="{coords}"/></svg>'
    )
