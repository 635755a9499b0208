"""``MLflowHook``: the one place that talks to MLflow."""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import os
import threading
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_mlflow.exceptions import MLflowProviderError, translate
from airflow_mlflow.hooks.config import HttpBudget, MLflowConnectionConfig, redact, redact_uri, resolve_config
from airflow_mlflow.hooks.registry import RegistryVerbs
from airflow_mlflow.hooks.tracking import TrackingVerbs

if TYPE_CHECKING:
    from airflow.sdk import Connection
    from mlflow import MlflowClient


class MLflowHook(TrackingVerbs, RegistryVerbs, BaseHook):
    """
    Interact with MLflow: tracking, registry and artifacts.

    The connection (conn_type ``mlflow``) holds:

    * ``host`` / ``port`` / ``schema`` (``http`` or ``https``): an MLflow tracking server;
    * ``login`` / ``password``: HTTP basic auth (``mlflow server --app-name basic-auth``);
    * extras: ``token`` (bearer), ``tracking_uri`` (any MLflow URI; overrides host),
      ``registry_uri``, ``ui_url`` (where MLflow's UI is, for links), ``experiment_name``
      (default experiment), ``insecure_tls`` or ``ca_bundle``.

    When ``mlflow_default`` is defined nowhere, the embedded default is used (and the log says so):
    MLflow's SQL store in ``$AIRFLOW_HOME/mlflow/mlflow.db`` with artifacts in
    ``$AIRFLOW_HOME/mlflow/artifacts``. A connection that exists but cannot be read in this process
    is an error, never the embedded default.

    :param mlflow_conn_id: the connection to use
    :param team_name: in multi-team mode, the team whose connections a server-side process reads
        (tasks and triggers are scoped by Airflow itself)
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "mlflow"
    hook_name = "MLflow"

    def __init__(
        self, mlflow_conn_id: str = default_conn_name, team_name: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id
        #: In multi-team mode, the team whose connections a server-side process (the listener) reads.
        self.team_name = team_name

    # -- configuration and client ------------------------------------------------------------

    @classmethod
    def from_connection(cls, conn: Connection | None, mlflow_conn_id: str = default_conn_name) -> MLflowHook:
        """
        A hook for an already fetched connection (None: the embedded default), for callers that
        fetch it themselves, such as triggers with ``aget_connection``.
        """
        hook = cls(mlflow_conn_id=mlflow_conn_id)
        if conn is None:
            hook.__dict__["config"] = MLflowConnectionConfig.embedded_default()
        else:
            hook.__dict__["config"] = MLflowConnectionConfig.from_connection(conn)
        return hook

    @cached_property
    def config(self) -> MLflowConnectionConfig:
        """The connection, resolved as Airflow resolves it in this process (see ``resolve_config``)."""
        return resolve_config(self.mlflow_conn_id, self.team_name)

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
            return False, redact(f"{type(err).__name__}: {err}", self.config.secrets)
        return True, f"Connected to MLflow at {redact_uri(self.config.tracking_uri)}"

    @contextlib.contextmanager
    def credentials_env(self) -> Iterator[None]:
        """
        Expose this connection's credentials to MLflow code that reads them from the environment
        (the fluent API in user code, HTTP artifact transfers), restoring the environment after.

        Only for task processes, which run one task each; shared processes (triggerer, API server,
        scheduler) use :attr:`client`, which carries the credentials itself.
        """
        with scoped_environment(_credential_env(self.config)):
            yield

    @contextlib.contextmanager
    def user_code_env(self) -> Iterator[None]:
        """
        Point MLflow's fluent API (``mlflow.log_*`` in user code) at this connection, with its
        credentials, for the duration of the block; the previous state is restored after.
        """
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri

        budget = self.config.http_budget
        uris = {
            "MLFLOW_TRACKING_URI": self.config.tracking_uri,
            "MLFLOW_REGISTRY_URI": self.config.registry_uri,
            # Else MLflow reads a run back when it ends, to print its URL: the task log has it.
            "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
            # The connection's retry budget, for the fluent API too (a task process runs one task).
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(budget.max_retries),
            # MLflow parses these two variables with int(): "2.0" would fail every fluent call.
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(round(budget.backoff_factor)),
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, round(budget.timeout))),
        }
        if self.config.embedded:
            _prepare_embedded_store(self.config)
        with (
            scoped_environment({**_credential_env(self.config), **uris}),
            _use_tracking_uri(self.config.tracking_uri),
        ):
            yield

    def _rest_get(self, endpoint: str, params: Mapping[str, str]) -> dict:
        """GET a JSON endpoint of the tracking server with this hook's credentials."""
        from mlflow.utils.rest_utils import http_request, verify_rest_response

        response = http_request(
            _host_creds(self.config, self.config.tracking_uri),
            endpoint,
            "GET",
            params=params,
            **_budget_kwargs(self.config.http_budget),
        )
        return verify_rest_response(response, endpoint).json()

    def _rest_get_bytes(self, endpoint: str, params: Mapping[str, str], max_bytes: int) -> bytes:
        """GET a file from the tracking server, reading at most ``max_bytes + 1`` bytes of it."""
        from mlflow.utils.rest_utils import http_request, verify_rest_response

        creds = _host_creds(self.config, self.config.tracking_uri)
        budget = _budget_kwargs(self.config.http_budget)
        with http_request(creds, endpoint, "GET", params=params, stream=True, **budget) as response:
            verify_rest_response(response, endpoint)
            data = bytearray()
            for chunk in response.iter_content(64 * 1024):
                data += chunk
                if len(data) > max_bytes:
                    break
            return bytes(data)

    @contextlib.contextmanager
    def _call(self, resource: str) -> Iterator[None]:
        """
        Translate MLflow's errors, with every secret of the connection removed from the message.

        The translated error is chained to a redacted copy of MLflow's (same type, code and
        traceback), so a task log's traceback shows MLflow's frames but not the secret; the original
        exception, whose message or context may hold it, is dropped.
        """
        from mlflow.exceptions import MlflowException

        secrets = self.config.secrets
        try:
            with _http_budget(self.config):
                yield
        except MlflowException as err:
            raise translate(err, resource, secrets) from _redacted(err, secrets)
        except Exception as err:
            if secrets and any(secret in str(err) for secret in secrets):
                raise MLflowProviderError(f"{resource}: {redact(str(err), secrets)}") from _redacted(
                    err, secrets
                )
            raise


