"""
Close the MLflow side of each DAG run when it ends.

Runs where DAG-run state changes (the scheduler, or the process of ``dag.test()``). The work
goes to one background thread so MLflow latency or an outage never stalls the scheduler loop;
at interpreter exit pending work is finished first.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)

_executor: ThreadPoolExecutor | None = None
_pending: list[Future] = []
_lock = threading.Lock()


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


def _is_tracked(task: Any) -> bool:
    module = getattr(task, "_task_module", None) or type(task).__module__
    return str(module).startswith("airflow_mlflow.") and getattr(task, "run_id", None) is None


def finalize(dag_id: str, run_id: str, targets: set[tuple[str, str | None]], succeeded: bool) -> list[dict]:
    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.runs import finalize_dag_run, resolve_experiment_name

    results = []
    for conn_id, experiment in sorted(targets, key=str):
        if "{{" in conn_id or "{{" in (experiment or ""):
            log.warning(
                "MLflow: cannot finalize %s/%s for templated conn/experiment %r",
                dag_id,
                run_id,
                (conn_id, experiment),
            )
            continue
        try:
            hook = MLflowHook(mlflow_conn_id=conn_id)
            name = resolve_experiment_name(hook, experiment, dag_id)
            results.append(finalize_dag_run(hook, name, dag_id, run_id, succeeded))
        except Exception:
            log.exception(
                "MLflow: could not finalize the runs of DAG run %s/%s (conn %s)", dag_id, run_id, conn_id
            )
    log.info("MLflow: finalized DAG run %s/%s: %s", dag_id, run_id, results)
    return results


def _submit(dag_run: Any, succeeded: bool) -> None:
    global _executor
    targets = tracked_targets(getattr(dag_run, "dag", None))
    if not targets:
        return
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="airflow-mlflow-finalize")
        _pending.append(_executor.submit(finalize, dag_run.dag_id, dag_run.run_id, targets, succeeded))


def drain(timeout: float | None = 120) -> None:
    """Wait for queued finalizations (tests, and short-lived processes that want certainty)."""
    with _lock:
        pending, _pending[:] = list(_pending), []
    for future in pending:
        future.result(timeout=timeout)


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    _submit(dag_run, succeeded=True)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    _submit(dag_run, succeeded=False)
