"""
Batch scoring with the current champion, run each time the champion moves.

Scheduled on the promotion asset of ``retrain_model``: when ``MLflowPromoteModelOperator`` (or a
rollback) moves the ``champion`` alias, this DAG loads ``models:/<name>@champion`` through pyfunc
(pinned to the version the alias names when the run starts), scores a batch, logs prediction
statistics, and writes the predictions as an artifact.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, task

from airflow_mlflow import model_asset

MODEL_NAME = "breast_cancer_classifier"


@dag(
    schedule=[model_asset(MODEL_NAME, alias="champion")],
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    tags=["mlflow", "example", "scoring"],
    doc_md=__doc__,
)
def score_batch():
    @task.mlflow
    def score() -> dict:
        import tempfile
        from pathlib import Path

        import mlflow
        from sklearn.datasets import load_breast_cancer

        events = get_current_context()["triggering_asset_events"]
        promoted = [dict(e.extra) for per_asset in events.values() for e in per_asset]
        version = str(mlflow.MlflowClient().get_model_version_by_alias(MODEL_NAME, "champion").version)

        # Load the version just read, so what is logged is what scored even if the alias moves now.
        model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{version}")
        batch = load_breast_cancer(as_frame=True).data.sample(n=200, random_state=7).reset_index(drop=True)
        predictions = batch.assign(prediction=model.predict(batch))
        stats = {
            "rows_scored": float(len(predictions)),
            "positive_rate": float(predictions["prediction"].mean()),
        }
        mlflow.log_params({"model_name": MODEL_NAME, "model_version": version})
        if promoted:  # absent when run by hand rather than by a promotion
            mlflow.set_tag("triggered_by", ", ".join(f"version {e.get('version')}" for e in promoted))
        mlflow.log_metrics(stats)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "predictions.csv"
            predictions.to_csv(path, index=False)
            mlflow.log_artifact(str(path), "predictions")
        return {"model_version": version, **stats}

    score()


score_batch()
