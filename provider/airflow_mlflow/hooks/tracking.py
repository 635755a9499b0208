"""Tracking verbs of ``MLflowHook``: experiments, runs, batched logging, artifacts."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlflow.exceptions import MLflowConflictError, MLflowInputError
from airflow_mlflow.tags import CLAIM_OWNER
from airflow_mlflow.validation import (
    validate_artifact_folder,
    validate_artifact_tree,
    validate_metric_key,
    validate_metric_value,
    validate_metrics,
    validate_params,
    validate_step,
    validate_tags,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager

    from mlflow import MlflowClient
    from mlflow.entities import Run

    from airflow_mlflow.hooks.config import MLflowConnectionConfig

# MLflow's limits for one LogBatch request (see mlflow.utils.validation).
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
#: Experiments the provider keeps for its own bookkeeping (write-once claims) start with this.
HIDDEN_EXPERIMENT_PREFIX = ".airflow-mlflow/"
MAX_EXPERIMENTS_PER_SEARCH = 100


@dataclass(frozen=True)
class RunRecord:
    """A plain view of an MLflow run: what the provider needs, JSON-friendly."""

    run_id: str
    experiment_id: str
    status: str
    start_time: int
    artifact_uri: str
    tags: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    end_time: int | None = None
    run_name: str = ""

    @classmethod
    def from_run(cls, run: Run) -> RunRecord:
        return cls(
            run_id=run.info.run_id,
            experiment_id=run.info.experiment_id,
            status=run.info.status,
            start_time=run.info.start_time or 0,
            artifact_uri=run.info.artifact_uri,
            tags=dict(run.data.tags),
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            end_time=run.info.end_time or None,
            run_name=run.info.run_name or "",
        )


@dataclass(frozen=True)
class ArtifactEntry:
    """One entry of a run's artifact folder."""

    path: str
    is_dir: bool
    size: int | None = None


def all_pages(search: Callable[[str | None], Any]) -> list:
    """Every item of a paged MLflow search: ``search(page_token)`` until no token comes back."""
    found, token = [], None
    while True:
        page = search(token)
        found.extend(page)
        token = page.token
        if not token:
            return found


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


@dataclass(frozen=True)
class ExperimentRecord:
    experiment_id: str
    tags: Mapping[str, str] = field(default_factory=dict)
    name: str = ""


@dataclass(frozen=True)
class LoggedModelRecord:
    """An MLflow 3 logged model of a run: what the UI shows of it, JSON-friendly."""

    model_id: str
    name: str
    experiment_id: str
    status: str
    created: int
    #: Flavors from its ``MLmodel`` file (``python_function`` last); empty when it has none yet.
    flavors: tuple[str, ...] = ()
    #: Latest value of each metric logged to the model.
    metrics: Mapping[str, float] = field(default_factory=dict)
    #: Its page in MLflow's UI, when a UI is known for the connection.
    url: str | None = None

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_id}"


