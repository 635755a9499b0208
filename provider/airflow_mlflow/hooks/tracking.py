"""Tracking verbs of ``MLflowHook``: experiments, runs, batched logging."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_mlflow import compat
from airflow_mlflow.exceptions import (
    MLflowConflictError,
    MLflowEndpointNotFoundError,
    MLflowInputError,
    MLflowResourceNotFoundError,
)
from airflow_mlflow.hooks.base import MLflowHookBase
from airflow_mlflow.hooks.records import ExperimentRecord, RunRecord
from airflow_mlflow.hooks.search import all_pages, filter_literal
from airflow_mlflow.tags import CLAIM_OWNER
from airflow_mlflow.timestamps import now_ms
from airflow_mlflow.validation import (
    validate_metric_key,
    validate_metric_value,
    validate_metrics,
    validate_params,
    validate_step,
    validate_tags,
)

# MLflow's limits for one LogBatch request (see mlflow.utils.validation).
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
#: Experiments the provider keeps for its own bookkeeping (write-once claims) start with this.
HIDDEN_EXPERIMENT_PREFIX = ".airflow-mlflow/"
MAX_EXPERIMENTS_PER_SEARCH = 100
#: MLflow's limits for dataset inputs (mlflow.utils.validation: MAX_DATASETS_PER_BATCH,
#: MAX_DATASET_NAME_SIZE, MAX_DATASET_DIGEST_SIZE, MAX_DATASET_SOURCE_SIZE, MAX_INPUT_TAG_VALUE_SIZE).
MAX_DATASETS_PER_BATCH = 1000
_DATASET_LIMITS = {"name": 500, "digest": 36, "source_type": 500, "source": 65535, "context": 500}
#: MLflow's input tag naming what a dataset was used for (mlflow.utils.mlflow_tags.MLFLOW_DATASET_CONTEXT).
DATASET_CONTEXT_TAG = "mlflow.data.context"


@dataclass(frozen=True)
class DatasetInput:
    """
    A dataset a run read, as MLflow records it: ``name`` and ``digest`` identify it in the
    experiment, ``source_type``/``source`` say where it is, ``context`` what the run used it for.
    """

    name: str
    digest: str
    source_type: str
    source: str
    context: str | None = None

    def problem(self) -> str | None:
        for field, limit in _DATASET_LIMITS.items():
            value = getattr(self, field)
            if field != "context" and (not isinstance(value, str) or not value):
                return f"{field} must be a non-empty string, got {value!r}"
            if value is not None and len(value) > limit:
                return f"{field} {value[:40]!r}… is {len(value)} characters; MLflow allows {limit}"
        return None


def _batches(
    params: dict[str, str], metrics: list, tags: dict[str, str]
) -> Iterator[tuple[list, list, list]]:
    """Split one logical write into LogBatch requests within MLflow's limits."""
    p_items, t_items = list(params.items()), list(tags.items())
    while p_items or t_items or metrics:
        p, p_items = p_items[:MAX_PARAMS_TAGS_PER_BATCH], p_items[MAX_PARAMS_TAGS_PER_BATCH:]
        t, t_items = t_items[:MAX_PARAMS_TAGS_PER_BATCH], t_items[MAX_PARAMS_TAGS_PER_BATCH:]
        room = min(MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH - len(p) - len(t))
        m, metrics = metrics[:room], metrics[room:]
        yield p, m, t


