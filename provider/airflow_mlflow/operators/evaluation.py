"""Operator that evaluates a candidate model version and the champion on the same data."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlflow.operators.base import MLflowBaseOperator, TrackedRunMixin

if TYPE_CHECKING:
    from airflow.sdk import Context


class MLflowEvaluateOperator(TrackedRunMixin, MLflowBaseOperator):
    """
    Evaluate a candidate model version and the current champion on the same data, with
    ``mlflow.models.evaluate``, so that the promotion gate compares like with like.

    Both evaluations run in this task's MLflow run (nested under the DAG run's run): their metrics
    are logged as ``candidate_<metric>`` and ``<baseline>_<metric>`` (``champion_accuracy_score``),
    their plots and tables as artifacts with the same prefixes, and the dataset as the run's input.
    Each result is then recorded on its version as one JSON tag, ``airflow.eval.result`` (metrics,
    dataset name and digest, run, DAG run, time); nothing is recorded on either version unless both
    evaluations succeeded. ``MLflowMetricThresholdSensor(source="evaluation")`` gates on those
    records, and only when both were evaluated on data with the same digest. Without a baseline
    version (the first model), or when the candidate is the baseline, only the candidate is
    evaluated.

    :param model_name: registered model (templated)
    :param version: candidate version, e.g. the registering task's XCom (templated)
    :param data: the evaluation data, with the label column: a path or URI to a ``.csv`` or
        ``.parquet`` file (``runs:/``, ``models:/`` and ``mlflow-artifacts:/`` URIs are downloaded
        first) (templated); or a pandas DataFrame, or a callable returning one, called with no
        arguments when the task runs (neither is a template field: Airflow would call a callable
        with its own arguments, and store the frame's text among the rendered fields)
    :param targets: the label column (templated)
    :param model_type: ``classifier`` (default) or ``regressor`` (templated)
    :param baseline: alias (default ``champion``) or stage (``Production``) of the version to
        evaluate beside the candidate, or None for the candidate only (templated)
    :param evaluator_config: MLflow's default evaluator config (``pos_label``,
        ``log_model_explainability``: off unless set, as it needs ``shap``, ...), except
        ``metric_prefix``, which the operator sets (templated)
    :param extra_metrics: more metrics, from ``mlflow.models.make_metric`` or ``mlflow.metrics``
    :param dataset_name: the dataset's name in MLflow (default: the file's stem, or
        ``evaluation_data``) (templated)
    :param experiment_name: experiment of the task's run; default: the connection's
        ``experiment_name`` extra, else the DAG id (templated)
    :param nested: nest the task's run under one run per DAG run (default True)
    :param mlflow_conn_id: the ``mlflow`` connection (templated)
    :return: ``{"run_id", "dataset": {"name", "digest"}, "candidate": {"version", "metrics"},
        "baseline": {"version", "role", "metrics"} or None}`` (the task's run also as
        ``experiment_id``, ``parent_run_id`` and ``run_url``)
    """

    template_fields: Sequence[str] = (
        "mlflow_conn_id",
        "model_name",
        "version",
        "data",
        "targets",
        "model_type",
        "baseline",
        "evaluator_config",
        "dataset_name",
        "experiment_name",
    )
    template_fields_renderers = {"evaluator_config": "json"}
    ui_color = "#e8dcf5"

    def __init__(
        self,
        *,
        model_name: str,
        version: str | int,
        data: Any,
        targets: str,
        model_type: str = "classifier",
        baseline: str | None = "champion",
        evaluator_config: Mapping[str, Any] | None = None,
        extra_metrics: Sequence[Any] | None = None,
        dataset_name: str | None = None,
        experiment_name: str | None = None,
        nested: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from airflow_mlflow.validation import is_templated

        if not any(map(is_templated, (model_type, targets, evaluator_config))):
            from airflow_mlflow.evaluation import check_inputs

            check_inputs(model_type, targets, evaluator_config)  # when the DAG is parsed
        self.model_name = model_name
        self.version = str(version) if isinstance(version, int) else version  # an XComArg stays one
        # A DataFrame or a callable is held apart from the template field ``data`` (see the docstring).
        kept_apart = not isinstance(data, (str, os.PathLike)) and not is_templated(data)
        self.data = None if kept_apart else data
        self._data_object = data if kept_apart else None
        self.targets = targets
        self.model_type = model_type
        self.baseline = baseline
        self.evaluator_config = evaluator_config
        self.extra_metrics = extra_metrics
        self.dataset_name = dataset_name
        self.experiment_name = experiment_name
        self.nested = nested

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlflow.compat_fluent import activate_run
        from airflow_mlflow.evaluation import check_inputs, evaluate_versions

        check_inputs(self.model_type, self.targets, self.evaluator_config)
        with self.tracked_run(context) as run:
            task_run = run.run
            # MLflow's evaluate logs into the fluent API's active run: the task's own, for the block
            # (leaving it ends the run FINISHED, or FAILED on an error; closing then records the attempt).
            with self.hook.user_code_env(), activate_run(task_run.record):
                summary = evaluate_versions(
                    self.hook,
                    model_name=self.model_name,
                    version=str(self.version),
                    data=self._data_object if self.data is None else self.data,
                    targets=self.targets,
                    model_type=self.model_type,
                    baseline=self.baseline or None,
                    evaluator_config=self.evaluator_config,
                    extra_metrics=self.extra_metrics,
                    dataset_name=self.dataset_name,
                    dag_run=f"{run.ctx.dag_id}/{run.ctx.run_id}",
                    log=self.log.info,
                )
            run.ended_as = "FINISHED"
            return {**task_run.to_json(), **summary}
