"""Extra links from Airflow task instances to MLflow."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey

    from airflow_mlflow.hooks.mlflow import MLflowHook

#: XCom key under which tracked tasks record their run (``TaskRun.to_json()``).
RUN_XCOM_KEY = "mlflow_run"
#: XCom key under which registry tasks record ``{name, version, url}``.
VERSION_XCOM_KEY = "mlflow_model_version"


def _xcom_url(ti_key: TaskInstanceKey, key: str, field: str) -> str:
    from airflow.sdk.execution_time.xcom import XCom

    payload = XCom.get_value(ti_key=ti_key, key=key)
    return (payload.get(field) or "") if isinstance(payload, dict) else ""


class MLflowRunLink(BaseOperatorLink):
    """
    "MLflow Run": the task's run page in MLflow's UI.

    Computed on the worker from the payload the task pushed; never calls MLflow.
    """

    name = "MLflow Run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return _xcom_url(ti_key, RUN_XCOM_KEY, "run_url")


class MLflowModelVersionLink(BaseOperatorLink):
    """ "MLflow Model Version": the version a registry task or the gate worked on, in MLflow's UI."""

    name = "MLflow Model Version"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return _xcom_url(ti_key, VERSION_XCOM_KEY, "url")


def push_version_link(context: Context, hook: MLflowHook, name: str, version: str | None) -> None:
    """
    The "MLflow Model Version" link payload. Pushed early too (without a version): Airflow
    computes links whenever the task stops, deferrals and failures included.
    """
    url = hook.model_version_url(name, version) if version else None
    context["ti"].xcom_push(key=VERSION_XCOM_KEY, value={"name": name, "version": version, "url": url})
