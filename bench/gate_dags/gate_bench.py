"""
Figure 5's DAGs: N promotion gates on versions 1..N of one model, waiting for a metric.

``bench_gate_deferred`` defers them all to the triggerer; ``bench_gate_poke`` is the baseline,
the same gates in ``poke`` mode, each holding a worker slot while it waits. N and the poll
interval come from the environment the benchmark gives the stack (``BENCH_GATE_N``,
``BENCH_GATE_INTERVAL``), so the DAG needs no upstream task to build its list of versions.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag

from airflow_mlflow import MLflowMetricThresholdSensor

MODEL = "bench_gate_model"
METRIC = "accuracy"
N = int(os.environ.get("BENCH_GATE_N", "10"))
INTERVAL = float(os.environ.get("BENCH_GATE_INTERVAL", "10"))


def gate_dag(dag_id: str, deferrable: bool):
    @dag(dag_id=dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
    def _dag():
        MLflowMetricThresholdSensor.partial(
            task_id="gate",
            model_name=MODEL,
            thresholds={METRIC: {"threshold": 0.5, "min_absolute_change": 0.01}},
            baseline="champion",
            deferrable=deferrable,
            mode="poke",
            poke_interval=INTERVAL,
            timeout=3600,
        ).expand(version=[str(v) for v in range(1, N + 1)])

    return _dag()


deferred = gate_dag("bench_gate_deferred", deferrable=True)
poke = gate_dag("bench_gate_poke", deferrable=False)
