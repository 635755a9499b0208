"""Attempt bookkeeping, ``tracking_failure`` and the DAG-run sweep, through ``dag.test()`` (issue 10)."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from airflow_mlflow.plugins import listener
from tests.assertions import points_by_attempt, runs_of_dag_run
from tests.dags import lifecycle as dags
from tests.dags import tracked

pytestmark = pytest.mark.usefixtures("airflow_db")


@pytest.fixture(autouse=True)
def fresh_listener():
    reset = getattr(listener, "reset", lambda: None)  # (the code before issue 10 kept no state)
    reset()
    yield
    reset()  # finalizations against a closed port would retry for the rest of the session


def test_each_attempt_of_a_retried_task_keeps_its_own_curve(store):
    dag_run = dags.retry_curve.test()
    listener.drain()
    assert dag_run.state == "success"
    (fit,) = [
        r for r in runs_of_dag_run(store.client, "retry_curve", dag_run.run_id) if r.info.run_name == "fit"
    ]
    tags = fit.data.tags
    assert tags["airflow.try.1.state"] == "failed" and tags["airflow.try.2.state"] == "success"
    assert (
        int(tags["airflow.try.1.end"]) <= int(tags["airflow.try.2.start"]) <= int(tags["airflow.try.2.end"])
    )
    # The curve holds 75 points; the rule of the README splits them into each attempt's own.
    grouped = points_by_attempt(store.client, fit.info.run_id, "loss")
    assert grouped == {1: list(range(15)), 2: list(range(60))}


def test_tracking_failure_warn_lets_the_tasks_succeed_through_an_outage(
    store, mlflow_down, capsys, tmp_path, monkeypatch
):
    from tests.dags import outage

    monkeypatch.chdir(tmp_path)
    dag_run = outage.outage_warn.test()
    assert dag_run.state == "success"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == {"train": "success", "log": "success", "after": "success"}
    # The task log (stdout under dag.test()) warns once per tracking task, however many calls failed.
    warnings = [line for line in capsys.readouterr().out.splitlines() if "MLflow is unreachable" in line]
    assert len(warnings) == 2, warnings
    assert all("tracking_failure='warn'" in line for line in warnings)
    # Nothing fell back to a local store while MLflow was down.
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()


def test_tracking_failure_fail_is_the_default_and_fails_clearly(store, mlflow_down):
    from tests.dags import outage

    dag_run = outage.outage_fail.test()
    assert dag_run.state == "failed"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["train"] == "failed" and states["after"] == "upstream_failed"


def test_tracking_failure_is_checked_when_the_dag_is_parsed():
    from airflow_mlflow import MLflowLogOperator
    from airflow_mlflow.exceptions import MLflowInputError

    with pytest.raises(MLflowInputError, match="tracking_failure must be 'fail' or 'warn', got 'ignore'"):
        MLflowLogOperator(task_id="t", tracking_failure="ignore")


def test_a_new_process_finalizes_dag_runs_a_killed_one_left_open(store, monkeypatch):
    """The finalizing process died (scheduler killed): the next one's sweep closes the DAG run."""
    with monkeypatch.context() as killed:
        killed.setattr(listener, "_submit", lambda dag_run, succeeded: None)
        dag_run = tracked.tracked.test()
    assert dag_run.state == "success"
    runs = {r.info.run_name: r for r in runs_of_dag_run(store.client, "tracked_example", dag_run.run_id)}
    parent = runs.pop(dag_run.run_id)
    assert parent.info.status == "RUNNING"  # what the killed process left
    experiment = store.client.get_experiment_by_name("tracked_example")
    assert [k for k in experiment.tags if k.startswith("airflow.parent.")]

    # A scheduler starts: Airflow calls the listener's on_starting with its (not yet typed) job.
    from airflow.jobs.job import Job

    job = Job()
    job.job_type = "SchedulerJob"  # what SchedulerJobRunner(job) sets right after
    deadline = time.monotonic() + 60
    while store.client.get_run(parent.info.run_id).info.status == "RUNNING":
        assert time.monotonic() < deadline, "the parent is still RUNNING a minute after the start"
        time.sleep(0.5)

    assert store.client.get_run(parent.info.run_id).info.status == "FINISHED"
    assert listener.wait_finalized(60)  # the hint goes last
    experiment = store.client.get_experiment_by_name("tracked_example")
    assert not [k for k in experiment.tags if k.startswith("airflow.parent.")]


