"""Fault-suite fixtures: one real deployment, broken on purpose, shared by the whole tier.

``fault_stack`` (session scoped, opt-in: only tests that ask for it start anything) is ONE
``mlflow server --app-name basic-auth`` on PostgreSQL and ONE Airflow stack (scheduler,
dag-processor, triggerer, API server, LocalExecutor) serving ``tests/faults/dags``. The tests kill
and restart its parts; each test starts from :meth:`FaultStack.ensure_up`, so one test's
failure does not leave the next one with a dead server.

The connections live in the stack's metadata DB (created through the REST API), never in any
process's environment, as in a deployment; the secret test greps for their password:

* ``mlflow_default``: the server, user ``airflow-bot`` and its password as the connection's
  login/password; every task without ``mlflow_conn_id`` uses it;
* ``mlflow_uri``: the same server and user, the password inside the ``tracking_uri`` extra; the
  API server's MLflow views read through it (``[mlflow] conn_id``);
* ``mlflow_down``: like ``mlflow_uri`` on a closed port.

Each has the MLflow HTTP client's retry budget cut to a few seconds through its extras
(``http_max_retries`` etc.), and the stack's processes do NOT inherit the test process's
``MLFLOW_HTTP_REQUEST_*`` settings: the budget must come from the connection.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e._airflow import AirflowStack, StackError, free_port, tail, wait_for
from tests.faults.dags import DOWN_CONN, URI_CONN
from tests.integration._mlflow_servers import (
    MLflowAuthServer,
    ServerProcess,
    ServerStartError,
    drop_stale_databases,
)

FAULT_DAGS = Path(__file__).resolve().parent / "dags"
#: The client's retry budget, per connection: 2 tries, 1 s backoff, 10 s per request (the
#: basic-auth server hashes the password on every request: 7 tasks at once on 2 cores took > 5 s).
RETRY_EXTRAS = {"http_max_retries": 1, "http_backoff_factor": 1, "http_timeout": 10}
#: A request to a dead server (connection refused) fails within this under RETRY_EXTRAS: every
#: outage below lasts at least this long plus the server's start-up (15-20 s here).
REFUSED_BUDGET = 5
BOT_USER = "airflow-bot"
#: Within a minute of MLflow's return (the contract), plus the time to read the result.
FINALIZE_TIMEOUT = 75


class FaultStack:
    """The tier's deployment: ``stack`` (Airflow), ``server`` (MLflow), ``client`` (admin's)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.server = ServerProcess(workdir / "mlflow-server", auth=True)
        self.password = secrets.token_urlsafe(18)  # the secret the tier must never find
        self.down_port = free_port()  # nothing listens there
        self.info: MLflowAuthServer | None = None
        self.stack: AirflowStack | None = None

    def start(self) -> None:
        self.server.start()  # boots while Airflow migrates and starts; its port is known now
        host, port = "127.0.0.1", self.server.port
        conns = {"mlflow_default": {"host": host, "port": port, "login": BOT_USER, "password": self.password}}
        for conn_id, uri_port in ((URI_CONN, port), (DOWN_CONN, self.down_port)):
            conns[conn_id] = {
                "extra": {"tracking_uri": f"http://{BOT_USER}:{self.password}@{host}:{uri_port}"}
            }
        for conn in conns.values():
            conn["conn_type"] = "mlflow"
            conn["extra"] = json.dumps({**conn.get("extra", {}), **RETRY_EXTRAS})
        self.stack = AirflowStack(
            self.workdir / "airflow",
            dag_sources={"faults": FAULT_DAGS},
            connections=conns,
            env_overrides={
                # The budget must come from the connection's extras, not from our environment.
                "MLFLOW_HTTP_REQUEST_MAX_RETRIES": None,
                "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": None,
                "MLFLOW_HTTP_REQUEST_TIMEOUT": None,
                "AIRFLOW__MLFLOW__CONN_ID": URI_CONN,
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                # The secret check's DAG run shares its minute with the task-kill test's.
                "AIRFLOW__CORE__PARALLELISM": "5",
            },
        )
        self.stack.start()
        info = self.server.wait_healthy()
        assert isinstance(info, MLflowAuthServer) and info.port == port, info
        self.info = info
        info.create_user(BOT_USER, self.password)
        self.stack.wait_healthy()

    def stop(self) -> None:
        try:
            if self.stack is not None:
                self.stack.stop()
        finally:
            self.server.stop()

    def ensure_up(self) -> None:
        """Undo what an earlier (failed) test may have left: paused or dead server, dead scheduler."""
        if self.server.proc is None or self.server.proc.poll() is not None:
            self.server.kill()
            self.server.restart()
        else:
            self.server.resume()
        if "scheduler" not in self.stack.procs or self.stack.procs["scheduler"].poll() is not None:
            self.stack.procs.pop("scheduler", None)
            self.stack.relaunch("scheduler")
        self.stack.wait_healthy(120, again=True)

    def wait_quiet(self, timeout: float = 180) -> None:
        """Until no DAG run is queued or running: tests that break the server or the scheduler
        call it first. What an earlier failed test left running past ``timeout`` is marked failed."""
        stack = self.stack

        def active() -> list[dict]:
            params = {"state": ["queued", "running"], "limit": 100}
            return stack.api("GET", "/dags/~/dagRuns", params=params)["dag_runs"]

        try:
            wait_for("every DAG run to end", lambda: not active(), timeout)
        except TimeoutError:
            for run in active():
                print(
                    f"\n[faults] marking {run['dag_id']}/{run['dag_run_id']} failed (left by a failed test)"
                )
                stack.api(
                    "PATCH", f"/dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}", json={"state": "failed"}
                )
            self.wait_until("every DAG run to end after marking them failed", lambda: not active(), 60)

    # ------------------------------------------------------------------ MLflow

    @property
    def url(self) -> str:
        assert self.info is not None
        return self.info.url

    @property
    def client(self):
        """An MlflowClient as MLflow's admin (reads every experiment), with the same small budget."""
        from airflow.sdk import Connection

        from airflow_mlflow.hooks.mlflow import MLflowHook

        assert self.info is not None
        conn = Connection(
            conn_id="faults_admin",
            conn_type="mlflow",
            host=self.info.host,
            port=self.info.port,
            login=self.info.admin_username,
            password=self.info.admin_password,
            extra=json.dumps(RETRY_EXTRAS),
        )
        return MLflowHook.from_connection(conn, "faults_admin").client

    def kill_server(self) -> None:
        self.server.kill(signal.SIGKILL)

    def restart_server(self) -> float:
        """Bring the killed server back on its port; when it answered again (``time.monotonic``)."""
        self.server.restart()
        return time.monotonic()

    # ------------------------------------------------------------------ diagnostics

    def wait_until(self, what: str, probe: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
        """``wait_for``, with the scheduler's and the server's log tails when it times out."""
        try:
            return wait_for(what, probe, timeout, interval)
        except TimeoutError as err:
            raise TimeoutError(f"{err}{self.dump()}") from None

    def dump(self, lines: int = 40) -> str:
        """The scheduler's and the server's log tails (lines cut at 300 characters), for failures."""

        def short(text: str) -> str:
            return "\n".join(line[:300] for line in text.splitlines())

        assert self.stack is not None
        return (
            f"\n--- scheduler:\n{short(self.stack.log_tail('scheduler', lines))}"
            f"\n--- mlflow server:\n{short(tail(self.server.log_path, 15))}"
        )


@pytest.fixture(scope="package")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """
    The tier's deployment, started once by the first test that asks for it, and stopped after the
    tier's last test (not at the end of the session: the other tiers run faster without it).
    """
    drop_stale_databases()
    faults = FaultStack(tmp_path_factory.mktemp("faults"))
    started = time.monotonic()
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(faults.stop)
        try:
            faults.start()
        except (StackError, ServerStartError, TimeoutError, subprocess.TimeoutExpired) as err:
            failure: str | None = f"fault stack did not start: {err}"
        else:
            failure = None
            print(f"\n[faults] MLflow + Airflow up in {time.monotonic() - started:.1f} s ({faults.workdir})")
            yield faults
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    leftovers = faults.stack.leftover_pids() if faults.stack else []
    assert not leftovers, f"processes of the fault stack survived teardown: {leftovers}"


@pytest.fixture
def faults(fault_stack: FaultStack) -> FaultStack:
    """The shared deployment, with server and scheduler up again whatever the last test did."""
    fault_stack.ensure_up()
    return fault_stack


@pytest.fixture(scope="package")
def calm_runs(fault_stack: FaultStack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two DAG runs started together while nothing is broken, to share one calm minute:
    ``faults_secrets`` (read by test_secrets.py) and ``faults_kill`` (whose task processes
    test_kills.py SIGKILLs; they write their pids to ``pid_dir``). Run ids by DAG id."""
    fault_stack.ensure_up()
    pid_dir = tmp_path_factory.mktemp("pids")
    stack = fault_stack.stack
    return {
        "faults_secrets": stack.trigger("faults_secrets"),
        "faults_kill": stack.trigger("faults_kill", conf={"pid_dir": str(pid_dir)}),
        "pid_dir": str(pid_dir),
    }


def raw_task_log(
    stack: AirflowStack, dag_id: str, run_id: str, task_id: str, try_number: int, map_index=-1
) -> str:
    """A task log as the REST API serves it: every structured field (errors included), as JSON text."""
    body = stack.api(
        "GET",
        f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
        params={"map_index": map_index, "full_content": True},
        headers={"Accept": "application/json"},
    )
    return json.dumps(body)


# ---------------------------------------------------------------------- MLflow assertions


def experiment_runs(client, experiment: str, dag_run_id: str) -> list[Any]:
    """Every active run (parent and children) one DAG run left in ``experiment`` (none yet: [])."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`airflow.run_id` = '{dag_run_id}'")


def split_runs(runs: list[Any]) -> tuple[list[Any], list[Any]]:
    parents = [r for r in runs if r.data.tags.get("airflow.role") == "dag_run"]
    children = [r for r in runs if r.data.tags.get("airflow.role") == "task"]
    return parents, children


def finalized_parent(client, experiment: str, dag_run_id: str):
    """The DAG run's single parent once it is no longer RUNNING and its hint tag is gone, else None."""
    parents, _ = split_runs(experiment_runs(client, experiment, dag_run_id))
    if len(parents) != 1 or parents[0].info.status == "RUNNING":
        return None
    exp = client.get_experiment_by_name(experiment)
    hints = {v for k, v in exp.tags.items() if k.startswith("airflow.parent.")}
    return None if parents[0].info.run_id in hints else parents[0]


def attempt_starts(run) -> dict[int, int]:
    """``airflow.try.<n>.start`` of a task's run: attempt number -> epoch ms."""
    starts = {}
    for key, value in run.data.tags.items():
        parts = key.split(".")
        if len(parts) == 4 and parts[:2] == ["airflow", "try"] and parts[3] == "start":
            starts[int(parts[2])] = int(value)
    return starts


def steps_by_attempt(client, run, metric: str) -> dict[int, list[int]]:
    """The steps of ``metric`` per attempt, by the README's rule: a point belongs to attempt n
    when ``try.n.start <= timestamp < try.(n+1).start``. A point before the first start fails."""
    starts = attempt_starts(run)
    assert starts, f"run {run.info.run_name} has no airflow.try.<n>.start tags: {run.data.tags}"
    order = sorted(starts)
    by_attempt: dict[int, list[int]] = {n: [] for n in order}
    for point in client.get_metric_history(run.info.run_id, metric):
        owners = [n for n in order if starts[n] <= point.timestamp]
        assert owners, f"{run.info.run_name}: {metric} step {point.step} logged before the first attempt"
        by_attempt[owners[-1]].append(point.step)
    return {n: sorted(steps) for n, steps in by_attempt.items()}
