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


retry_curve = retry_curve_dag()
