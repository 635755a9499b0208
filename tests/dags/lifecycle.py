"""A retried task logging a curve per attempt (issue 10, item 7)."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, task

START = pendulum.datetime(2026, 1, 1, tz="UTC")


def retry_curve_dag(dag_id: str = "retry_curve"):
    """The first try logs 15 steps of a curve and fails; the retry logs the whole 60-step curve."""

    @dag(dag_id=dag_id, schedule=None, start_date=START, catchup=False)
    def _dag():
        @task.mlflow(retries=1, retry_delay=0)
        def fit() -> None:
            import mlflow

            first = get_current_context()["ti"].try_number == 1
            for step in range(15 if first else 60):
                mlflow.log_metric("loss", 1 / (step + 1), step=step)
            if first:
                raise RuntimeError("worker lost after step 15")

        fit()

    return _dag()


#: Called by ``cut`` in the test's own process (``dag.test()`` runs tasks in-process): stops MLflow.
ON_OUTAGE = None


def outage_at_end_dag(dag_id: str = "outage_at_end"):
    """A task tracks, then MLflow goes down, then the DAG run ends."""

    @dag(dag_id=dag_id, schedule=None, start_date=START, catchup=False)
    def _dag():
        @task.mlflow
        def train() -> None:
            import mlflow

            mlflow.log_metric("score", 0.9)

        @task
        def cut() -> None:
            if ON_OUTAGE is not None:
                ON_OUTAGE()

        train() >> cut()

    return _dag()


retry_curve = retry_curve_dag()
outage_at_end = outage_at_end_dag()
