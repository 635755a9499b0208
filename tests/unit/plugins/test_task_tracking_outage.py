"""MLflow down: a task tracked by the listener runs untracked after a short budget (issue 12)."""

from __future__ import annotations

import json

import pytest

from airflow_mlflow.plugins import listener
from tests.dags import any_task_outage
from tests.unit.hooks.test_http_budget import Listener

pytestmark = pytest.mark.usefixtures("airflow_db", "default_budget")


@pytest.fixture
def default_budget(monkeypatch):
    """A deployment's environment: none of MLflow's budget variables (the test suite sets them)."""
    for name in (
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
        "MLFLOW_HTTP_REQUEST_TIMEOUT",
    ):
        monkeypatch.delenv(name, raising=False)


def test_mlflow_down_costs_a_tracked_plain_task_two_tries_and_one_warning(monkeypatch, tmp_path, caplog):
    server = Listener()  # accepts and closes every connection: MLflow is down
    conn = {"conn_type": "mlflow", "host": "127.0.0.1", "port": server.port, "schema": "http"}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    mark = tmp_path / "started"
    monkeypatch.setenv("OUTAGE_MARK", str(mark))
    listener.reset()
    try:
        dag_run = any_task_outage.outage.test()
    finally:
        listener.reset()  # the DAG run's end retries in the background: not this test's concern
        server.close()
    assert dag_run.state == "success"
    started = float(mark.read_text())
    before_task = [t for t in server.accepted_at if t < started]
    # One try and one retry (the provider's operators' default budget would make five).
    assert len(before_task) == 2
    warnings = [r.getMessage() for r in caplog.records if "MLflow tracking of this task" in r.getMessage()]
    assert (
        len(warnings) == 1
        and "start failed (the task is not affected; connection 'mlflow_default')" in warnings[0]
    )


def test_the_connections_own_budget_still_applies_to_the_listener(monkeypatch, tmp_path):
    server = Listener()
    conn = {"conn_type": "mlflow", "host": "127.0.0.1", "port": server.port, "schema": "http"}
    conn["extra"] = {"http_max_retries": 2, "http_backoff_factor": 0}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    mark = tmp_path / "started"
    monkeypatch.setenv("OUTAGE_MARK", str(mark))
    listener.reset()
    try:
        assert any_task_outage.outage.test().state == "success"
    finally:
        listener.reset()
        server.close()
    assert len([t for t in server.accepted_at if t < float(mark.read_text())]) == 3
