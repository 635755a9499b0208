"""Extra links from Airflow task instances to MLflow."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey

    from airflow_mlflow.hooks.mlflow import MLflowHook

#: XCom key under which tracked tasks record their run (``TaskRun.to_json()``).
RUN_XCOM_KEY = "mlflow_run"
#: XCom key under which registry tasks record ``{name, version, url}``.
VERSION_XCOM_KEY = "mlflow_model_version"


#: Where a tracked task keeps the run payload it pushed: ``(ti identity, payload)``.
_RECORDED = "_airflow_mlflow_recorded_run"


def _identity(ti: Any) -> tuple:
    return (ti.dag_id, ti.run_id, ti.task_id, ti.map_index)


def push_run_payload(task: BaseOperator, ti: Any, payload: dict) -> None:
    """
    Push the "MLflow Run" link's payload (``TaskRun.to_json()``). The task keeps it as well: Airflow
    computes the link in this process right after the task stops, and reads it there, not back
    through the API server.
    """
    ti.xcom_push(key=RUN_XCOM_KEY, value=payload)
    try:
        setattr(task, _RECORDED, (_identity(ti), payload))
    except Exception:  # an operator that refuses new attributes: the link reads the XCom
        pass


def _payload(ti_key: TaskInstanceKey, key: str) -> dict:
    from airflow.sdk.execution_time.xcom import XCom

    payload = XCom.get_value(ti_key=ti_key, key=key)
    return payload if isinstance(payload, dict) else {}


def _q(value: object) -> str:
    return quote(str(value), safe="")


def task_view_path(ti_key: TaskInstanceKey) -> str:
    """The task instance's MLflow tab in the Airflow UI (relative to the UI's base URL)."""
    mapped = f"/mapped/{ti_key.map_index}" if ti_key.map_index is not None and ti_key.map_index >= 0 else ""
    task = f"dags/{_q(ti_key.dag_id)}/runs/{_q(ti_key.run_id)}/tasks/{_q(ti_key.task_id)}{mapped}"
    return f"{task}/plugin/mlflow-task"


def model_view_path(name: str, version: str | None = None) -> str:
    """A model's page in the Airflow UI's "MLflow models" view (relative to the UI's base URL)."""
    query = f"name={_q(name)}" + (f"&version={_q(version)}" if version else "")
    return f"plugin/mlflow-models/mlflow/model?{query}"


class MLflowRunLink(BaseOperatorLink):
    """
    "MLflow Run": the task's run in MLflow's UI when the connection knows one, else the task
    instance's MLflow tab in the Airflow UI (the embedded store has no UI of its own).

    Computed from the payload the task pushed; never calls MLflow.
    """

    name = "MLflow Run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        # Airflow computes links in the task's process, right after it stopped. A tracked task that
        # stopped before it had a run (refused input, MLflow down) pushed no payload: asking for it
        # would log an "XCom not found" error under the task's real one.
        if not getattr(operator, "_run_recorded", True):
            return ""
        recorded = getattr(operator, _RECORDED, None)
        if recorded and recorded[0] == _identity(ti_key):
            payload = recorded[1]
        else:
            payload = _payload(ti_key, RUN_XCOM_KEY)
        if not payload:
            return ""
        return payload.get("run_url") or task_view_path(ti_key)


class MLflowModelVersionLink(BaseOperatorLink):
    """
    "MLflow Model Version": the version a registry task or the gate worked on, in MLflow's UI
    when one is known, else on the model's page of the Airflow UI's "MLflow models" view.
    """

    name = "MLflow Model Version"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        payload = _payload(ti_key, VERSION_XCOM_KEY)
        if not payload.get("name"):
            return ""
        return payload.get("url") or model_view_path(payload["name"], payload.get("version"))


def push_version_link(context: Context, hook: MLflowHook, name: str, version: str | None) -> None:
    """
    The "MLflow Model Version" link payload. Pushed early too (without a version): Airflow
    computes links whenever the task stops, deferrals and failures included.
    """
    url = hook.model_version_url(name, version) if version else None
    context["ti"].xcom_push(key=VERSION_XCOM_KEY, value={"name": name, "version": version, "url": url})
