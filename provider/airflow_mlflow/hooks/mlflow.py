"""``MLflowHook``: the one place that talks to MLflow."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from airflow_mlflow.exceptions import MLflowInputError, translate
from airflow_mlflow.hooks.config import MLflowConnectionConfig, redact_uri
from airflow_mlflow.validation import validate_metrics, validate_params, validate_tags

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

# MLflow's own limits (LogBatch): see mlflow.utils.validation.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000

_ENV_FOR_CREDENTIALS = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
)


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
        )


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


class MLflowHook(BaseHook):
    """
    Interact with MLflow: tracking, registry and artifacts.

    The connection (conn_type ``mlflow``) holds:

    * ``host`` / ``port`` / ``schema`` (``http`` or ``https``): an MLflow tracking server;
    * ``login`` / ``password``: HTTP basic auth (``mlflow server --app-name basic-auth``);
    * extras: ``token`` (bearer), ``tracking_uri`` (any MLflow URI; overrides host),
      ``registry_uri``, ``ui_url`` (where MLflow's UI is, for links), ``experiment_name``
      (default experiment), ``insecure_tls`` or ``ca_bundle``.

    When ``mlflow_default`` is not defined at all, the embedded default is used: MLflow's SQL store
    in ``$AIRFLOW_HOME/mlflow/mlflow.db`` with artifacts in ``$AIRFLOW_HOME/mlflow/artifacts``.

    :param mlflow_conn_id: the connection to use
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "mlflow"
    hook_name = "MLflow"

    def __init__(self, mlflow_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id

    # -- configuration and client ------------------------------------------------------------

    @cached_property
    def config(self) -> MLflowConnectionConfig:
        try:
            conn = self.get_connection(self.mlflow_conn_id)
        except AirflowNotFoundException:
            if self.mlflow_conn_id != self.default_conn_name:
                raise
            return MLflowConnectionConfig.embedded_default()
        return MLflowConnectionConfig.from_connection(conn)

    def get_conn(self) -> MlflowClient:
        """An ``MlflowClient`` bound to this connection (its credentials included)."""
        return self.client

    @cached_property
    def client(self) -> MlflowClient:
        if self.config.embedded:
            _prepare_embedded_store(self.config)
        return _build_client(self.config)

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.client.search_experiments(max_results=1)
        except Exception as err:  # shown in the UI's "Test" button
            return False, f"{type(err).__name__}: {err}"
        return True, f"Connected to MLflow at {redact_uri(self.config.tracking_uri)}"

    @contextlib.contextmanager
    def credentials_env(self) -> Iterator[None]:
        """
        Expose this connection's credentials to MLflow code that reads them from the environment
        (the fluent API in user code, HTTP artifact transfers), restoring the environment after.

        Only for task processes, which run one task each; shared processes (triggerer, API server,
        scheduler) use :attr:`client`, which carries the credentials itself.
        """
        with _scoped_environment(_credential_env(self.config)):
            yield

    @contextlib.contextmanager
    def user_code_env(self) -> Iterator[None]:
        """
        Point MLflow's fluent API (``mlflow.log_*`` in user code) at this connection, with its
        credentials, for the duration of the block; the previous state is restored after.
        """
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri

        uris = {
            "MLFLOW_TRACKING_URI": self.config.tracking_uri,
            "MLFLOW_REGISTRY_URI": self.config.registry_uri,
        }
        if self.config.embedded:
            _prepare_embedded_store(self.config)
        with (
            _scoped_environment({**_credential_env(self.config), **uris}),
            _use_tracking_uri(self.config.tracking_uri),
        ):
            yield

    @contextlib.contextmanager
    def _call(self, resource: str) -> Iterator[None]:
        from mlflow.exceptions import MlflowException

        try:
            yield
        except MlflowException as err:
            raise translate(err, resource) from err

    # -- verbs ---------------------------------------------------------------------------------

    def get_or_create_experiment(self, name: str) -> str:
        """Experiment id for ``name``, creating it if needed; safe when many tasks race to create it."""
        if not name or not isinstance(name, str):
            raise MLflowInputError(f"experiment_name must be a non-empty string, got {name!r}")
        with self._call(f"experiment {name!r}"):
            found = self.client.get_experiment_by_name(name)
            if found is None:
                found = self._create_experiment(name)
            if found.lifecycle_stage != "active":
                raise MLflowInputError(
                    f"experiment {name!r} (id {found.experiment_id}) is deleted; restore it in MLflow "
                    "or choose another experiment_name"
                )
            return found.experiment_id

    def find_experiment(self, name: str) -> str | None:
        """Id of the active experiment called ``name``, or None."""
        with self._call(f"experiment {name!r}"):
            found = self.client.get_experiment_by_name(name)
        return found.experiment_id if found is not None and found.lifecycle_stage == "active" else None

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

    def find_runs(self, experiment_id: str, tags: Mapping[str, str]) -> list[RunRecord]:
        """Active runs of an experiment whose tags equal ``tags``, oldest first (all pages)."""
        clauses = [f"tags.`{key}` = '{_quote(value)}'" for key, value in tags.items()]
        runs, token = [], None
        with self._call(f"runs of experiment {experiment_id}"):
            while True:
                page = self.client.search_runs(
                    [experiment_id],
                    filter_string=" and ".join(clauses),
                    max_results=1000,
                    order_by=["attributes.start_time ASC"],
                    page_token=token,
                )
                runs.extend(page)
                token = page.token
                if not token:
                    break
        return sorted((RunRecord.from_run(r) for r in runs), key=lambda r: (r.start_time, r.run_id))

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
        """``RUNNING`` re-opens a run; a terminal status also records the end time."""
        with self._call(f"run {run_id}"):
            if status == "RUNNING":
                self.client.update_run(run_id, status=status)
            else:
                self.client.set_terminated(run_id, status=status)

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
        known = known_params or {}
        for key, value in clean_params.items():
            if key in known and known[key] != value:
                raise _param_conflict(run_id, key, known[key], value)
        new_params = {k: v for k, v in clean_params.items() if known.get(k) != v}
        ts = timestamp or _now_ms()
        points = [Metric(k, v, ts, step) for k, v in clean_metrics.items()]
        return self._send_batches(run_id, new_params, points, clean_tags)

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
        self, run_id: str, local_path: str | os.PathLike, artifact_path: str | None = None
    ) -> None:
        """Upload a file or a directory to the run's artifacts."""
        path = Path(local_path)
        if not path.exists():
            raise MLflowInputError(f"artifact {str(path)!r} does not exist")
        with self._call(f"artifacts of run {run_id}"), self.credentials_env():
            if path.is_dir():
                self.client.log_artifacts(run_id, str(path), artifact_path)
            else:
                self.client.log_artifact(run_id, str(path), artifact_path)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[str]:
        with self._call(f"artifacts of run {run_id}"), self.credentials_env():
            return [f.path for f in self.client.list_artifacts(run_id, path)]

    def run_url(self, experiment_id: str, run_id: str) -> str | None:
        """Run page in MLflow's UI, when a UI is known for this connection."""
        base = self.config.mlflow_ui_url
        return f"{base}/#/experiments/{experiment_id}/runs/{run_id}" if base else None


# -- private helpers ---------------------------------------------------------------------------


def _param_conflict(run_id: str, key: str, old: str, new: str):
    from airflow_mlflow.exceptions import MLflowConflictError

    return MLflowConflictError(
        f"param {key!r} of run {run_id} was already logged as {old!r}; this attempt logs {new!r}. "
        "MLflow params are immutable: log a different key, or a metric if the value changes between attempts"
    )


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def _quote(value: str) -> str:
    if "'" in value:
        raise MLflowInputError(f"tag value {value!r} cannot be searched: it contains a single quote")
    return value


def _safe_folder(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _credential_env(config: MLflowConnectionConfig) -> dict[str, str | None]:
    """The MLflow environment variables that carry ``config``'s credentials (None = unset)."""
    return {
        "MLFLOW_TRACKING_USERNAME": config.username,
        "MLFLOW_TRACKING_PASSWORD": config.password,
        "MLFLOW_TRACKING_TOKEN": config.token,
        "MLFLOW_TRACKING_INSECURE_TLS": "true" if config.insecure_tls else None,
        "MLFLOW_TRACKING_SERVER_CERT_PATH": config.ca_bundle,
    }


@contextlib.contextmanager
def _scoped_environment(values: Mapping[str, str | None]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _build_client(config: MLflowConnectionConfig) -> MlflowClient:
    """
    An ``MlflowClient`` whose REST stores carry ``config``'s credentials themselves.

    MLflow reads credentials from ``os.environ`` on every request; binding them to the stores
    keeps them out of the environment of shared processes (scheduler, triggerer, API server).
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.registry_uri)
    if not config.is_http:
        return client

    from mlflow.store.model_registry.rest_store import RestStore as RegistryRestStore
    from mlflow.store.tracking.rest_store import RestStore as TrackingRestStore
    from mlflow.tracking._model_registry.client import ModelRegistryClient
    from mlflow.tracking._tracking_service.client import TrackingServiceClient
    from mlflow.utils.rest_utils import MlflowHostCreds

    def creds_for(uri: str):
        return lambda: MlflowHostCreds(
            host=uri,
            username=config.username,
            password=config.password,
            token=config.token,
            ignore_tls_verification=config.insecure_tls,
            server_cert_path=config.ca_bundle,
        )

    class _BoundTracking(TrackingServiceClient):
        def __init__(self, uri: str) -> None:
            self.tracking_uri = uri
            self._store = TrackingRestStore(creds_for(uri))

        @property
        def store(self):
            return self._store

    class _BoundRegistry(ModelRegistryClient):
        def __init__(self, registry_uri: str, tracking_uri: str) -> None:
            self.registry_uri, self.tracking_uri = registry_uri, tracking_uri
            self._store = RegistryRestStore(creds_for(registry_uri))

        @property
        def store(self):
            return self._store

    client._tracking_client = _BoundTracking(config.tracking_uri)
    registry_uri = config.registry_uri or config.tracking_uri
    if registry_uri.split(":", 1)[0] in {"http", "https"}:
        client._registry_client_lazy = _BoundRegistry(registry_uri, config.tracking_uri)
    return client


def _prepare_embedded_store(config: MLflowConnectionConfig) -> None:
    """Create and migrate the embedded SQLite store once, even when tasks start together."""
    db_path = Path(config.tracking_uri.removeprefix("sqlite:///"))
    db_path.parent.mkdir(parents=True, exist_ok=True)
    Path(config.artifact_root or db_path.parent / "artifacts").mkdir(parents=True, exist_ok=True)
    marker = db_path.with_suffix(".ready")
    if marker.exists():
        return
    with open(db_path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        SqlAlchemyStore(config.tracking_uri, Path(config.artifact_root).as_uri())
        marker.touch()