def _credential_env(config: MLflowConnectionConfig) -> dict[str, str | None]:
    """The MLflow environment variables that carry ``config``'s credentials (None = unset)."""
    return {
        "MLFLOW_TRACKING_USERNAME": config.username,
        "MLFLOW_TRACKING_PASSWORD": config.password,
        "MLFLOW_TRACKING_TOKEN": config.token,
        "MLFLOW_TRACKING_INSECURE_TLS": "true" if config.insecure_tls else None,
        "MLFLOW_TRACKING_SERVER_CERT_PATH": config.ca_bundle,
    }


def _redacted(err: BaseException, secrets: tuple[str, ...]) -> BaseException:
    """``err`` itself when its message holds no secret, else a copy without them (same traceback)."""
    text = str(err)
    if not secrets or not any(secret in text for secret in secrets):
        return err
    from mlflow.exceptions import MlflowException

    if isinstance(err, MlflowException):
        copy: BaseException = MlflowException(redact(err.message, secrets))
        copy.error_code = err.error_code
    else:
        copy = RuntimeError(f"{type(err).__name__}: {redact(text, secrets)}")
    copy.__suppress_context__ = True  # the original's context (a requests error) may hold it too
    return copy.with_traceback(err.__traceback__)


#: The retry budget of the hook call running in this context (None: MLflow's environment rules).
_BUDGET: contextvars.ContextVar[HttpBudget | None] = contextvars.ContextVar(
    "airflow_mlflow_budget", default=None
)


