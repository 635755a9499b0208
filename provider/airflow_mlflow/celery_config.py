"""
Celery settings for Airflow's CeleryExecutor that import MLflow once per Celery worker.

``[celery] celery_config_options = airflow_mlflow.celery_config.CELERY_CONFIG``: Airflow's own
defaults (built from ``[celery]``), plus :mod:`airflow_mlflow.preload` in Celery's ``imports``, which
the worker imports before it forks its pool processes, so each task process starts with MLflow
already imported. The scheduler and the API server build the same Celery app but never import
``imports``: only a worker does.
"""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

CELERY_CONFIG = {
    **DEFAULT_CELERY_CONFIG,
    "imports": (*DEFAULT_CELERY_CONFIG.get("imports", ()), "airflow_mlflow.preload"),
}
