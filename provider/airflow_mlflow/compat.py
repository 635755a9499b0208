"""
Every use of a library's internals, one seam each: MLflow's here, Airflow's in
:mod:`airflow_mlflow.compat_airflow` (re-exported at the end of this module).

Elsewhere the provider uses MLflow's public interface only: the modules in
:data:`MLFLOW_PUBLIC_MODULES` (``mlflow`` itself for its top-level functions and ``MlflowClient``,
``mlflow.entities``, ``mlflow.exceptions``, ``mlflow.protos.databricks_pb2``, ``mlflow.artifacts``,
and the documented ``mlflow.models``, ``mlflow.pyfunc``, ``mlflow.data`` and ``mlflow.projects``)
and no private ``_name`` of an MLflow object. Everything else is used here, and ``tests/unit/test_compat.py``
exercises each seam against the installed version and scans the package for any use outside this
module: an upgrade that moves one fails the test named after it.

Nothing here imports MLflow or the Task SDK's runtime at module level: DAG files import modules
that import this one.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.store.artifact.artifact_repository import ArtifactRepository
    from mlflow.utils.rest_utils import MlflowHostCreds

    from airflow_mlflow.hooks.config import HttpBudget

# == MLflow ======================================================================================

#: MLflow's public modules the provider may import anywhere, with their submodules (but ``mlflow``'s
#: own other modules are internals): modules of MLflow's Python API reference, and the module of
#: the error codes that ``MlflowException.error_code`` takes.
MLFLOW_PUBLIC_MODULES = (
    "mlflow",
    "mlflow.entities",
    "mlflow.exceptions",
    "mlflow.protos.databricks_pb2",
    "mlflow.artifacts",
    # Documented APIs: evaluate and signatures, pyfunc loading, datasets, Projects.
    "mlflow.models",
    "mlflow.pyfunc",
    "mlflow.data",
    "mlflow.projects",
)


def is_public_mlflow_module(name: str) -> bool:
    """Whether module ``name`` is public MLflow (``mlflow`` itself, or one of the others or below)."""
    return name == "mlflow" or any(
        name == public or name.startswith(f"{public}.") for public in MLFLOW_PUBLIC_MODULES[1:]
    )


#: MLflow modules a fresh client loads on its first request; the listener imports them before it
#: forks (see ``plugins/listener.py``). Internal paths: the compat test imports each one.
MLFLOW_PRELOAD = (
    "mlflow",
    "mlflow.entities",
    "mlflow.exceptions",
    "mlflow.protos.databricks_pb2",
    "mlflow.protos.service_pb2",
    "mlflow.utils.rest_utils",
    "mlflow.store.tracking.rest_store",
    "mlflow.store.model_registry.rest_store",
    "mlflow.tracking._tracking_service.client",
    "mlflow.tracking._model_registry.client",
    "mlflow.tracking.request_header.registry",  # on the first request
    "mlflow.store.db.utils",
    "mlflow.store.tracking.sqlalchemy_store",  # the embedded default
)


def host_creds(
    uri: str,
    *,
    username: str | None,
    password: str | None,
    token: str | None,
    insecure_tls: bool,
    ca_bundle: str | None,
) -> MlflowHostCreds:
    """MLflow's request credentials for ``uri``, from these values alone (never the environment)."""
    from mlflow.utils.rest_utils import MlflowHostCreds

    return MlflowHostCreds(
        host=uri,
        username=username,
        password=password,
        token=token,
        ignore_tls_verification=insecure_tls,
        server_cert_path=ca_bundle,
    )


def _budget_kwargs(budget: HttpBudget) -> dict[str, float]:
    return {
        "max_retries": budget.max_retries,
        "backoff_factor": budget.backoff_factor,
        "timeout": budget.timeout,
    }


def rest_get(creds: MlflowHostCreds, endpoint: str, params: Mapping[str, str], budget: HttpBudget) -> dict:
    """GET a JSON endpoint of a tracking server through MLflow's own request function."""
    from mlflow.utils.rest_utils import http_request, verify_rest_response

    response = http_request(creds, endpoint, "GET", params=params, **_budget_kwargs(budget))
    return verify_rest_response(response, endpoint).json()


def rest_get_bytes(
    creds: MlflowHostCreds, endpoint: str, params: Mapping[str, str], budget: HttpBudget, max_bytes: int
) -> bytes:
    """GET a file from a tracking server, reading at most ``max_bytes + 1`` bytes of it."""
    from mlflow.utils.rest_utils import http_request, verify_rest_response

    kwargs = _budget_kwargs(budget)
    with http_request(creds, endpoint, "GET", params=params, stream=True, **kwargs) as response:
        verify_rest_response(response, endpoint)
        data = bytearray()
        for chunk in response.iter_content(64 * 1024):
            data += chunk
            if len(data) > max_bytes:
                break
        return bytes(data)


