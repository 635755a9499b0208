"""
The views' templates: one Jinja environment, autoescaping everything. Templates receive values
and chart geometry (:mod:`~airflow_mlflow.plugins.chart`), never markup built in Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from airflow_mlflow.plugins import chart

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.globals.update(
    sparkline_data=chart.sparkline,
    gate_colours=chart.GATE_COLOURS,
    marker_radius=chart.MARKER_RADIUS,
    ring_radius=chart.RING_RADIUS,
)
TEMPLATES.filters["fmt"] = lambda v: f"{v:.6g}" if isinstance(v, float) else v
#: A coordinate in SVG: one decimal.
TEMPLATES.filters["px"] = lambda v: f"{v:.1f}"


def render(template: str, **values: Any) -> str:
    return TEMPLATES.get_template(template).render(**values)


def macro(template: str, name: str) -> Any:
    """A macro of a template, callable from Python (tests draw the charts with it)."""
    return getattr(TEMPLATES.get_template(template).module, name)
