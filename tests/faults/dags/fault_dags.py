"""DAGs the fault suite (``tests/faults``) runs on its Airflow stack, each small and quick.

Folders and switches come from the DAG run's conf, so the tests decide where a task writes its
pid or waits for its release file.

* ``faults_curve``: two mapped tasks each log a ``loss`` curve, one step at a time; the test
  kills the MLflow server in the middle. Retries are many and short, to outlast the outage.
* ``faults_kill``: tasks that log a few steps, write their pid and sleep on their first try; the
  test SIGKILLs them. ``victim_retried`` has a retry (which succeeds), ``victim_final`` none.
* ``faults_end``: a tracked task, then a plain task that holds the DAG run open until the test
  creates its ``release`` file, so the test decides what MLflow (or the scheduler) is doing when
  the DAG run ends. ``fail`` makes the DAG run fail.
* ``faults_secrets``: every kind of tracked task, on the three connections of the secret check
  (password as the connection's password, password inside ``tracking_uri``, and the same on a
  closed port), including a model version, a deferred gate and a failure.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from airflow_mlflow import MLflowLogOperator, MLflowMetricThresholdSensor, MLflowRegisterModelOperator
from tests.faults.dags import DOWN_CONN, SECRET_MODEL, URI_CONN

START = pendulum.datetime(2026, 1, 1, tz="UTC")


@dag(
    dag_id="faults_curve",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"steps": Param(20, type="integer"), "step_seconds": Param(0.4, type="number")},
)
def faults_curve():
    @task.mlflow(retries=12, retry_delay=timedelta(seconds=4))
    def curve(seed: int) -> None:
        import mlflow

        params = get_current_context()["params"]
        for step in range(params["steps"]):
            mlflow.log_metric("loss", seed + 1.0 / (step + 1), step=step)
            time.sleep(params["step_seconds"])

    curve.expand(seed=[0, 1])


def _victim(steps: int = 5) -> None:
    import mlflow

    context = get_current_context()
    ti = context["ti"]
    for step in range(steps):
        mlflow.log_metric("progress", step, step=step)
    pid_file = Path(context["params"]["pid_dir"]) / f"{ti.task_id}.{ti.try_number}.pid"
    pid_file.write_text(str(os.getpid()))
    if ti.try_number == 1:
        time.sleep(600)  # SIGKILLed here by the test


@dag(
    dag_id="faults_kill",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"pid_dir": Param("/nonexistent", type="string")},
)
def faults_kill():
    @task.mlflow(retries=1, retry_delay=timedelta(seconds=1))
    def victim_retried() -> None:
        _victim()

    @task.mlflow(retries=0)
    def victim_final() -> None:
        _victim()

    victim_retried()
    victim_final()


@dag(
    dag_id="faults_end",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"release": Param("/nonexistent", type="string"), "fail": Param(False, type="boolean")},
)
def faults_end():
    @task.mlflow
    def tracked() -> None:
        import mlflow

        mlflow.log_metric("seen", 1)

    @task
    def hold() -> None:
        params = get_current_context()["params"]
        release = Path(params["release"])
        deadline = time.monotonic() + 300
        while not release.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{release} never appeared")
            time.sleep(0.2)
        if params["fail"]:
            raise RuntimeError("this DAG run is asked to fail")

    tracked() >> hold()


@dag(dag_id="faults_secrets", schedule=None, start_date=START, catchup=False)
def faults_secrets():
    @task.mlflow
    def train() -> str:
        import mlflow
        import numpy as np
        from sklearn.dummy import DummyClassifier

        mlflow.log_param("C", 0.5)
        mlflow.log_metric("accuracy", 0.9)
        mlflow.set_tag("stage", "train")
        model = DummyClassifier(strategy="prior").fit(np.array([[0.0], [1.0]]), np.array([0, 1]))
        # Explicit requirements: MLflow's inference would load the model in a subprocess.
        return mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"]).model_uri

    register = MLflowRegisterModelOperator(
        task_id="register",
        model_uri=train(),
        name=SECRET_MODEL,
        alias="challenger",
        description="candidate from {{ dag_run.run_id }}",
    )
    # The metric never comes: the gate waits in the triggerer (with the connection) until it times out.
    gate = MLflowMetricThresholdSensor(
        task_id="gate",
        model_name=SECRET_MODEL,
        version="{{ ti.xcom_pull(task_ids='register')['version'] }}",
        thresholds={"never_logged": {"threshold": 0.5}},
        baseline=None,
        deferrable=True,
        soft_fail=True,
        poke_interval=2,
        timeout=10,
    )
    register >> gate

    @task.mlflow(mlflow_conn_id=URI_CONN)
    def track_on_uri() -> None:
        import mlflow

        mlflow.log_param("lr", 0.1)
        mlflow.log_metric("loss", 0.25)

    track_on_uri()
    MLflowLogOperator(
        task_id="log_on_uri",
        mlflow_conn_id=URI_CONN,
        params={"source": "{{ dag_run.run_id }}"},
        metrics={"rows": 10},
        tags={"kind": "report"},
    )

    @task.mlflow(mlflow_conn_id=DOWN_CONN)
    def unreachable() -> None:
        raise AssertionError("the server of this connection is closed; the run cannot even start")

    @task.mlflow(mlflow_conn_id=URI_CONN)
    def user_error() -> None:
        raise ValueError("bad input data")

    unreachable()
    user_error()


faults_curve()
faults_kill()
faults_end()
faults_secrets()
