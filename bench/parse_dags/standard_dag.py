"""
Figure 1, the baseline a user would really write without the provider: the same pipeline with
Airflow's standard pieces. ``@task`` and ``PythonOperator`` s with MLflow imported inside the
callables, the standard ``PythonSensor`` as the gate, and ``Asset`` outlets on register and
promote (what ``MLflowRegisterModelOperator`` and ``MLflowPromoteModelOperator`` add by
themselves). Only parsed by the benchmark, never run.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.providers.standard.sensors.python import PythonSensor
from airflow.sdk import Asset, dag, task

MODEL = Asset(uri="models:/churn", name="churn")
CHAMPION = Asset(uri="models:/churn@champion", name="churn@champion")


def report(**context):
    import mlflow

    with mlflow.start_run():
        mlflow.log_params({"C": 0.1})
        mlflow.log_metrics({"accuracy": 0.9})


def register(model_uri: str):
    from mlflow import MlflowClient

    client = MlflowClient()
    version = client.create_model_version("churn", model_uri).version
    client.transition_model_version_stage("churn", version, "Staging")
    client.set_registered_model_alias("churn", "challenger", version)
    return {"name": "churn", "version": version}


def gate(**context) -> bool:
    from mlflow import MlflowClient

    version = context["ti"].xcom_pull(task_ids="register")["version"]
    client = MlflowClient()
    accuracy = client.get_run(client.get_model_version("churn", version).run_id).data.metrics.get("accuracy")
    if accuracy is None:
        return False  # not logged yet: poke again
    champion = client.get_model_version_by_alias("churn", "champion").run_id
    best = client.get_run(champion).data.metrics.get("accuracy", 0)
    if accuracy < 0.8 or accuracy < best + 0.01:
        raise ValueError(f"rejected: accuracy {accuracy} (threshold 0.8, champion {best})")
    return True


def promote(**context):
    from mlflow import MlflowClient

    version = context["ti"].xcom_pull(task_ids="register")["version"]
    MlflowClient().set_registered_model_alias("churn", "champion", version)


@dag(schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def parse_standard():
    @task
    def train(c: float) -> str:
        import mlflow

        with mlflow.start_run():
            mlflow.log_param("C", c)
            mlflow.log_metric("accuracy", 0.9)
        return "models:/m-0"

    model_uri = train(0.1)
    reported = PythonOperator(task_id="report", python_callable=report)
    registered = PythonOperator(
        task_id="register", python_callable=register, op_args=[model_uri], outlets=[MODEL]
    )
    gated = PythonSensor(task_id="gate", python_callable=gate, mode="reschedule")
    promoted = PythonOperator(task_id="promote", python_callable=promote, outlets=[CHAMPION])
    model_uri >> reported >> registered >> gated >> promoted


parse_standard()
