"""
Retraining from a plain script: an unmodified MLflow training script, tracked by one line.

``train`` is a ``BashOperator`` that runs ``scripts/train_classifier.py``, an ordinary script
that imports ``mlflow`` and ``sklearn`` and knows nothing of the scheduler. The DAG opts in with
``enable_tracking(...)`` (the last line of this file): the task gets a child run under the DAG
run's parent, and the script's process gets that run in its environment (``MLFLOW_RUN_ID``,
``MLFLOW_TRACKING_URI``, credentials), so its ``mlflow.start_run()`` writes its params, metrics
and model there. Then the usual: the model logged in that run is registered as ``Staging`` /
``challenger``, gated (``accuracy >= 0.85`` and 0.005 better than the champion; a rejection
skips the promotion and the run succeeds) and promoted to ``Production`` / ``champion``.

Trigger it with a logical date: the date seeds the script's holdout split (``--seed``).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import Param, dag

from airflow_mlflow import (
    MLflowMetricThresholdSensor,
    MLflowPromoteModelOperator,
    MLflowRegisterModelOperator,
    enable_tracking,
)

MODEL_NAME = "breast_cancer_from_script"
SCRIPT = Path(__file__).resolve().parent / "scripts" / "train_classifier.py"
#: The interpreter running this task: the worker's, with mlflow and scikit-learn installed. Use
#: your training environment's ``python`` instead if it is another one.
PYTHON = sys.executable
#: ``train``'s MLflow run: tracked tasks push it as XCom ``mlflow_run``; the script logged the
#: model there under the name ``model``.
MODEL_URI = "runs:/{{ ti.xcom_pull(task_ids='train', key='mlflow_run')['run_id'] }}/model"
VERSION = "{{ ti.xcom_pull(task_ids='register')['version'] }}"


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # one candidate at a time: each is gated against the champion before it
    tags=["mlflow", "example", "retraining"],
    doc_md=__doc__,
    params={
        "C": Param(1.0, type="number", exclusiveMinimum=0, description="inverse regularisation strength"),
        "max_iter": Param(1000, type="integer", minimum=10),
    },
)
def retrain_from_script():
    train = BashOperator(
        task_id="train",
        bash_command=(
            f"{shlex.quote(PYTHON)} {shlex.quote(str(SCRIPT))}"
            " --C {{ params.C }} --max-iter {{ params.max_iter }}"
            " --seed {{ (logical_date or dag_run.run_after) | ds_nodash }}"
        ),
    )
    register = MLflowRegisterModelOperator(
        task_id="register",
        model_uri=MODEL_URI,
        name=MODEL_NAME,
        stage="Staging",
        alias="challenger",
        description="Trained by scripts/train_classifier.py in {{ dag_run.run_id }}",
    )
    gate = MLflowMetricThresholdSensor(
        task_id="gate",
        model_name=MODEL_NAME,
        version=VERSION,
        thresholds={"accuracy": {"threshold": 0.85, "min_absolute_change": 0.005}},
        baseline="champion",
        soft_fail=True,
        deferrable=True,
        poke_interval=5,
        timeout=600,
    )
    promote = MLflowPromoteModelOperator(
        task_id="promote", model_name=MODEL_NAME, version=VERSION, stage="Production", alias="champion"
    )
    train >> register >> gate >> promote


enable_tracking(retrain_from_script())
