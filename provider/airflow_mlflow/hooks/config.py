"""The ``mlflow`` connection, parsed once into a frozen, validated value."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_mlflow.exceptions import MLflowConnectionConfigError

if TYPE_CHECKING:
    from airflow.sdk import Connection

#: URI schemes MLflow's client can track to; ``databricks`` and ``databricks-uc`` have no ``://``.
TRACKING_SCHEMES = frozenset(
    {"http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc", "file"}
)
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


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
