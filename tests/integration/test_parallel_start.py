"""Tasks of one DAG run that start at the same moment, in separate processes, share one parent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from airflow_mlflow.hooks.mlflow import MLflowHook
from airflow_mlflow.runs import finalize_dag_run

WORKERS = 8
WORKER = Path(__file__).with_name("_race_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def start_together(url: str, run_id: str, go: Path) -> list[dict]:
    host, port = url.removeprefix("http://").split(":")
    env = {
        **os.environ,
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps({"conn_type": "mlflow", "host": host, "port": int(port)}),
        "PYTHONPATH": str(ROOT),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), run_id, f"task_{i}", str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for i in range(WORKERS)
    ]
    for proc in procs:  # every worker has imported everything and built its client
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read()
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


@pytest.mark.parametrize("attempt", range(3))
def test_simultaneous_tasks_leave_exactly_one_parent(mlflow_server, monkeypatch, tmp_path, attempt):
    run_id = f"race__{attempt}__{time.time_ns()}"
    results = start_together(mlflow_server.url, run_id, tmp_path / "go")
    assert len({r["run"] for r in results}) == WORKERS

    host, port = mlflow_server.url.removeprefix("http://").split(":")
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": host, "port": int(port)})
    )
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
