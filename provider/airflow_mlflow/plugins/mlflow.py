"""
The provider's Airflow plugin: the DAG-run listener, and the MLflow views of the Airflow UI.

Airflow loads plugins in every process (scheduler, workers, triggerer), so this module stays
cheap: the web app is built on its first request, in the API server only. It never imports
operator modules.
"""

from __future__ import annotations

import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_mlflow.dependency_warnings import silence_process_wide
from airflow_mlflow.plugins import listener

silence_process_wide()

#: Where the API server mounts the plugin's app.
URL_PREFIX = "/mlflow"
#: The Airflow UI routes of the views (``/plugin/<route>`` and the DAG-run and task tabs).
DAG_RUN_ROUTE = "mlflow-dag-run"
TASK_ROUTE = "mlflow-task"
MODELS_ROUTE = "mlflow-models"


class _LazyApp:
    """An ASGI app that builds the plugin's FastAPI app when it serves its first request."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from airflow_mlflow.plugins.app import create_app

                    self._app = create_app()
        await self._app(scope, receive, send)


class MLflowPlugin(AirflowPlugin):
    """
    Ends each DAG run's MLflow run (listener) and adds MLflow to the Airflow UI: a tab on DAG
    runs and on task instances showing what each task logged, and a "MLflow models" page with
    versions, gate verdicts, promotion history and a metric chart across retraining runs.
    """

    name = "airflow_mlflow"
    listeners = [listener]
    fastapi_apps = [{"app": _LazyApp(), "url_prefix": URL_PREFIX, "name": "MLflow"}]
    external_views = [
        {
            "name": "MLflow",
            "href": "mlflow/dag-run?dag_id={DAG_ID}&run_id={RUN_ID}",
            "destination": "dag_run",
            "url_route": DAG_RUN_ROUTE,
            "icon": "mlflow/icon.svg",
        },
        {
            "name": "MLflow",
            "href": "mlflow/task?dag_id={DAG_ID}&run_id={RUN_ID}&task_id={TASK_ID}&map_index={MAP_INDEX}",
            "destination": "task_instance",
            "url_route": TASK_ROUTE,
            "icon": "mlflow/icon.svg",
        },
        {
            "name": "MLflow models",
            "href": "mlflow/models",
            "destination": "nav",
            "category": "browse",
            "url_route": MODELS_ROUTE,
            "icon": "mlflow/icon.svg",
        },
    ]
