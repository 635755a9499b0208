"""The ``mlflow`` connection, parsed once into a frozen, validated value."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_mlflow.exceptions import MLflowConnectionConfigError, MLflowConnectionLookupError

if TYPE_CHECKING:
    from airflow.sdk import Connection

#: URI schemes MLflow's client can track to; ``databricks`` and ``databricks-uc`` have no ``://``.
TRACKING_SCHEMES = frozenset(
    {"http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc", "file"}
)
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}
#: The connection whose absence means "the embedded default"; any other id must exist.
DEFAULT_CONN_ID = "mlflow_default"

log = logging.getLogger(__name__)


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or "~/airflow").expanduser()


def embedded_root() -> Path:
    """Folder of the embedded default store: ``$AIRFLOW_HOME/mlflow``."""
    return airflow_home() / "mlflow"


def redact_uri(uri: str) -> str:
    """``uri`` without any ``user:password@`` part, safe to log or link to."""
    scheme, sep, rest = uri.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def _scheme(uri: str) -> str:
    return uri.split(":", 1)[0].split("+", 1)[0].lower()


def _as_bool(conn_id: str, field_name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise MLflowConnectionConfigError(
        f"Connection {conn_id!r}: {field_name!r} must be true or false, got {value!r}"
    )


@dataclass(frozen=True)
class MLflowConnectionConfig:
    """
    Everything the provider needs to reach MLflow, validated.

    Secrets (``password``, ``token``) are excluded from ``repr`` so the object is safe to log.
    """

    tracking_uri: str
    registry_uri: str | None = None
    ui_url: str | None = None
    experiment_name: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    insecure_tls: bool = False
    ca_bundle: str | None = None
    #: True for the zero-set-up SQLite store under ``$AIRFLOW_HOME/mlflow``.
    embedded: bool = False
    artifact_root: str | None = None

    @property
    def is_http(self) -> bool:
        return _scheme(self.tracking_uri) in {"http", "https"}

    @property
    def mlflow_ui_url(self) -> str | None:
        """Base URL of MLflow's own UI, when there is one to link to."""
        if self.ui_url:
            return redact_uri(self.ui_url).rstrip("/")
        return redact_uri(self.tracking_uri).rstrip("/") if self.is_http else None

    @classmethod
    def embedded_default(cls) -> MLflowConnectionConfig:
        root = embedded_root()
        return cls(
            tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
            embedded=True,
            artifact_root=str(root / "artifacts"),
        )

    @classmethod
    def from_connection(cls, conn: Connection) -> MLflowConnectionConfig:
        """Read an ``mlflow`` connection; every error names the field and the value."""
        extra = conn.extra_dejson if conn.extra else {}
        if not isinstance(extra, dict):
            raise MLflowConnectionConfigError(f"Connection {conn.conn_id!r}: extra must be a JSON object")
        tracking_uri = (extra.get("tracking_uri") or "").strip() or cls._uri_from_host(conn)
        scheme = _scheme(tracking_uri)
        if scheme not in TRACKING_SCHEMES:
            raise MLflowConnectionConfigError(
                f"Connection {conn.conn_id!r}: tracking_uri {tracking_uri!r} has unsupported scheme "
                f"{scheme!r}; use one of {sorted(TRACKING_SCHEMES)}"
            )
        registry_uri = (extra.get("registry_uri") or "").strip() or None
        if registry_uri and _scheme(registry_uri) not in TRACKING_SCHEMES:
            raise MLflowConnectionConfigError(
                f"Connection {conn.conn_id!r}: registry_uri {registry_uri!r} has an unsupported scheme"
            )
        ui_url = (extra.get("ui_url") or "").strip() or None
        if ui_url and _scheme(ui_url) not in {"http", "https"}:
            raise MLflowConnectionConfigError(
                f"Connection {conn.conn_id!r}: ui_url {ui_url!r} must be an http(s) URL"
            )
        token = extra.get("token") or None
        username, password = conn.login or None, conn.password or None
        if token and (username or password):
            raise MLflowConnectionConfigError(
                f"Connection {conn.conn_id!r}: set either login/password or the token extra, not both"
            )
        if password and not username:
            raise MLflowConnectionConfigError(
                f"Connection {conn.conn_id!r}: password is set but login is empty"
            )
        ca_bundle = (extra.get("ca_bundle") or "").strip() or None
        insecure = _as_bool(conn.conn_id, "insecure_tls", extra.get("insecure_tls", False))
        if insecure and ca_bundle:
            raise MLflowConnectionConfigError(
                f"Connection {conn.conn_id!r}: insecure_tls=true and ca_bundle={ca_bundle!r} contradict"
            )
        return cls(
            tracking_uri=tracking_uri,
            registry_uri=registry_uri,
            ui_url=ui_url,
            experiment_name=(extra.get("experiment_name") or "").strip() or None,
            username=username,
            password=password,
            token=token,
            insecure_tls=insecure,
            ca_bundle=ca_bundle,
            artifact_root=(extra.get("artifact_root") or "").strip() or None,
        )

    @staticmethod
    def _uri_from_host(conn: Connection) -> str:
        host = (conn.host or "").strip()
        if not host:
            raise MLflowConnectionConfigError(
                f"Connection {conn.conn_id!r}: set host (an MLflow server) or the tracking_uri extra"
            )
        schema = (conn.schema or "http").strip().lower()
        if schema not in {"http", "https"}:
            raise MLflowConnectionConfigError(
                f"Connection {conn.conn_id!r}: schema must be 'http' or 'https', got {conn.schema!r}"
            )
        if "://" in host:  # a full URL typed into the host field
            parts = urlsplit(host)
            host, schema = parts.netloc, parts.scheme or schema
        port = conn.port
        if port is not None and not (isinstance(port, int) and 0 < port < 65536):
            raise MLflowConnectionConfigError(
                f"Connection {conn.conn_id!r}: port must be 1-65535, got {port!r}"
            )
        return f"{schema}://{host}" + (f":{port}" if port else "")


