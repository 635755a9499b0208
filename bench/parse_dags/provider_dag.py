"""
Figure 1, the provider's way: ``@task.mlflow`` and the provider's operators and sensor.

The same pipeline as ``plain_dag.py`` and ``mlflow_at_top_dag.py``: train, report, register,
gate, promote. Only parsed by the benchmark, never run.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_mlflow import (
    MLflowLogOperator,
    MLflowMetricThresholdSensor,
    MLflowPromoteModelOperator,
    MLflowRegisterModelOperator,
)

VERSION = "{{ ti.xcom_pull(task_ids='register')['version'] }}"


@dag(schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def parse_provider():
    @task.mlflow
    def train(c: float) -> str:
        import mlflow

        mlflow.log_param("C", c)
        mlflow.log_metric("accuracy", 0.9)
        return "models:/m-0"

    model_uri = train(0.1)
    report = MLflowLogOperator(task_id="report", params={"C": 0.1}, metrics={"accuracy": 0.9})
    register = MLflowRegisterModelOperator(
        task_id="register", model_uri=model_uri, name="churn", stage="Staging", alias="challenger"
    )
    gate = MLflowMetricThresholdSensor(
        task_id="gate",
        model_name="churn",
        version=VERSION,
        thresholds={"accuracy": {"threshold": 0.8, "min_absolute_change": 0.01}},
        deferrable=True,
    )
    promote = MLflowPromoteModelOperator(task_id="promote", model_name="churn", version=VERSION)
    model_uri >> report >> register >> gate >> promote


parse_provider()
