"""Tasks of one DAG run that start at the same moment, in separate processes, share one parent."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from airflow_mlflow.hooks.mlflow import MLflowHook
from airflow_mlflow.runs import finalize_dag_run
from tests.integration._workers import conn_json, start_together

WORKERS = 8
WORKER = Path(__file__).with_name("_race_worker.py")


@pytest.mark.parametrize("attempt", range(3))
def test_simultaneous_tasks_leave_exactly_one_parent(mlflow_server, monkeypatch, tmp_path, attempt):
    run_id = f"race__{attempt}__{time.time_ns()}"
    args = [[run_id, f"task_{i}"] for i in range(WORKERS)]
    results = start_together(WORKER, args, mlflow_server.url, tmp_path / "go")
    assert len({r["run"] for r in results}) == WORKERS

    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", conn_json(mlflow_server.url))
    report = finalize_dag_run(MLflowHook(), "race_example", "race_example", run_id, succeeded=True)
    print(f"parent candidates merged at DAG-run end: {len(report['merged'])}")

    client = MlflowClient(mlflow_server.url)
    exp = client.get_experiment_by_name("race_example").experiment_id
    runs = client.search_runs([exp], filter_string=f"tags.`airflow.run_id` = '{run_id}'")
    parents = [r for r in runs if r.data.tags["airflow.role"] == "dag_run"]
    children = [r for r in runs if r.data.tags["airflow.role"] == "task"]
    assert len(parents) == 1, [p.info.run_id for p in parents]
    assert parents[0].info.status == "FINISHED"
    assert sorted(r.info.run_name for r in children) == sorted(f"task_{i}" for i in range(WORKERS))
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert {r.info.status for r in children} == {"FINISHED"}
    deleted = client.search_runs(
        [exp],
        filter_string=f"tags.`airflow.run_id` = '{run_id}' and tags.`airflow.role` = 'dag_run'",
        run_view_type=2,
    )
    print(
        f"parent candidates created: {1 + len(deleted)}, "
        f"deleted by their creators or the merge: {len(deleted)}"
    )