EXIT_SCRIPT = """
import logging, sys
from types import SimpleNamespace

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
from airflow_mlflow.plugins import listener, retry_worker

retry_worker.EXIT_WAIT_S = 3  # the default is 60 s
task = SimpleNamespace(task_id="t", mlflow_conn_id="mlflow_hang", experiment_name="e")
dag_run = SimpleNamespace(dag_id="d", run_id="r", dag=SimpleNamespace(tasks=[task]))
listener.on_dag_run_success(dag_run=dag_run, msg="")
print("exiting", flush=True)
"""


def test_an_exiting_process_waits_for_a_hung_mlflow_only_so_long(tmp_path):
    """A server that accepts connections and never answers does not hold the process's exit."""
    import subprocess
    import sys

    with socket.socket() as hung:  # listens, never accepts: requests wait for their timeout
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        port = hung.getsockname()[1]
        conn = {"conn_type": "mlflow", "host": "127.0.0.1", "port": port, "schema": "http"}
        conn["extra"] = {"http_max_retries": 0, "http_timeout": 600}
        env = {
            **os.environ,
            "AIRFLOW_CONN_MLFLOW_HANG": json.dumps(conn),
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "600",
        }
        done = subprocess.run(
            [sys.executable, "-c", EXIT_SCRIPT], env=env, capture_output=True, text=True, timeout=150
        )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exiting" in done.stdout
    assert "1 DAG-run finalization(s) still pending at exit" in done.stdout, done.stdout[-2000:]


def _mlflow_error(code: str):
    from mlflow.exceptions import MlflowException
    from mlflow.protos import databricks_pb2

    return MlflowException("API request failed", error_code=getattr(databricks_pb2, code))


@pytest.mark.parametrize(
    ("make_error", "outage"),
    [
        (lambda e: e.MLflowProviderError("run 1: 503 after retries"), True),
        (lambda e: _mlflow_error("TEMPORARILY_UNAVAILABLE"), True),
        (lambda e: _mlflow_error("INTERNAL_ERROR"), True),
        (lambda e: ConnectionRefusedError(111, "refused"), True),
        (lambda e: e.MLflowInputError("params: bad key"), False),
        (lambda e: e.MLflowConflictError("param changed"), False),
        (lambda e: e.MLflowAuthError("401"), False),
        (lambda e: e.MLflowResourceNotFoundError("no such run"), False),
        (lambda e: e.MLflowConnectionLookupError("mlflow_default: denied"), False),
        (lambda e: _mlflow_error("INVALID_PARAMETER_VALUE"), False),
        (lambda e: ValueError("user code"), False),
    ],
)
def test_warn_tolerates_outages_only_not_errors_the_dag_must_fix(make_error, outage):
    from airflow_mlflow import exceptions
    from airflow_mlflow.operators.base import is_outage

    assert is_outage(make_error(exceptions)) is outage


def test_a_sweep_of_a_connection_that_never_answers_backs_off():
    """A DAG run's finalization is retried every 10 s (its parent must close soon after MLflow is
    back); a sweep of a dead connection backs off, so it does not hold the worker every 10 s."""
    from airflow_mlflow.plugins.finalization import (
        RETRY_INTERVAL_S,
        SWEEP_MAX_INTERVAL_S,
        Finalization,
        Sweep,
    )

    pending = Finalization("d", "r", True, {("mlflow_default", None)}, tries=30)
    assert pending.retry_interval() == RETRY_INTERVAL_S
    intervals = [Sweep(tries=n).retry_interval() for n in range(1, 12)]
    assert intervals[:3] == [RETRY_INTERVAL_S, 2 * RETRY_INTERVAL_S, 4 * RETRY_INTERVAL_S]
    assert intervals == sorted(intervals) and intervals[-1] == SWEEP_MAX_INTERVAL_S
