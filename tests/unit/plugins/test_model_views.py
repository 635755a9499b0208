"""What the registry pages show, read through ``MLflowHook`` from a real SQLite store that real
DAG runs filled (see conftest): versions, gate verdicts, champion, history and chart points."""

from __future__ import annotations

import re

import pytest

from airflow_mlflow.hooks.mlflow import MLflowHook
from airflow_mlflow.plugins import chart, model_views
from tests.unit.plugins.conftest import everyone


def test_models_view_respects_dag_permissions(lifecycle):
    hook = MLflowHook()
    [summary] = model_views.models_view(hook, everyone)
    assert summary.model.name == "gate_model"
    assert [v.version for v in summary.versions] == ["3", "2", "1"]
    assert summary.champion.version == "3" and summary.dags == ["gate_lifecycle"]
    assert model_views.models_view(hook, lambda dag_id: dag_id != "gate_lifecycle") == []
    assert model_views.model_view(hook, "gate_model", lambda dag_id: False) is None


def test_model_view_charts_one_point_per_dag_run_with_gate_and_champion(lifecycle):
    view = model_views.model_view(MLflowHook(), "gate_model", everyone)
    assert view.metric == "accuracy"  # the gate's metric
    assert [(p.version, p.value, p.gate, p.promoted, p.champion) for p in view.points] == [
        ("1", pytest.approx(0.8), "passed", True, False),
        ("2", pytest.approx(0.7), "rejected", False, False),
        ("3", pytest.approx(0.9), "passed", True, True),
    ]
    assert [v.outcome for v in view.versions] == [
        "champion",
        "rejected by the gate",
        "promoted, since replaced",
    ]
    assert [(e["action"], e["version"], e["previous"]) for e in view.history] == [
        ("promote", "3", "1"),
        ("promote", "1", None),
    ]

    svg = chart.model_chart(view.points, view.metric)
    assert re.findall(r'data-version="(\d+)" data-gate="(\w+)"', svg) == [
        ("1", "passed"),
        ("2", "rejected"),
        ("3", "passed"),
    ]
    assert svg.count("★ champion") == 1 and svg.count('class="ring"') == 2


def test_model_view_falls_back_to_another_metric_and_unknown_model(lifecycle):
    hook = MLflowHook()
    assert model_views.model_view(hook, "no_such_model", everyone) is None
    assert model_views.model_view(hook, "gate_model", everyone, metric="nonexistent").metric == "accuracy"
