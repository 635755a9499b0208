"""The charts' geometry, computed as plain data, and the template macros that draw it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from airflow_mlflow.plugins import chart, model_views, rendering

TEMPLATES = Path(rendering.__file__).with_name("templates")
draw_chart = rendering.macro("_chart.html", "model_chart")
draw_sparkline = rendering.macro("_chart.html", "sparkline")


def point(version: str, value: float, gate: str = "passed", champion=False, promoted=False):
    return model_views.ChartPoint(
        label=f"2026-11-{int(version):02d}",
        value=value,
        version=version,
        gate=gate,
        champion=champion,
        promoted=promoted,
    )


def test_chart_helpers_degrade_on_few_points():
    assert str(draw_sparkline(chart.sparkline([(0, 1.0)]))) == ""
    assert "<polyline" in draw_sparkline(chart.sparkline([(0, 1.0), (1, 0.5), (2, 0.25)]))
    assert str(draw_chart(chart.model_chart([], "accuracy"))) == ""
    one = model_views.ChartPoint(
        label="2026-11-01", value=0.5, version="1", gate="passed", champion=True, promoted=True
    )
    assert 'data-version="1"' in draw_chart(chart.model_chart([one], "accuracy"))


def test_model_chart_places_points_oldest_to_newest_with_the_gates_colours():
    points = [
        point("1", 0.8, promoted=True),
        point("2", 0.7, "rejected"),
        point("3", 0.9, "waiting"),
        point("4", 0.85, "no verdict yet", champion=True),
    ]
    c = chart.model_chart(points, "accuracy")
    xs, ys = [p.x for p in c.points], [p.y for p in c.points]
    assert xs == sorted(xs) and len(set(xs)) == 4
    # SVG's y grows downwards: the best value is highest.
    assert ys[2] < ys[3] < ys[0] < ys[1]
    assert [p.colour for p in c.points] == [
        chart.GATE_COLOURS["passed"],
        chart.GATE_COLOURS["rejected"],
        chart.GATE_COLOURS["waiting"],
        chart.GATE_COLOURS["not gated"],
    ]
    assert [p.ring for p in c.points] == [True, False, False, True]
    assert "champion" in c.points[3].tip and "promoted" in c.points[0].tip
    assert c.path.startswith(f"M{xs[0]:.1f},{ys[0]:.1f} L")
    # Five ticks spanning every value, labelled with the value.
    assert len(c.ticks) == 5 and c.ticks[0].y > max(ys) and c.ticks[-1].y < min(ys)
    assert [float(t.label) for t in c.ticks] == sorted(float(t.label) for t in c.ticks)


def test_the_first_and_last_points_stay_clear_of_the_axis_labels_and_the_edge():
    """The first point's marker and ring used to sit on the plot's left edge, over the y axis's labels."""
    c = chart.model_chart([point(str(i), 0.5 + i / 100) for i in range(1, 6)], "accuracy")
    first, last = c.points[0], c.points[-1]
    assert first.x - chart.RING_RADIUS >= c.left + 8 > c.tick_x
    assert last.x + chart.RING_RADIUS <= c.plot_right - 8


def test_the_x_axis_labels_thin_out_but_keep_the_newest():
    c = chart.model_chart([point(str(i), i / 50) for i in range(1, 31)], "accuracy")
    labels = [p.axis_label for p in c.points if p.axis_label is not None]
    assert len(labels) <= chart.MAX_X_LABELS + 1 and labels[-1] == "2026-11-30"


def test_the_drawn_chart_escapes_what_it_shows():
    svg = str(draw_chart(chart.model_chart([point("1", 0.5)], "<b>acc</b>")))
    assert "<b>" not in svg and "&lt;b&gt;acc&lt;/b&gt;" in svg


def test_the_legend_and_the_pages_colours_come_from_the_one_table():
    legend = str(rendering.macro("_chart.html", "gate_legend")())
    assert re.findall(r'background:(#\w+)"></i>([a-z ]+?) (?=<|$)', legend) == [
        (colour, gate) for gate, colour in chart.GATE_COLOURS.items()
    ]
    page = rendering.render("error.html", message="x", conn_id="c")
    assert f"--ok: {chart.GATE_COLOURS['passed']};" in page
    # No colour of the table is spelled in a template: they all read the table.
    for path in TEMPLATES.glob("*.html"):
        text = path.read_text()
        assert not [c for c in chart.GATE_COLOURS.values() if c in text], path.name


@pytest.mark.parametrize("path", sorted(TEMPLATES.glob("*.html")), ids=lambda p: p.name)
def test_templates_insert_no_markup_unescaped(path):
    """Everything a page shows goes through autoescaping: no ``|safe``, no Markup, no autoescape off."""
    text = path.read_text()
    assert not re.search(r"\|\s*safe\b|Markup|autoescape\s+false", text)


@pytest.mark.parametrize("path", sorted(TEMPLATES.glob("*.html")), ids=lambda p: p.name)
def test_templates_spell_no_tag_key(path):
    """Tag keys live in airflow_mlflow.tags; the views hand templates values, not keys."""
    assert not re.search(r"""["']airflow\.""", path.read_text())
