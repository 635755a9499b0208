"""Real ``mlflow server`` subprocesses for integration tests.

Modelled on MLflow's own test suite: start the real CLI in a subprocess and poll ``/health``.
Each server gets a fresh PostgreSQL database (dropped afterwards) and a local directory for
proxied artifacts. The fixtures that use this live in ``conftest.py`` next to this module.

Start-up is split into :meth:`ServerProcess.start` (non-blocking) and
:meth:`ServerProcess.wait_healthy`, so several servers can boot at the same time. Other tiers
(e2e) can reuse it: ``from tests.integration._mlflow_servers import ServerProcess``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HOST = "127.0.0.1"
# Maintenance database used to create and drop the per-server databases.
PG_ADMIN_URI = os.environ.get("AMLF_TEST_PG_URI", "postgresql://postgres@127.0.0.1:5432/postgres")
START_TIMEOUT = float(os.environ.get("AMLF_TEST_SERVER_TIMEOUT", "90"))
DB_PREFIX = "amlf_it_"
# Each uvicorn worker imports the whole server (~250 MB RSS); two keep tests concurrent enough.
WORKERS = 2

# Never let the server pick up a developer's client credentials, tracking URI or auth settings.
_SCRUBBED_ENV_PREFIXES = ("MLFLOW_TRACKING_", "MLFLOW_AUTH_", "MLFLOW_REGISTRY_URI")
_SCRUBBED_ENV = {"MLFLOW_FLASK_SERVER_SECRET_KEY"}


class ServerStartError(RuntimeError):
    """The server exited or did not become healthy in time."""


@dataclass(frozen=True)
class MLflowServer:
    """A running ``mlflow server`` (proxied artifacts, PostgreSQL backend store)."""

    url: str
    host: str
    port: int
    backend_uri: str
    artifacts_dir: Path
    log_path: Path

    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log_path, lines)


@dataclass(frozen=True)
class MLflowAuthServer(MLflowServer):
    """A running ``mlflow server --app-name basic-auth`` with a bootstrapped admin user."""

    admin_username: str
    admin_password: str
    auth_config_path: Path

    def create_user(self, username: str, password: str) -> dict[str, Any]:
        """Create a non-admin user via the REST API (as the admin); return the server's user JSON.

        MLflow requires passwords of at least 12 characters.
        """
        body = _request(
            "POST",
            f"{self.url}/api/2.0/mlflow/users/create",
            {"username": username, "password": password},
            auth=(self.admin_username, self.admin_password),
        )
        cheapen_password_hash(self.auth_config_path, username, password)
        return body["user"]


def cheapen_password_hash(auth_config_path: Path, username: str, password: str) -> None:
    """
    Store ``username``'s password hash with 1,000 rounds of PBKDF2 instead of MLflow's default
    scrypt. The basic-auth app checks the password on every request, twice for most (about 0.1 s
    of CPU each here): that made the auth-server tests spend most of their time hashing. The
    check itself is unchanged (a wrong password is still refused); only the test server's cost is.
    """
    from werkzeug.security import generate_password_hash

    database = auth_config_path.with_name("basic_auth.db")
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as conn, conn:
        changed = conn.execute(
            "UPDATE users SET password_hash = ? WHERE username = ?",
            (generate_password_hash(password, method="pbkdf2:sha256:1000"), username),
        ).rowcount
    if changed != 1:
        raise RuntimeError(f"user {username!r} not found in {database}")


def _request(
    method: str, url: str, payload: dict[str, Any] | None = None, auth: tuple[str, str] | None = None
) -> dict[str, Any]:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")
        raise RuntimeError(f"{method} {url} -> HTTP {err.code}: {detail}") from err


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        return f"<cannot read {path}: {err}>"
    return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _mlflow_executable() -> str:
    # The CLI of the interpreter running the tests, not whatever `mlflow` is first on PATH.
    exe = Path(sys.executable).parent / "mlflow"
    if not exe.exists():
        raise ServerStartError(f"{exe} not found; install the test extra: pip install -e '.[test]'")
    return str(exe)


def _with_database(uri: str, dbname: str, driver: str | None = None) -> str:
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+")[0] + (f"+{driver}" if driver else "")
    return urlunsplit((scheme, parts.netloc, f"/{dbname}", parts.query, parts.fragment))


def _pg_admin(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    import psycopg2

    try:
        conn = psycopg2.connect(PG_ADMIN_URI, connect_timeout=10)
    except psycopg2.OperationalError as err:
        raise ServerStartError(
            f"PostgreSQL is not reachable at {PG_ADMIN_URI} (set AMLF_TEST_PG_URI to override). "
            f"Start it with: pg_ctlcluster --skip-systemctl-redirect <version> main start\n{err}"
        ) from err
    try:
        conn.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def create_database() -> str:
    name = f"{DB_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    # FORCE (PostgreSQL 13+) ends connections a killed server may have left behind.
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def drop_stale_databases() -> list[str]:
    """Drop test databases left behind by test processes that no longer exist (e.g. SIGKILLed)."""
    rows = _pg_admin("SELECT datname FROM pg_database WHERE datname LIKE %s", (DB_PREFIX + "%",))
    dropped = []
    for (name,) in rows:
        pid_part = name[len(DB_PREFIX) :].split("_", 1)[0]
        if not pid_part.isdigit() or _pid_alive(int(pid_part)):
            continue
        with contextlib.suppress(Exception):
            drop_database(name)
            dropped.append(name)
    return dropped


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: The test servers' key for webhook secrets at rest (a Fernet key: 32 url-safe base64 bytes).
_WEBHOOK_KEY = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _server_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_SCRUBBED_ENV_PREFIXES) and key not in _SCRUBBED_ENV
    }
    env.update(
        PYTHONUNBUFFERED="1",
        # The job runner spawns ~7 huey consumers (~500 MB) and a /dev/shm dir it never removes;
        # it only serves GenAI jobs, which this provider does not use.
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        # Webhook deliveries go to Airflow on 127.0.0.1 over http (tests/e2e/test_webhooks_e2e.py):
        # MLflow refuses private addresses and plain http without these; its workers share one
        # key for the stored webhook secrets (each would make its own otherwise).
        MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true",
        MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https",
        MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY=_WEBHOOK_KEY,
        # Each worker caches "which webhooks want this event" for 60 s: a webhook registered
        # within a minute of an alias move elsewhere would miss the next one (seen in CI).
        MLFLOW_WEBHOOK_CACHE_TTL="1",
    )
    env.update(extra)
    return env


class ServerProcess:
    """Owns one server subprocess, its database and its files. Not thread-safe; not needed."""

    def __init__(self, workdir: Path, *, auth: bool = False) -> None:
        self.workdir = workdir
        self.auth = auth
        self.log_path = workdir / "server.log"
        self.artifacts_dir = workdir / "artifacts"
        self.dbname: str | None = None
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None
        self.startup_seconds: float | None = None
        self._auth: tuple[str, str, Path] | None = None
        self._auth_env: dict[str, str] | None = None
        self._info: MLflowServer | None = None
        #: After :meth:`kill`, the next start reuses the port (clients keep their URL).
        self._keep_port = False

    @property
    def backend_uri(self) -> str:
        assert self.dbname is not None
        # SQLAlchemy 2.1 maps bare postgresql:// to psycopg 3; the test extra ships psycopg2.
        return _with_database(PG_ADMIN_URI, self.dbname, driver="psycopg2")

    def start(self) -> None:
        """Create the database and launch the server without waiting for it."""
        if self.proc is not None:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.artifacts_dir.mkdir(exist_ok=True)
        if self.dbname is None:
            self.dbname = create_database()
        extra_env: dict[str, str] = {}
        cmd = [
            _mlflow_executable(),
            "server",
            "--backend-store-uri",
            self.backend_uri,
            "--artifacts-destination",
            str(self.artifacts_dir),
            "--host",
            HOST,
            "--workers",
            str(WORKERS),
        ]
        if self.auth:
            if self._auth_env is None:  # a restart keeps the users and the admin password
                self._auth_env = self._write_auth_config()
            extra_env.update(self._auth_env)
            cmd += ["--app-name", "basic-auth"]
        if not (self._keep_port and self.port is not None):
            self.port = _free_port()
        cmd += ["--port", str(self.port)]
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                env=_server_env(extra_env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own process group: teardown signals the CLI, uvicorn and its workers together.
                start_new_session=True,
            )

    def _write_auth_config(self) -> dict[str, str]:
        # The basic-auth app imports flask_wtf; fail with the fix instead of a log dump.
        import importlib.util

        if importlib.util.find_spec("flask_wtf") is None:
            raise ServerStartError(
                "`mlflow server --app-name basic-auth` needs Flask-WTF: install mlflow[auth]"
            )
        username = "admin"
        password = secrets.token_urlsafe(18)  # MLflow rejects passwords shorter than 12 chars
        config_path = self.workdir / "basic_auth.ini"
        config_path.write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = sqlite:///{self.workdir / 'basic_auth.db'}\n"
            f"admin_username = {username}\n"
            f"admin_password = {password}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        self._auth = (username, password, config_path)
        return {
            "MLFLOW_AUTH_CONFIG_PATH": str(config_path),
            # The basic-auth app refuses to start without a static CSRF key.
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        }

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> MLflowServer:
        """Block until ``GET /health`` returns 200; retry once on a lost port race."""
        if self._info is not None:
            return self._info
        self.start()
        assert self.proc is not None and self.started_at is not None
        url = f"http://{HOST}:{self.port}"
        deadline = self.started_at + timeout
        port_retries = 2
        while True:
            if self.proc.poll() is not None:
                tail = _tail(self.log_path, 80)
                if port_retries and "address already in use" in tail.lower():
                    port_retries -= 1
                    self.proc = None
                    self.start()
                    url = f"http://{HOST}:{self.port}"
                    continue
                raise ServerStartError(
                    f"mlflow server exited with code {self.proc.returncode} before becoming healthy; "
                    f"log {self.log_path}:\n{tail}"
                )
            if _health_ok(url):
                break
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"mlflow server at {url} not healthy after {timeout:.0f} s; "
                    f"log {self.log_path}:\n{_tail(self.log_path, 80)}"
                )
            time.sleep(0.25)
        self.startup_seconds = time.monotonic() - self.started_at
        common = dict(
            url=url,
            host=HOST,
            port=self.port,
            backend_uri=self.backend_uri,
            artifacts_dir=self.artifacts_dir,
            log_path=self.log_path,
        )
        if self._auth is not None:
            username, password, config_path = self._auth
            cheapen_password_hash(config_path, username, password)
            self._info = MLflowAuthServer(
                **common, admin_username=username, admin_password=password, auth_config_path=config_path
            )
        else:
            self._info = MLflowServer(**common)
        return self._info

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Kill the whole server (CLI, uvicorn, workers) with ``sig``, as a crash would.

        The database, the artifacts, the auth config and the port are kept: :meth:`restart`
        brings the same server back at the same URL.
        """
        if self.proc is None:
            return
        _signal_group(self.proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        _wait_group_gone(self.proc.pid, 10)
        self.proc = None
        self._info = None

    def restart(self, timeout: float = START_TIMEOUT) -> MLflowServer:
        """Start the server again after :meth:`kill`, on the same port and database; wait for health."""
        if self.proc is not None:
            raise RuntimeError(f"mlflow server on port {self.port} is still running; kill() it first")
        self._keep_port = True
        try:
            self.start()
            return self.wait_healthy(timeout)
        finally:
            self._keep_port = False

    def pause(self) -> None:
        """SIGSTOP the server's processes: connections are accepted by the kernel, never answered."""
        assert self.proc is not None, "the server is not running"
        _signal_group(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`: the server answers again, queued requests first."""
        assert self.proc is not None, "the server is not running"
        _signal_group(self.proc.pid, signal.SIGCONT)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL what is left after ``grace`` s, drop the database."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                _signal_group(self.proc.pid, signal.SIGCONT)  # a paused server cannot handle SIGTERM
                _signal_group(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
            if self.proc is not None:
                # Workers can outlive the CLI process; sweep the group either way.
                _signal_group(self.proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=5)
        finally:
            self.proc = None
            self._info = None
            if self.dbname is not None:
                drop_database(self.dbname)
                self.dbname = None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, timeout: float) -> None:
    """Until no live process is left in group ``pgid`` (SIGKILL takes effect asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and group_members(pgid):
        time.sleep(0.1)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                found.append(int(entry.name))
    return found


def _health_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False
