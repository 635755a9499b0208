"""What the UI plugin's views show, read through ``MLflowHook`` from a real SQLite store that
real DAG runs (``dag.test()``) filled. The browser tests (tests/e2e/test_ui_e2e.py) cover the
same pages behind Airflow's API server, login and permissions."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from airflow_mlflow.exceptions import MLflowInputError
from airflow_mlflow.hooks.mlflow import MLflowHook
from airflow_mlflow.plugins import chart, listener, pages
from tests.dags import registry as registry_dags
from tests.dags import tracked as tracked_dags
from tests.support import copy_store, mlflow_conn_json


def run(dag, **conf):
    dag_run = dag.test(run_conf=conf or None)
    listener.drain()
    return dag_run


def everyone(dag_id: str | None) -> bool:
    return True


@pytest.fixture(scope="module")
def filled(mlflow_template, tmp_path_factory, airflow_db):
    """One store for the module (DAG runs are slow): the tracked example once, then gate_lifecycle
    three times (v1 promoted, v2 rejected, v3 promoted over v1)."""
    uri = copy_store(mlflow_template, tmp_path_factory.mktemp("ui-store"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_conn_json(uri))
        tracked = run(tracked_dags.tracked)
        lifecycle = [run(registry_dags.gate_lifecycle, accuracy=a) for a in (0.8, 0.7, 0.9)]
        yield tracked, lifecycle


@pytest.fixture
def tracked(filled):
    return filled[0]


@pytest.fixture
def lifecycle(filled):
    return filled[1]


def test_dag_run_view_shows_each_tracked_task_with_what_it_logged(tracked):
    dag_run = tracked
    view = pages.dag_run_view(MLflowHook(), "tracked_example", dag_run.run_id)

    assert view.parent is not None and view.status == "FINISHED"
    assert view.experiment == "tracked_example"
    by_label = {t.label: t for t in view.tasks}
    assert set(by_label) == {"train[0]", "train[1]", "train[2]", "flaky", "report"}
    assert by_label["train[2]"].params == [("fold", "2")]
    assert by_label["train[2]"].metrics == [("score", pytest.approx(0.7))]
    assert [(n, state) for n, state, _ in by_label["flaky"].tries] == [(1, "failed"), (2, "success")]
    assert "transient failure" in by_label["flaky"].tries[0][2]
    assert dict(by_label["report"].params) == {"folds": "3", "model": "ridge"}
    assert [a.path for a in by_label["report"].artifacts] == ["report.txt"]
    assert by_label["report"].artifacts[0].size == len("fold scores\n")
    assert view.mlflow_url is None and by_label["report"].mlflow_url is None  # no MLflow UI known


def test_dag_run_view_of_an_untracked_run_is_empty(filled):
    view = pages.dag_run_view(MLflowHook(), "tracked_example", "manual__never")
    assert view.parent is None and view.tasks == [] and view.versions == []


def test_task_view_reads_metric_history_and_artifact_content(tracked):
    dag_run = tracked
    hook = MLflowHook()
    view, versions = pages.task_view(hook, "tracked_example", dag_run.run_id, "train", 1)
    assert view is not None and view.label == "train[1]" and versions == []
    assert view.histories == {"score": [(0, pytest.approx(0.6))]}

    report, _ = pages.task_view(hook, "tracked_example", dag_run.run_id, "report", -1)
    assert hook.read_artifact(report.run.run_id, "report.txt", 1000) == b"fold scores\n"
    with pytest.raises(MLflowInputError, match=r"report.txt.* is 12 bytes \(limit 5\)"):
        hook.read_artifact(report.run.run_id, "report.txt", 5)


def test_registry_task_view_shows_what_its_dag_run_did_to_versions(lifecycle):
    rejected = lifecycle[1]
    view, versions = pages.task_view(MLflowHook(), "gate_lifecycle", rejected.run_id, "gate", -1)
    assert view is None  # the gate is not a tracked task
    assert [(v.version, v.gate, v.outcome) for v in versions] == [("2", "rejected", "rejected by the gate")]
    assert versions[0].gate_checks == [
        "accuracy: candidate 0.7, required >= 0.6 and >= baseline+0.01, baseline 0.8 -> rejected"
    ]
    assert versions[0].baseline == "1"


def test_dag_run_view_lists_the_version_its_run_registered_and_promoted(lifecycle):
    view = pages.dag_run_view(MLflowHook(), "gate_lifecycle", lifecycle[2].run_id)
    assert [(v.version, v.gate, v.champion) for v in view.versions] == [("3", "passed", True)]
    train = next(t for t in view.tasks if t.task_id == "train")
    assert [v.version for v in train.versions] == ["3"]


def test_models_view_respects_dag_permissions(lifecycle):
    hook = MLflowHook()
    [summary] = pages.models_view(hook, everyone)
    assert summary.model.name == "gate_model"
    assert [v.version for v in summary.versions] == ["3", "2", "1"]
    assert summary.champion.version == "3" and summary.dags == ["gate_lifecycle"]
    assert pages.models_view(hook, lambda dag_id: dag_id != "gate_lifecycle") == []
    assert pages.model_view(hook, "gate_model", lambda dag_id: False) is None


def test_model_view_charts_one_point_per_dag_run_with_gate_and_champion(lifecycle):
    view = pages.model_view(MLflowHook(), "gate_model", everyone)
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
    assert pages.model_view(hook, "no_such_model", everyone) is None
    assert pages.model_view(hook, "gate_model", everyone, metric="nonexistent").metric == "accuracy"


def test_chart_helpers_degrade_on_few_points():
    assert chart.sparkline([(0, 1.0)]) == ""
    assert "<polyline" in chart.sparkline([(0, 1.0), (1, 0.5), (2, 0.25)])
    assert chart.model_chart([], "accuracy") == ""
    one = pages.ChartPoint(
        label="2026-11-01", value=0.5, version="1", gate="passed", champion=True, promoted=True
    )
    assert 'data-version="1"' in chart.model_chart([one], "accuracy")


def test_plugin_module_stays_cheap_and_declares_its_views():
    """Plugins load in every Airflow process: the web app, fastapi and MLflow load on first request."""
    code = (
        "import sys, airflow_mlflow.plugins.mlflow as p;"
        "print(sorted(m for m in ('fastapi', 'mlflow', 'airflow_mlflow.plugins.app') if m in sys.modules));"
        "print(sorted(v['destination'] for v in p.MLflowPlugin.external_views))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[]", "['dag_run', 'nav', 'task_instance']"]
