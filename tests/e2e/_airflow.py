"""A real Airflow 3 deployment for end-to-end tests, started natively (no Docker).

:class:`AirflowStack` owns a fresh PostgreSQL metadata database, a fresh ``AIRFLOW_HOME`` and
four processes, each in its own process group with its log in ``<workdir>/logs``:
``airflow scheduler`` (LocalExecutor, so task processes are its children),
``airflow dag-processor``, ``airflow triggerer`` and ``airflow api-server``. Tests talk to it only
the way a user would: the REST API v2 with a JWT from the simple auth manager. Its DAGs folder
serves the test DAGs (``tests/dags``) and the example DAGs (``dags_examples``) through symlinks.

MLflow is either the embedded default (no ``mlflow_default`` connection; the store is
``$AIRFLOW_HOME/mlflow/mlflow.db``) or a real ``mlflow server`` given as ``mlflow_server_url``,
which becomes ``AIRFLOW_CONN_MLFLOW_DEFAULT`` in every process.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from tests.integration._mlflow_servers import (
    PG_ADMIN_URI,
    _with_database,
    create_database,
    drop_database,
    group_members,
)
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]
#: What the stack's DAGs folder serves, each as a symlink to the real folder (entry name: source).
#: Airflow walks the folder with ``followlinks=True`` (``dags_examples/demo.py``, a script, defines
#: no DAG); task processes re-parse the DAG file through the same link, so the example DAGs run
#: exactly as shipped.
DAG_SOURCES = {"tests": ROOT / "tests" / "dags", "examples": ROOT / "dags_examples"}
HOST = "127.0.0.1"
COMPONENTS = ("scheduler", "dag-processor", "triggerer", "api-server")
START_TIMEOUT = float(os.environ.get("AMLF_E2E_START_TIMEOUT", "180"))
ADMIN = "admin"
#: The DAGs folder belongs to this team (Airflow's multi-team mode): only its members and admins
#: may read its DAGs. The simple auth manager's users: name -> (role, team).
DAGS_TEAM = "ml-team"
USERS = {ADMIN: ("admin", None), "analyst": ("viewer", DAGS_TEAM), "outsider": ("viewer", "other-team")}

# Inherited settings that would make the stack read a developer's config instead of ours.
_SCRUBBED_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "MLFLOW_TRACKING_", "MLFLOW_REGISTRY_")
_SCRUBBED = {"AIRFLOW_HOME", "AIRFLOW_CONFIG", "AMLF_TEST_AIRFLOW_HOME"}
TERMINAL_STATES = {"success", "failed"}


class StackError(RuntimeError):
    """A process of the stack exited, or the stack did not become healthy in time."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        return f"<cannot read {path}: {err}>"
    return "\n".join(text.splitlines()[-lines:])


