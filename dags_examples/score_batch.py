"""
Batch scoring with the current champion, run each time the champion moves.

Scheduled on the ``champion`` alias of the model: when ``retrain_model``'s promotion (or a
rollback) moves it, and when anyone moves it outside Airflow (MLflow's UI, a script, a CI job:
the triggerer polls the registry, ``watch="poll"``), ``score`` (an ``MLflowBatchPredictOperator``)
resolves ``champion`` to a version once, loads ``models:/<name>/<that version>`` through pyfunc (so
a move while it runs changes nothing), scores a batch, and records the version as the run's
``model_version`` param (and the moves that triggered it as tag ``airflow.predict.triggered_by``),
logs ``rows_scored`` and ``positive_rate``, and writes the predictions as the artifact
``predictions/predictions.csv``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from airflow_mlflow import MLflowBatchPredictOperator, model_asset

MODEL_NAME = "breast_cancer_classifier"
#: Polled every 15 s (one request each). Declared exactly as ``retrain_model.py`` declares it: Airflow
#: takes an asset's watchers from every DAG file that mentions the asset.
CHAMPION = model_asset(MODEL_NAME, alias="champion", watch="poll", poll_interval=15)


def load_batch():
    """The batch to score: 200 rows of scikit-learn's breast-cancer data (imported when the task runs)."""
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(as_frame=True).data.sample(n=200, random_state=7).reset_index(drop=True)


def positive_rate(predictions) -> dict[str, float]:
    return {"positive_rate": float(predictions["prediction"].mean())}


@dag(
    schedule=[CHAMPION],
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    tags=["mlflow", "example", "scoring"],
    doc_md=__doc__,
)
def score_batch():
    MLflowBatchPredictOperator(
        task_id="score",
        model_name=MODEL_NAME,
        alias="champion",
        input=load_batch,
        metrics=positive_rate,
        artifact_path="predictions",  # -> predictions/predictions.csv on the task's run
    )


score_batch()
