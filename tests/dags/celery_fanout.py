"""
``celery_fanout``: ten tasks using MLflow per DAG run, for the Celery tier (tests/e2e/test_celery_e2e.py)
and its bench figure: a mapped ``@task.mlflow`` x6 (``train``; shard 0 logs a tiny model) ->
``MLflowLogOperator`` (``summary``) -> register (model ``celery_model``) -> gate -> promote, as in
``registry.py``. The first seven task instances get a child run each; the registry tasks record
on the model's versions instead (the provider never opens runs for its own registry tasks). Many
runs of it run at once (``max_active_runs``): each task's MLflow run says on which worker it ran
(``airflow.hostname``, ``airflow.pid``).

DAG param ``accuracy``: the trained model's metric. The gate wants ``>= 0.6`` against the champion
as baseline, so every gate passes and every run tries to promote its version: concurrent runs race
for the champion, and a promotion whose gate compared against a champion that has changed since is
refused (the promote task fails, and its DAG run), which the test allows.

``celery_fanout_untracked``: the same shape with plain ``@task``s and no MLflow at all (the bench's
baseline), doing the same work outside MLflow: shard 0 fits the same model and saves it to a file.
"""

from __future__ import annotations

import sys

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from airflow_mlflow import (
    MLflowLogOperator,
    MLflowMetricThresholdSensor,
    MLflowPromoteModelOperator,
    MLflowRegisterModelOperator,
)

DAG_ID = "celery_fanout"
UNTRACKED_DAG_ID = "celery_fanout_untracked"
MODEL = "celery_model"
SHARDS = 6
START = pendulum.datetime(2026, 1, 1, tz="UTC")
VERSION = "{{ ti.xcom_pull(task_ids='register')['version'] }}"
# Overlapping runs: the bench triggers up to 50 at once, the test 10.
MAX_ACTIVE_RUNS = 64


def _fit():
    import numpy as np
    from sklearn.dummy import DummyClassifier

    return DummyClassifier(strategy="prior").fit(np.array([[0.0], [1.0]]), np.array([0, 1]))


def _log_model() -> str:
    import mlflow

    return mlflow.sklearn.log_model(_fit(), name="model").model_uri


def _save_model() -> str:
    """The untracked twin's model: the same fit, pickled to a file of its own."""
    import pickle
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as out:
        pickle.dump(_fit(), out)
    return out.name


@dag(
    dag_id=DAG_ID,
    schedule=None,
    start_date=START,
    catchup=False,
    max_active_runs=MAX_ACTIVE_RUNS,
    params={"accuracy": Param(0.8, type="number")},
)
def _fanout():
    @task.mlflow
    def train(shard: int) -> str | None:
        import mlflow

        accuracy = float(get_current_context()["params"]["accuracy"])
        # Whether the task process started with the Celery worker's preload (nothing else imports it).
        mlflow.log_params({"shard": shard, "preloaded": "airflow_mlflow.preload" in sys.modules})
        mlflow.log_metric("accuracy", accuracy)
        return _log_model() if shard == 0 else None

    summary = MLflowLogOperator(
        task_id="summary",
        params={"shards": SHARDS},
        metrics={"accuracy": "{{ params.accuracy }}"},
    )
    register = MLflowRegisterModelOperator(
        task_id="register",
        model_uri="{{ ti.xcom_pull(task_ids='train', map_indexes=0) }}",
        name=MODEL,
        stage="Staging",
        # Overlapping runs set this alias at once: MLflow's SQL store's upsert is not atomic and
        # MLflowHook.set_alias tries again on the clash (tests/integration/test_registry.py).
        alias="challenger",
        retries=2,
        retry_delay=1,
    )
    gate = MLflowMetricThresholdSensor(
        task_id="gate",
        model_name=MODEL,
        version=VERSION,
        thresholds={"accuracy": {"threshold": 0.6}},
        baseline="champion",
        soft_fail=True,
        mode="poke",
        poke_interval=1,
        timeout=120,
    )
    promote = MLflowPromoteModelOperator(task_id="promote", model_name=MODEL, version=VERSION)
    train.expand(shard=list(range(SHARDS))) >> summary >> register >> gate >> promote


celery_fanout = _fanout()


@dag(
    dag_id=UNTRACKED_DAG_ID,
    schedule=None,
    start_date=START,
    catchup=False,
    max_active_runs=MAX_ACTIVE_RUNS,
    params={"accuracy": Param(0.8, type="number")},
)
def _untracked():
    @task
    def train(shard: int) -> str | None:
        float(get_current_context()["params"]["accuracy"])
        return _save_model() if shard == 0 else None

    @task
    def summary() -> int:
        return SHARDS

    @task
    def register() -> dict:
        return {"version": "1"}

    @task
    def gate() -> bool:
        return True

    @task
    def promote() -> None:
        return None

    train.expand(shard=list(range(SHARDS))) >> summary() >> register() >> gate() >> promote()


celery_fanout_untracked = _untracked()
