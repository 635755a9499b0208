"""
Import, once per worker, what a tracked task needs, so that its task processes do not.

Airflow 3 starts each task by forking the worker's process (the LocalExecutor's worker, or a
Celery pool process); a module the worker imported before that fork costs the task nothing.
Importing MLflow costs a fresh process 2-4 s, which dominates a short task. This module imports
MLflow's client and stores, the provider's task-time modules and Airflow's task-runner modules
when it is itself imported: point one of Airflow's own pre-fork import settings at it, never a
DAG file. (With the LocalExecutor's default start method, fork, nothing is needed: its workers are
forked from the scheduler, which has MLflow imported already.)

* LocalExecutor on a forkserver (the scheduler's workers come from a forkserver that imports this)::

      [scheduler]
      mp_start_method = forkserver
      mp_forkserver_preload = airflow_mlflow.preload

* CeleryExecutor (the Celery worker imports this before it forks its pool)::

      [celery]
      celery_config_options = airflow_mlflow.celery_config.CELERY_CONFIG

Neither reaches the scheduler's own process, the dag-processor, the triggerer or the API server.
"""

from __future__ import annotations

import importlib

from airflow_mlflow.compat import MLFLOW_PRELOAD

#: What a task process imports before its task runs (the DAG file's parse goes through Airflow's
#: DagBag and its ORM models, ~1.5 s): a worker forked from the scheduler inherits these, one
#: started from a forkserver must import them too.
AIRFLOW_TASK_MODULES = (
    "airflow.sdk.execution_time.task_runner",
    "airflow.dag_processing.dagbag",
)

#: What a tracked task imports on its way to its MLflow run, on a server or the embedded store
#: (first what the scheduler's listener warms up too, request headers included: ~30 ms per task).
MLFLOW_TASK_MODULES = (
    *MLFLOW_PRELOAD,
    "mlflow.tracking",
    "mlflow.store.tracking.sqlalchemy_workspace_store",
    "mlflow.store.db.trace_analytics_prepopulation",  # what opening a SQL store checks its schema with
    "mlflow.store.model_registry.sqlalchemy_store",
    "mlflow.store.artifact.artifact_repository_registry",
    "airflow_mlflow.hooks.mlflow",
    "airflow_mlflow.runs",
    "airflow_mlflow.compat_fluent",
    "airflow_mlflow.operators",
    "airflow_mlflow.decorators",
    "airflow_mlflow.sensors",
    "airflow_mlflow.plugins.listener",
    "airflow_mlflow.plugins.task_tracking",
)

MODULES = AIRFLOW_TASK_MODULES + MLFLOW_TASK_MODULES


def preload() -> tuple[str, ...]:
    """Import :data:`MODULES`; the names that could not be imported (none with the versions we test)."""
    missing = []
    for name in MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return tuple(missing)


MISSING = preload()