class TrackingVerbs:
    """Experiments, runs and logging; mixed into :class:`~airflow_mlflow.hooks.mlflow.MLflowHook`."""

    # Provided by MLflowHook.
    client: MlflowClient
    config: MLflowConnectionConfig
    _call: Callable[[str], AbstractContextManager[None]]
    credentials_env: Callable[[], AbstractContextManager[None]]
    _rest_get: Callable[[str, Mapping[str, str]], dict]
    _rest_get_bytes: Callable[[str, Mapping[str, str], int], bytes]

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
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_experiment_tag(experiment_id, key)
        except MlflowException as err:
            if err.error_code not in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}:
                with self._call(f"experiment {experiment_id}"):
                    raise

    def _create_experiment(self, name: str):
        from mlflow.exceptions import MlflowException

        location = None
        if self.config.artifact_root:
            location = Path(self.config.artifact_root, _safe_folder(name)).as_uri()
        try:
            self.client.create_experiment(name, artifact_location=location)
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        return self.client.get_experiment_by_name(name)

    def claim_name(self, name: str, owner: str) -> str:
        """
        A write-once claim: whoever creates experiment ``name`` first owns it. Returns the owner,
        ``owner`` itself when this call won. The experiment is deleted at once: MLflow keeps a
        deleted experiment's name reserved, so the claim holds and stays out of sight.
        """
        from mlflow.exceptions import MlflowException

        with self._call(f"claim {name!r}"):
            try:
                experiment_id = self.client.create_experiment(name, tags={CLAIM_OWNER: owner})
            except MlflowException as err:
                if err.error_code not in {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"}:
                    raise
                found = self.client.get_experiment_by_name(name)
                return (found.tags or {}).get(CLAIM_OWNER, "unknown") if found else "unknown"
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
        from mlflow.entities import RunStatus

        end_time = None if status == "RUNNING" else _now_ms()
        with self._call(f"run {run_id}"):
            self.client._tracking_client.store.update_run_info(
                run_id, run_status=RunStatus.from_string(status), end_time=end_time, run_name=None
            )

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
        ts = timestamp or _now_ms()
        points = [Metric(k, v, ts, step) for k, v in clean_metrics.items()]
        return self._send_batches(run_id, new_params, points, clean_tags)

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
        ts = timestamp or _now_ms()
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

    def log_artifacts(
        self,
        run_id: str,
        local_path: str | os.PathLike,
        artifact_path: str | None = None,
        *,
        artifact_uri: str | None = None,
    ) -> None:
        """
        Upload a file or a directory to the run's artifacts. Given the run's ``artifact_uri``
        (known from creating it), MLflow need not read the run back first.
        """
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        path = Path(local_path)
        if not path.exists():
            raise MLflowInputError(f"artifact {str(path)!r} does not exist")
        artifact_path = validate_artifact_folder(artifact_path)
        validate_artifact_tree(path, artifact_path)
        with self._call(f"artifacts of run {run_id}"), self.credentials_env():
            if artifact_uri is None:
                artifact_uri = self.client.get_run(run_id).info.artifact_uri
            repo = get_artifact_repository(artifact_uri, tracking_uri=self.config.tracking_uri)
            if path.is_dir():
                repo.log_artifacts(str(path), artifact_path)
            else:
                repo.log_artifact(str(path), artifact_path)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[str]:
        return [entry.path for entry in self.browse_artifacts(run_id, path)]

    def browse_artifacts(self, run_id: str, path: str | None = None) -> list[ArtifactEntry]:
        """
        One folder of a run's artifacts. Against a server this asks the server itself (with the
        hook's own credentials, never the process environment: the API server shares its process).
        """
        with self._call(f"artifacts of run {run_id}"):
            if self.config.is_http:
                params = {"run_id": run_id, **({"path": path} if path else {})}
                files = self._rest_get("/api/2.0/mlflow/artifacts/list", params).get("files", [])
                return [
                    ArtifactEntry(f["path"], bool(f.get("is_dir")), _int(f.get("file_size"))) for f in files
                ]
            return [
                ArtifactEntry(f.path, f.is_dir, f.file_size) for f in self.client.list_artifacts(run_id, path)
            ]

    def read_artifact(self, run_id: str, path: str, max_bytes: int) -> bytes:
        """
        The content of one artifact file, refused when larger than ``max_bytes``.

        :raises MLflowInputError: the file is too large, or ``path`` is a folder
        """
        folder, _, _ = path.rpartition("/")
        entry = next((e for e in self.browse_artifacts(run_id, folder or None) if e.path == path), None)
        if entry is None or entry.is_dir:
            raise MLflowInputError(f"artifact {path!r} of run {run_id} is not a file")
        if entry.size is not None and entry.size > max_bytes:
            raise MLflowInputError(
                f"artifact {path!r} of run {run_id} is {entry.size} bytes (limit {max_bytes})"
            )
        with self._call(f"artifact {path!r} of run {run_id}"):
            if self.config.is_http:
                data = self._rest_get_bytes("/get-artifact", {"run_id": run_id, "path": path}, max_bytes)
            else:
                import tempfile

                with tempfile.TemporaryDirectory() as tmp:
                    data = Path(self.client.download_artifacts(run_id, path, tmp)).read_bytes()
        if len(data) > max_bytes:  # the listing did not know its size
            raise MLflowInputError(
                f"artifact {path!r} of run {run_id} is over the limit of {max_bytes} bytes"
            )
        return data

    def run_url(self, experiment_id: str, run_id: str) -> str | None:
        """Run page in MLflow's UI, when a UI is known for this connection."""
        base = self.config.mlflow_ui_url
        return f"{base}/#/experiments/{experiment_id}/runs/{run_id}" if base else None

    def logged_models_of_run(
        self, experiment_id: str, run_id: str, limit: int = 20
    ) -> list[LoggedModelRecord]:
        """
        The MLflow 3 logged models whose source is this run, oldest first (at most ``limit``),
        each with its flavors read from its ``MLmodel`` file (one request per model).
        """
        with self._call(f"logged models of run {run_id}"):
            found = self.client.search_logged_models(
                [experiment_id],
                filter_string=f"source_run_id = {filter_literal(run_id)}",
                max_results=limit,
                order_by=[{"field_name": "creation_time", "ascending": True}],
            )
        base = self.config.mlflow_ui_url
        records = []
        for model in found:
            url = f"{base}/#/experiments/{model.experiment_id}/models/{model.model_id}" if base else None
            latest: dict[str, tuple[int, int, float]] = {}
            for m in model.metrics or ():
                seen = latest.get(m.key)
                if seen is None or (m.step, m.timestamp) >= seen[:2]:
                    latest[m.key] = (m.step, m.timestamp, m.value)
            records.append(
                LoggedModelRecord(
                    model_id=model.model_id,
                    name=model.name,
                    experiment_id=model.experiment_id,
                    status=str(getattr(model.status, "name", model.status)),
                    created=model.creation_timestamp or 0,
                    flavors=self._logged_model_flavors(model.model_id, model.artifact_location),
                    metrics={key: value for key, (_, _, value) in sorted(latest.items())},
                    url=url,
                )
            )
        return records

    def _logged_model_flavors(self, model_id: str, artifact_location: str) -> tuple[str, ...]:
        """Flavor names of a logged model's ``MLmodel`` file; () when it has none (not uploaded yet)."""
        import yaml

        from airflow_mlflow.exceptions import MLflowResourceNotFoundError

        try:
            with self._call(f"MLmodel of logged model {model_id}"):
                if self.config.is_http:
                    endpoint = f"/ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/files"
                    data = self._rest_get_bytes(endpoint, {"artifact_file_path": "MLmodel"}, 1024 * 1024)
                else:
                    import tempfile

                    from mlflow.artifacts import download_artifacts

                    with tempfile.TemporaryDirectory() as tmp:
                        path = download_artifacts(
                            artifact_uri=f"{artifact_location.rstrip('/')}/MLmodel",
                            dst_path=tmp,
                            tracking_uri=self.config.tracking_uri,
                        )
                        data = Path(path).read_bytes()
        except MLflowResourceNotFoundError:
            return ()
        try:
            flavors = (yaml.safe_load(data) or {}).get("flavors") or {}
        except (yaml.YAMLError, AttributeError):
            return ()
        names = [str(name) for name in flavors if name != "python_function"]
        return tuple(names + (["python_function"] if "python_function" in flavors else []))


def _param_conflict(run_id: str, key: str, old: str, new: str):

    return MLflowConflictError(
        f"param {key!r} of run {run_id} was already logged as {old!r}; this attempt logs {new!r}. "
        "MLflow params are immutable: log a different key, or a metric if the value changes between attempts"
    )


def _int(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


def _now_ms() -> int:

    return int(time.time() * 1000)


def filter_literal(value: str) -> str:
    """
    ``value`` as a string literal of MLflow's search filters. They know no escapes (MLflow strips
    the outer quotes and keeps the rest), but take single or double quotes: a value holding a
    single quote goes in double quotes. One holding both cannot be written: refused.
    """
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise MLflowInputError(f"value {value!r} cannot be searched: it contains both kinds of quote")


def _safe_folder(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
