"""Model verbs of ``MLflowHook``: what a logged model expects and returns, and how to serve it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from airflow_mlflow.exceptions import MLflowInputError
from airflow_mlflow.hooks.base import MLflowHookBase, _credential_env, _prepare_embedded_store


@dataclass(frozen=True)
class ModelInterface:
    """
    A logged model's stored input example and signature, as plain JSON values.

    ``columns``/``data``: the input example when it is a table (MLflow's ``split`` orient);
    ``serving_input``: MLflow's own request body for the example (``serving_input_example.json``),
    for examples that are not tables; ``inputs``/``outputs``: the signature's schemas as
    ``Schema.to_dict()`` writes them (None without a signature).
    """

    model_uri: str
    columns: list[str] | None = None
    data: list[list[Any]] | None = None
    serving_input: dict[str, Any] | None = None
    inputs: list[dict[str, Any]] | None = field(default=None)
    outputs: list[dict[str, Any]] | None = field(default=None)


class ModelVerbs(MLflowHookBase):
    """What a logged model expects and returns, and how to serve it (verbs of ``MLflowHook``)."""

    def model_interface(self, model_uri: str) -> ModelInterface:
        """
        The input example and signature stored with the model at ``model_uri`` (``models:/…``,
        ``runs:/…``), read through MLflow's ``Model`` API with this connection's URIs and
        credentials scoped to the call.
        """
        from mlflow.models import Model
        from mlflow.models.utils import load_serving_example

        if not model_uri or not isinstance(model_uri, str):
            raise MLflowInputError(f"model_uri must be a non-empty string, got {model_uri!r}")
        with self._call(f"model {model_uri!r}"), self.user_code_env():
            model = Model.load(model_uri)
            signature = model.signature
            columns = data = serving = None
            info = model.saved_input_example_info or {}
            if info.get("type") == "dataframe":
                example = model.load_input_example(model_uri)
                # pandas' own JSON writer turns numpy scalars and NaN into plain JSON values.
                split = json.loads(example.to_json(orient="split", index=False, date_format="iso"))
                columns, data = [str(c) for c in split["columns"]], split["data"]
            elif info.get("serving_input_path"):
                serving = json.loads(load_serving_example(model_uri))
        return ModelInterface(
            model_uri=model_uri,
            columns=columns,
            data=data,
            serving_input=serving,
            inputs=signature.inputs.to_dict() if signature is not None and signature.inputs else None,
            outputs=signature.outputs.to_dict() if signature is not None and signature.outputs else None,
        )

    def serving_env(self) -> dict[str, str]:
        """
        What a child process serving a model from this connection needs in its environment (and
        nowhere else): the connection's URIs and credentials, without any run.
        """
        if self.config.embedded:
            _prepare_embedded_store(self.config)
        env = {**_credential_env(self.config), **self._fluent_env()}
        return {key: value for key, value in env.items() if value is not None}
