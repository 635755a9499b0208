"""The promotion gate as a sensor: metric thresholds on a candidate model version."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, AirflowSkipException

from airflow_mlflow.links.mlflow import MLflowModelVersionLink, push_version_link
from airflow_mlflow.operators.base import DEFAULT_CONN_ID, make_hook

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlflow.gate import Gate, GateSpec, Verdict
    from airflow_mlflow.hooks.mlflow import MLflowHook


class MLflowMetricThresholdSensor(BaseSensorOperator):
    """
    Gate a candidate model version on metric thresholds and on the current champion.

    The candidate is ``version``, else the version behind ``alias``, else behind ``stage``
    (default ``Staging``). Its metrics are the latest values of its source run, completed by its
    MLflow 3 logged model's metrics. ``thresholds`` maps each metric to MLflow ``MetricThreshold``
    fields: ``threshold``, ``greater_is_better`` (default True), ``min_absolute_change``,
    ``min_relative_change``, with MLflow's semantics; changes are measured against ``baseline``.

    While a metric is missing the sensor waits (pokes, reschedules or defers). When every threshold
    holds it succeeds; on a definitive miss it fails at once, listing each metric's candidate
    value, requirement, baseline value and verdict (``soft_fail=True`` skips instead, so a
    downstream promotion is skipped and the DAG run still succeeds). A timeout never passes. The
    verdict is written to the candidate version as ``airflow.gate.*`` tags.

    :param model_name: registered model (templated)
    :param thresholds: metric name to threshold fields (templated)
    :param version: candidate version (templated)
    :param alias: candidate alias, e.g. ``challenger`` (templated)
    :param stage: candidate stage when neither version nor alias is given (default ``Staging``)
    :param baseline: alias (default ``champion``) or stage (``Production``) of the version to
        beat, or None for absolute thresholds only
    :param source: where each version's metrics are read: ``run`` (default), the run that produced
        it; ``evaluation``, the evaluation ``MLflowEvaluateOperator`` recorded on it (metric names as
        MLflow's evaluator gives them, e.g. ``accuracy_score``). With ``evaluation``, a baseline
        evaluated on other data (another dataset digest) or not at all is not compared: a threshold
        held against it rejects the candidate, saying why
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``)
    :param mlflow_conn_id: the ``mlflow`` connection (templated)
    """

    template_fields: Sequence[str] = (
        "model_name",
        "version",
        "alias",
        "stage",
        "thresholds",
        "mlflow_conn_id",
    )
    template_fields_renderers = {"thresholds": "json"}
    ui_color = "#fff2cc"
    operator_extra_links = (MLflowModelVersionLink(),)

    def __init__(
        self,
        *,
        model_name: str,
        thresholds: Mapping[str, Any],
        version: str | int | None = None,
        alias: str | None = None,
        stage: str | None = None,
        baseline: str | None = "champion",
        source: str = "run",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        mlflow_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if version is not None and alias is not None:
            from airflow_mlflow.exceptions import MLflowInputError

            raise MLflowInputError(f"give version ({version!r}) or alias ({alias!r}), not both")
        self.model_name = model_name
        self.thresholds = thresholds
        self.version = None if version is None else str(version)
        self.alias = alias
        self.stage = stage
        self.baseline = baseline
        if source not in ("run", "evaluation"):  # checked when the DAG is parsed
            from airflow_mlflow.evaluation import check_source

            check_source(source)
        self.source = source
        self.deferrable = deferrable
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def hook(self) -> MLflowHook:
        return make_hook(self.mlflow_conn_id)

    def execute(self, context: Context) -> Any:
        push_version_link(context, self.hook, self.model_name, self.version)
        if not self.deferrable:
            return super().execute(context)
        done = self.poke(context)  # already decidable? then no deferral at all
        if done:
            return done.xcom_value
        from airflow_mlflow.triggers.metric_threshold import MLflowMetricThresholdTrigger

        self.defer(
            trigger=MLflowMetricThresholdTrigger(
                gate=self.gate_spec.to_json(),
                mlflow_conn_id=self.mlflow_conn_id,
                poll_interval=self.poke_interval,
                # The trigger ends the wait itself: not every runner enforces the deferral's timeout.
                deadline=time.time() + self.timeout,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    @cached_property
    def gate_spec(self) -> GateSpec:
        """What the gate decides on, from the rendered fields: the same for a poke and the trigger."""
        from airflow_mlflow.gate import GateSpec

        return GateSpec(
            model_name=self.model_name,
            thresholds=self.thresholds,
            version=self.version,
            alias=self.alias,
            stage=self.stage,
            baseline=self.baseline,
            source=self.source,
        )

    @cached_property
    def _poller(self) -> Gate:
        """Kept across pokes in ``poke`` mode, so a pinned candidate version is looked up once."""
        from airflow_mlflow.gate import Gate

        return Gate(self.hook, self.gate_spec)

    def poke(self, context: Context) -> PokeReturnValue | bool:
        from airflow_mlflow.gate import WAITING

        verdict = self._poller.poll()
        if verdict.status == WAITING:
            self.log.info("%s", verdict.report())
            return False
        return self._conclude(context, verdict)

    def execute_complete(self, context: Context, event: Mapping[str, Any] | None = None) -> Any:
        from airflow_mlflow.gate import WAITING, Verdict

        if not isinstance(event, Mapping) or event.get("status") not in {"done", "error", "timeout"}:
            raise AirflowFailException(f"MLflow gate trigger sent an unexpected event: {event!r}")
        if event["status"] == "error":
            raise AirflowFailException(f"MLflow gate trigger failed: {event.get('message')}")
        if event["status"] == "timeout":
            # As in poke and reschedule mode: never promoted, no verdict recorded; soft_fail skips
            # (BaseSensorOperator.resume_execution turns this into a skip).
            last = event.get("verdict")
            raise AirflowSensorTimeout(
                f"Sensor has timed out; the gate waited {self.timeout} s without a decision:\n"
                + (Verdict.from_json(last).report() if last else "MLflow was unreachable until the deadline")
            )
        verdict = Verdict.from_json(event["verdict"])
        if verdict.status == WAITING:
            raise AirflowFailException(f"MLflow gate trigger returned before a decision:\n{verdict.report()}")
        return self._conclude(context, verdict).xcom_value

    def _conclude(self, context: Context, verdict: Verdict) -> PokeReturnValue:
        """Record the verdict on the candidate version; pass, or fail (skip) at once."""
        from airflow_mlflow.gate import PASSED
        from airflow_mlflow.runs import TaskRunContext

        ctx = TaskRunContext.from_context(context)
        self.hook.set_version_tags(
            self.model_name, verdict.candidate_version, verdict.version_tags(f"{ctx.dag_id}/{ctx.run_id}")
        )
        push_version_link(context, self.hook, self.model_name, verdict.candidate_version)
        report = verdict.report()
        if verdict.status == PASSED:
            self.log.info("%s", report)
            return PokeReturnValue(is_done=True, xcom_value=verdict.to_json())
        if self.soft_fail:
            raise AirflowSkipException(report)
        raise AirflowFailException(report)
