"""A plain task that reports what its task process started with (MLflow, and whether the
worker imported :mod:`airflow_mlflow.preload` before it forked the task process)."""

from __future__ import annotations

import sys

import pendulum
from airflow.sdk import dag, task


@dag(dag_id="preload_probe", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def preload_probe():
    @task
    def inherited() -> list[str]:
        # Nothing in a task process imports airflow_mlflow.preload: present means inherited.
        return sorted(name for name in ("airflow_mlflow.preload", "mlflow") if name in sys.modules)

    inherited()


preload_probe()
