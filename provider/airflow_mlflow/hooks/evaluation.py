"""Evaluation verbs of ``MLflowHook``: ``mlflow.models.evaluate`` on a registered model version."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlflow.exceptions import MLflowInputError
from airflow_mlflow.hooks.base import MLflowHookBase

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.data.pandas_dataset import PandasDataset

#: URI schemes MLflow resolves to files (downloaded before reading); others go to pandas as given.
MLFLOW_URI_SCHEMES = ("runs:", "models:", "mlflow-artifacts:")


@dataclass(frozen=True)
class EvaluationOutput:
    """What one ``mlflow.models.evaluate`` call produced: finite metrics, and artifact names."""

    metrics: Mapping[str, float] = field(default_factory=dict)
    artifacts: tuple[str, ...] = ()
    #: Metrics MLflow returned that are not finite numbers (left out of ``metrics``).
    dropped: tuple[str, ...] = ()


class EvaluationVerbs(MLflowHookBase):
    """Evaluate model versions on a dataset, in the active run (verbs of ``MLflowHook``)."""

    def active_run_id(self) -> str | None:
        """The fluent API's active run in this thread (``@task.mlflow``'s run), or None."""
        import mlflow

        run = mlflow.active_run()
        return run.info.run_id if run else None

    def download_file(self, uri: str) -> str:
        """A local copy of the file at an MLflow URI (``runs:/…``, ``models:/…``, ``mlflow-artifacts:/…``)."""
        import mlflow

        with self._call(f"evaluation data {uri!r}"), self.user_code_env():
            return mlflow.artifacts.download_artifacts(artifact_uri=uri)

    def evaluation_dataset(
        self, frame: pd.DataFrame, *, name: str, targets: str, source: str | None = None
    ) -> PandasDataset:
        """
        ``frame`` as MLflow's dataset (its ``digest`` identifies the data: equal digests, same rows),
        with ``source`` (a path or URI) recorded where it came from, when it came from one.
        """
        import mlflow

        with self._call(f"evaluation dataset {name!r}"):
            if source is not None:
                try:
                    return mlflow.data.from_pandas(frame, source=source, targets=targets, name=name)
                except Exception:  # a source MLflow cannot classify: the data still counts, not its origin
                    pass
            return mlflow.data.from_pandas(frame, targets=targets, name=name)

    def evaluate_model(
        self,
        model_uri: str,
        dataset: PandasDataset,
        *,
        model_type: str,
        metric_prefix: str,
        evaluator_config: Mapping[str, Any] | None = None,
        extra_metrics: Sequence[Any] | None = None,
    ) -> EvaluationOutput:
        """
        Evaluate ``model_uri`` on ``dataset`` with MLflow's default evaluator, logging its metrics and
        artifacts (plots, tables) into the active run, each named with ``metric_prefix``: several
        models evaluated in one run stay apart. Returns the metrics without the prefix.
        """
        import mlflow

        if mlflow.active_run() is None:
            raise MLflowInputError(
                f"evaluating {model_uri!r} needs an active MLflow run (call it inside @task.mlflow)"
            )
        config = {**dict(evaluator_config or {}), "metric_prefix": metric_prefix}
        from airflow_mlflow.dependency_warnings import quiet_label_type_guess, quiet_module_scans

        with (
            self._call(f"evaluating {model_uri!r}"),
            self.user_code_env(),
            quiet_module_scans(),  # loading a skops model: 1,160 FutureWarnings otherwise
            quiet_label_type_guess(),
        ):
            result = mlflow.models.evaluate(
                model_uri,
                dataset,
                model_type=model_type,
                evaluator_config=config,
                extra_metrics=list(extra_metrics or []) or None,
            )
        metrics, dropped = {}, []
        for key, value in result.metrics.items():
            name = key[len(metric_prefix) :] if key.startswith(metric_prefix) else key
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if math.isfinite(number):
                metrics[name] = number
            else:
                dropped.append(name)
        artifacts = tuple(
            sorted(str(a.uri).rstrip("/").rsplit("/", 1)[-1] for a in result.artifacts.values())
        )
        return EvaluationOutput(metrics, artifacts, tuple(dropped))
