"""
MLflow down when a DAG run ends, on a real ``mlflow server`` (PostgreSQL) killed for longer than
the client's retry budget and restarted on the same port and database: the parent is closed, and
a ``tracking_failure="warn"`` task's attempt recorded, once MLflow is back (issue 10, items 5, 7).
"""

from __future__ import annotations

import json
import logging
import time

import pytest
from mlflow import MlflowClient

from airflow_mlflow.plugins import listener
from tests.assertions import runs_of_dag_run
from tests.dags import lifecycle
from tests.integration._mlflow_servers import ServerProcess
from tests.support import wait_for

pytestmark = pytest.mark.usefixtures("airflow_db")


@pytest.fixture
def own_server(tmp_path, monkeypatch):
    """A server of this test's own (it is killed and restarted), behind ``mlflow_default``."""
    proc = ServerProcess(tmp_path / "server")
    proc.start()
    server = proc.wait_healthy()
    conn = {"conn_type": "mlflow", "host": server.host, "port": server.port, "schema": "http"}
    # The provider's default budget, spelled out (the test session's environment turns retries off).
    conn["extra"] = {"http_max_retries": 4, "http_backoff_factor": 2, "http_timeout": 10}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    reset = getattr(listener, "reset", lambda: None)  # (the code before issue 10 kept no state)
    reset()
    yield proc, server
    reset()
    proc.stop()


def dag_run_closed(client: MlflowClient, experiment: str, dag_run) -> dict | None:
    """The DAG run's runs by name once its parent is no longer RUNNING and its hint is gone."""
    if client.get_experiment_by_name(experiment) is None:
        return None
    runs = {r.info.run_name: r for r in runs_of_dag_run(client, experiment, dag_run.run_id)}
    parent = runs.get(dag_run.run_id)
    tags = client.get_experiment_by_name(experiment).tags
    if (
        parent is None
        or parent.info.status == "RUNNING"
        or any(k.startswith("airflow.parent.") for k in tags)
    ):
        return None
    return runs


def test_a_dag_run_ending_during_an_outage_is_finalized_when_mlflow_returns(own_server, monkeypatch, caplog):
    proc, server = own_server
    client = MlflowClient(server.url)
    caplog.set_level(logging.INFO, logger=listener.__name__)
    monkeypatch.setattr(lifecycle, "ON_OUTAGE", proc.kill)  # SIGKILL, after "train" tracked

    dag_run = lifecycle.outage_at_end.test()
    assert dag_run.state == "success"
    listener.drain()  # the first try failed, after the client's whole retry budget
    time.sleep(15)  # and the outage goes on: a retry or two more fail quietly
    proc.restart()

    # The limit: closed within a minute after MLflow is back.
    runs = wait_for(
        "parent FINISHED and hint gone", lambda: dag_run_closed(client, "outage_at_end", dag_run), timeout=60
    )
    assert runs[dag_run.run_id].info.status == "FINISHED"
    assert runs["train"].info.status == "FINISHED"
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]
    # A bounded log: one warning when finalizing started failing, one line when it succeeded.
    lines = [r.getMessage() for r in caplog.records if r.name == listener.__name__]
    lines = [line for line in lines if dag_run.run_id in line]
    assert len([line for line in lines if "could not finalize" in line]) == 1, lines
    assert len([line for line in lines if "finalized DAG run" in line]) == 1, lines


def test_a_warn_task_that_ran_through_an_outage_is_recorded_when_mlflow_returns(own_server, capsys):
    from tests.dags import outage

    proc, server = own_server
    client = MlflowClient(server.url)
    proc.kill()

    dag_run = outage.outage_gap.test()
    assert dag_run.state == "success"
    assert (
        len([line for line in capsys.readouterr().out.splitlines() if "MLflow is unreachable" in line]) == 1
    )
    proc.restart()

    runs = wait_for("the gap recorded", lambda: dag_run_closed(client, "outage_gap", dag_run), timeout=60)
    late = runs["late"]
    assert late.info.status == "FINISHED"
    assert late.data.tags["airflow.try.1.state"] == "success"
    assert "recorded later" in late.data.tags["airflow.try.1.note"]
    assert late.data.metrics == {}  # what it logged during the outage went to the scratch run
    assert runs[dag_run.run_id].info.status == "FINISHED"
