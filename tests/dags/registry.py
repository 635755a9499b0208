"""
Registry DAGs the tests run: train -> register (Staging, ``challenger``) -> gate -> promote.

* ``gate_lifecycle`` (model ``gate_model``): DAG param ``accuracy`` sets the trained model's
  metric; the gate wants ``accuracy >= 0.6`` and ``+0.01`` over the champion; ``soft_fail`` turns
  a rejection into skipped gate and promotion. Param ``runs_uri`` registers from ``runs:/``
  instead of the logged model's ``models:/m-…`` URI.
* ``gate_deferred`` (model ``deferred_model``): the same with a deferrable gate on the metric
  ``late_accuracy``, which training does NOT log: the gate waits (in the triggerer) until someone
  logs ``late_accuracy`` on the candidate's run (the tests do, from outside).
* ``gate_rescheduled`` (model ``rescheduled_model``): like ``gate_deferred``, in reschedule mode.
* ``gate_timeout`` (model ``timeout_model``): the metric never comes; the gate times out after 3 s.
* ``gate_deferred_timeout`` (model ``deferred_timeout_model``): the same with a deferrable gate.
* ``gate_rollback``: restores the previous ``gate_model`` champion.
* ``on_gate_model_promotion``: scheduled on ``model_asset("gate_model", alias="champion")``; returns
  the triggering event's extra.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from airflow_mlflow import (
    MLflowMetricThresholdSensor,
    MLflowPromoteModelOperator,
    MLflowRegisterModelOperator,
    MLflowRollbackModelOperator,
    model_asset,
)

START = pendulum.datetime(2026, 1, 1, tz="UTC")
VERSION = "{{ ti.xcom_pull(task_ids='register')['version'] }}"


def _train(metric: str | None) -> str:
    import mlflow
    import numpy as np
    from sklearn.dummy import DummyClassifier

    params = get_current_context()["params"]
    model = DummyClassifier(strategy="prior").fit(np.array([[0.0], [1.0]]), np.array([0, 1]))
    info = mlflow.sklearn.log_model(model, name="model")
    if metric:
        mlflow.log_metric(metric, float(params["accuracy"]))
    if params.get("runs_uri"):
        return f"runs:/{mlflow.active_run().info.run_id}/model"
    return info.model_uri


def gate_dag(
    dag_id: str,
    model_name: str,
    metric: str,
    *,
    deferrable: bool,
    log_metric: bool,
    mode: str = "poke",
    timeout: int = 120,
):
    @dag(
        dag_id=dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        params={"accuracy": Param(0.8, type="number"), "runs_uri": Param(False, type="boolean")},
    )
    def _dag():
        @task.mlflow
        def train() -> str:
            return _train(metric if log_metric else None)

        register = MLflowRegisterModelOperator(
            task_id="register",
            model_uri=train(),
            name=model_name,
            stage="Staging",
            alias="challenger",
            tags={"trained_on": "synthetic"},
            description="candidate from {{ dag_run.run_id }}",
        )
        gate = MLflowMetricThresholdSensor(
            task_id="gate",
            model_name=model_name,
            version=VERSION,
            thresholds={metric: {"threshold": 0.6, "min_absolute_change": 0.01}},
            baseline="champion",
            soft_fail=True,
            deferrable=deferrable,
            mode=mode,
            poke_interval=1,
            timeout=timeout,
        )
        promote = MLflowPromoteModelOperator(task_id="promote", model_name=model_name, version=VERSION)
        register >> gate >> promote

    return _dag()


gate_lifecycle = gate_dag("gate_lifecycle", "gate_model", "accuracy", deferrable=False, log_metric=True)
gate_deferred = gate_dag(
    "gate_deferred", "deferred_model", "late_accuracy", deferrable=True, log_metric=False
)
gate_timeout = gate_dag(
    "gate_timeout", "timeout_model", "late_accuracy", deferrable=False, log_metric=False, timeout=3
)
gate_deferred_timeout = gate_dag(
    "gate_deferred_timeout",
    "deferred_timeout_model",
    "late_accuracy",
    deferrable=True,
    log_metric=False,
    timeout=3,
)
gate_rescheduled = gate_dag(
    "gate_rescheduled",
    "rescheduled_model",
    "late_accuracy",
    deferrable=False,
    log_metric=False,
    mode="reschedule",
)


@dag(dag_id="gate_rollback", schedule=None, start_date=START, catchup=False)
def _rollback():
    MLflowRollbackModelOperator(task_id="rollback", model_name="gate_model")


gate_rollback = _rollback()


@dag(
    dag_id="on_gate_model_promotion", schedule=[model_asset("gate_model", alias="champion")], start_date=START
)
def _consumer():
    @task
    def read_event() -> dict:
        events = get_current_context()["triggering_asset_events"]
        (asset_events,) = events.values()
        return dict(asset_events[-1].extra)

    read_event()


on_gate_model_promotion = _consumer()
