"""
Figure 1, the baseline: the same pipeline with ``@task`` and plain ``PythonOperator`` s, MLflow
imported inside the callables. Only parsed by the benchmark, never run.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import dag, task


def report(**context):
    import mlflow

    with mlflow.start_run():
        mlflow.log_params({"C": 0.1})
        mlflow.log_metrics({"accuracy": 0.9})


def register(model_uri: str):
    import mlflow

    return mlflow.register_model(model_uri, "churn").version


def gate(**context):
    from mlflow import MlflowClient

    version = context["ti"].xcom_pull(task_ids="register")
    run_id = MlflowClient().get_model_version("churn", version).run_id
    if MlflowClient().get_run(run_id).data.metrics.get("accuracy", 0) < 0.8:
        raise ValueError("rejected")


def promote(**context):
    from mlflow import MlflowClient

    version = context["ti"].xcom_pull(task_ids="register")
    MlflowClient().set_registered_model_alias("churn", "champion", version)


@dag(schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def parse_plain():
    @task
    def train(c: float) -> str:
        import mlflow

        with mlflow.start_run():
            mlflow.log_param("C", c)
            mlflow.log_metric("accuracy", 0.9)
        return "models:/m-0"

    model_uri = train(0.1)
    reported = PythonOperator(task_id="report", python_callable=report)
    registered = PythonOperator(task_id="register", python_callable=register, op_args=[model_uri])
    gated = PythonOperator(task_id="gate", python_callable=gate)
    promoted = PythonOperator(task_id="promote", python_callable=promote)
    model_uri >> reported >> registered >> gated >> promoted


parse_plain()
