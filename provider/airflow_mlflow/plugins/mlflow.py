"""The provider's Airflow plugin. It never imports operator modules."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_mlflow.plugins import listener


class MLflowPlugin(AirflowPlugin):
    """Registers the DAG-run listener that ends each DAG run's MLflow run."""

    name = "airflow_mlflow"
    listeners = [listener]
