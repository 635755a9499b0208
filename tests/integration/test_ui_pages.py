"""The UI views against a real ``mlflow server`` with basic auth: the API server reads runs and
artifacts with the connection's own credentials, never through its (shared) environment."""

from __future__ import annotations

import json
import os

import pytest

from airflow_mlflow.exceptions import MLflowAuthError
from airflow_mlflow.hooks.mlflow import MLflowHook
from airflow_mlflow.plugins import listener, run_views
from tests.dags import tracked as dags
from tests.integration.test_tracking import use_server

pytestmark = pytest.mark.usefixtures("airflow_db")
CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


def mlflow_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}


def test_views_read_an_auth_server_with_the_connections_credentials(mlflow_auth_server, monkeypatch):
    user, password = "carol", "carol-password-123"
    mlflow_auth_server.create_user(user, password)
    host, port = mlflow_auth_server.url.removeprefix("http://").split(":")
    # Her own experiment: other tests' users own "tracked_example" on this server.
    conn = {"conn_type": "mlflow", "host": host, "port": int(port), "schema": "http", "login": user}
    conn.update(password=password, extra={"experiment_name": "ui-pages-carol"})
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    for var in CREDENTIAL_VARS:
        monkeypatch.delenv(var, raising=False)
    dag_run = dags.tracked.test(run_conf=None)
    listener.drain()
    assert dag_run.state == "success"
    before = mlflow_env()

    hook = MLflowHook()
    view = run_views.dag_run_view(hook, "tracked_example", dag_run.run_id)
    report = next(t for t in view.tasks if t.task_id == "report")
    assert [(a.path, a.size) for a in report.artifacts] == [("report.txt", len("fold scores\n"))]
    assert hook.read_artifact(report.run.run_id, "report.txt", 1000) == b"fold scores\n"
    # The server's UI is the connection's: the views link there.
    assert (
        report.mlflow_url
        == f"{mlflow_auth_server.url}/#/experiments/{report.run.experiment_id}/runs/{report.run.run_id}"
    )
    task, _ = run_views.task_view(hook, "tracked_example", dag_run.run_id, "train", 2)
    assert task.histories == {"score": [(0, pytest.approx(0.7))]}

    assert mlflow_env() == before, "reading for the UI changed the process environment"
    assert password not in repr(view) and password not in repr(task)


def test_views_with_a_wrong_password_fail_with_an_auth_error(mlflow_auth_server, monkeypatch):
    mlflow_auth_server.create_user("dave", "dave-password-123")
    use_server(monkeypatch, mlflow_auth_server.url, "dave", "not-daves-password")
    with pytest.raises(MLflowAuthError) as err:
        run_views.dag_run_view(MLflowHook(), "tracked_example", "manual__x")
    assert "not-daves-password" not in str(err.value)
    with pytest.raises(MLflowAuthError):
        MLflowHook().browse_artifacts("0" * 32)
