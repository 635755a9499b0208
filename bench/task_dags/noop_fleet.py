"""
Figure 7's DAG: no-op tasks of three kinds, ``K`` mapped instances each, independent of each other.

* ``untracked``: a plain ``@task`` (the baseline);
* ``decorated``: ``@task.mlflow``, which opens the task's child run itself;
* ``listener``: a plain ``@task`` opted in with ``enable_tracking``, tracked by the provider's
  listener in the task process.

All wait for ``opener``, an ``@task.mlflow`` no-op that is not measured: it opens the DAG run's
parent MLflow run, which the first tracked task of every DAG run finds or creates (4 requests,
once per DAG run; figures 2 and 4 measure it). The fleet then measures what every other task pays.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag, task

from airflow_mlflow import enable_tracking

K = int(os.environ.get("BENCH_FLEET_K", "4"))


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, max_active_runs=1)
def bench_noop_fleet():
    @task
    def untracked(i: int) -> None:
        pass

    @task.mlflow
    def decorated(i: int) -> None:
        pass

    @task
    def listener(i: int) -> None:
        pass

    @task.mlflow
    def opener() -> None:
        pass

    opener() >> [
        untracked.expand(i=list(range(K))),
        decorated.expand(i=list(range(K))),
        enable_tracking(listener.expand(i=list(range(K)))),
    ]


noop_fleet = bench_noop_fleet()
