"""DAGs the tests run with ``dag.test()``, on the embedded store and against a real server.

This folder is the test AIRFLOW__CORE__DAGS_FOLDER: ``dag.test()`` syncs DAGs from there.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pendulum
from airflow.sdk import dag, get_current_context, task

from airflow_mlflow import MLflowLogOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")


def tracked_dag(dag_id: str = "tracked_example"):
    """A mapped task (x3), a task that fails once then succeeds, and an MLflowLogOperator."""

    @dag(dag_id=dag_id, schedule=None, start_date=START, catchup=False)
    def _dag():
        @task
        def write_report() -> str:
            folder = Path(tempfile.mkdtemp(prefix="report-"))
            (folder / "report.txt").write_text("fold scores\n")
            return str(folder / "report.txt")

        @task.mlflow
        def train(fold: int) -> float:
            import mlflow

            mlflow.log_param("fold", fold)
            score = 0.5 + fold / 10
            mlflow.log_metric("score", score)
            return score

        @task.mlflow(retries=1, retry_delay=0)
        def flaky() -> None:
            import mlflow

            mlflow.log_param("lr", 0.1)  # logged again, unchanged, by the retry
            if get_current_context()["ti"].try_number == 1:
                raise RuntimeError("transient failure on the first try")
            mlflow.log_metric("recovered", 1)

        scores = train.expand(fold=[0, 1, 2])
        report = MLflowLogOperator(
            task_id="report",
            params={"folds": 3, "model": "ridge"},
            metrics={"best": "{{ ti.xcom_pull(task_ids='train') | max }}"},
            tags={"stage": "report"},
            artifacts=["{{ ti.xcom_pull(task_ids='write_report') }}"],
        )
        [scores, flaky(), write_report()] >> report

    return _dag()


def failing_dag(dag_id: str = "failing_example"):
    @dag(dag_id=dag_id, schedule=None, start_date=START, catchup=False)
    def _dag():
        @task.mlflow
        def ok() -> None:
            import mlflow

            mlflow.log_metric("fine", 1)

        @task.mlflow
        def boom() -> None:
            raise ValueError("bad data")

        ok() >> boom()

    return _dag()


def timeout_dag(dag_id: str = "timeout_example"):
    @dag(dag_id=dag_id, schedule=None, start_date=START, catchup=False)
    def _dag():
        @task.mlflow(execution_timeout=pendulum.duration(seconds=1))
        def slow() -> None:
            time.sleep(30)

        slow()

    return _dag()


def changing_param_dag(dag_id: str = "changing_param"):
    """A retry that logs a different value for a param its first try logged."""

    @dag(dag_id=dag_id, schedule=None, start_date=START, catchup=False)
    def _dag():
        @task.mlflow(retries=2, retry_delay=0)
        def tune() -> None:
            import mlflow

            try_number = get_current_context()["ti"].try_number
            mlflow.log_param("threshold", try_number)
            if try_number == 1:
                raise RuntimeError("first try fails after logging")

        tune()

    return _dag()


def xcom_inputs_dag(dag_id: str = "xcom_inputs"):
    """MLflowLogOperator fed by XCom: a whole params dict, and the run of another task."""

    @dag(dag_id=dag_id, schedule=None, start_date=START, catchup=False)
    def _dag():
        @task
        def choose() -> dict:
            return {"alpha": 0.5, "solver": "lbfgs"}

        @task.mlflow
        def fit() -> None:
            import mlflow

            mlflow.log_metric("loss", 0.25)

        MLflowLogOperator(task_id="log_choice", params=choose())
        annotate_fit = MLflowLogOperator(
            task_id="annotate_fit",
            run_id="{{ ti.xcom_pull(task_ids='fit', key='mlflow_run')['run_id'] }}",
            tags={"reviewed": "yes"},
            metrics={"loss_x2": "{{ 0.25 * 2 }}"},
        )
        fit() >> annotate_fit

    return _dag()


tracked = tracked_dag()
xcom_inputs = xcom_inputs_dag()
failing = failing_dag()
timeout = timeout_dag()
changing_param = changing_param_dag()
