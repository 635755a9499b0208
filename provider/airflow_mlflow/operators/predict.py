"""``MLflowBatchPredictOperator``: score a batch with a registered model's alias (or version)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlflow.operators.base import MLflowBaseOperator, TrackedRunMixin
from airflow_mlflow.validation import DEFAULT_ALIAS

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlflow.runs import TaskRun

#: Formats of the predictions file (the artifact's, and ``output_path``'s unless its suffix says).
FORMATS = ("csv", "parquet")
#: The run's params: the model and the version that scored (one version per task instance).
MODEL_NAME_PARAM, MODEL_VERSION_PARAM = "model_name", "model_version"
ROWS_METRIC = "rows_scored"
#: Characters of the ``triggered_by`` tag (a burst of events makes a long list).
MAX_TRIGGERED_BY = 1000


def _invalid(message: str) -> Exception:
    from airflow_mlflow.exceptions import MLflowInputError

    return MLflowInputError(message)


class MLflowBatchPredictOperator(TrackedRunMixin, MLflowBaseOperator):
    """
    Score a batch with a registered model: ``models:/<name>@<alias>`` (or a version) through pyfunc.

    The alias is resolved once, when the task starts, and the version it names is what is loaded
    (``models:/<name>/<version>``), so a move of the alias during the task changes nothing; a retry
    scores the version its first try resolved. That version is recorded everywhere: the run's
    params ``model_name`` and ``model_version`` (tags ``airflow.predict.alias`` and
    ``airflow.predict.model_uri``), the returned JSON, and the extra of the event of each outlet
    asset (``model_name``, ``model_version``, ``model_uri``, ``mlflow_run_id``). The outlets are
    what the predictions are (a table, a file); the model's own asset is not one of them, so these
    events never look like a move of the alias.

    The predictions are the input's columns plus ``prediction_column`` (a model returning a table
    adds its columns), written as the run's artifact ``<artifact_path>/predictions.<format>``
    and/or to ``output_path``. The run gets metric ``rows_scored`` and what ``metrics`` computes.

    :param model_name: registered model (templated)
    :param alias: alias to resolve (default ``champion`` when no ``version`` is given) (templated)
    :param version: a version to score with instead of an alias (templated)
    :param input: the batch: a path to a ``.csv`` or ``.parquet`` file (templated), a callable
        returning the batch (a pandas DataFrame, or anything the model's ``predict`` takes), or a
        DataFrame
    :param output_path: also write the predictions to this local path; ``.parquet`` writes
        Parquet, any other suffix CSV (templated)
    :param artifact_path: artifact folder of the predictions file on the run; None: no artifact
        (templated)
    :param artifact_format: ``csv`` (default) or ``parquet``
    :param prediction_column: name of the predictions column (default ``prediction``)
    :param metrics: a callable taking the predictions DataFrame and returning metrics to log
        (name to number), e.g. ``lambda p: {"positive_rate": p["prediction"].mean()}``
    :param experiment_name: experiment of the task's run; default: the connection's
        ``experiment_name`` extra, else the DAG id (templated)
    :param nested: nest the task's run under one run per DAG run (default True)
    :param mlflow_conn_id: the ``mlflow`` connection (templated)
    :return: the run (``run_id``, ``experiment_id``, ``parent_run_id``, ``run_url``),
        ``model_name``, ``model_version``, ``alias``, ``model_uri``, ``artifact``, ``output_path``,
        and the metrics by name
    """

    template_fields: Sequence[str] = (
        "mlflow_conn_id",
        "model_name",
        "alias",
        "version",
        "output_path",
        "artifact_path",
        "experiment_name",
    )
    ui_color = "#d6ecfa"

    def __init__(
        self,
        *,
        model_name: str,
        input: str | os.PathLike | Callable[[], Any] | Any,
        alias: str | None = None,
        version: str | int | None = None,
        output_path: str | None = None,
        artifact_path: str | None = "predictions",
        artifact_format: str = "csv",
        prediction_column: str = "prediction",
        metrics: Callable[[Any], Mapping[str, float]] | None = None,
        experiment_name: str | None = None,
        nested: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if alias and version not in (None, ""):
            raise _invalid(f"give alias or version, not both (alias={alias!r}, version={version!r})")
        if artifact_format not in FORMATS:
            raise _invalid(f"artifact_format must be one of {FORMATS}, got {artifact_format!r}")
        if output_path is None and artifact_path is None:
            raise _invalid("output_path and artifact_path are both None: the predictions would go nowhere")
        if metrics is not None and not callable(metrics):
            raise _invalid(f"metrics must be a callable taking the predictions, got {metrics!r}")
        for outlet in self.outlets or ():
            if str(getattr(outlet, "uri", "")).startswith("mlflow-model://"):
                raise _invalid(
                    f"outlets: {outlet.uri!r} is a model asset; the predictions are not the model "
                    "(its events announce moves of the alias: give the asset of the predictions)"
                )
        self.model_name = model_name
        self.alias = alias if alias or version not in (None, "") else DEFAULT_ALIAS
        self.version = None if version in (None, "") else str(version)
        self.input = input
        self.output_path = output_path
        self.artifact_path = artifact_path
        self.artifact_format = artifact_format
        self.prediction_column = prediction_column
        self.metrics = metrics
        self.experiment_name = experiment_name
        self.nested = nested

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlflow.tags import PREDICT_ALIAS, PREDICT_MODEL_URI, PREDICT_TRIGGERED_BY

        if not isinstance(self.model_name, str) or not self.model_name:
            raise _invalid(f"model_name must be a non-empty string, got {self.model_name!r}")
        with self.tracked_run(context) as run:
            task_run = run.run
            version = self._resolve(task_run)
            model_uri = f"models:/{self.model_name}/{version}"
            tags = {PREDICT_MODEL_URI: model_uri, **({PREDICT_ALIAS: self.alias} if self.alias else {})}
            if moves := self._triggered_by(context):
                tags[PREDICT_TRIGGERED_BY] = moves[:MAX_TRIGGERED_BY]
            params = {MODEL_NAME_PARAM: self.model_name, MODEL_VERSION_PARAM: version}
            self.hook.log_batch(task_run.run_id, params=params, tags=tags, known_params=task_run.params)
            self.log.info(
                "Scoring with %s (%s)", model_uri, f"alias {self.alias!r}" if self.alias else "pinned"
            )

            batch = self._batch(context)
            predictions = self._frame(batch, self.hook.predict(model_uri, batch))
            metrics = {ROWS_METRIC: float(len(predictions)), **self._metrics(predictions)}
            artifact = self._write(predictions, task_run)
            done = run.success_tags()
            self.hook.log_batch(task_run.run_id, metrics=metrics, tags=done)
            run.success_logged = bool(done)

            extra = {
                "model_name": self.model_name,
                "model_version": version,
                "model_uri": model_uri,
                "mlflow_run_id": task_run.run_id,
            }
            for outlet in self.outlets or ():
                if getattr(outlet, "uri", None):  # assets, not aliases or other lineage objects
                    event = context["outlet_events"][outlet]
                    event.extra = {**(getattr(event, "extra", None) or {}), **extra}
            return {
                **task_run.to_json(),
                **metrics,
                "model_name": self.model_name,
                "model_version": version,
                "alias": self.alias,
                "model_uri": model_uri,
                "artifact": artifact,
                "output_path": self.output_path,
            }

    def _resolve(self, task_run: TaskRun) -> str:
        """The version to score with: the earlier try's, the given one, or the alias's now."""
        from airflow_mlflow.exceptions import MLflowResourceNotFoundError

        known = task_run.params or {}
        if known.get(MODEL_NAME_PARAM) == self.model_name and known.get(MODEL_VERSION_PARAM):
            self.log.info(
                "Version %s was resolved by an earlier try of this task", known[MODEL_VERSION_PARAM]
            )
            return known[MODEL_VERSION_PARAM]
        if self.version is not None:
            return self.hook.get_model_version(self.model_name, self.version).version
        found = self.hook.get_version_by_alias(self.model_name, self.alias)
        if found is None:
            raise MLflowResourceNotFoundError(
                f"model {self.model_name!r} has no alias {self.alias!r} (or no such model): "
                "nothing to score with"
            )
        return str(found.version)

    def _triggered_by(self, context: Context) -> str:
        """The model's changes among the asset events that started this DAG run, described."""
        from airflow_mlflow.registry_events import event_payload

        events = context.get("triggering_asset_events") or {}
        moves = []
        for per_asset in events.values():
            for event in per_asset:
                if not str(getattr(event.asset, "uri", "")).startswith("mlflow-model://"):
                    continue
                payload = event_payload(event.extra)
                if payload.get("name") in (None, self.model_name) and payload.get("version"):
                    moves.append(f"version {payload['version']} ({payload.get('via', 'promotion')})")
        return ", ".join(moves)

    def _batch(self, context: Context) -> Any:
        data = self.input
        if callable(data):
            return data()
        if isinstance(data, (str, os.PathLike)):
            path = Path(self.render_template(str(data), context))
            if not path.is_file():
                raise _invalid(f"input: {str(path)!r} is not a file")
            import pandas as pd

            suffix = path.suffix.lower()
            if suffix in (".parquet", ".pq"):
                return pd.read_parquet(path)
            if suffix == ".csv":
                return pd.read_csv(path)
            raise _invalid(f"input: {str(path)!r} is neither .csv nor .parquet")
        return data

    def _frame(self, batch: Any, predicted: Any) -> Any:
        """The input's columns (when a table) and the predictions', one row per input row."""
        import numpy as np
        import pandas as pd

        if isinstance(predicted, pd.DataFrame):
            out = predicted.reset_index(drop=True)
        else:
            values = np.asarray(predicted)
            if values.ndim == 2:
                columns = [f"{self.prediction_column}_{i}" for i in range(values.shape[1])]
                out = pd.DataFrame(values, columns=columns)
            else:
                out = pd.DataFrame({self.prediction_column: values})
        if isinstance(batch, pd.DataFrame):
            if len(batch) != len(out):
                raise _invalid(
                    f"model {self.model_name!r} returned {len(out)} predictions for {len(batch)} rows"
                )
            out = pd.concat([batch.reset_index(drop=True), out], axis=1)
        return out

    def _metrics(self, predictions: Any) -> dict[str, float]:
        if self.metrics is None:
            return {}
        values = self.metrics(predictions)
        if not isinstance(values, Mapping):
            raise _invalid(f"metrics returned {type(values).__name__}, not a mapping of name to number")
        return {str(k): float(v) for k, v in values.items()}

    def _write(self, predictions: Any, task_run: TaskRun) -> str | None:
        """Write ``output_path`` and upload the artifact; the artifact's path on the run."""
        if self.output_path:
            path = Path(self.output_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            _save(predictions, path, "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv")
        if self.artifact_path is None:
            return None
        import tempfile

        name = f"predictions.{self.artifact_format}"
        with tempfile.TemporaryDirectory() as folder:
            local = Path(folder) / name
            _save(predictions, local, self.artifact_format)
            self.hook.log_artifacts(
                task_run.run_id, local, self.artifact_path or None, artifact_uri=task_run.artifact_uri
            )
        return f"{self.artifact_path.strip('/')}/{name}" if self.artifact_path else name


def _save(frame: Any, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
