"""
The geometry of the views' charts, as plain data: where each mark goes, its colour and its text.

The templates draw it as inline SVG (``templates/_chart.html``), escaped like any other value:
the views work in the Airflow UI's sandboxed frames, where scripts may not run, and need no
JavaScript or network access to render. Nothing here writes markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_mlflow.plugins.model_views import ChartPoint

#: The one colour table of the gate's verdicts: chart markers, the legend, and the pages' status
#: colours (``--ok`` / ``--bad`` / ``--warn`` in ``base.html``).
GATE_COLOURS = {"passed": "#1a7f37", "rejected": "#cf222e", "waiting": "#9a6700", "not gated": "#6e7781"}
NOT_GATED = GATE_COLOURS["not gated"]

#: Radii of a point's marker and of the ring around a promoted version.
MARKER_RADIUS = 5.5
RING_RADIUS = 10.0
#: Space between the plot's edges and the first and last points, so that their rings stay clear
#: of the y axis's labels (left of the plot) and of the chart's edge.
INSET = 2 * RING_RADIUS
#: At most this many labels on the x axis.
MAX_X_LABELS = 10


@dataclass(frozen=True)
class Tick:
    """A horizontal grid line at ``y`` and its value's label on the y axis."""

    y: float
    label: str


@dataclass(frozen=True)
class PlotPoint:
    """One DAG run's candidate, placed: its marker, ring, labels and tooltip."""

    x: float
    y: float
    version: str
    gate: str
    colour: str
    tip: str
    champion: bool
    ring: bool
    #: Its label on the x axis (its DAG run's logical date), None when skipped to avoid crowding.
    axis_label: str | None


@dataclass(frozen=True)
class ModelChart:
    """A metric of each DAG run's candidate, oldest to newest, laid out in a ``width`` x ``height`` box."""

    metric: str
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    ticks: list[Tick]
    points: list[PlotPoint]

    @property
    def tick_x(self) -> int:
        """Where the y axis's labels end (they are right-aligned there)."""
        return self.left - 8

    @property
    def plot_right(self) -> int:
        return self.width - self.right

    @property
    def axis_y(self) -> int:
        """Baseline of the x axis's labels."""
        return self.height - self.bottom + 20

    @property
    def centre_x(self) -> float:
        return self.left + (self.width - self.left - self.right) / 2

    @property
    def path(self) -> str:
        """The line through the points (an SVG path: numbers and M/L only)."""
        return " ".join(f"{'M' if i == 0 else 'L'}{p.x:.1f},{p.y:.1f}" for i, p in enumerate(self.points))


@dataclass(frozen=True)
class Sparkline:
    """A metric's history by step, as a small line."""

    width: int
    height: int
    coords: str
    count: int
    first: int
    last: int


def fmt(value: float) -> str:
    return f"{value:.4g}"


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high == low:
        return [low]
    step = (high - low) / (count - 1)
    return [low + i * step for i in range(count)]


def _domain(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = (high - low) * 0.12 or abs(high) * 0.05 or 1.0
    return low - pad, high + pad


def model_chart(
    points: Sequence[ChartPoint], metric: str, width: int = 760, height: int = 300
) -> ModelChart | None:
    """
    ``metric`` of each DAG run's candidate, oldest to newest: the marker's colour is the gate's
    verdict, a ring marks versions that were promoted, and the current champion is labelled.
    None without points.
    """
    if not points:
        return None
    left, right, top, bottom = 64, 56, 28, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    low, high = _domain([p.value for p in points])
    span_w = plot_w - 2 * INSET

    def x(i: int) -> float:
        return left + (plot_w / 2 if len(points) == 1 else INSET + span_w * i / (len(points) - 1))

    def y(value: float) -> float:
        return top + plot_h * (1 - (value - low) / (high - low))

    every = max(1, len(points) // MAX_X_LABELS)
    placed = [
        PlotPoint(
            x=round(x(i), 1),
            y=round(y(p.value), 1),
            version=p.version,
            gate=p.gate,
            colour=GATE_COLOURS.get(p.gate, NOT_GATED),
            tip=(
                f"version {p.version} · {p.label} · {metric} {fmt(p.value)} · gate {p.gate}"
                + (" · promoted" if p.promoted else "")
                + (" · champion" if p.champion else "")
            ),
            champion=p.champion,
            ring=p.promoted or p.champion,
            axis_label=p.label if i % every == 0 or i == len(points) - 1 else None,
        )
        for i, p in enumerate(points)
    ]
    ticks = [Tick(round(y(t), 1), fmt(t)) for t in _ticks(low, high)]
    return ModelChart(metric, width, height, left, right, top, bottom, ticks, placed)


def sparkline(points: Sequence[tuple[int, float]], width: int = 180, height: int = 36) -> Sparkline | None:
    """A metric's history by step; None for fewer than two points."""
    if len(points) < 2:
        return None
    steps = [s for s, _ in points]
    low, high = _domain([v for _, v in points])
    first, last = min(steps), max(steps)
    span = (last - first) or 1
    coords = " ".join(
        f"{2 + (width - 4) * (s - first) / span:.1f},{2 + (height - 4) * (1 - (v - low) / (high - low)):.1f}"
        for s, v in points
    )
    return Sparkline(width, height, coords, len(points), first, last)
