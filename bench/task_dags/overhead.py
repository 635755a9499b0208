"""
Figure 4's DAG: an untracked no-op task, then two tracked no-op tasks (``@task.mlflow``).

The first tracked task of a DAG run also finds or creates the DAG run's parent MLflow run;
the second finds it. This folder is the benchmark's DAGs folder: ``dag.test()`` syncs it.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bench_overhead():
    @task
    def untracked() -> None:
        pass

    @task.mlflow
    def tracked_first() -> None:
        pass

    @task.mlflow
    def tracked_later() -> None:
        pass

    untracked() >> tracked_first() >> tracked_later()


overhead = bench_overhead()
