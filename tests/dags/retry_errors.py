"""DAGs whose one task raises a translated MLflow error, with retries=2 (tests/unit/hooks/test_errors.py)."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, task

#: dag id -> MLflow error code the task's error is translated from ("" = a network error).
CODES = {
    "retry_not_found": "RESOURCE_DOES_NOT_EXIST",
    "retry_auth": "UNAUTHENTICATED",
    "retry_network": "",
}


def _dag(dag_id: str, code: str) -> DAG:
    with DAG(dag_id, schedule=None) as dag:

        @task(retries=2, retry_delay=timedelta(0))
        def call():
            from mlflow.exceptions import MlflowException
            from mlflow.protos import databricks_pb2

            from airflow_mlflow.exceptions import translate

            kwargs = {"error_code": getattr(databricks_pb2, code)} if code else {}
            raise translate(MlflowException("refused", **kwargs), "model 'm'")

        call()
    return dag


for _dag_id, _code in CODES.items():
    globals()[_dag_id] = _dag(_dag_id, _code)