#: The retry budget of the hook call running in this context (None: MLflow's environment rules).
_BUDGET: contextvars.ContextVar[HttpBudget | None] = contextvars.ContextVar(
    "airflow_mlflow_budget", default=None
)
#: MLflow's settings ``http_request`` reads when its caller passes none, and the budget's field for each.
_BUDGET_SETTINGS = (
    ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "max_retries"),
    ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "backoff_factor"),
    ("MLFLOW_HTTP_REQUEST_TIMEOUT", "timeout"),
)


class _BudgetedSetting:
    """
    Stands for one of MLflow's ``MLFLOW_HTTP_REQUEST_*`` settings inside ``mlflow.utils.rest_utils``:
    the budget of the running hook call while there is one, MLflow's own value (the environment)
    otherwise.
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
    ``http_request`` reads its retries, backoff and timeout from module-level settings of
    ``mlflow.utils.rest_utils`` on every call (``call_endpoint``, which the REST stores use, passes
    none): they are replaced, once, by stand-ins answering with the running call's budget.
    """
    from mlflow.utils import rest_utils

    with _seam_lock:
        for name, field in _BUDGET_SETTINGS:
            current = getattr(rest_utils, name)
            if not isinstance(current, _BudgetedSetting):
                setattr(rest_utils, name, _BudgetedSetting(current, field))


@contextlib.contextmanager
def budget_scope(budget: HttpBudget) -> Iterator[None]:
    """MLflow requests made in this block (this thread, this task) use ``budget``."""
    _install_budget_seam()
    token = _BUDGET.set(budget)
    try:
        yield
    finally:
        _BUDGET.reset(token)


#: Called before each request MLflow sends in this context (None: send at once).
_PACE: contextvars.ContextVar[Callable[[], object] | None] = contextvars.ContextVar(
    "airflow_mlflow_pace", default=None
)


def _paced(send: Callable[..., Any]) -> Callable[..., Any]:
    def stand_in(*args: Any, **kwargs: Any) -> Any:
        pace = _PACE.get()
        if pace is not None and "call_func" in kwargs:  # the Databricks SDK's loop: each attempt
            call = kwargs["call_func"]
            kwargs["call_func"] = lambda: (pace(), call())[1]
        elif pace is not None:
            pace()
        return send(*args, **kwargs)

    stand_in.__wrapped__ = stand_in.airflow_mlflow_paced = send  # type: ignore[attr-defined]
    return stand_in


def _install_pace_seam() -> None:
    """
    ``http_request`` sends through one of two module-level functions of ``mlflow.utils.rest_utils``
    (urllib3 with MLflow's retry, or the Databricks SDK's retry loop), whoever calls it (REST
    stores, artifact repositories, :func:`rest_get`): each is replaced, once, by a stand-in that
    first waits for the running call's pace. The retries stay MLflow's, paced by ``Retry-After``.
    """
    from mlflow.utils import rest_utils

    with _seam_lock:
        for name in (
            "_get_http_response_with_retries",
            "_retry_databricks_sdk_call_with_exponential_backoff",
        ):
            current = getattr(rest_utils, name)
            if not hasattr(current, "airflow_mlflow_paced"):
                setattr(rest_utils, name, _paced(current))


@contextlib.contextmanager
def pace_scope(pace: Callable[[], object] | None) -> Iterator[None]:
    """MLflow requests sent in this block (this thread, this task) call ``pace()`` first; None: no-op."""
    if pace is None:
        yield
        return
    _install_pace_seam()
    token = _PACE.set(pace)
    try:
        yield
    finally:
        _PACE.reset(token)


