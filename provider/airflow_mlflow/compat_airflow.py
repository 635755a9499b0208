"""
Every use of Airflow's internals (private modules and ``_names``), one seam each: the Airflow half
of :mod:`airflow_mlflow.compat`, which re-exports these names (callers use ``compat.<name>``).

``tests/unit/test_compat.py`` exercises each seam against the installed Airflow and scans the
package for a private Airflow module or name used anywhere else. Nothing here imports the Task
SDK's runtime at module level: DAG files import modules that import this one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

# -- connection lookup in a task or triggerer process (see hooks/resolution.py): the Task SDK's
# runtime, which has no public way to ask a secrets backend strictly.


def in_task_context() -> bool:
    """True in a task or triggerer runner, where connections come through the Task SDK's comms."""
    runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    return getattr(runner, "SUPERVISOR_COMMS", None) is not None


def task_sdk_secrets_backends() -> list[Any]:
    """The secrets backends the Task SDK reads in this process, in order."""
    from airflow.sdk.execution_time.supervisor import ensure_secrets_backend_loaded

    return list(ensure_secrets_backend_loaded())


def is_execution_api_backend(backend: Any) -> bool:
    """Whether ``backend`` is the Task SDK's stand-in for the metadata DB (the Execution API)."""
    from airflow.sdk.execution_time.secrets import ExecutionAPISecretsBackend

    return isinstance(backend, ExecutionAPISecretsBackend)


def ask_execution_api(conn_id: str) -> tuple[Any, str | None]:
    """
    Connection ``conn_id`` from the supervisor's Execution API: ``(connection, None)``,
    ``(None, None)`` when it is not defined, ``(None, "<error>: <detail>")`` when the API failed.
    """
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import ErrorResponse, GetConnection
    from airflow.sdk.execution_time.context import _process_connection_result_conn

    msg = task_runner.SUPERVISOR_COMMS.send(GetConnection(conn_id=conn_id))
    if isinstance(msg, ErrorResponse):
        if msg.error == ErrorType.CONNECTION_NOT_FOUND:
            return None, None
        return None, f"{msg.error.value}: {msg.detail}"
    return _process_connection_result_conn(msg), None


def call_secrets_backend(method: Callable[..., Any], *, team_name: str | None, conn_id: str) -> Any:
    """``method(conn_id=…)`` of a server-side backend, scoped to ``team_name`` in multi-team mode."""
    from airflow._shared.secrets_backend.base import call_secrets_backend_method

    return call_secrets_backend_method(method, team_name=team_name, conn_id=conn_id)


# -- where a task runs (runs.py): the hostname the Task SDK's runner records on the task instance
# ([core] hostname_callable, falling back to the FQDN), from the SDK's API client module.


def task_hostname() -> str:
    """The hostname Airflow records on a task instance run by this process."""
    from airflow.sdk.api.client import get_hostname

    return str(get_hostname())


# -- what a tracked task's run records of it (plugins/task_tracking.py): Airflow's own rendering
# and masking of template fields, so the run shows what Airflow's UI shows and hides what it hides.


def hides_field(name: str) -> bool:
    """Whether Airflow masks a value stored under ``name`` (``password``, ``secret``, … in it)."""
    from airflow.sdk._shared.secrets_masker import should_hide_value_for_key

    return bool(should_hide_value_for_key(name))


def redact(value: Any, name: str | None = None) -> Any:
    """``value`` as Airflow's secrets masker shows it: registered secrets replaced by ``***``."""
    from airflow.sdk._shared.secrets_masker import redact as masker_redact

    return masker_redact(value, name)


def serialize_template_field(value: Any, name: str) -> Any:
    """A rendered template field in the JSON-able form Airflow stores and shows (its length limit applied)."""
    from airflow.sdk.execution_time.task_runner import _serialize_template_field

    return _serialize_template_field(value, name)


