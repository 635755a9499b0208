"""
Close the MLflow side of each DAG run when it ends, even across MLflow outages and restarts.

Runs where DAG-run state changes (the scheduler, or the process of ``dag.test()``). The work goes
to one background thread (:mod:`~airflow_mlflow.plugins.retry_worker`) so MLflow latency or an
outage never stalls the scheduler loop:

* A finalization (:mod:`~airflow_mlflow.plugins.finalization`) that cannot reach MLflow stays
  queued and is tried again every ``RETRY_INTERVAL_S`` seconds until it succeeds. The log gets
  one warning per DAG run when it starts failing and one info line when it is done, not a line
  per try.
* What a process could not finish before it ended (killed, or MLflow down at its exit) is found
  again by a **sweep** when a scheduler starts (``on_starting``), and by the first DAG-run event
  of any other process: every DAG run whose parent is open leaves a hint on its experiment,
  removed by its finalization.
* At interpreter exit the listener waits at most ``EXIT_WAIT_S`` seconds for pending work.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from airflow.listeners import hookimpl

from airflow_mlflow.plugins import retry_worker
from airflow_mlflow.plugins.finalization import Finalization, Sweep
from airflow_mlflow.plugins.retry_worker import EXIT_WAIT_S


def tracked_targets(dag: Any) -> set[tuple[str, str | None]]:
    """``(mlflow_conn_id, experiment_name)`` of every tracked task of ``dag`` (plain or mapped)."""
    targets = set()
    for task in getattr(dag, "tasks", None) or ():
        partial = getattr(task, "partial_kwargs", None) or {}
        conn_id = getattr(task, "mlflow_conn_id", None) or partial.get("mlflow_conn_id")
        if conn_id is None and not _is_tracked(task):
            continue
        targets.add(
            (
                conn_id or "mlflow_default",
                getattr(task, "experiment_name", None) or partial.get("experiment_name"),
            )
        )
    return targets


#: Operators that open a run per task instance (``@task.mlflow``, ``MLflowLogOperator``).
_RUN_OPENERS = {"_MLflowDecoratedOperator", "MLflowLogOperator"}


def tracked_tasks(dag: Any) -> dict[tuple[str, str | None], set[str]]:
    """
    ``(mlflow_conn_id, experiment_name) -> task ids`` of the tasks of ``dag`` that open a run of
    their own per task instance (not registry operators, nor ``run_id=`` loggers).
    """
    found: dict[tuple[str, str | None], set[str]] = {}
    for task in getattr(dag, "tasks", None) or ():
        task_type = getattr(task, "task_type", None) or type(task).__name__
        partial = getattr(task, "partial_kwargs", None) or {}
        if task_type not in _RUN_OPENERS or (getattr(task, "run_id", None) or partial.get("run_id")):
            continue
        target = (
            getattr(task, "mlflow_conn_id", None) or partial.get("mlflow_conn_id") or "mlflow_default",
            getattr(task, "experiment_name", None) or partial.get("experiment_name"),
        )
        found.setdefault(target, set()).add(task.task_id)
    return found


def _is_tracked(task: Any) -> bool:
    module = getattr(task, "_task_module", None) or type(task).__module__
    return str(module).startswith("airflow_mlflow.") and getattr(task, "run_id", None) is None


_swept = threading.Event()


def sweep() -> None:
    """Queue (once per process) a look for ended DAG runs whose MLflow side is still open."""
    if not _swept.is_set():
        _swept.set()
        retry_worker.worker().submit(Sweep())


def _submit(dag_run: Any, succeeded: bool) -> None:
    dag = getattr(dag_run, "dag", None)
    targets = tracked_targets(dag)
    if not targets:
        return
    item = Finalization(dag_run.dag_id, dag_run.run_id, succeeded, set(targets), tracked_tasks(dag))
    retry_worker.worker().submit(item)
    sweep()


def drain(timeout: float | None = 120) -> int:
    """
    Wait until every queued finalization has been tried at least once (tests, and short-lived
    processes that want certainty); return how many are still pending (retrying in the background).
    """
    return retry_worker.worker().wait(timeout, settled=False)


def wait_finalized(timeout: float | None = EXIT_WAIT_S) -> bool:
    """Wait until nothing is pending, at most ``timeout`` seconds; True when all is done."""
    return retry_worker.worker().wait(timeout, settled=True) == 0


def reset() -> None:
    """Drop pending work and allow a new sweep: what a fresh process starts from (tests)."""
    retry_worker.worker().forget()
    _swept.clear()


def _sweep_if_scheduler(component: Any) -> None:
    # The scheduler's job learns its type right after on_starting; read it without a DB refresh.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job_type = vars(component).get("job_type")
        if job_type:
            if job_type == "SchedulerJob":
                sweep()
            return
        time.sleep(0.05)


@hookimpl
def on_starting(component: Any) -> None:
    if type(component).__name__ == "TaskRunnerMarker":  # task processes never sweep
        return
    threading.Thread(
        target=_sweep_if_scheduler, args=(component,), name="airflow-mlflow-sweep", daemon=True
    ).start()


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    _submit(dag_run, succeeded=True)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    _submit(dag_run, succeeded=False)
