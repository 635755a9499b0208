"""
``evaluate_gate``: the evaluation step as the retraining example would hold it, on model ``cancer``
(``tests/evaluation_data.py``): ``pick`` stands in for ``register`` (returns ``{"version": "2"}``),
``evaluate`` evaluates that version and the champion on the shared holdout (a callable: nothing
large goes through XCom), and the gate decides on those numbers (``soft_fail``: skipped on a
rejection), so ``promote`` runs only for a better candidate.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_mlflow import MLflowEvaluateOperator, MLflowMetricThresholdSensor, MLflowPromoteModelOperator

VERSION = "{{ ti.xcom_pull(task_ids='pick')['version'] }}"


def holdout():
    from tests.evaluation_data import frames

    return frames()[1]


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def evaluate_gate():
    @task
    def pick() -> dict:
        return {"version": "2"}

    evaluate = MLflowEvaluateOperator(
        task_id="evaluate", model_name="cancer", version=VERSION, data=holdout, targets="target"
    )
    gate = MLflowMetricThresholdSensor(
        task_id="gate",
        model_name="cancer",
        version=VERSION,
        thresholds={"accuracy_score": {"threshold": 0.5, "min_absolute_change": 0.005}},
        source="evaluation",
        soft_fail=True,
        poke_interval=1,
        timeout=30,
    )
    promote = MLflowPromoteModelOperator(task_id="promote", model_name="cancer", version=VERSION, stage=None)
    pick() >> evaluate >> gate >> promote


evaluate_gate = evaluate_gate()
