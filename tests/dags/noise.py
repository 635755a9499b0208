"""A task whose libraries are noisy when they run inside Airflow (what its log must not show)."""

from __future__ import annotations

import warnings

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def sklearn_log_model():
    @task.mlflow
    def train() -> int:
        """Logs a scikit-learn model; returns how many FutureWarnings would reach the task log."""
        import mlflow
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        x = np.array([[0.0], [1.0], [2.0], [3.0]])
        model = LogisticRegression().fit(x, [0, 0, 1, 1])
        # Records what the warning filters in force let through: what the task log would show.
        with warnings.catch_warnings(record=True) as caught:
            mlflow.sklearn.log_model(model, name="model")
        return sum(issubclass(w.category, FutureWarning) for w in caught)

    train()


sklearn_log_model = sklearn_log_model()
