"""Whole DAGs through ``dag.test()`` on a real SQLite MLflow store."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from airflow_mlflow.plugins import listener
from tests.assertions import assert_tracked_dag, xcom_value
from tests.dags import tracked as dags

pytestmark = pytest.mark.usefixtures("airflow_db")


def run_dag(dag):
    dag_run = dag.test()
    listener.drain()
    return dag_run


def runs_of(client, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment} was not created"
    return client.search_runs([exp.experiment_id], run_view_type=1)  # active only


def test_tracked_dag_leaves_one_parent_and_five_children(store):
    dag_run = run_dag(dags.tracked)
    assert dag_run.state == "success"
    runs = assert_tracked_dag(store.client, dag_run)
    assert str(store.artifact_root) in runs["report"].info.artifact_uri
    assert len(runs_of(store.client, "tracked_example")) == 6  # nothing else, deleted runs aside
    payload = xcom_value(dag_run, "report", "mlflow_run")
    assert payload["run_id"] == runs["report"].info.run_id
    assert payload["parent_run_id"] == runs["report"].data.tags["mlflow.parentRunId"]
    assert payload["run_url"] is None  # a SQLite store has no UI to link to
    # ... so the link leads to the task instance's MLflow tab of the Airflow UI.
    assert xcom_value(dag_run, "report", "_link_MLflowRunLink") == (
        f"dags/tracked_example/runs/{quote(dag_run.run_id, safe='')}/tasks/report/plugin/mlflow-task"
    )


def test_failing_dag_ends_parent_and_task_failed(store):
    dag_run = run_dag(dags.failing)
    assert dag_run.state == "failed"
    runs = {r.info.run_name: r for r in runs_of(store.client, "failing_example")}
    assert runs["ok"].info.status == "FINISHED"
    assert runs["boom"].info.status == "FAILED"
    assert "ValueError: bad data" in runs["boom"].data.tags["airflow.try.1.error"]
    assert runs[dag_run.run_id].info.status == "FAILED"
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]


def test_timed_out_task_is_killed(store):
    dag_run = run_dag(dags.timeout)
    assert dag_run.state == "failed"
    runs = {r.info.run_name: r for r in runs_of(store.client, "timeout_example")}
    assert runs["slow"].info.status == "KILLED"
    assert runs["slow"].data.tags["airflow.try.1.state"] == "killed"
    assert runs[dag_run.run_id].info.status == "FAILED"


def test_retry_with_changed_param_fails_naming_it(store):
    dag_run = run_dag(dags.changing_param)
    assert dag_run.state == "failed"
    (run,) = [r for r in runs_of(store.client, "changing_param") if r.info.run_name == "tune"]
    tags = run.data.tags
    assert run.data.params == {"threshold": "1"}
    assert tags["airflow.try.1.state"] == "failed"
    assert tags["airflow.try.2.state"] == "failed"
    assert "threshold" in tags["airflow.try.2.error"] and "MLflowInputError" in tags["airflow.try.2.error"]
    # A changed param cannot be fixed by retrying: the third try allowed by retries=2 never runs.
    assert "airflow.try.3.state" not in tags
    assert run.info.status == "FAILED"


def test_log_operator_takes_xcom_params_and_a_foreign_run(store):
    dag_run = run_dag(dags.xcom_inputs)
    assert dag_run.state == "success"
    runs = {r.info.run_name: r for r in runs_of(store.client, "xcom_inputs")}
    assert runs["log_choice"].data.params == {"alpha": "0.5", "solver": "lbfgs"}
    fit = runs["fit"]
    assert fit.data.tags["reviewed"] == "yes"
    assert fit.data.metrics == {"loss": 0.25, "loss_x2": 0.5}
    assert fit.info.status == "FINISHED"
    assert "annotate_fit" not in runs  # it logged into fit's run and made none of its own
