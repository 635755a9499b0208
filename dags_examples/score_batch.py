"""
Batch scoring with the current champion, run each time the champion moves.

Scheduled on the ``champion`` alias of the model: when ``retrain_model``'s promotion (or a
rollback) moves it, and when anyone moves it outside Airflow (MLflow's UI, a script, a CI job:
the triggerer polls the registry, ``watch="poll"``), this DAG loads ``models:/<name>@champion`` through pyfunc
(pinned to the version the alias names when the run starts), scores a batch, logs prediction
statistics, and writes the predictions as an artifact.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, task

from airflow_mlflow import event_payload, model_asset

MODEL_NAME = "breast_cancer_classifier"
#: Polled every 15 s (one request each). Declared exactly as ``retrain_model.py`` declares it: Airflow
#: takes an asset's watchers from every DAG file that mentions the asset.
CHAMPION = model_asset(MODEL_NAME, alias="champion", watch="poll", poll_interval=15)


@dag(
    schedule=[CHAMPION],
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
        moves = [event_payload(e.extra) for per_asset in events.values() for e in per_asset]
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
        if moves:  # absent when run by hand rather than by a move of the champion
            how = ", ".join(f"version {m.get('version')} ({m.get('via', 'promotion')})" for m in moves)
            mlflow.set_tag("triggered_by", how)
        mlflow.log_metrics(stats)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "predictions.csv"
            predictions.to_csv(path, index=False)
            mlflow.log_artifact(str(path), "predictions")
        return {"model_version": version, **stats}

    score()


score_batch()
