"""Extra links from Airflow task instances to MLflow."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: XCom key under which tracked tasks record their run (``TaskRun.to_json()``).
RUN_XCOM_KEY = "mlflow_run"


class MLflowRunLink(BaseOperatorLink):
    """
    "MLflow Run": the task's run page in MLflow's UI.

    Computed on the worker from the payload the task pushed; never calls MLflow.
    """

    name = "MLflow Run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        payload = XCom.get_value(ti_key=ti_key, key=RUN_XCOM_KEY)
        if not isinstance(payload, dict):
            return ""
        return payload.get("run_url") or ""