def is_virtualenv_operator(task: Any) -> bool:
    """
    Whether ``task`` runs its callable in another interpreter (``PythonVirtualenvOperator``,
    ``ExternalPythonOperator``, their decorators): the standard provider's private base class.
    False when the standard provider is not installed.
    """
    try:
        from airflow.providers.standard.operators.python import _BasePythonVirtualenvOperator
    except ImportError:  # pragma: no cover - the standard provider is not installed
        return False
    return isinstance(task, _BasePythonVirtualenvOperator)


def resolve_asset_ref(ref: Any) -> Any | None:
    """
    The ``Asset`` an asset reference (``Asset.ref(name=…)``, ``Asset.ref(uri=…)``) stands for,
    asked from the Execution API as the Task SDK's inlet and outlet accessors ask it. None for any
    other object, outside a task process, or when Airflow knows no such asset.
    """
    from airflow.sdk.definitions.asset import AssetNameRef, AssetUriRef

    if not isinstance(ref, (AssetNameRef, AssetUriRef)) or not in_task_context():
        return None
    from airflow.sdk.exceptions import AirflowRuntimeError
    from airflow.sdk.execution_time.context import OutletEventAccessors

    try:
        return OutletEventAccessors._get_asset_from_db(
            name=getattr(ref, "name", None), uri=getattr(ref, "uri", None)
        )
    except AirflowRuntimeError:  # not found
        return None


def resumes_attempt(ti: Any) -> bool:
    """
    Whether this task process continues an attempt that ran before, as the Execution API told it
    at start: a deferred task resuming (``next_method``) or a rescheduled sensor's later poke. True
    when the task instance carries no such context (unknown: assume it may).
    """
    context = getattr(ti, "_ti_context_from_server", None)
    if context is None:
        return True
    return bool(context.next_method) or bool(context.task_reschedule_count)


# -- the webhook receiver (plugins/webhooks.py): Airflow's asset tables and the asset manager, as
# the triggerer uses them when an asset watcher's trigger fires (``Trigger.submit_event``).


def metadata_session() -> Any:
    """A metadata-DB session (a context manager: committed on exit, rolled back on an error)."""
    from airflow.utils.session import create_session

    return create_session()


def watched_asset(session: Any, uri: str, trigger_classpath: str) -> Any | None:
    """
    The active asset ``uri`` when one of its watchers runs a ``trigger_classpath`` trigger, else
    None. Airflow keeps a watcher only while a DAG scheduled on the asset is active and unpaused.
    """
    from airflow.models.asset import AssetModel, AssetWatcherModel
    from airflow.models.trigger import Trigger
    from sqlalchemy import select

    return session.scalars(
        select(AssetModel)
        .join(AssetWatcherModel, AssetWatcherModel.asset_id == AssetModel.id)
        .join(Trigger, Trigger.id == AssetWatcherModel.trigger_id)
        .where(AssetModel.uri == uri, AssetModel.active.has(), Trigger.classpath == trigger_classpath)
        .limit(1)
    ).first()


def asset_event_extras_since(session: Any, uri_prefix: str, since: Any) -> list[dict[str, Any]]:
    """The extras of the asset events at or after ``since`` on assets whose URI starts with ``uri_prefix``."""
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    rows = session.scalars(
        select(AssetEvent.extra)
        .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
        .where(AssetModel.uri.startswith(uri_prefix, autoescape=True), AssetEvent.timestamp >= since)
    )
    return [dict(extra or {}) for extra in rows]


def register_asset_event(session: Any, asset: Any, extra: dict[str, Any]) -> Any | None:
    """
    An event on ``asset`` (an asset row from :func:`watched_asset`) with ``extra``, registered as
    the triggerer registers a watcher's event: DAG runs scheduled on it are queued.
    """
    from airflow.assets.manager import AssetManager

    return AssetManager.register_asset_change(asset=asset.to_serialized(), extra=extra, session=session)
