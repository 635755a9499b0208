"""
Where an ``mlflow`` connection comes from: :func:`resolve_config`, the one way every caller (hook,
trigger, UI, listener) turns a connection id into an ``MLflowConnectionConfig``.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow_mlflow import compat
from airflow_mlflow.exceptions import MLflowConnectionLookupError
from airflow_mlflow.hooks.config import DEFAULT_CONN_ID, MLflowConnectionConfig

log = logging.getLogger(__name__)
#: Embedded stores this process has already said it falls back to.
_WARNED_EMBEDDED: set[str] = set()


def resolve_config(conn_id: str = DEFAULT_CONN_ID, team_name: str | None = None) -> MLflowConnectionConfig:
    """
    The one way every caller (hook, trigger, UI, listener) turns a connection id into a config.

    A connection is looked up as Airflow looks it up in this process: in a task (or a trigger)
    through the Task SDK, elsewhere (scheduler and its listener, API server, ``airflow dags test``)
    through the server's secrets backends, the metadata DB included. Only ``mlflow_default`` defined
    *nowhere* gives the embedded default, said in one warning naming the store. A connection that
    cannot be read here (access denied, a backend or the DB failing) raises
    :class:`MLflowConnectionLookupError` naming the id; any other undefined id raises
    ``AirflowNotFoundException``.

    :param conn_id: the connection id
    :param team_name: the team whose connections a server-side process reads (multi-team mode)
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        # The Task SDK answers "not found" for every failing backend too, and outside a task it
        # skips the metadata DB: ask again, strictly, the way this process's Airflow would.
        try:
            conn = _strict_lookup(conn_id, team_name)
        except MLflowConnectionLookupError:
            raise
        except Exception as err:
            raise _unreadable(conn_id, err) from err
    except Exception as err:  # access denied (multi-team), an Execution API error
        raise _unreadable(conn_id, err) from err
    if conn is not None:
        config = MLflowConnectionConfig.from_connection(conn)
        _mask(config.secrets)
        return config
    if conn_id != DEFAULT_CONN_ID:
        raise AirflowNotFoundException(f"The conn_id `{conn_id}` isn't defined")
    config = MLflowConnectionConfig.embedded_default()
    if config.tracking_uri not in _WARNED_EMBEDDED:  # once per process and store, not per hook
        _WARNED_EMBEDDED.add(config.tracking_uri)
        log.warning(
            "MLflow: connection %r is defined nowhere; tracking to the embedded store %s",
            conn_id,
            config.tracking_uri,
        )
    return config


def _mask(secrets: tuple[str, ...]) -> None:
    """Have Airflow's secrets masker hide them in this process's logs (and its supervisor's)."""
    if not secrets:
        return
    from airflow.sdk.log import mask_secret

    for secret in secrets:
        mask_secret(secret)


def _unreadable(conn_id: str, err: BaseException) -> MLflowConnectionLookupError:
    return MLflowConnectionLookupError(
        f"Connection {conn_id!r} could not be read in this process "
        f"({type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}); "
        "not falling back to the embedded store"
    )


def _strict_lookup(conn_id: str, team_name: str | None) -> Any:
    """The connection from this process's secrets backends, None if none has it; errors raise."""
    if compat.in_task_context():
        for backend in compat.task_sdk_secrets_backends():
            if compat.is_execution_api_backend(backend):
                conn = _ask_execution_api(conn_id)
            else:
                conn = backend.get_connection(conn_id=conn_id)
            if conn:
                return conn
        return None

    try:
        from airflow.configuration import conf, ensure_secrets_loaded
        from airflow.secrets.metastore import MetastoreBackend
    except ImportError:  # a Task SDK-only install: no metadata DB here, only the SDK's backends
        return next(
            filter(None, (b.get_connection(conn_id=conn_id) for b in compat.task_sdk_secrets_backends())),
            None,
        )

    backends = ensure_secrets_loaded()
    for backend in backends:
        try:
            conn = compat.call_secrets_backend(backend.get_connection, team_name=team_name, conn_id=conn_id)
        except Exception:
            # A metadata DB that was never migrated (a script or notebook with a fresh
            # AIRFLOW_HOME) defines no connection; a DB that fails any other way is unreadable.
            if isinstance(backend, MetastoreBackend) and not _metastore_has_connections_table():
                continue
            raise
        if conn:
            return conn
    if conf.getboolean("core", "multi_team", fallback=False) and any(
        isinstance(b, MetastoreBackend) for b in backends
    ):
        teams = _teams_holding(conn_id)
        if teams:
            raise MLflowConnectionLookupError(
                f"Connection {conn_id!r} belongs to team(s) {teams} and this process reads it for "
                f"team {team_name!r}; not falling back to the embedded store"
            )
    return None


def _metastore_has_connections_table() -> bool:
    """False only when the metadata DB answers and has no connection table; its errors raise."""
    from airflow import settings
    from sqlalchemy import inspect

    return inspect(settings.engine).has_table("connection")


def _ask_execution_api(conn_id: str) -> Any:
    conn, error = compat.ask_execution_api(conn_id)
    if error:
        raise MLflowConnectionLookupError(
            f"Connection {conn_id!r} could not be read in this process (the Execution API answered "
            f"{error}); not falling back to the embedded store"
        )
    return conn


def _teams_holding(conn_id: str) -> list[str]:
    from airflow.models import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return sorted(
            str(team)
            for team in session.scalars(select(Connection.team_name).where(Connection.conn_id == conn_id))
        )
