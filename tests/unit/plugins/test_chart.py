"""The charts' geometry, computed as plain data, and how the templates draw it."""

from __future__ import annotations

from airflow_mlflow.plugins import chart, model_views


def test_chart_helpers_degrade_on_few_points():
    assert chart.sparkline([(0, 1.0)]) == ""
    assert "<polyline" in chart.sparkline([(0, 1.0), (1, 0.5), (2, 0.25)])
    assert chart.model_chart([], "accuracy") == ""
    one = model_views.ChartPoint(
        label="2026-11-01", value=0.5, version="1", gate="passed", champion=True, promoted=True
    )
    assert 'data-version="1"' in chart.model_chart([one], "accuracy")