class TrackingVerbs(MLflowHookBase):
    """Experiments, runs and batched logging (verbs of ``MLflowHook``)."""

    def experiment(self, name: str, *, create: bool = True) -> ExperimentRecord | None:
        """
        The active experiment called ``name`` with its tags, created if needed (safe when many
        tasks race to create it); None when it does not exist and ``create`` is False.
        """
        if not name or not isinstance(name, str):
            raise MLflowInputError(f"experiment_name must be a non-empty string, got {name!r}")
        with self._call(f"experiment {name!r}"):
            found = self.client.get_experiment_by_name(name)
            if found is None:
                if not create:
                    return None
                found = self._create_experiment(name)
        if found.lifecycle_stage != "active":
            if not create:
                return None
            raise MLflowInputError(
                f"experiment {name!r} (id {found.experiment_id}) is deleted; restore it in MLflow "
                "or choose another experiment_name"
            )
        return ExperimentRecord(found.experiment_id, dict(found.tags or {}), found.name)

    def get_or_create_experiment(self, name: str) -> str:
        """Experiment id for ``name``, creating it if needed."""
        return self.experiment(name).experiment_id

    def find_experiment(self, name: str) -> str | None:
        """Id of the active experiment called ``name``, or None."""
        found = self.experiment(name, create=False)
        return found.experiment_id if found else None

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        with self._call(f"experiment {experiment_id}"):
            self.client.set_experiment_tag(experiment_id, key, value)

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        """Remove a tag; a tag that is already gone is fine."""
        try:
            with self._call(f"experiment {experiment_id}"):
                self.client.delete_experiment_tag(experiment_id, key)
        except MLflowEndpointNotFoundError:
            raise
        except MLflowResourceNotFoundError:
            pass

    def _create_experiment(self, name: str):
        """Create experiment ``name``; another task creating it first is fine. Runs in ``_call``."""
        location = None
        if self.config.artifact_root:
            location = Path(self.config.artifact_root, _safe_folder(name)).as_uri()
        with contextlib.suppress(MLflowConflictError), self._call(f"experiment {name!r}"):
            self.client.create_experiment(name, artifact_location=location)
        return self.client.get_experiment_by_name(name)

    def claim_name(self, name: str, owner: str) -> str:
        """
        A write-once claim: whoever creates experiment ``name`` first owns it. Returns the owner,
        ``owner`` itself when this call won. The experiment is deleted at once: MLflow keeps a
        deleted experiment's name reserved, so the claim holds and stays out of sight.
        """
        resource = f"claim {name!r}"
        try:
            with self._call(resource):
                experiment_id = self.client.create_experiment(name, tags={CLAIM_OWNER: owner})
        except MLflowConflictError:
            with self._call(resource):
                found = self.client.get_experiment_by_name(name)
            return (found.tags or {}).get(CLAIM_OWNER, "unknown") if found else "unknown"
        with self._call(resource):
            self.client.delete_experiment(experiment_id)
        return owner

    def find_runs(self, experiment_id: str | Sequence[str], tags: Mapping[str, str]) -> list[RunRecord]:
        """Active runs of the experiment(s) whose tags equal ``tags``, oldest first (all pages)."""
        ids = [experiment_id] if isinstance(experiment_id, str) else list(experiment_id)
        clauses = [f"tags.`{key}` = {filter_literal(value)}" for key, value in tags.items()]
        runs = []
        with self._call(f"runs of experiment {', '.join(ids[:3])}{' …' if len(ids) > 3 else ''}"):
            # The REST API takes a bounded list of experiments per search.
            for start in range(0, len(ids), MAX_EXPERIMENTS_PER_SEARCH):
                runs += all_pages(
                    lambda token, batch=ids[start : start + MAX_EXPERIMENTS_PER_SEARCH]: (
                        self.client.search_runs(
                            batch,
                            filter_string=" and ".join(clauses),
                            max_results=1000,
                            order_by=["attributes.start_time ASC"],
                            page_token=token,
                        )
                    )
                )
        return sorted((RunRecord.from_run(r) for r in runs), key=lambda r: (r.start_time, r.run_id))

    def list_experiments(self) -> list[ExperimentRecord]:
        """Every active experiment (all pages), the provider's hidden bookkeeping ones excluded."""
        with self._call("experiments"):
            found = all_pages(
                lambda token: self.client.search_experiments(max_results=1000, page_token=token)
            )
        return [
            ExperimentRecord(e.experiment_id, dict(e.tags or {}), e.name)
            for e in found
            if not e.name.startswith(HIDDEN_EXPERIMENT_PREFIX)
        ]

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """Every ``(step, value)`` logged for one metric of a run, by step."""
        with self._call(f"metric {key!r} of run {run_id}"):
            points = self.client.get_metric_history(run_id, key)
        return sorted((p.step, p.value) for p in points)

    def get_run(self, run_id: str) -> RunRecord:
        with self._call(f"run {run_id}"):
            return RunRecord.from_run(self.client.get_run(run_id))

    def create_run(
        self, experiment_id: str, run_name: str, tags: Mapping[str, str], start_time: int
    ) -> RunRecord:
        with self._call(f"new run {run_name!r} in experiment {experiment_id}"):
            run = self.client.create_run(
                experiment_id, start_time=start_time, tags=dict(tags), run_name=run_name
            )
        return RunRecord.from_run(run)

    def set_run_status(self, run_id: str, status: str) -> None:
        """
        ``RUNNING`` re-opens a run; a terminal status also records the end time. One request:
        ``MlflowClient.set_terminated``/``update_run`` each read the run back first.
        """
        end_time = None if status == "RUNNING" else now_ms()
        with self._call(f"run {run_id}"):
            compat.update_run_info(self.client, run_id, status, end_time)

    def delete_run(self, run_id: str) -> None:
        with self._call(f"run {run_id}"):
            self.client.delete_run(run_id)

    def log_batch(
        self,
        run_id: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        step: int = 0,
        timestamp: int | None = None,
        known_params: Mapping[str, str] | None = None,
    ) -> int:
        """
        Log params, metrics and tags in as few requests as MLflow's batch limits allow.

        Everything is validated before the first request, so bad input writes nothing. Params
        already on the run (``known_params``) are skipped when equal, and refused when different.

        :return: the number of requests made
        """
        from mlflow.entities import Metric

        clean_params = validate_params(params)
        clean_metrics = validate_metrics(metrics)
        clean_tags = validate_tags(tags)
        step = validate_step(step)
        known = known_params or {}
        for key, value in clean_params.items():
            if key in known and known[key] != value:
                raise _param_conflict(run_id, key, known[key], value)
        new_params = {k: v for k, v in clean_params.items() if known.get(k) != v}
        ts = timestamp or now_ms()
        points = [Metric(k, v, ts, step) for k, v in clean_metrics.items()]
        return self._send_batches(run_id, new_params, points, clean_tags)

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> int:
        """
        Record ``datasets`` as inputs of the run (MLflow's "Datasets used"). Logging a dataset the
        run already has adds nothing: MLflow keeps one input per run and ``(name, digest)``, so a
        retried or resumed attempt may log the same inputs again. Everything is checked first.

        :return: the number of requests made
        """
        from mlflow.entities import Dataset, InputTag
        from mlflow.entities import DatasetInput as MlflowDatasetInput

        for dataset in datasets:
            if problem := dataset.problem():
                raise MLflowInputError(f"dataset input {dataset.name!r} of run {run_id}: {problem}")
        inputs = [
            MlflowDatasetInput(
                Dataset(d.name, d.digest, d.source_type, d.source),
                [InputTag(DATASET_CONTEXT_TAG, d.context)] if d.context else [],
            )
            for d in datasets
        ]
        requests = 0
        with self._call(f"run {run_id}"):
            for start in range(0, len(inputs), MAX_DATASETS_PER_BATCH):
                self.client.log_inputs(run_id, datasets=inputs[start : start + MAX_DATASETS_PER_BATCH])
                requests += 1
        return requests

    def log_metric_history(
        self,
        run_id: str,
        key: str,
        values: Sequence[Any],
        steps: Sequence[int] | None = None,
        *,
        timestamp: int | None = None,
    ) -> int:
        """
        Log a whole series of one metric (a training curve) in batches of 1000 points.

        Every value is checked before the first request, so a bad point writes nothing.

        :param values: the points, in order
        :param steps: one step per value (default ``0, 1, 2, ...``)
        :return: the number of requests made
        """
        from mlflow.entities import Metric

        if steps is not None and len(steps) != len(values):
            raise MLflowInputError(f"metric {key!r}: steps has {len(steps)} entries for {len(values)} values")
        validate_metric_key(key)
        clean = [validate_metric_value(key, value) for value in values]
        clean_steps = (
            [validate_step(s, f"metric {key!r}: step") for s in steps]
            if steps is not None
            else range(len(clean))
        )
        ts = timestamp or now_ms()
        points = [Metric(key, v, ts, s) for v, s in zip(clean, clean_steps, strict=True)]
        return self._send_batches(run_id, {}, points, {})

    def _send_batches(self, run_id: str, params: dict[str, str], metrics: list, tags: dict[str, str]) -> int:
        from mlflow.entities import Param, RunTag

        requests = 0
        with self._call(f"run {run_id}"):
            for p, m, t in _batches(params, metrics, tags):
                self.client.log_batch(
                    run_id,
                    metrics=m,
                    params=[Param(k, v) for k, v in p],
                    tags=[RunTag(k, v) for k, v in t],
                    synchronous=True,
                )
                requests += 1
        return requests

    def run_url(self, experiment_id: str, run_id: str) -> str | None:
        """Run page in MLflow's UI, when a UI is known for this connection."""
        base = self.config.mlflow_ui_url
        return f"{base}/#/experiments/{experiment_id}/runs/{run_id}" if base else None


def _param_conflict(run_id: str, key: str, old: str, new: str):

    return MLflowConflictError(
        f"param {key!r} of run {run_id} was already logged as {old!r}; this attempt logs {new!r}. "
        "MLflow params are immutable: log a different key, or a metric if the value changes between attempts"
    )


def _safe_folder(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