def _budget_kwargs(budget: HttpBudget) -> dict[str, float]:
    return {
        "max_retries": budget.max_retries,
        "backoff_factor": budget.backoff_factor,
        "timeout": budget.timeout,
    }


@contextlib.contextmanager
def _http_budget(config: MLflowConnectionConfig) -> Iterator[None]:
    """MLflow requests made in this block (this thread) use ``config``'s retry budget."""
    if not config.is_http:
        yield
        return
    _install_budget_seam()
    token = _BUDGET.set(config.http_budget)
    try:
        yield
    finally:
        _BUDGET.reset(token)


class _BudgetedSetting:
    """
    Stands for one of MLflow's ``MLFLOW_HTTP_REQUEST_*`` settings inside ``mlflow.utils.rest_utils``:
    the hook's budget while a hook call runs, MLflow's own value (the environment) otherwise.
    """

    def __init__(self, setting: Any, field: str) -> None:
        self._setting, self._field = setting, field

    def get(self) -> Any:
        budget = _BUDGET.get()
        return self._setting.get() if budget is None else getattr(budget, self._field)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._setting, name)

    def __str__(self) -> str:
        return str(self._setting)

    def __format__(self, spec: str) -> str:
        return format(self._setting, spec)


_seam_lock = threading.Lock()


def _install_budget_seam() -> None:
    """
    The one seam on MLflow internals for the retry budget: ``http_request`` reads its retries,
    backoff and timeout from these module-level settings on every call (``call_endpoint``, which
    the REST stores use, passes none), so they answer with the budget of the running hook call.
    """
    from mlflow.utils import rest_utils

    with _seam_lock:
        for name, field in (
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "max_retries"),
            ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "backoff_factor"),
            ("MLFLOW_HTTP_REQUEST_TIMEOUT", "timeout"),
        ):
            current = getattr(rest_utils, name)
            if not isinstance(current, _BudgetedSetting):
                setattr(rest_utils, name, _BudgetedSetting(current, field))


@contextlib.contextmanager
def scoped_environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """``os.environ`` with ``values`` set (None: unset) for the block, restored after. Task processes only."""
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


def _host_creds(config: MLflowConnectionConfig, uri: str):
    """MLflow's request credentials for ``uri``, from ``config`` alone (never the environment)."""
    from mlflow.utils.rest_utils import MlflowHostCreds

    return MlflowHostCreds(
        host=uri,
        username=config.username,
        password=config.password,
        token=config.token,
        ignore_tls_verification=config.insecure_tls,
        server_cert_path=config.ca_bundle,
    )


def _build_client(config: MLflowConnectionConfig) -> MlflowClient:
    """
    An ``MlflowClient`` whose REST stores carry ``config``'s credentials and retry budget themselves.

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

    def creds_for(uri: str):
        return lambda: _host_creds(config, uri)

    class _BudgetedTrackingStore(TrackingRestStore):
        def _call_endpoint(self, *args, **kwargs):
            with _http_budget(config):
                return super()._call_endpoint(*args, **kwargs)

    class _BudgetedRegistryStore(RegistryRestStore):
        def _call_endpoint(self, *args, **kwargs):
            with _http_budget(config):
                return super()._call_endpoint(*args, **kwargs)

    class _BoundTracking(TrackingServiceClient):
        def __init__(self, uri: str) -> None:
            self.tracking_uri = uri
            self._store = _BudgetedTrackingStore(creds_for(uri))

        @property
        def store(self):
            return self._store

    class _BoundRegistry(ModelRegistryClient):
        def __init__(self, registry_uri: str, tracking_uri: str) -> None:
            self.registry_uri, self.tracking_uri = registry_uri, tracking_uri
            self._store = _BudgetedRegistryStore(creds_for(registry_uri))

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