def bound_client(
    tracking_uri: str,
    registry_uri: str | None,
    creds_for: Callable[[str], MlflowHostCreds],
    budget: Callable[[], HttpBudget],
    pace: Callable[[], object] | None = None,
) -> MlflowClient:
    """
    An ``MlflowClient`` for an http(s) ``tracking_uri`` whose REST stores carry their credentials
    (``creds_for(uri)``), retry budget (``budget()``, read on each request) and pace (``pace()``
    before each request, see :func:`pace_scope`) themselves, instead
    of reading ``os.environ`` on every request: shared processes (scheduler, triggerer, API server)
    keep credentials out of it.

    MLflow has no public way to hand a client its stores: the client's tracking service client is
    replaced, and its registry client is answered by ``_get_registry_client``, the one accessor
    MLflow's client reads it through (its lazy attribute is never touched).
    """
    from mlflow import MlflowClient
    from mlflow.store.model_registry.rest_store import RestStore as RegistryRestStore
    from mlflow.store.tracking.rest_store import RestStore as TrackingRestStore
    from mlflow.tracking._model_registry.client import ModelRegistryClient
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    def creds(uri: str) -> Callable[[], MlflowHostCreds]:
        return lambda: creds_for(uri)

    class _BudgetedTrackingStore(TrackingRestStore):
        def _call_endpoint(self, *args: Any, **kwargs: Any) -> Any:
            with budget_scope(budget()), pace_scope(pace):
                return super()._call_endpoint(*args, **kwargs)

    class _BudgetedRegistryStore(RegistryRestStore):
        def _call_endpoint(self, *args: Any, **kwargs: Any) -> Any:
            with budget_scope(budget()), pace_scope(pace):
                return super()._call_endpoint(*args, **kwargs)

    class _BoundTracking(TrackingServiceClient):
        def __init__(self, uri: str) -> None:
            self.tracking_uri = uri
            self._store = _BudgetedTrackingStore(creds(uri))

        @property
        def store(self) -> Any:
            return self._store

    class _BoundRegistry(ModelRegistryClient):
        def __init__(self, registry_uri: str, tracking_uri: str) -> None:
            self.registry_uri, self.tracking_uri = registry_uri, tracking_uri
            self._store = _BudgetedRegistryStore(creds(registry_uri))

        @property
        def store(self) -> Any:
            return self._store

    registry = registry_uri or tracking_uri
    bound_registry = (
        _BoundRegistry(registry, tracking_uri) if registry.split(":", 1)[0] in {"http", "https"} else None
    )

    class _BoundClient(MlflowClient):
        def __init__(self) -> None:
            super().__init__(tracking_uri=tracking_uri, registry_uri=registry_uri)
            self._tracking_client = _BoundTracking(tracking_uri)

        def _get_registry_client(self) -> Any:
            return bound_registry or super()._get_registry_client()

    return _BoundClient()


def tracking_store(client: MlflowClient) -> Any:
    """The tracking store behind ``client`` (MLflow's ``AbstractStore`` API)."""
    return client._tracking_client.store


def update_run_info(client: MlflowClient, run_id: str, status: str, end_time: int | None) -> None:
    """
    Set a run's status and end time (None: none) in one request: ``MlflowClient.set_terminated``
    and ``update_run`` each read the run back first, and only the store's verb can clear an end time.
    """
    from mlflow.entities import RunStatus

    tracking_store(client).update_run_info(
        run_id, run_status=RunStatus.from_string(status), end_time=end_time, run_name=None
    )


def artifact_repository(artifact_uri: str, tracking_uri: str) -> ArtifactRepository:
    """MLflow's artifact repository for ``artifact_uri`` (uploads without reading the run back)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)


def migrate_sql_store(tracking_uri: str, artifact_uri: str) -> None:
    """Create MLflow's SQL store at ``tracking_uri`` and migrate its schema to this MLflow."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(tracking_uri, artifact_uri)


def mlflow_key_problem(key: str) -> str | None:
    """
    Why MLflow refuses ``key`` as a run's param, metric or tag name, or None when it accepts it.

    MLflow's ``_validate_param_name``, ``_validate_metric_name`` and ``_validate_tag_name``
    (private) all apply these two checks of ``mlflow.utils.validation``.
    """
    from mlflow.utils import validation

    if not validation.validate_param_and_metric_name(key):
        return validation.bad_character_message()
    if validation.path_not_unique(key):
        return validation.bad_path_message(key)
    return None


def artifact_path_is_safe(path: str) -> bool:
    """Whether MLflow's artifact server accepts ``path`` (relative, no ``..`` segments)."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.uri import validate_path_is_safe

    try:
        validate_path_is_safe(path)
    except MlflowException:
        return False
    return True


# == Airflow ====================================================================================
# Airflow's seams live in airflow_mlflow.compat_airflow (this module's size); callers use them here.

from airflow_mlflow.compat_airflow import (  # noqa: E402, F401 (re-exported)
    ask_execution_api,
    asset_event_extras_since,
    call_secrets_backend,
    hides_field,
    in_task_context,
    is_execution_api_backend,
    is_virtualenv_operator,
    metadata_session,
    redact,
    register_asset_event,
    resolve_asset_ref,
    resumes_attempt,
    serialize_template_field,
    task_hostname,
    task_sdk_secrets_backends,
    watched_asset,
)
