"""Whole DAGs through ``dag.test()`` on a real SQLite MLflow store."""

from __future__ import annotations

from collections import Counter

import pytest

from airflow_mlflow.plugins import listener
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

    runs = runs_of(store.client, "tracked_example")
    parents = [r for r in runs if r.data.tags.get("airflow.role") == "dag_run"]
    children = [r for r in runs if r.data.tags.get("airflow.role") == "task"]
    assert len(parents) == 1 and len(children) == 5
    parent = parents[0]
    assert parent.info.run_name == dag_run.run_id
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["airflow.dag_id"] == "tracked_example"
    assert parent.data.tags["airflow.run_id"] == dag_run.run_id

    by_name = {r.info.run_name: r for r in children}
    assert sorted(by_name) == ["flaky", "report", "train[0]", "train[1]", "train[2]"]
    assert Counter((r.data.tags["airflow.task_id"], r.data.tags["airflow.map_index"]) for r in children) == {
        ("train", "0"): 1, ("train", "1"): 1, ("train", "2"): 1, ("flaky", "-1"): 1, ("report", "-1"): 1,
    }
    for run in children:
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["airflow.dag_id"] == "tracked_example"
        assert tags["airflow.run_id"] == dag_run.run_id
        assert tags["airflow.logical_date"]
        assert "/dags/tracked_example/runs/" in tags["airflow.url"]
        assert tags["airflow.url"] in tags["mlflow.note.content"]

    assert by_name["train[2]"].data.params == {"fold": "2"}
    assert by_name["train[2]"].data.metrics == {"score": pytest.approx(0.7)}
    assert by_name["train[1]"].data.tags["airflow.url"].endswith("/tasks/train/mapped/1")

    flaky = by_name["flaky"].data
    assert flaky.tags["airflow.try_number"] == "2"
    assert flaky.tags["airflow.try.1.state"] == "failed"
    assert "transient failure on the first try" in flaky.tags["airflow.try.1.error"]
    assert flaky.tags["airflow.try.2.state"] == "success"
    assert flaky.params == {"lr": "0.1"} and flaky.metrics == {"recovered": 1.0}

    report = by_name["report"]
    assert report.data.params == {"folds": "3", "model": "ridge"}
    assert report.data.metrics == {"best": pytest.approx(0.7)}
    assert report.data.tags["stage"] == "report"
    assert [a.path for a in store.client.list_artifacts(report.info.run_id)] == ["report.txt"]
    assert str(store.artifact_root) in report.info.artifact_uri


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
