"""``MLflowProjectOperator`` against a real ``mlflow server`` with basic auth.

The project's entry point is another process: it reaches the server with the connection's
credentials, which travel in the runner's environment only, never into the run or the task log.
"""

from __future__ import annotations

import json
import logging
import os

import pytest
from mlflow import MlflowClient

from airflow_mlflow.exceptions import MLflowAuthError
from airflow_mlflow.operators.projects import MLflowProjectOperator
from tests.support import operator_context

MLPROJECT = """
name: server_check
entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.1}
    command: "python -c 'import mlflow, sys; mlflow.log_metric(\\"alpha_seen\\", float(sys.argv[1]))' {alpha}"
"""


def test_a_project_logs_into_the_task_run_on_an_auth_server(
    mlflow_auth_server, monkeypatch, tmp_path, caplog
):
    server = mlflow_auth_server
    password = "pr0ject-Secret-9f3"
    server.create_user("projects", password)
    host, port = server.url.removeprefix("http://").split(":")
    conn = {"conn_type": "mlflow", "host": host, "port": int(port), "login": "projects", "password": password}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    project = tmp_path / "project"
    project.mkdir()
    (project / "MLproject").write_text(MLPROJECT)
    tracking_env = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_TRACKING")}

    with caplog.at_level(logging.INFO):
        result = MLflowProjectOperator(
            task_id="train", uri=str(project), parameters={"alpha": 0.25}, experiment_name="projects_auth"
        ).execute(operator_context())

    # The task process's environment never held the credentials (but in the connection, as set).
    assert password not in json.dumps(
        {k: v for k, v in os.environ.items() if k != "AIRFLOW_CONN_MLFLOW_DEFAULT"}
    )
    assert {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_TRACKING")} == tracking_env
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", server.admin_username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.admin_password)
    run = MlflowClient(server.url).get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params == {"alpha": "0.25"}
    assert run.data.metrics == {"alpha_seen": 0.25}  # the entry point's own call, with the credentials
    assert password not in json.dumps({**run.data.params, **run.data.tags})
    assert password not in caplog.text and password not in json.dumps(result)


def test_a_project_without_credentials_fails_clearly(mlflow_auth_server, monkeypatch, tmp_path):
    host, port = mlflow_auth_server.url.removeprefix("http://").split(":")
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": host, "port": int(port)})
    )
    (tmp_path / "MLproject").write_text(MLPROJECT)
    # Refused at the task's first request (its run's experiment), before any process starts.
    with pytest.raises(MLflowAuthError, match="experiment 'projects_auth'.*401"):
        MLflowProjectOperator(task_id="train", uri=str(tmp_path), experiment_name="projects_auth").execute(
            operator_context()
        )
