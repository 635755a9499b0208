"""What a finished run of ``tests/dags/tracked.py`` must leave in MLflow, on any store."""

from __future__ import annotations

from collections import Counter

import pytest


def runs_of_dag_run(client, experiment: str, run_id: str):
    """Active runs (parent and children) of one DAG run."""
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment} was not created"
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`airflow.run_id` = '{run_id}'")


def assert_tracked_dag(client, dag_run, experiment: str = "tracked_example") -> dict:
    """One parent, five children, tags and statuses as the run model promises; returns runs by name."""
    runs = runs_of_dag_run(client, experiment, dag_run.run_id)
    parents = [r for r in runs if r.data.tags.get("airflow.role") == "dag_run"]
    children = [r for r in runs if r.data.tags.get("airflow.role") == "task"]
    assert len(parents) == 1 and len(children) == 5, [
        (r.info.run_name, r.data.tags.get("airflow.role")) for r in runs
    ]
    parent = parents[0]
    assert parent.info.run_name == dag_run.run_id
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["airflow.dag_id"] == dag_run.dag_id

    by_name = {r.info.run_name: r for r in children}
    assert sorted(by_name) == ["flaky", "report", "train[0]", "train[1]", "train[2]"]
    assert Counter((r.data.tags["airflow.task_id"], r.data.tags["airflow.map_index"]) for r in children) == {
        ("train", "0"): 1,
        ("train", "1"): 1,
        ("train", "2"): 1,
        ("flaky", "-1"): 1,
        ("report", "-1"): 1,
    }
    for run in children:
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["airflow.dag_id"] == dag_run.dag_id
        assert tags["airflow.logical_date"]
        assert f"/dags/{dag_run.dag_id}/runs/" in tags["airflow.url"]
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
    assert [a.path for a in client.list_artifacts(report.info.run_id)] == ["report.txt"]
    return by_name


def xcom_value(dag_run, task_id: str, key: str):
    """An XCom the task pushed, read from the metadata DB (test code, not task code)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(run_id=dag_run.run_id, key=key, task_ids=task_id, dag_ids=dag_run.dag_id)
        row = session.scalars(query).first()
        return None if row is None else XComModel.deserialize_value(row)
