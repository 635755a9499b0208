"""What the DAG-run and task views show, read through ``MLflowHook`` from a real SQLite store that
real DAG runs filled (see conftest). The browser tests (tests/e2e/test_ui_e2e.py) cover the same
pages behind Airflow's API server, login and permissions."""

from __future__ import annotations

import pytest

from airflow_mlflow.exceptions import MLflowInputError
from airflow_mlflow.hooks.mlflow import MLflowHook
from airflow_mlflow.plugins import rendering, run_views
from tests.unit.plugins.test_model_views import ESCAPED_COMMENT, row, text


def test_dag_run_view_shows_each_tracked_task_with_what_it_logged(tracked):
    dag_run = tracked
    view = run_views.dag_run_view(MLflowHook(), "tracked_example", dag_run.run_id)

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
    view = run_views.dag_run_view(MLflowHook(), "tracked_example", "manual__never")
    assert view.parent is None and view.tasks == [] and view.versions == []


def test_task_view_reads_metric_history_and_artifact_content(tracked):
    dag_run = tracked
    hook = MLflowHook()
    view, versions = run_views.task_view(hook, "tracked_example", dag_run.run_id, "train", 1)
    assert view is not None and view.label == "train[1]" and versions == []
    assert view.histories == {"score": [(0, pytest.approx(0.6))]}

    report, _ = run_views.task_view(hook, "tracked_example", dag_run.run_id, "report", -1)
    assert hook.read_artifact(report.run.run_id, "report.txt", 1000) == b"fold scores\n"
    with pytest.raises(MLflowInputError, match=r"report.txt.* is 12 bytes \(limit 5\)"):
        hook.read_artifact(report.run.run_id, "report.txt", 5)


def test_registry_task_view_shows_what_its_dag_run_did_to_versions(lifecycle):
    rejected = lifecycle[1]
    view, versions = run_views.task_view(MLflowHook(), "gate_lifecycle", rejected.run_id, "gate", -1)
    assert view is None  # the gate is not a tracked task
    assert [(v.version, v.gate, v.outcome) for v in versions] == [("2", "rejected", "rejected by the gate")]
    assert versions[0].gate_checks == [
        "accuracy: candidate 0.7, required >= 0.6 and >= baseline+0.01, baseline 0.8 -> rejected"
    ]
    assert versions[0].baseline == "1"


def test_dag_run_view_lists_the_version_its_run_registered_and_promoted(lifecycle):
    view = run_views.dag_run_view(MLflowHook(), "gate_lifecycle", lifecycle[2].run_id)
    assert [(v.version, v.gate, v.champion) for v in view.versions] == [("3", "passed", True)]
    train = next(t for t in view.tasks if t.task_id == "train")
    assert [v.version for v in train.versions] == ["3"]


def test_task_view_shows_the_runs_logged_models_beside_its_artifacts(tracked, tmp_path):
    """An MLflow 3 model's files are not the run's artifacts: the page lists its logged models."""
    from mlflow import MlflowClient

    hook = MLflowHook()
    view, _ = run_views.task_view(hook, "tracked_example", tracked.run_id, "train", 0)
    assert view.artifacts == [] and view.logged_models == []
    client = MlflowClient(hook.config.tracking_uri)
    run = view.run
    model = client.create_logged_model(run.experiment_id, name="clf", source_run_id=run.run_id)
    (tmp_path / "MLmodel").write_text("flavors:\n  python_function: {}\n  sklearn: {}\n")
    client.log_model_artifact(model.model_id, str(tmp_path / "MLmodel"))
    client.finalize_logged_model(model.model_id, "READY")
    for step, value in enumerate((0.5, 0.75)):
        client.log_metric(run.run_id, "auc", value, step=step, model_id=model.model_id)
    bare = client.create_logged_model(run.experiment_id, name="no-files-yet", source_run_id=run.run_id)
    client.create_logged_model(run.experiment_id, name="elsewhere")  # another run's: not listed

    view, _ = run_views.task_view(hook, "tracked_example", tracked.run_id, "train", 0)
    assert [(m.name, m.flavors, dict(m.metrics), m.status) for m in view.logged_models] == [
        ("clf", ("sklearn", "python_function"), {"auc": 0.75}, "READY"),
        ("no-files-yet", (), {}, "PENDING"),
    ]
    assert view.logged_models[0].model_uri == f"models:/{model.model_id}"
    assert view.logged_models[0].url is None  # no MLflow UI known for the embedded store

    page = rendering.render(
        "task.html",
        view=view,
        versions=[],
        dag_id="tracked_example",
        run_id=tracked.run_id,
        task_id="train",
        map_index=0,
        conn_id="mlflow_default",
    )
    table = page[page.index('<table class="logged-models">') :]
    assert f'data-model-id="{model.model_id}"' in table and f'data-model-id="{bare.model_id}"' in table
    assert "sklearn, python_function" in table and f"models:/{model.model_id}" in table
    assert "No artifacts." not in page and "belong to its logged model" in page


def test_a_dag_runs_tab_shows_the_approval_that_dag_run_recorded(approvals):
    def page(dag_id: str, run_id: str) -> tuple[run_views.DagRunView, str]:
        view = run_views.dag_run_view(approvals, dag_id, run_id)
        return view, rendering.render("dag_run.html", view=view, conn_id="mlflow_default")

    view, html = page("retrain", "day3")
    assert [(v.version, v.approval.summary) for v in view.versions] == [("3", "rejected by bob")]
    assert "rejected by bob" in text(row(html, 'data-version="3"'))

    view, html = page("retrain", "day2")
    assert [(v.version, v.approval.summary) for v in view.versions] == [("2", "approved by alice")]
    assert "<script>" not in html and ESCAPED_COMMENT in row(html, 'data-version="2"')

    # v4 came from day4, but another DAG run asked (and timed out): its decision shows there only.
    view, html = page("retrain", "day4")
    assert [(v.version, v.approval) for v in view.versions] == [("4", None)]
    assert "data-approval" not in html
    view, html = page("approve", "manual__4")
    assert [(v.version, v.approval.summary) for v in view.versions] == [("4", "rejected (no answer in time)")]
    assert 'data-approval="rejected"' in row(html, 'data-version="4"')
