"""
``MLflowHookBase``: what every verb of ``MLflowHook`` stands on. The connection's config, the
client bound to it, the translation of MLflow's errors (``_call``) and plain REST reads.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_mlflow import compat, compat_fluent
from airflow_mlflow.exceptions import MLflowProviderError, translate
from airflow_mlflow.hooks.config import DEFAULT_CONN_ID, MLflowConnectionConfig, redact, redact_uri
from airflow_mlflow.hooks.resolution import resolve_config
from airflow_mlflow.hooks.throttle import limiter_for

if TYPE_CHECKING:
    from typing import Self

    from airflow.sdk import Connection
    from mlflow import MlflowClient

    from airflow_mlflow.hooks.config import HttpBudget


class cached_property:  # noqa: N801 - a drop-in for functools.cached_property
    """
    ``functools.cached_property`` without its lock. On Python 3.11 that lock is one per property,
    shared by every instance: the scheduler's listener threads resolve hooks while the
    LocalExecutor forks workers from it, and a task process forked while another thread held the
    lock waited on it forever (seen: a ``@task.mlflow`` task stuck in ``hook.config``). Python 3.12
    dropped the lock too; two threads may at worst both compute the value once.
    """

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func
        self.attrname = func.__name__
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.attrname = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        try:
            return instance.__dict__[self.attrname]
        except KeyError:
            value = instance.__dict__[self.attrname] = self.func(instance)
            return value


class MLflowHookBase(BaseHook):
    """
    A connection's config and client, with error translation; the verb groups build on it.

    :param mlflow_conn_id: the connection to use
    :param team_name: in multi-team mode, the team whose connections a server-side process reads
        (tasks and triggers are scoped by Airflow itself)
    """

    def __init__(
        self, mlflow_conn_id: str = DEFAULT_CONN_ID, team_name: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id
        #: In multi-team mode, the team whose connections a server-side process (the listener) reads.
        self.team_name = team_name

    @classmethod
    def from_connection(cls, conn: Connection | None, mlflow_conn_id: str = DEFAULT_CONN_ID) -> Self:
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

    def with_fallback_budget(self, budget: HttpBudget) -> Self:
        """
        A hook on the same connection whose client tries requests with ``budget`` unless the
        connection's extras or MLflow's variables set one (see ``with_fallback_budget`` of the config).
        """
        hook = type(self)(mlflow_conn_id=self.mlflow_conn_id, team_name=self.team_name)
        hook.__dict__["config"] = self.config.with_fallback_budget(budget)
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
        uris = self._fluent_env()
        if self.config.embedded:
            _prepare_embedded_store(self.config)
        with (
            scoped_environment({**_credential_env(self.config), **uris}),
            compat_fluent.use_tracking_uri(self.config.tracking_uri),
        ):
            yield

    def child_env(self, run_id: str, experiment_id: str, experiment_name: str) -> dict[str, str]:
        """
        The environment a child process needs for MLflow's fluent API (``mlflow.start_run()``,
        autolog) to write into ``run_id``: this connection's URIs and credentials, and the run.
        For the child's own environment only: never put it in ``os.environ`` of a shared process.
        """
        if self.config.embedded:
            _prepare_embedded_store(self.config)
        env = {
            **_credential_env(self.config),
            **self._fluent_env(),
            "MLFLOW_RUN_ID": run_id,
            "MLFLOW_EXPERIMENT_ID": experiment_id,
            # A worker-wide MLFLOW_EXPERIMENT_NAME would contradict the run's experiment.
            "MLFLOW_EXPERIMENT_NAME": experiment_name,
        }
        return {key: value for key, value in env.items() if value is not None}

    def _fluent_env(self) -> dict[str, str | None]:
        budget = self.config.http_budget
        return {
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

    def _rest_get(self, endpoint: str, params: Mapping[str, str]) -> dict:
        """GET a JSON endpoint of the tracking server with this hook's credentials."""
        creds = _host_creds(self.config, self.config.tracking_uri)
        with compat.pace_scope(_pace(self.config)):
            return compat.rest_get(creds, endpoint, params, self.config.http_budget)

    def _rest_get_bytes(self, endpoint: str, params: Mapping[str, str], max_bytes: int) -> bytes:
        """GET a file from the tracking server, reading at most ``max_bytes + 1`` bytes of it."""
        creds = _host_creds(self.config, self.config.tracking_uri)
        with compat.pace_scope(_pace(self.config)):
            return compat.rest_get_bytes(creds, endpoint, params, self.config.http_budget, max_bytes)

    @contextlib.contextmanager
    def _call(self, resource: str, *, alias_lookup: bool = False) -> Iterator[None]:
        """
        Translate MLflow's errors, with every secret of the connection removed from the message
        (``alias_lookup``: see :func:`~airflow_mlflow.exceptions.translate`).

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
            raise translate(err, resource, secrets, alias_lookup=alias_lookup) from _redacted(err, secrets)
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


@contextlib.contextmanager
def _http_budget(config: MLflowConnectionConfig) -> Iterator[None]:
    """MLflow requests made in this block (this thread) use ``config``'s retry budget and pace."""
    with contextlib.ExitStack() as stack:
        # Paced whatever the scheme: a databricks:// client sends HTTP requests too.
        stack.enter_context(compat.pace_scope(_pace(config)))
        if config.is_http:
            stack.enter_context(compat.budget_scope(config.http_budget))
        yield


def _pace(config: MLflowConnectionConfig) -> Callable[[], object] | None:
    """
    Waits for the slot of the connection's ``max_requests_per_second`` (None: unlimited). The
    limiter is looked up on each request: a forked task process gets its own.
    """
    rate = config.max_requests_per_second
    if rate is None:
        return None
    return lambda: limiter_for(config.tracking_uri, rate).wait()


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


def _host_creds(config: MLflowConnectionConfig, uri: str) -> Any:
    """MLflow's request credentials for ``uri``, from ``config`` alone (never the environment)."""
    return compat.host_creds(
        uri,
        username=config.username,
        password=config.password,
        token=config.token,
        insecure_tls=config.insecure_tls,
        ca_bundle=config.ca_bundle,
    )


def _build_client(config: MLflowConnectionConfig) -> MlflowClient:
    """
    An ``MlflowClient`` for ``config``; against a server, its REST stores carry the connection's
    credentials and retry budget themselves (see :func:`airflow_mlflow.compat.bound_client`).
    """
    if not config.is_http:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.registry_uri)
    return compat.bound_client(
        config.tracking_uri,
        config.registry_uri,
        lambda uri: _host_creds(config, uri),
        lambda: config.http_budget,
        _pace(config),
    )


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
        compat.migrate_sql_store(config.tracking_uri, Path(config.artifact_root).as_uri())
        marker.touch()
