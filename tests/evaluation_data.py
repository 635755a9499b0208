"""A champion and a drifted candidate on scikit-learn's breast-cancer data, for evaluation tests.

The champion trained on a noisy day (10% of its labels flipped at random): its own day's accuracy
is modest, but it learned the real signal. The candidate trained on a day whose labelling process
drifted (a labelling bug swapped benign and malignant): on its own day it scores higher than the
champion did, on the shared, clean holdout far lower.
"""

from __future__ import annotations

from typing import Any

MODEL = "cancer"


def frames() -> tuple[Any, Any]:
    """(training pool, shared holdout): features and a ``target`` column, split once, stratified."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    frame = load_breast_cancer(as_frame=True).frame
    pool, holdout = train_test_split(frame, test_size=0.3, random_state=0, stratify=frame["target"])
    return pool.reset_index(drop=True), holdout.reset_index(drop=True)


def _day(pool: Any, kind: str) -> Any:
    import numpy as np

    day = pool.copy()
    if kind == "noisy":
        flip = np.random.default_rng(1).random(len(day)) < 0.10
    else:  # drifted: every label swapped
        flip = np.ones(len(day), dtype=bool)
    day.loc[flip, "target"] = 1 - day.loc[flip, "target"]
    return day


def log_day_models(
    tracking_uri: str, artifact_root: str | None = None, experiment: str = "training", name: str = MODEL
) -> dict[str, float]:
    """
    Train, log and register version 1 (champion, noisy day) and version 2 (candidate, drifted day)
    of model ``name``, each run with its own day's ``accuracy``; alias ``champion`` on version 1.
    Returns each version's own-day accuracy.
    """
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pool, _ = frames()
    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = (
        exp.experiment_id if exp else client.create_experiment(experiment, artifact_location=artifact_root)
    )
    own = {}
    mlflow.set_tracking_uri(tracking_uri)
    try:
        for version, kind in (("1", "noisy"), ("2", "drifted")):
            day = _day(pool, kind)
            x, y = day.drop(columns="target"), day["target"]
            x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0)
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x_train, y_train)
            own[version] = accuracy_score(y_test, model.predict(x_test))
            with mlflow.start_run(experiment_id=exp_id, run_name=f"{kind} day"):
                mlflow.log_metric("accuracy", own[version])
                mlflow.sklearn.log_model(
                    model,
                    name="model",
                    signature=infer_signature(x_test, model.predict(x_test)),
                    registered_model_name=name,
                )
    finally:
        mlflow.set_tracking_uri(None)
    client.set_registered_model_alias(name, "champion", "1")
    return own
