"""
The seam into MLflow's fluent API state (its active-run stack and tracking URI): the part of
:mod:`airflow_mlflow.compat` through which the provider points ``mlflow.*`` calls in user code at
the task's connection and hands ``@task.mlflow``'s run to the task's function.

``tests/unit/test_compat.py`` exercises it against the installed MLflow.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import ActiveRun

    from airflow_mlflow.hooks.records import RunRecord


def activate_run(record: RunRecord) -> ActiveRun:
    """
    Make ``record``'s run MLflow's active run, as ``mlflow.start_run(run_id=...)`` does, and return
    it (leaving its ``with`` block ends it FINISHED, or FAILED on an error, if still active).

    ``mlflow.start_run(run_id=...)`` reads the run, marks it RUNNING and reads it again: three
    requests for a run the provider has just created or reopened, RUNNING, with ``record`` as
    MLflow answered. Where ``start_run`` does more than that, it is called instead: another run
    already active in this thread (it refuses), or system metrics enabled (it starts their monitor).
    """
    import mlflow
    from mlflow.entities import LifecycleStage, Param, Run, RunData, RunInfo, RunTag
    from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING
    from mlflow.tracking import fluent
    from mlflow.utils.mlflow_tags import MLFLOW_USER

    stack = fluent._active_run_stack.get()
    if stack or MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.get():
        return mlflow.start_run(run_id=record.run_id)
    info = RunInfo(
        run_id=record.run_id,
        experiment_id=record.experiment_id,
        user_id=record.tags.get(MLFLOW_USER, ""),
        status="RUNNING",
        start_time=record.start_time,
        end_time=None,
        lifecycle_stage=LifecycleStage.ACTIVE,
        artifact_uri=record.artifact_uri,
        run_name=record.run_name,
    )
    data = RunData(
        params=[Param(k, v) for k, v in record.params.items()],
        tags=[RunTag(k, v) for k, v in record.tags.items()],
    )
    stack.append(fluent.ActiveRun(Run(info, data)))
    return stack[-1]


@contextlib.contextmanager
def use_tracking_uri(uri: str) -> Iterator[None]:
    """
    MLflow's fluent API tracks to ``uri`` in this block; the previous URI is restored after.
    Nothing to do when no URI is set in this process and ``$MLFLOW_TRACKING_URI`` is ``uri``:
    setting one resets MLflow's tracing, which imports OpenTelemetry's SDK (~0.13 s per task).
    """
    from mlflow.tracking._tracking_service import utils

    if utils._tracking_uri is None and os.environ.get("MLFLOW_TRACKING_URI") == uri:
        yield
        return
    with utils._use_tracking_uri(uri):
        yield