class AirflowStack:
    """One Airflow deployment: metadata DB, AIRFLOW_HOME, processes, and a REST client.

    Attributes once started: ``home``, ``url`` (the API server), ``port``, ``db_uri``,
    ``mlflow_server_url`` (None: embedded default), ``env`` (what the processes run with),
    ``startup_seconds``.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        mlflow_server_url: str | None = None,
        dag_sources: dict[str, Path] | None = None,
        env_overrides: dict[str, str | None] | None = None,
        connections: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """``dag_sources``: what the DAGs folder serves (default :data:`DAG_SOURCES`);
        ``env_overrides``: settings on top of the stack's own (None removes a variable);
        ``connections``: id -> fields (``conn_type``, ``host``, ``password``, ``extra`` ...), stored
        in the metadata DB before any component starts, and so in no process's environment."""
        self.workdir = workdir
        self.connections = connections or {}
        self.dag_sources = DAG_SOURCES if dag_sources is None else dag_sources
        self.env_overrides = env_overrides or {}
        self.home = workdir / "airflow-home"
        self.dags_folder = self.home / "dags"
        self.logs = workdir / "logs"
        self.mlflow_server_url = mlflow_server_url
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.passwords = {name: secrets.token_urlsafe(12) for name in USERS}
        self.webhook_secret = secrets.token_urlsafe(24)
        self.password = self.passwords[ADMIN]
        self.dbname: str | None = None
        self.db_uri: str | None = None
        self.env: dict[str, str] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._pgids: set[int] = set()  # kept after stop(), for leftover_pids()
        self.startup_seconds: float | None = None
        self._started_at = time.monotonic()
        self._token: str | None = None
        self._http = requests.Session()
        self._unpaused: set[str] = set()

    # ------------------------------------------------------------------ lifecycle

    def _build_env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES) and k not in _SCRUBBED
        }
        venv_bin = str(Path(sys.executable).parent)
        passwords = self.workdir / "simple_auth_passwords.json"
        passwords.write_text(json.dumps(self.passwords))
        bundles = [
            {
                "name": "dags-folder",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {},
                "team_name": DAGS_TEAM,
            }
        ]
        env.update(
            AIRFLOW_HOME=str(self.home),
            PATH=os.pathsep.join([venv_bin, env.get("PATH", "")]),
            PYTHONPATH=os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p),
            PYTHONUNBUFFERED="1",
            AIRFLOW__CORE__DAGS_FOLDER=str(self.dags_folder),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            # Two cores: a few task processes at a time keep each one's start-up short.
            AIRFLOW__CORE__PARALLELISM="4",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=self.db_uri or "",
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            # The DAG files never change during a session: parse each once. A periodic re-parse
            # would also re-evaluate a DAG's "max active runs reached" flag at a moment the tests
            # do not control (see test_retrain_e2e: which runs the scheduler creates on unpause).
            AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="3600",
            AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="2",
            # A task supervisor that misses its task's exit notices it at its next heartbeat check
            # (default every 5 s): with the default, many tasks held their slot 5 s past their end.
            AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL="1",
            AIRFLOW__API__HOST=HOST,
            AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__API__BASE_URL=self.url,
            AIRFLOW__API__SECRET_KEY=secrets.token_hex(32),
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.url}/execution/",
            # Off the defaults (8793, 8794): a clash with another deployment on this machine makes
            # tasks die with "Not Found" from the execution API.
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
            AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
            AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=",".join(
                f"{name}:{role}" + (f":{team}" if team else "") for name, (role, team) in USERS.items()
            ),
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
            AIRFLOW__CORE__MULTI_TEAM="True",
            AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST=json.dumps(bundles),
        )
        if importlib.util.find_spec("asyncpg") is None:
            # Airflow derives postgresql+asyncpg:// for its async engine and dies at import when
            # asyncpg is missing (the test extra ships only psycopg2). Nothing this provider
            # exercises needs that engine (only the dag-run "wait" endpoint, multi-team and the
            # task state store use it), so switch it off rather than fail.
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = ""
        if self.mlflow_server_url:
            parts = urlsplit(self.mlflow_server_url)
            env["AIRFLOW_CONN_MLFLOW_DEFAULT"] = json.dumps(
                {
                    "conn_type": "mlflow",
                    "host": parts.hostname,
                    "port": parts.port,
                    "schema": parts.scheme,
                    # What MLflow signs its webhook deliveries with (test_webhooks_e2e).
                    "extra": {"webhook_secret": self.webhook_secret},
                }
            )
        for key, value in self.env_overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def start(self) -> None:
        """Create DB and home, migrate, and launch the four processes (does not wait for health)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.dags_folder.mkdir(exist_ok=True)
        for name, source in self.dag_sources.items():
            (self.dags_folder / name).symlink_to(source, target_is_directory=True)
        self._started_at = time.monotonic()
        self.dbname = create_database()
        # Bare postgresql:// means psycopg 3 to SQLAlchemy 2.1, which is not installed.
        self.db_uri = _with_database(PG_ADMIN_URI, self.dbname, driver="psycopg2")
        self.env = self._build_env()
        self._run_cli(["airflow", "db", "migrate"], "db-migrate")
        for team in sorted({team for _, team in USERS.values() if team}):
            self._run_cli(["airflow", "teams", "create", team], "teams")
        if self.connections:
            self._import_connections()
        for name in COMPONENTS:
            self._launch(name)

    def _import_connections(self) -> None:
        # Through a file outside the stack's folder, removed at once: secrets stay out of every
        # log, command line and environment (the fault suite greps them all).
        with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="amlf-conns-") as file:
            json.dump(self.connections, file)
            file.flush()
            self._run_cli(["airflow", "connections", "import", file.name], "connections")

    def _run_cli(self, cmd: list[str], log_name: str) -> None:
        log_path = self.logs / f"{log_name}.log"
        with log_path.open("ab") as log:
            done = subprocess.run(
                cmd,
                env=self.env,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=START_TIMEOUT,
            )
        if done.returncode != 0:
            raise StackError(f"{' '.join(cmd)} failed ({done.returncode}):\n{tail(log_path)}")

    def _launch(self, name: str) -> None:
        cmd = ["airflow", name]
        if name == "api-server":
            cmd += ["--port", str(self.port), "--host", HOST]
        elif name == "triggerer":
            # In multi-team mode a triggerer runs only the triggers of its team (without a team:
            # only the triggers of team-less DAGs). Every DAG here belongs to DAGS_TEAM.
            cmd += ["--team-name", DAGS_TEAM]
        log_path = self.logs / f"{name}.log"
        with log_path.open("ab") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            self.procs[name] = subprocess.Popen(
                cmd,
                env=self.env,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own group: stopping it reaches the children too (task processes, gunicorn/uvicorn).
                start_new_session=True,
            )
        self._pgids.add(self.procs[name].pid)

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Kill a component's whole process group (for the scheduler: its task processes too),
        as a crash of its machine would; :meth:`relaunch` starts it again."""
        proc = self.procs.pop(name)
        _signal_group(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        wait_for(f"airflow {name}'s processes to exit", lambda: not group_members(proc.pid), 10, 0.1)

    def relaunch(self, name: str) -> None:
        """Start a component again (after :meth:`kill`) with the same settings; does not wait."""
        if name in self.procs and self.procs[name].poll() is None:
            raise StackError(f"airflow {name} is still running")
        self._launch(name)

    def pids(self, name: str) -> list[int]:
        """Live processes of a component: its process group and every descendant of its leader
        (task processes start sessions of their own)."""
        leader = self.procs[name].pid
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if fields[0] != "Z":
                    parents[int(entry.name)] = int(fields[1])
        found = set(group_members(leader)) | {leader}
        grown = True
        while grown:
            children = {pid for pid, ppid in parents.items() if ppid in found} - found
            found |= children
            grown = bool(children)
        return sorted(pid for pid in found if pid in parents)

    def health(self) -> dict[str, Any] | None:
        try:
            resp = self._http.get(f"{self.url}/api/v2/monitor/health", timeout=5)
        except requests.RequestException:
            return None
        return resp.json() if resp.status_code == 200 else None

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise StackError(f"airflow {name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def wait_healthy(self, timeout: float = START_TIMEOUT, *, again: bool = False) -> None:
        """Until scheduler, triggerer and dag-processor report healthy through the API server.

        ``again``: the stack was healthy before (e.g. a component was relaunched); the timeout
        counts from now, and ``startup_seconds`` stays the first start-up's.
        """
        deadline = (time.monotonic() if again else self._started_at) + timeout
        while True:
            self._check_alive()
            health = self.health() or {}
            states = {
                c: (health.get(c) or {}).get("status") for c in ("scheduler", "triggerer", "dag_processor")
            }
            if all(s == "healthy" for s in states.values()):
                break
            if time.monotonic() > deadline:
                raise StackError(
                    f"Airflow not healthy after {timeout:.0f} s: {states}\n"
                    + "\n".join(f"--- {name}:\n{self.log_tail(name, 30)}" for name in self.procs)
                )
            time.sleep(1)
        if not again:
            self.startup_seconds = time.monotonic() - self._started_at

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM every process group, SIGKILL what is left, drop the metadata database."""
        try:
            for proc in self.procs.values():
                _signal_group(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            for proc in self.procs.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            for proc in self.procs.values():
                # Children (task supervisors, API workers) can outlive the leader: sweep the group.
                _signal_group(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            # SIGKILL is asynchronous: give the kernel a moment to take the swept children down.
            with contextlib.suppress(TimeoutError):
                wait_for("the stack's processes to exit", lambda: not self.leftover_pids(), 5, 0.1)
        finally:
            self.procs.clear()
            self._http.close()
            if self.dbname is not None:
                drop_database(self.dbname)
                self.dbname = None

    def leftover_pids(self) -> list[int]:
        """Processes still in any of the stack's process groups (empty after a clean stop)."""
        return [pid for pgid in self._pgids for pid in group_members(pgid)]

    def log_tail(self, name: str, lines: int = 60) -> str:
        """The last lines of a component's log: ``scheduler``, ``triggerer``, ``db-migrate``, ..."""
        return tail(self.logs / f"{name}.log", lines)

    def log_text(self, name: str) -> str:
        """A component's whole log so far."""
        return (self.logs / f"{name}.log").read_text(errors="replace")

    # ------------------------------------------------------------------ REST API v2

    def token(self) -> str:
        if self._token is None:
            resp = self._http.post(
                f"{self.url}/auth/token", json={"username": ADMIN, "password": self.password}, timeout=30
            )
            if resp.status_code != 201:
                raise StackError(f"POST /auth/token -> {resp.status_code}: {resp.text[:500]}")
            self._token = resp.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        """Call ``/api/v2{path}`` as the admin; the decoded JSON, or StackError on another status."""
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        resp = self._http.request(method, f"{self.url}/api/v2{path}", headers=headers, timeout=30, **kwargs)
        if resp.status_code not in ok:
            raise StackError(f"{method} /api/v2{path} -> {resp.status_code}: {resp.text[:1000]}")
        return resp.json() if resp.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 90) -> dict[str, Any]:
        """The DAG once the dag-processor has parsed and serialized it."""

        def probe():
            self._check_alive()
            body = self.api("GET", f"/dags/{dag_id}", ok=(200, 404))
            return body if body.get("dag_id") == dag_id else None

        try:
            return wait_for(f"DAG {dag_id} to be parsed", probe, timeout)
        except TimeoutError as err:
            errors = self.api("GET", "/importErrors")
            raise StackError(f"{err}; import errors: {errors}\n{self.log_tail('dag-processor')}") from err

    def unpause(self, dag_id: str) -> None:
        if dag_id not in self._unpaused:
            self.wait_for_dag(dag_id)
            self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
            self._unpaused.add(dag_id)

    def watch_assets(self, dag_id: str, uris: list[str], timeout: float = 90) -> list[dict[str, Any]]:
        """
        Unpause ``dag_id`` and have its file parsed again: Airflow attaches an asset's watchers
        (``AssetWatcher``) only when it parses a DAG scheduled on the asset while that DAG is
        unpaused, and this stack parses each file once (see ``_build_env``). The assets, once
        every one of ``uris`` has its watcher.
        """
        self.unpause(dag_id)
        token = self.api("GET", f"/dags/{dag_id}/details")["file_token"]
        self.api("PUT", f"/parseDagFile/{token}", ok=(201,))

        def watched() -> list[dict[str, Any]] | None:
            assets = {a["uri"]: a for a in self.api("GET", "/assets", params={"limit": 100})["assets"]}
            found = [assets.get(uri) for uri in uris]
            return found if all(a and a["watchers"] for a in found) else None  # type: ignore[index]

        return wait_for(f"the watchers of {dag_id}'s assets", watched, timeout)

    def trigger(
        self,
        dag_id: str,
        conf: dict[str, Any] | None = None,
        logical_date: str | None = None,
        *,
        run_after: str | None = None,
        unpause: bool = True,
    ) -> str:
        """Start a manual DAG run (unpausing ``dag_id`` first unless ``unpause=False``); its run id.

        ``logical_date`` is an ISO timestamp, ``"now"``, or None: Airflow 3's default for a
        manual run, which then has no logical date at all. ``run_after`` (default: now) is when
        the run may start; the scheduler starts queued runs of a DAG in ``run_after`` order.
        """
        if unpause:
            self.unpause(dag_id)
        if logical_date == "now":
            logical_date = datetime.now(UTC).isoformat()
        body: dict[str, Any] = {"logical_date": logical_date, "conf": conf or {}}
        if run_after is not None:
            body["run_after"] = run_after
        return self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def dag_runs(self, dag_id: str, **params: Any) -> list[dict[str, Any]]:
        """The DAG's runs (filters such as ``run_type=...`` as query parameters), oldest first."""
        params = {"limit": 100, "order_by": "id", **params}
        return self.api("GET", f"/dags/{dag_id}/dagRuns", params=params)["dag_runs"]

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run (mapped ones each with their ``map_index``)."""
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})[
            "task_instances"
        ]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's XCom value, decoded."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.api("GET", path, params={"deserialize": True, "stringify": False})["value"]

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> str:
        body = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"map_index": map_index, "full_content": True},
            headers={"Accept": "application/json"},
        )
        content = body.get("content") if isinstance(body, dict) else body
        if isinstance(content, list):
            return "\n".join(_log_line(line) for line in content)
        return str(content)

    def wait(
        self,
        dag_id: str,
        run_id: str,
        timeout: float = 180,
        on_poll: Callable[[list[dict[str, Any]]], None] | None = None,
        interval: float = 1.0,
    ) -> str:
        """Poll until the DAG run ends; its final state. ``on_poll`` sees the task instances each time."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            state = self.dag_run(dag_id, run_id)["state"]
            if on_poll is not None:
                on_poll(self.task_instances(dag_id, run_id))
            if state in TERMINAL_STATES:
                return state
            if time.monotonic() > deadline:
                tis = {
                    (t["task_id"], t["map_index"]): t["state"] for t in self.task_instances(dag_id, run_id)
                }
                raise StackError(
                    f"DAG run {dag_id}/{run_id} still {state} after {timeout:.0f} s; tasks: {tis}\n"
                    f"--- scheduler:\n{self.log_tail('scheduler', 40)}"
                )
            time.sleep(interval)

    def describe_failure(self, dag_id: str, run_id: str) -> str:
        """Task states and the logs of failed tasks, for assertion messages."""
        parts = []
        for ti in self.task_instances(dag_id, run_id):
            parts.append(f"{ti['task_id']}[{ti['map_index']}]: {ti['state']} (try {ti['try_number']})")
            if ti["state"] in {"failed", "up_for_retry", "upstream_failed"} and ti["try_number"]:
                with contextlib.suppress(StackError):
                    log = self.task_log(dag_id, run_id, ti["task_id"], ti["try_number"], ti["map_index"])
                    parts.append("\n".join(log.splitlines()[-30:]))
        return "\n".join(parts)

    # ------------------------------------------------------------------ MLflow

    @property
    def mlflow_tracking_uri(self) -> str:
        if self.mlflow_server_url:
            return self.mlflow_server_url
        return f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}"

    def mlflow_client(self, timeout: float = 30):
        """An ``MlflowClient`` on the store the stack's ``mlflow_default`` writes to.

        For the embedded store, call it once a tracked task has run: MlflowClient creates and
        migrates a SQLite store it opens, and doing that from here would race the provider's
        own locked initialisation in the task processes. So wait for the provider's marker.
        """
        from mlflow import MlflowClient

        if not self.mlflow_server_url:
            marker = self.home / "mlflow" / "mlflow.ready"
            wait_for(f"the provider to create the embedded store ({marker})", marker.exists, timeout, 0.2)
        return MlflowClient(self.mlflow_tracking_uri)


def _log_line(line: Any) -> str:
    """One structured task-log record as text: its event, and the reason a skip or failure gives."""
    if not isinstance(line, dict):
        return str(line)
    text = line.get("event", json.dumps(line))
    return f"{text} {line['reason']}" if line.get("reason") else text


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
