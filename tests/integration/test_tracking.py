"""The tracked DAG against a real ``mlflow server`` on PostgreSQL with proxied artifacts."""

from __future__ import annotations

import json
import os

import pytest
from mlflow import MlflowClient

from airflow_mlflow.exceptions import MLflowAuthError
from airflow_mlflow.hooks.mlflow import MLflowHook
from airflow_mlflow.plugins import listener
from tests.assertions import assert_tracked_dag, runs_of_dag_run, xcom_value
from tests.dags import tracked as dags

pytestmark = pytest.mark.usefixtures("airflow_db")


def use_server(
    monkeypatch,
    url: str,
    login: str | None = None,
    password: str | None = None,
    experiment: str | None = None,
) -> None:
    host, port = url.removeprefix("http://").split(":")
    conn = {"conn_type": "mlflow", "host": host, "port": int(port), "schema": "http"}
    if login:
        conn.update(login=login, password=password)
    if experiment:
        conn["extra"] = {"experiment_name": experiment}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))


def test_tracked_dag_against_a_real_server(mlflow_server, monkeypatch):
    use_server(monkeypatch, mlflow_server.url)
    dag_run = dags.tracked.test()
    listener.drain()
    assert dag_run.state == "success"
    runs = assert_tracked_dag(MlflowClient(mlflow_server.url), dag_run)
    report = runs["report"]
    assert report.info.artifact_uri.startswith("mlflow-artifacts:/")
    stored = list(mlflow_server.artifacts_dir.rglob("report.txt"))
    assert [p.read_text() for p in stored] == ["fold scores\n"]
    # The "MLflow Run" extra link, computed on the worker, opens the run in the server's UI.
    expected = f"{mlflow_server.url}/#/experiments/{report.info.experiment_id}/runs/{report.info.run_id}"
    assert xcom_value(dag_run, "report", "_link_MLflowRunLink") == expected
    assert xcom_value(dag_run, "report", "mlflow_run")["run_url"] == expected


def test_failing_dag_against_a_real_server(mlflow_server, monkeypatch):
    use_server(monkeypatch, mlflow_server.url)
    dag_run = dags.failing.test()
    listener.drain()
    runs = {
        r.info.run_name: r
        for r in runs_of_dag_run(MlflowClient(mlflow_server.url), "failing_example", dag_run.run_id)
    }
    assert {name: r.info.status for name, r in runs.items()} == {
        dag_run.run_id: "FAILED",
        "ok": "FINISHED",
        "boom": "FAILED",
    }


def test_basic_auth_right_password_tracks_without_leaking(mlflow_auth_server, monkeypatch):
    user, password = "alice", "alice-password-123"
    mlflow_auth_server.create_user(user, password)
    # An experiment of alice's own: the auth server is shared by the session, and other users'
    # experiments (tracked_example, say) are only readable to her (MLflow's default permission).
    use_server(monkeypatch, mlflow_auth_server.url, user, password, experiment="tracked_by_alice")
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    mlflow_env_before = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}

    dag_run = dags.tracked.test(run_conf=None)
    listener.drain()
    assert dag_run.state == "success"
    # Credentials were scoped to the task and restored (dag.test() runs tasks in this process).
    assert {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")} == mlflow_env_before
    assert not [k for k, v in os.environ.items() if password in v and k != "AIRFLOW_CONN_MLFLOW_DEFAULT"]

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    client = MlflowClient(mlflow_auth_server.url)
    runs = assert_tracked_dag(client, dag_run, experiment="tracked_by_alice")
    every_value = [v for r in runs.values() for v in (*r.data.tags.values(), *r.data.params.values())]
    assert not [v for v in every_value if password in v]


def test_basic_auth_wrong_password_is_a_clear_auth_error(mlflow_auth_server, monkeypatch):
    mlflow_auth_server.create_user("bob", "bob-password-1234")
    use_server(monkeypatch, mlflow_auth_server.url, "bob", "not-bobs-password")
    hook = MLflowHook()
    with pytest.raises(MLflowAuthError, match="experiment 'anything'") as err:
        hook.get_or_create_experiment("anything")
    assert "not-bobs-password" not in str(err.value)
    ok, message = hook.test_connection()
    assert not ok and "not-bobs-password" not in message
