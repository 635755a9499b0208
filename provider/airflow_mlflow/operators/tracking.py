"""Operators that write to MLflow runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlflow.operators.base import (
    UNTRACKED,
    MLflowBaseOperator,
    TrackedRunMixin,
    check_tracking_failure,
)
from airflow_mlflow.validation import (
    artifact_items,
    check_literals,
    is_templated,
    refuse_provider_tags,
    serializable_literals,
    validate_artifact_folder,
    validate_artifact_tree,
    validate_metrics,
    validate_params,
    validate_step,
    validate_tags,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlflow.operators.base import TrackedRun


class _MLflowParamsMeta(type(MLflowBaseOperator)):
    """
    Hands ``params=`` to the operator as MLflow params.

    ``BaseOperator`` claims ``params`` for Airflow Params and converts them before ``__init__``
    runs, which would reject XCom values and mix in the DAG's Params.
    """

    def __call__(cls, *args: Any, **kwargs: Any):
        if "params" in kwargs:
            kwargs["mlflow_params"] = kwargs.pop("params")
        return super().__call__(*args, **kwargs)


class MLflowLogOperator(TrackedRunMixin, MLflowBaseOperator, metaclass=_MLflowParamsMeta):
    """
    Log params, metrics, tags and artifacts to MLflow.

    By default they go to this task instance's own run, nested under its DAG run's run; with
    ``run_id`` they go to that existing run instead (its status is left alone). Everything is
    validated before the first write, and written in as few batched requests as MLflow allows.

    :param params: param name to value (templated; values may come from XCom). Stored as
        ``mlflow_params``, apart from Airflow's own DAG Params.
    :param metrics: metric name to number (templated)
    :param tags: tag name to value (templated)
    :param artifacts: local files or folders to upload: a list of paths, or a mapping of path to
        the artifact folder to put it in (templated)
    :param run_id: log to this existing run instead of the task's own (templated)
    :param experiment_name: experiment of the task's run; default: the connection's
        ``experiment_name`` extra, else the DAG id (templated)
    :param nested: nest the task's run under one run per DAG run (default True)
    :param tracking_failure: ``"fail"`` (default): an MLflow outage fails the task; ``"warn"``: the
        task log warns once and the task succeeds without logging (returning
        ``{"run_id": None, "tracking": "unavailable"}``); the attempt is recorded on its run when
        the DAG run ends and MLflow answers again
    :param step: step recorded with the metrics
    :param mlflow_conn_id: the ``mlflow`` connection (templated)
    """

    template_fields: Sequence[str] = (
        "mlflow_conn_id",
        "mlflow_params",
        "metrics",
        "tags",
        "artifacts",
        "run_id",
        "experiment_name",
    )
    template_fields_renderers = {"mlflow_params": "json", "metrics": "json", "tags": "json"}

    def __init__(
        self,
        *,
        mlflow_params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        artifacts: Sequence[str] | Mapping[str, str | None] | None = None,
        run_id: str | None = None,
        experiment_name: str | None = None,
        nested: bool = True,
        tracking_failure: str = "fail",
        step: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # What is known before rendering is checked now, when the DAG is parsed (a NaN literal
        # would otherwise break DAG serialization first); templated values at run time.
        check_literals(params=mlflow_params, metrics=metrics, tags=tags)
        refuse_provider_tags("tags", tags)
        if not is_templated(artifacts):
            artifact_items(artifacts)
        step = validate_step(step)
        self.mlflow_params = serializable_literals(mlflow_params or {})
        self.metrics = metrics or {}
        self.tags = serializable_literals(tags or {})
        self.artifacts = artifacts or []
        self.run_id = run_id
        self.experiment_name = experiment_name
        self.nested = nested
        self.tracking_failure = check_tracking_failure(tracking_failure)
        self.step = step

    def _artifact_targets(self) -> list[tuple[Path, str | None]]:
        """
        What to upload where, every destination checked before the first write: a folder keeps
        its own name (``/tmp/plots`` -> ``plots/...``) and a file lands at the root, unless a
        mapping names the artifact folder to put it in.
        """
        targets = []
        for local, destination in artifact_items(self.artifacts):
            path = Path(str(local))
            if not path.exists():
                from airflow_mlflow.exceptions import MLflowInputError

                raise MLflowInputError(f"artifacts: {str(path)!r} does not exist")
            folder = validate_artifact_folder(destination)
            if folder is None and path.is_dir():
                folder = validate_artifact_folder(path.resolve().name)
            validate_artifact_tree(path, folder)
            targets.append((path, folder))
        return targets

    def execute(self, context: Context) -> dict[str, Any]:
        params = validate_params(self.mlflow_params)
        metrics = validate_metrics(self.metrics)
        tags = validate_tags(self.tags)
        refuse_provider_tags("tags", tags)
        targets = self._artifact_targets()
        with self.tracked_run(context, run_id=self.run_id) as run:
            if run.tracked:
                return self._log(run, params, metrics, tags, targets)
        return dict(UNTRACKED)  # MLflow unreachable, tracking_failure="warn"

    def _log(
        self,
        run: TrackedRun,
        params: dict[str, str],
        metrics: dict[str, float],
        tags: dict[str, str],
        targets: list[tuple[Path, str | None]],
    ) -> dict[str, Any]:
        task_run = run.run
        # The attempt's "success" rides in the same batch; a failing upload below overwrites it.
        done = run.success_tags()
        requests = self.hook.log_batch(
            task_run.run_id,
            params=params,
            metrics=metrics,
            tags={**tags, **done},
            step=self.step,
            known_params=task_run.params,
        )
        run.success_logged = bool(done)
        for path, folder in targets:
            self.hook.log_artifacts(task_run.run_id, path, folder, artifact_uri=task_run.artifact_uri)
        return {
            **task_run.to_json(),
            "logged": {
                "params": len(params),
                "metrics": len(metrics),
                "tags": len(tags),
                "artifacts": len(targets),
            },
            "batch_requests": requests,
        }
