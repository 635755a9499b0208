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

In task processes, the task-instance hooks give a task of any operator class, opted in
(:mod:`airflow_mlflow.tracking`), its child run: :mod:`~airflow_mlflow.plugins.task_tracking`.
They never raise: a listener's error would skip the other listeners.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from airflow.listeners import hookimpl

from airflow_mlflow.plugins import retry_worker
from airflow_mlflow.plugins.finalization import Finalization, Sweep
from airflow_mlflow.plugins.retry_worker import EXIT_WAIT_S
from airflow_mlflow.tracking import is_tracked, listener_target


def tracked_targets(dag: Any) -> set[tuple[str, str | None]]:
    """``(mlflow_conn_id, experiment_name)`` of every tracked task of ``dag`` (plain or mapped)."""
    targets = set()
    for task in getattr(dag, "tasks", None) or ():
        partial = getattr(task, "partial_kwargs", None) or {}
        conn_id = getattr(task, "mlflow_conn_id", None) or partial.get("mlflow_conn_id")
        if conn_id is None and not _is_tracked(task):
            if is_tracked(task):  # tracked by the task-process hooks below
                targets.add(listener_target())
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
    their own per task instance (not registry operators, nor ``run_id=`` loggers), or that the
    task-process hooks track (:func:`airflow_mlflow.tracking.is_tracked`).
    """
    found: dict[tuple[str, str | None], set[str]] = {}
    for task in getattr(dag, "tasks", None) or ():
        if is_tracked(task):
            found.setdefault(listener_target(), set()).add(task.task_id)
            continue
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


# Task-process hooks: any operator's task instance, opted in (airflow_mlflow.tracking). Thin shims:
# the MLflow side is imported only for a tracked task, and nothing they raise reaches the task
# (Airflow logs a listener's error, but pluggy would skip the other listeners after it).


def _tracked_ti(task_instance: Any) -> bool:
    # Core calls these hooks with a models.TaskInstance too (manual state changes): not ours.
    if type(task_instance).__name__ != "RuntimeTaskInstance":
        return False
    task = getattr(task_instance, "task", None)
    return task is not None and is_tracked(task)


def _safely(what: str, call: Any, *args: Any) -> None:
    try:
        call(*args)
    except Exception as err:
        _warn(what, err)


def _warn(what: str, err: BaseException) -> None:
    import logging

    try:
        conn_id = listener_target()[0]
    except Exception:  # the message matters more than the connection's name
        conn_id = "?"
    logging.getLogger(__name__).warning(
        "MLflow tracking of this task %s failed (the task is not affected; connection %r): %s",
        what,
        conn_id,
        f"{type(err).__name__}: {err}"[:300],
    )


@hookimpl
def on_task_instance_running(previous_state: Any, task_instance: Any) -> None:
    try:
        if not _tracked_ti(task_instance):
            return
        from airflow_mlflow.plugins import task_tracking
    except Exception as err:
        _warn("setup", err)
        return
    _safely("start", task_tracking.start, task_instance)


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    _finish(task_instance, "success", None)


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    _finish(task_instance, "failed", error)


@hookimpl
def on_task_instance_skipped(previous_state: Any, task_instance: Any) -> None:
    _finish(task_instance, "success", None)


def _finish(task_instance: Any, outcome: str, error: Any) -> None:
    import sys

    # Only a process whose running hook acted has the module loaded (else there is nothing to end).
    module = sys.modules.get("airflow_mlflow.plugins.task_tracking")
    if module is None or type(task_instance).__name__ != "RuntimeTaskInstance":
        return
    _safely("end", module.finish, task_instance, outcome, error)
