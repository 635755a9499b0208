"""DAGs whose tracking tasks meet an MLflow outage: ``tracking_failure`` (issue 10)."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_mlflow import MLflowLogOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")
#: The connection the outage DAGs use; tests point it at a closed port.
DOWN_CONN_ID = "mlflow_down"


def outage_dag(dag_id: str, tracking_failure: str):
    """Both tracking task kinds against ``mlflow_down``, and a plain task that must still run after."""

    @dag(dag_id=dag_id, schedule=None, start_date=START, catchup=False)
    def _dag():
        @task.mlflow(mlflow_conn_id=DOWN_CONN_ID, tracking_failure=tracking_failure)
        def train() -> float:
            import mlflow

            mlflow.log_param("alpha", 0.5)  # goes nowhere while MLflow is down; must not fail
            mlflow.log_metric("score", 0.9)
            return 0.9

        log = MLflowLogOperator(
            task_id="log",
            mlflow_conn_id=DOWN_CONN_ID,
            tracking_failure=tracking_failure,
            metrics={"best": "{{ ti.xcom_pull(task_ids='train') }}"},
        )

        @task
        def after() -> str:
            return "ran"

        train() >> log >> after()

    return _dag()


outage_warn = outage_dag("outage_warn", "warn")
outage_fail = outage_dag("outage_fail", "fail")


def outage_gap_dag(dag_id: str = "outage_gap"):
    """One ``warn`` task that runs while MLflow is down: its run is made when MLflow is back."""

    @dag(dag_id=dag_id, schedule=None, start_date=START, catchup=False)
    def _dag():
        @task.mlflow(tracking_failure="warn")
        def late() -> str:
            import mlflow

            mlflow.log_metric("seen", 1)  # MLflow is down: lands in the discarded scratch run
            return "done"

        late()

    return _dag()


outage_gap = outage_gap_dag()
