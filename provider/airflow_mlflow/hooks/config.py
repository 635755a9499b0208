"""The ``mlflow`` connection, parsed once into a frozen, validated value."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
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
#: MLflow's client retry budget when neither the connection's extras nor MLflow's environment
#: variables set it: a refused connection fails after about 30 s of backoff (0+4+8+16 s, which
#: absorbs a server restart), a server that never answers after 5 tries of 10 s plus that backoff.
#: MLflow's own defaults (7 retries, factor 2, 120 s) take 4 minutes and more per request.
DEFAULT_HTTP_MAX_RETRIES = 4
DEFAULT_HTTP_BACKOFF_FACTOR = 2.0
DEFAULT_HTTP_TIMEOUT = 10.0
#: Each budget field, and MLflow's variable for it.
_BUDGET_FIELDS = {
    "max_retries": "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "backoff_factor": "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "timeout": "MLFLOW_HTTP_REQUEST_TIMEOUT",
}
#: MLflow refuses more retries and larger factors than these (``_MLFLOW_HTTP_REQUEST_*_LIMIT``).
_MAX_RETRIES_LIMIT = 10
_MAX_BACKOFF_LIMIT = 120.0
#: Bounds of the ``max_requests_per_second`` extra (one request every 1000 s .. no real limit).
_MIN_RATE, _MAX_RATE = 0.001, 100_000.0

#: The connection whose absence means "the embedded default"; any other id must exist.
DEFAULT_CONN_ID = "mlflow_default"


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or "~/airflow").expanduser()


def embedded_root() -> Path:
    """Folder of the embedded default store: ``$AIRFLOW_HOME/mlflow``."""
    return airflow_home() / "mlflow"


_SECRET_FIELDS = frozenset({"password", "token", "webhook_secret"})
_URI_FIELDS = frozenset({"tracking_uri", "registry_uri", "ui_url"})


def _userinfo_secrets(uri: str | None) -> list[str]:
    """The ``user:password`` part of ``uri`` (whole, password alone, and %-decoded), if any."""
    if not uri or "://" not in uri:
        return []
    from urllib.parse import unquote

    netloc = uri.split("://", 1)[1].split("/", 1)[0]
    if "@" not in netloc:
        return []
    userinfo = netloc.rsplit("@", 1)[0]
    found = [userinfo, unquote(userinfo)]
    if ":" in userinfo:
        password = userinfo.split(":", 1)[1]
        found += [password, unquote(password)]
    return [s for s in found if s]


def redact_uri(uri: str) -> str:
    """``uri`` without any ``user:password@`` part, safe to log or link to."""
    scheme, sep, rest = uri.partition("://")
    netloc, slash, path = rest.partition("/")
    if sep and "@" in netloc:
        netloc = netloc.rsplit("@", 1)[1]
    return f"{scheme}{sep}{netloc}{slash}{path}"


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every one of ``secrets`` replaced by ``***`` (longest first)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _userinfo_credentials(conn_id: str, field_name: str, uri: str | None) -> tuple[str | None, str, str]:
    """
    An http(s) ``uri`` without its ``user:password@`` part, and that user and password (decoded).

    MLflow never reads a URI's userinfo as credentials, and the URI lands in request URLs, error
    messages and ``MLFLOW_TRACKING_URI``: the provider sends it as basic auth instead.
    """
    if not uri or _scheme(uri) not in {"http", "https"} or "://" not in uri:
        return uri, "", ""
    from urllib.parse import unquote

    scheme, rest = uri.split("://", 1)
    netloc, slash, path = rest.partition("/")
    if "@" not in netloc:
        return uri, "", ""
    userinfo, host = netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    if not user:
        raise MLflowConnectionConfigError(
            f"Connection {conn_id!r}: {field_name} {redact_uri(uri)!r} has a password but no user name"
        )
    return f"{scheme}://{host}{slash}{path}", unquote(user), unquote(password)


def _scheme(uri: str) -> str:
    return uri.split(":", 1)[0].split("+", 1)[0].lower()


@dataclass(frozen=True)
class HttpBudget:
    """How hard the hook's MLflow client tries one request: MLflow's retries, backoff and timeout."""

    max_retries: int
    backoff_factor: float
    timeout: float


def _as_number(conn_id: str, field_name: str, value: Any, kind: type, low: float, high: float) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
            raise ValueError
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not (low <= number <= high) or number != number:
        raise MLflowConnectionConfigError(
            f"Connection {conn_id!r}: {field_name!r} must be a{'n integer' if kind is int else ' number'} "
            f"from {low:g} to {high:g}, got {value!r}"
        )
    return number


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

    Secrets (``password``, ``token``, ``webhook_secret``) are excluded from ``repr`` so the object
    is safe to log.
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
    #: Extras ``http_max_retries``, ``http_backoff_factor``, ``http_timeout``; None: not set.
    http_max_retries: int | None = None
    http_backoff_factor: float | None = None
    http_timeout: float | None = None
    #: Extra ``max_requests_per_second``: the provider's own requests per second in one process
    #: (see :mod:`airflow_mlflow.hooks.throttle`); None: unlimited.
    max_requests_per_second: float | None = None
    #: Extra ``webhook_secret``: the secret MLflow signs its webhooks to this Airflow with
    #: (:mod:`airflow_mlflow.plugins.webhooks`); None: webhooks for this connection are refused.
    webhook_secret: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        shown = {
            name: redact_uri(value) if name in _URI_FIELDS and isinstance(value, str) else value
            for name, value in vars(self).items()
            if name not in _SECRET_FIELDS
        }
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret this config holds, to strip from messages: password, token, URI userinfo."""
        found = [self.password, self.token, self.webhook_secret]
        for uri in (self.tracking_uri, self.registry_uri, self.ui_url):
            found.extend(_userinfo_secrets(uri))
        return tuple(dict.fromkeys(s for s in found if s))

    @property
    def http_budget(self) -> HttpBudget:
        """
        The retry budget of the hook's own client: the connection's extras, else MLflow's
        ``MLFLOW_HTTP_REQUEST_*`` variables when the process sets them, else the provider's defaults.
        """

        def pick(mine: Any, env: str, kind: type, default: Any) -> Any:
            if mine is not None:
                return mine
            raw = os.environ.get(env, "").strip()
            try:
                return kind(raw) if raw else default
            except ValueError:
                return default

        return HttpBudget(
            max_retries=pick(
                self.http_max_retries, "MLFLOW_HTTP_REQUEST_MAX_RETRIES", int, DEFAULT_HTTP_MAX_RETRIES
            ),
            backoff_factor=pick(
                self.http_backoff_factor,
                "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
                float,
                DEFAULT_HTTP_BACKOFF_FACTOR,
            ),
            timeout=pick(self.http_timeout, "MLFLOW_HTTP_REQUEST_TIMEOUT", float, DEFAULT_HTTP_TIMEOUT),
        )

    def with_fallback_budget(self, fallback: HttpBudget) -> MLflowConnectionConfig:
        """
        This config with ``fallback`` in place of the provider's default retry budget: the
        connection's extras and MLflow's ``MLFLOW_HTTP_REQUEST_*`` variables still win.
        """
        chosen = {}
        for name, env in _BUDGET_FIELDS.items():
            if getattr(self, f"http_{name}") is None and not os.environ.get(env, "").strip():
                chosen[f"http_{name}"] = getattr(fallback, name)
        return replace(self, **chosen)

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
                f"Connection {conn.conn_id!r}: tracking_uri {redact_uri(tracking_uri)!r} has unsupported "
                f"scheme {scheme!r}; use one of {sorted(TRACKING_SCHEMES)}"
            )
        registry_uri = (extra.get("registry_uri") or "").strip() or None
        if registry_uri and _scheme(registry_uri) not in TRACKING_SCHEMES:
            raise MLflowConnectionConfigError(
                f"Connection {conn.conn_id!r}: registry_uri {redact_uri(registry_uri)!r} has an "
                "unsupported scheme"
            )
        ui_url = (extra.get("ui_url") or "").strip() or None
        ui_url = redact_uri(ui_url) if ui_url else None  # a link never carries credentials
        if ui_url and _scheme(ui_url) not in {"http", "https"}:
            raise MLflowConnectionConfigError(
                f"Connection {conn.conn_id!r}: ui_url {redact_uri(ui_url)!r} must be an http(s) URL"
            )
        token = extra.get("token") or None
        username, password = conn.login or None, conn.password or None
        tracking_uri, uri_user, uri_password = _userinfo_credentials(
            conn.conn_id, "tracking_uri", tracking_uri
        )
        registry_uri, reg_user, reg_password = _userinfo_credentials(
            conn.conn_id, "registry_uri", registry_uri
        )
        if reg_user and (reg_user, reg_password) != (uri_user, uri_password) and (uri_user or username):
            raise MLflowConnectionConfigError(
                f"Connection {conn.conn_id!r}: registry_uri carries other credentials than the tracking "
                "server's; one connection has one set of credentials"
            )
        uri_user, uri_password = uri_user or reg_user, uri_password or reg_password
        if uri_user:
            if token or username or password:
                raise MLflowConnectionConfigError(
                    f"Connection {conn.conn_id!r}: credentials are both in the URI and in "
                    "login/password or the token extra; keep one"
                )
            username, password = uri_user, uri_password or None
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
            http_max_retries=_as_number(
                conn.conn_id, "http_max_retries", extra.get("http_max_retries"), int, 0, _MAX_RETRIES_LIMIT
            ),
            http_backoff_factor=_as_number(
                conn.conn_id,
                "http_backoff_factor",
                extra.get("http_backoff_factor"),
                float,
                0,
                _MAX_BACKOFF_LIMIT,
            ),
            http_timeout=_as_number(
                conn.conn_id, "http_timeout", extra.get("http_timeout"), float, 0.1, 3600
            ),
            max_requests_per_second=_as_number(
                conn.conn_id,
                "max_requests_per_second",
                extra.get("max_requests_per_second"),
                float,
                _MIN_RATE,
                _MAX_RATE,
            ),
            webhook_secret=str(extra.get("webhook_secret") or "") or None,
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
