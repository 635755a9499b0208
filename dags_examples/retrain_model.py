"""
Scheduled retraining: train on the day's data window, register, gate against the champion, promote.

Each daily run trains a scikit-learn classifier on the window of data that its data interval
selects (scikit-learn's bundled breast-cancer dataset stands in for a feature table; each day
sees a different slice, and some days a drifting labelling process), logs params, metrics, a
confusion-matrix plot, a metrics table and the model (with signature and input example),
registers it as ``Staging``/``challenger``, then evaluates the candidate and the champion on the
same holdout (rows no day's window ever trains on) with ``mlflow.models.evaluate``. The promotion
gate compares those two evaluations, like for like: the candidate must reach ``accuracy_score >=
0.85`` on the holdout and beat the champion there by at least 0.005. A day's own test split says
little across days (each window has its own rows and label noise): a candidate can look better on
its own day and be worse on the holdout, and the other way round. A rejected candidate is a normal
outcome (``soft_fail``): the gate and the promotion are skipped and the run succeeds.
A candidate the gate passed must then serve: ``serve`` starts it with MLflow's scoring server and
posts its input example to ``/invocations`` (HTTP 200, one prediction per row, p95 under 500 ms),
or the run fails before anything is promoted.

With the ``require_approval`` param, a person signs off before the promotion: the ``approve`` step
waits (no worker slot) in Airflow's "Required actions" with the candidate against the champion,
metric by metric; Reject (or no answer within a day) skips the promotion. Off by default, so
scheduled runs and ``make demo`` stay unattended.

``score_batch`` (in ``score_batch.py``) runs whenever the champion moves, here or by hand.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from airflow_mlflow import (
    MLflowApprovalOperator,
    MLflowEvaluateOperator,
    MLflowMetricThresholdSensor,
    MLflowPromoteModelOperator,
    MLflowRegisterModelOperator,
    MLflowServingCheckOperator,
    model_asset,
)

MODEL_NAME = "breast_cancer_classifier"
EPOCH = pendulum.datetime(2026, 11, 1, tz="UTC")
#: Share of labels flipped on a given day (cycling): some days drift, some are clean.
LABEL_NOISE = (0.03, 0.25, 0.0, 0.08)
#: Rows held out from every day's window: the shared data candidate and champion are evaluated on.
HOLDOUT_ROWS = 120
VERSION = "{{ ti.xcom_pull(task_ids='register')['version'] }}"
#: The champion, watched for moves made outside Airflow: declared exactly as ``score_batch.py``
#: declares it. Airflow takes an asset's watchers from every DAG file that mentions the asset; a
#: mention without ``watch=`` (promote's default outlet) would detach the watcher at each parse.
CHAMPION = model_asset(MODEL_NAME, alias="champion", watch="poll", poll_interval=15)


def _shuffled():
    """The bundled dataset and a fixed shuffle of its rows: the holdout first, then the days' pool."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    return data.data, data.target.to_numpy().copy(), np.random.default_rng(0).permutation(len(data.data))


def day_window(day: pendulum.DateTime, rows: int = 320):
    """The rows and labels a given day sees: a shifting slice of the pool, with that day's label noise."""
    import numpy as np

    features, labels, order = _shuffled()
    index = (day - EPOCH).days
    picked = np.take(order[HOLDOUT_ROWS:], range(index * 60, index * 60 + rows), mode="wrap")
    rng = np.random.default_rng(index)
    window = labels[picked]
    flip = rng.random(len(window)) < LABEL_NOISE[index % len(LABEL_NOISE)]
    window[flip] = 1 - window[flip]
    return features.iloc[picked].reset_index(drop=True), window, LABEL_NOISE[index % len(LABEL_NOISE)]


def holdout():
    """The shared evaluation data: the held-out rows, clean labels in column ``target``."""
    features, labels, order = _shuffled()
    frame = features.iloc[order[:HOLDOUT_ROWS]].reset_index(drop=True)
    return frame.assign(target=labels[order[:HOLDOUT_ROWS]])


@dag(
    schedule="@daily",
    start_date=EPOCH,
    catchup=False,
    max_active_runs=1,
    tags=["mlflow", "example", "retraining"],
    doc_md=__doc__,
    params={
        "C": Param(1.0, type="number", exclusiveMinimum=0, description="inverse regularisation strength"),
        "max_iter": Param(1000, type="integer", minimum=10),
        "require_approval": Param(False, type="boolean", description="a person signs off before promotion"),
    },
)
def retrain_model():
    @task.mlflow
    def train() -> str:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import mlflow
        import pandas as pd
        from mlflow.models import infer_signature
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import ConfusionMatrixDisplay, accuracy_score, f1_score, roc_auc_score
        from sklearn.model_selection import train_test_split
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        context = get_current_context()
        params = context["params"]
        day = context["data_interval_start"]
        x, y, noise = day_window(day)
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
        classifier = LogisticRegression(C=params["C"], max_iter=params["max_iter"])
        model = make_pipeline(StandardScaler(), classifier)
        model.fit(x_train, y_train)
        predicted = model.predict(x_test)
        metrics = {
            "accuracy": accuracy_score(y_test, predicted),
            "f1": f1_score(y_test, predicted),
            "roc_auc": roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]),
        }

        mlflow.log_params({"C": params["C"], "max_iter": params["max_iter"], "model": "logistic_regression"})
        mlflow.log_params({"window_start": day.isoformat(), "rows": len(x), "label_noise": noise})
        mlflow.log_metrics(metrics)
        figure, axes = plt.subplots(figsize=(4, 4))
        ConfusionMatrixDisplay.from_predictions(y_test, predicted, ax=axes, colorbar=False)
        axes.set_title(f"holdout, window {day:%Y-%m-%d}")
        mlflow.log_figure(figure, "evaluation/confusion_matrix.png")
        plt.close(figure)
        table = pd.DataFrame([{"metric": k, "value": round(v, 4)} for k, v in metrics.items()])
        mlflow.log_table(table, "evaluation/metrics.json")
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x_test, predicted),
            input_example=x_test.head(3),
        )
        return info.model_uri

    register = MLflowRegisterModelOperator(
        task_id="register",
        model_uri=train(),
        name=MODEL_NAME,
        stage="Staging",
        alias="challenger",
        description="Retrained on the window starting {{ data_interval_start | ds }}",
    )
    evaluate = MLflowEvaluateOperator(
        task_id="evaluate",
        model_name=MODEL_NAME,
        version=VERSION,
        data=holdout,
        dataset_name="holdout",
        targets="target",
        baseline="champion",
    )
    gate = MLflowMetricThresholdSensor(
        task_id="gate",
        model_name=MODEL_NAME,
        version=VERSION,
        thresholds={"accuracy_score": {"threshold": 0.85, "min_absolute_change": 0.005}},
        baseline="champion",
        source="evaluation",
        soft_fail=True,
        deferrable=True,
        poke_interval=5,
        timeout=600,
    )
    serve = MLflowServingCheckOperator(
        task_id="serve",
        model_name=MODEL_NAME,
        version=VERSION,
        max_p95_ms=500,
    )
    approve = MLflowApprovalOperator(
        task_id="approve",
        model_name=MODEL_NAME,
        version=VERSION,
        required="{{ params.require_approval }}",
        response_timeout=timedelta(days=1),
    )
    promote = MLflowPromoteModelOperator(
        task_id="promote",
        model_name=MODEL_NAME,
        version=VERSION,
        stage="Production",
        alias="champion",
        outlets=[CHAMPION],
    )
    register >> evaluate >> gate >> serve >> approve >> promote


retrain_model()