# -- where a connection comes from ----------------------------------------------------------------


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
        return MLflowConnectionConfig.from_connection(conn)
    if conn_id != DEFAULT_CONN_ID:
        raise AirflowNotFoundException(f"The conn_id `{conn_id}` isn't defined")
    config = MLflowConnectionConfig.embedded_default()
    log.warning(
        "MLflow: connection %r is defined nowhere; tracking to the embedded store %s",
        conn_id,
        config.tracking_uri,
    )
    return config


def _unreadable(conn_id: str, err: BaseException) -> MLflowConnectionLookupError:
    return MLflowConnectionLookupError(
        f"Connection {conn_id!r} could not be read in this process "
        f"({type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}); "
        "not falling back to the embedded store"
    )


def _in_task_context() -> bool:
    """True in a task or triggerer runner, where connections come through the Task SDK's comms."""
    runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    return getattr(runner, "SUPERVISOR_COMMS", None) is not None


def _strict_lookup(conn_id: str, team_name: str | None) -> Any:
    """The connection from this process's secrets backends, None if none has it; errors raise."""
    if _in_task_context():
        from airflow.sdk.execution_time.secrets import ExecutionAPISecretsBackend
        from airflow.sdk.execution_time.supervisor import ensure_secrets_backend_loaded

        for backend in ensure_secrets_backend_loaded():
            if isinstance(backend, ExecutionAPISecretsBackend):
                conn = _ask_execution_api(conn_id)
            else:
                conn = backend.get_connection(conn_id=conn_id)
            if conn:
                return conn
        return None

    from airflow._shared.secrets_backend.base import call_secrets_backend_method
    from airflow.configuration import conf, ensure_secrets_loaded
    from airflow.secrets.metastore import MetastoreBackend

    backends = ensure_secrets_loaded()
    for backend in backends:
        conn = call_secrets_backend_method(backend.get_connection, team_name=team_name, conn_id=conn_id)
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


def _ask_execution_api(conn_id: str) -> Any:
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import ErrorResponse, GetConnection
    from airflow.sdk.execution_time.context import _process_connection_result_conn

    msg = task_runner.SUPERVISOR_COMMS.send(GetConnection(conn_id=conn_id))
    if isinstance(msg, ErrorResponse):
        if msg.error == ErrorType.CONNECTION_NOT_FOUND:
            return None
        raise MLflowConnectionLookupError(
            f"Connection {conn_id!r} could not be read in this process (the Execution API answered "
            f"{msg.error.value}: {msg.detail}); not falling back to the embedded store"
        )
    return _process_connection_result_conn(msg)


def _teams_holding(conn_id: str) -> list[str]:
    from airflow.models import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return sorted(
            str(team)
            for team in session.scalars(select(Connection.team_name).where(Connection.conn_id == conn_id))
        )
