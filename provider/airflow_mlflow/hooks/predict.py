"""Batch prediction verbs of ``MLflowHook``: load a model version through pyfunc and predict."""

from __future__ import annotations

from typing import Any

from airflow_mlflow.exceptions import MLflowInputError
from airflow_mlflow.hooks.base import MLflowHookBase


class PredictVerbs(MLflowHookBase):
    """Load a model through pyfunc and predict a batch (verbs of ``MLflowHook``)."""

    def predict(self, model_uri: str, data: Any) -> Any:
        """
        ``mlflow.pyfunc.load_model(model_uri).predict(data)``: the model is loaded (its artifacts
        downloaded) with this connection's URIs and credentials scoped to the call. MLflow's own
        errors (a missing version, an input its signature refuses) come back translated; the
        model's own errors as they are.
        """
        import mlflow.pyfunc

        if not model_uri or not isinstance(model_uri, str):
            raise MLflowInputError(f"model_uri must be a non-empty string, got {model_uri!r}")
        from airflow_mlflow.dependency_warnings import quiet_module_scans

        # Loading a skops model (scikit-learn's default format) scans every loaded module: 1,160
        # FutureWarnings in the task log otherwise.
        with self._call(f"model {model_uri!r}"), self.user_code_env(), quiet_module_scans():
            model = mlflow.pyfunc.load_model(model_uri)
        with self._call(f"predicting with model {model_uri!r}"):
            return model.predict(data)
