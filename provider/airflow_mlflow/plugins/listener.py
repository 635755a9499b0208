"""
Close the MLflow side of each DAG run when it ends, even across MLflow outages and restarts.

Runs where DAG-run state changes (the scheduler, or the process of ``dag.test()``). The work goes
to one background thread so MLflow latency or an outage never stalls the scheduler loop:

* A finalization that cannot reach MLflow stays queued and is tried again every
  :data:`RETRY_INTERVAL_S` seconds until it succeeds. The log gets one warning per DAG run when
  it starts failing and one info line when it is done, not a line per try.
* What a process could not finish before it ended (killed, or MLflow down at its exit) is found
  again by a **sweep** when a scheduler starts (``on_starting``), and by the first DAG-run event
  of any other process. MLflow itself is the durable record: every DAG run whose parent is open
  leaves an ``airflow.parent.<key>`` tag on its experiment, removed by its finalization. The sweep
  reads the experiments of each ``mlflow`` connection this process can list (``mlflow_default``,
  ``AIRFLOW_CONN_*`` variables and connections of the metadata DB; one request per 1000
  experiments), and for each hint whose DAG run Airflow's DB shows as ended, finalizes it.
* At interpreter exit the listener waits at most :data:`EXIT_WAIT_S` seconds for pending work.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)

#: Seconds between two tries of a finalization that could not reach MLflow.
RETRY_INTERVAL_S = 10.0
#: The longest a sweep waits before looking again at a connection that did not answer.
SWEEP_MAX_INTERVAL_S = 600.0
#: The longest an exiting process waits for pending finalizations.
EXIT_WAIT_S = 60.0
_MAX_REASON_CHARS = 300
_THREAD_NAME = "airflow-mlflow-finalize"
_ENDED = {"success": True, "failed": False}


def tracked_targets(dag: Any) -> set[tuple[str, str | None]]:
    """``(mlflow_conn_id, experiment_name)`` of every tracked task of ``dag`` (plain or mapped)."""
    targets = set()
    for task in getattr(dag, "tasks", None) or ():
        partial = getattr(task, "partial_kwargs", None) or {}
        conn_id = getattr(task, "mlflow_conn_id", None) or partial.get("mlflow_conn_id")
        if conn_id is None and not _is_tracked(task):
            continue
        targets.add(
            (
                conn_id or "mlflow_default",
                getattr(task, "experiment_name", None) or partial.get("experiment_name"),
            )
        )
    return targets


#: Operators that open a run per task instance (``@task.mlflow``, ``MLflowLogOperator``).
_RUN_OPENERS = {"_MLflowDecoratedOperator", "MLflowLogOperator"}


def tracked_tasks(dag: Any) -> dict[tuple[str, str | None], set[str]]:
    """
    ``(mlflow_conn_id, experiment_name) -> task ids`` of the tasks of ``dag`` that open a run of
    their own per task instance (not registry operators, nor ``run_id=`` loggers).
    """
    found: dict[tuple[str, str | None], set[str]] = {}
    for task in getattr(dag, "tasks", None) or ():
        task_type = getattr(task, "task_type", None) or type(task).__name__
        partial = getattr(task, "partial_kwargs", None) or {}
        if task_type not in _RUN_OPENERS or (getattr(task, "run_id", None) or partial.get("run_id")):
            continue
        target = (
            getattr(task, "mlflow_conn_id", None) or partial.get("mlflow_conn_id") or "mlflow_default",
            getattr(task, "experiment_name", None) or partial.get("experiment_name"),
        )
        found.setdefault(target, set()).add(task.task_id)
    return found


def _is_tracked(task: Any) -> bool:
    module = getattr(task, "_task_module", None) or type(task).__module__
    return str(module).startswith("airflow_mlflow.") and getattr(task, "run_id", None) is None


def _reason(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:_MAX_REASON_CHARS]


@dataclass
class _Finalization:
    """One ended DAG run whose MLflow side is still to be closed, per (connection, experiment)."""

    dag_id: str
    run_id: str
    succeeded: bool
    targets: set[tuple[str, str | None]]
    tasks: dict[tuple[str, str | None], set[str]] = field(default_factory=dict)
    tries: int = 0
    warned: bool = False
    results: list[dict] = field(default_factory=list)
    hooks: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return ("dag_run", self.dag_id, self.run_id)

    def merge(self, newer: _Finalization) -> None:
        """The same DAG run ended again (cleared and re-run): its latest outcome wins."""
        self.succeeded = newer.succeeded
        self.absorb(newer)

    def absorb(self, other: _Finalization) -> None:
        """Take on the work ``other`` has left, keeping this one's outcome."""
        self.targets |= other.targets
        for target, task_ids in other.tasks.items():
            self.tasks.setdefault(target, set()).update(task_ids)

    def retry_interval(self) -> float:
        return RETRY_INTERVAL_S

    def attempt(self) -> bool:
        from airflow_mlflow.exceptions import MLflowInputError
        from airflow_mlflow.runs import finalize_dag_run, resolve_experiment_name

        self.tries += 1
        task_states = _task_states(self.dag_id, self.run_id)
        failures = []
        for target in sorted(self.targets, key=str):
            conn_id, experiment = target
            if "{{" in conn_id or "{{" in (experiment or ""):
                log.warning(
                    "MLflow: cannot finalize %s/%s for templated conn/experiment %r",
                    self.dag_id,
                    self.run_id,
                    target,
                )
                self.targets.discard(target)
                continue
            try:
                hook = _hook(self.hooks, conn_id, _dag_team(self.dag_id))
                name = resolve_experiment_name(hook, experiment, self.dag_id)
                self.results.append(
                    finalize_dag_run(
                        hook,
                        name,
                        self.dag_id,
                        self.run_id,
                        self.succeeded,
                        task_states,
                        tasks=self.tasks.get(target, ()),
                        ui_base_url=_ui_base_url(),
                    )
                )
                self.targets.discard(target)
            except MLflowInputError as err:  # a retry cannot fix it: say so once, and drop it
                log.warning(
                    "MLflow: cannot finalize DAG run %s/%s (conn %s): %s",
                    self.dag_id,
                    self.run_id,
                    conn_id,
                    _reason(err),
                )
                self.targets.discard(target)
            except Exception as err:
                failures.append((conn_id, err))
        if failures:
            conn_id, err = failures[0]
            if not self.warned:
                self.warned = True
                log.warning(
                    "MLflow: could not finalize DAG run %s/%s yet (conn %s: %s); retrying every %.0f s "
                    "in the background until MLflow answers",
                    self.dag_id,
                    self.run_id,
                    conn_id,
                    _reason(err),
                    RETRY_INTERVAL_S,
                )
            else:
                log.debug("MLflow: finalization of %s/%s try %d failed", self.dag_id, self.run_id, self.tries)
            return False
        log.info(
            "MLflow: finalized DAG run %s/%s%s: %s",
            self.dag_id,
            self.run_id,
            f" after {self.tries} tries" if self.tries > 1 else "",
            self.results,
        )
        return True


@dataclass
class _Sweep:
    """Find DAG runs that ended while their finalization could not run, and queue them."""

    #: None: every ``mlflow`` connection this process can list (read by the worker thread:
    #: importing Airflow's models from two threads at once can deadlock on the import lock).
    conn_ids: set[str] | None = None
    tries: int = 0
    warned: set[str] = field(default_factory=set)
    hooks: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return ("sweep", "", "")

    def merge(self, newer: _Sweep) -> None:
        self.absorb(newer)

    def retry_interval(self) -> float:
        """
        Backs off to :data:`SWEEP_MAX_INTERVAL_S`: a connection that never answers (a stale one,
        say) must not hold the worker for its retry budget every few seconds, delaying the
        finalizations of DAG runs that track elsewhere.
        """
        return min(RETRY_INTERVAL_S * 2 ** max(self.tries - 1, 0), SWEEP_MAX_INTERVAL_S)

    def absorb(self, other: _Sweep) -> None:
        if self.conn_ids is not None:
            self.conn_ids = None if other.conn_ids is None else self.conn_ids | other.conn_ids

    def attempt(self) -> bool:
        self.tries += 1
        if self.conn_ids is None:
            self.conn_ids = mlflow_conn_ids()
        found = []
        for conn_id in sorted(self.conn_ids):
            try:
                found += self._sweep(conn_id)
                self.conn_ids.discard(conn_id)
            except Exception as err:
                if conn_id not in self.warned:
                    self.warned.add(conn_id)
                    log.warning(
                        "MLflow: could not look for unfinished DAG runs (conn %s: %s); retrying every "
                        "%.0f s in the background",
                        conn_id,
                        _reason(err),
                        RETRY_INTERVAL_S,
                    )
        for item in found:
            _finalizer.submit(item)
        if found:
            log.info(
                "MLflow: %d ended DAG run(s) still open in MLflow, finalizing: %s",
                len(found),
                ", ".join(f"{f.dag_id}/{f.run_id}" for f in found),
            )
        return not self.conn_ids

    def _sweep(self, conn_id: str) -> list[_Finalization]:
        from airflow_mlflow.exceptions import MLflowResourceNotFoundError
        from airflow_mlflow.runs import PARENT_HINT

        hook = _hook(self.hooks, conn_id)
        if hook.config.embedded and not _embedded_store_exists(hook.config):
            return []  # never create the embedded store just to look into it
        found = []
        for experiment in hook.list_experiments():
            for key, parent_id in experiment.tags.items():
                if not key.startswith(PARENT_HINT):
                    continue
                try:
                    parent = hook.get_run(parent_id)
                except MLflowResourceNotFoundError:
                    continue
                dag_id, run_id = parent.tags.get("airflow.dag_id"), parent.tags.get("airflow.run_id")
                state = _dag_run_state(dag_id, run_id) if dag_id and run_id else None
                if state in _ENDED:
                    found.append(_Finalization(dag_id, run_id, _ENDED[state], {(conn_id, experiment.name)}))
        return found


class _Finalizer:
    """One daemon thread working a queue of items, each tried until it succeeds."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: dict[tuple[str, str, str], tuple[float, Any]] = {}
        self._in_flight: Any = None
        self._thread: threading.Thread | None = None
        self._owner = os.getpid()
        self._generation = 0

    def submit(self, item: Any) -> None:
        with self._cond:
            queued = self._queue.get(item.key)
            if queued is not None:
                queued[1].merge(item)
                self._queue[item.key] = (0.0, queued[1])
            else:
                self._queue[item.key] = (0.0, item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=_THREAD_NAME, daemon=True)
                self._thread.start()
                atexit.register(_at_exit)
            self._cond.notify_all()

    def _next(self) -> tuple[Any, int]:
        with self._cond:
            while True:
                now = time.monotonic()
                due = [(at, key) for key, (at, _) in self._queue.items() if at <= now]
                if due:
                    key = min(due)[1]
                    self._in_flight = self._queue.pop(key)[1]
                    return self._in_flight, self._generation
                wake = min((at for at, _ in self._queue.values()), default=None)
                self._cond.wait(None if wake is None else max(wake - now, 0.01))

    def _work(self) -> None:
        _warm_up()
        while True:
            item, generation = self._next()
            try:
                done = item.attempt()
            except Exception as err:  # a bug must not kill the thread or flood the log
                log.debug("MLflow: finalization step failed: %s", _reason(err), exc_info=True)
                done = False
            with self._cond:
                self._in_flight = None
                if not done and generation == self._generation:
                    queued = self._queue.get(item.key)
                    if queued is not None:  # submitted again meanwhile: that one is due now
                        queued[1].absorb(item)
                    else:
                        self._queue[item.key] = (time.monotonic() + item.retry_interval(), item)
                self._cond.notify_all()

    def wait(self, timeout: float | None, *, settled: bool) -> int:
        """
        Wait until nothing is pending (``settled=False``: until every item was tried at least
        once); return the number of DAG-run finalizations still pending.
        """
        deadline = None if timeout is None else time.monotonic() + timeout

        def pending() -> list:
            # A sweep is waited for until its first try has queued what it found, not beyond.
            items = [item for _, item in self._queue.values()] + [self._in_flight]
            return [i for i in items if isinstance(i, _Finalization) or (i is not None and not i.tries)]

        def ready() -> bool:
            if self._in_flight is not None:
                return False
            return not pending() if settled else all(item.tries for item in pending())

        with self._cond:
            if self._owner != os.getpid():  # a forked child: the parent's thread does the work
                return 0
            while not ready():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(left)
            return len([item for item in pending() if isinstance(item, _Finalization)])

    def forget(self) -> None:
        """Drop every pending item (tests, between cases)."""
        with self._cond:
            self._queue.clear()
            self._generation += 1  # and what is in flight now is not queued again


_finalizer = _Finalizer()
_swept = threading.Event()
#: Held by the worker thread while it imports, and by ``os.fork()``: a process forked while another
#: thread is inside an import inherits that module's lock held for ever, and its first import of
#: the module hangs (the scheduler forks LocalExecutor workers right when a sweep starts).
_fork_guard = threading.Lock()
#: What the worker imports (measured: a finalization imports nothing else after these), up front
#: under the guard.
_WARM_UP = (
    "netrc",
    "sqlalchemy",
    "airflow.sdk.definitions.connection",
    "airflow.sdk.execution_time.cache",
    "airflow.sdk.execution_time.supervisor",  # connection resolution
    "airflow.models.connection",
    "airflow.models.dag",
    "airflow.models.dagrun",
    "airflow.models.taskinstance",
    "airflow.utils.session",
    "airflow_mlflow.hooks.mlflow",
    "airflow_mlflow.runs",
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


class _QuietRetries(logging.Filter):
    """urllib3 logs each retry of MLflow's client; the worker logs once per DAG run instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return threading.current_thread().name != _THREAD_NAME


def _warm_up() -> None:
    import importlib

    logging.getLogger("urllib3.connectionpool").addFilter(_QuietRetries())
    with _fork_guard:
        for name in _WARM_UP:
            try:
                importlib.import_module(name)
            except Exception as err:  # e.g. no SQL store support: imported later, if ever needed
                log.debug("MLflow: %s not preloaded: %s", name, _reason(err))


def _after_fork_in_child() -> None:
    # The worker thread does not survive a fork: the parent keeps the queue, the child starts afresh.
    global _finalizer
    _fork_guard.release()
    _finalizer = _Finalizer()


os.register_at_fork(
    before=_fork_guard.acquire, after_in_parent=_fork_guard.release, after_in_child=_after_fork_in_child
)


def _hook(cache: dict[str, Any], conn_id: str, team_name: str | None = None) -> Any:
    """
    The connection's hook, resolved once per item so that every retry uses the same backend; with
    the DAG's team in multi-team mode, so a team's connection is read as its tasks read it.
    """
    if conn_id not in cache:
        from airflow_mlflow.hooks.mlflow import MLflowHook

        hook = MLflowHook(mlflow_conn_id=conn_id, team_name=team_name)
        _ = hook.config  # resolve now: a failure here is retried like an outage
        cache[conn_id] = hook
    return cache[conn_id]


def _embedded_store_exists(config: Any) -> bool:
    from pathlib import Path

    return Path(str(config.tracking_uri).removeprefix("sqlite:///")).exists()


def _dag_team(dag_id: str) -> str | None:
    """The team owning ``dag_id`` in multi-team mode (its bundle's team), else None."""
    from airflow.configuration import conf

    if not conf.getboolean("core", "multi_team", fallback=False):
        return None
    from airflow.models.dag import DagModel

    return DagModel.get_team_name(dag_id)


def _task_states(dag_id: str, run_id: str) -> dict[tuple[str, int], tuple[str, int]] | None:
    """``(task_id, map_index) -> (state, try_number)`` from Airflow's DB; None when unreadable."""
    try:
        from airflow.models.taskinstance import TaskInstance as TI
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            rows = session.execute(
                select(TI.task_id, TI.map_index, TI.state, TI.try_number).where(
                    TI.dag_id == dag_id, TI.run_id == run_id
                )
            ).all()
    except Exception as err:
        log.debug("MLflow: task states of %s/%s unreadable: %s", dag_id, run_id, _reason(err))
        return None
    return {
        (task_id, int(map_index)): (str(getattr(state, "value", state)), int(try_number or 0))
        for task_id, map_index, state, try_number in rows
    }


def _dag_run_state(dag_id: str, run_id: str) -> str | None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        state = session.scalar(select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    return None if state is None else str(getattr(state, "value", state))


def mlflow_conn_ids() -> set[str]:
    """
    The ``mlflow`` connections this process can list: ``mlflow_default``, ``AIRFLOW_CONN_*``
    variables of type mlflow, and mlflow connections of the metadata DB. Connections that live
    only in another secrets backend cannot be listed; their DAG runs are swept when finalized
    again by a process that knows them (or with ``mlflow_default``).
    """
    ids = {"mlflow_default"}
    for key, value in os.environ.items():
        if key.startswith("AIRFLOW_CONN_") and _is_mlflow_uri_or_json(value):
            ids.add(key.removeprefix("AIRFLOW_CONN_").lower())
    try:
        from airflow.models.connection import Connection
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            ids.update(session.scalars(select(Connection.conn_id).where(Connection.conn_type == "mlflow")))
    except Exception as err:
        log.debug("MLflow: connections of the metadata DB unreadable: %s", _reason(err))
    return ids


def _is_mlflow_uri_or_json(value: str) -> bool:
    value = value.strip()
    if value.startswith("{"):
        try:
            return json.loads(value).get("conn_type") == "mlflow"
        except (ValueError, AttributeError):
            return False
    return value.split("://", 1)[0] == "mlflow"


def sweep() -> None:
    """Queue (once per process) a look for ended DAG runs whose MLflow side is still open."""
    if not _swept.is_set():
        _swept.set()
        _finalizer.submit(_Sweep())


def _submit(dag_run: Any, succeeded: bool) -> None:
    dag = getattr(dag_run, "dag", None)
    targets = tracked_targets(dag)
    if not targets:
        return
    item = _Finalization(dag_run.dag_id, dag_run.run_id, succeeded, set(targets), tracked_tasks(dag))
    _finalizer.submit(item)
    sweep()


def _ui_base_url() -> str | None:
    try:
        from airflow.configuration import conf

        return conf.get("api", "base_url", fallback=None)
    except Exception:
        return None


def drain(timeout: float | None = 120) -> int:
    """
    Wait until every queued finalization has been tried at least once (tests, and short-lived
    processes that want certainty); return how many are still pending (retrying in the background).
    """
    return _finalizer.wait(timeout, settled=False)


def wait_finalized(timeout: float | None = EXIT_WAIT_S) -> bool:
    """Wait until nothing is pending, at most ``timeout`` seconds; True when all is done."""
    return _finalizer.wait(timeout, settled=True) == 0


def reset() -> None:
    """Drop pending work and allow a new sweep: what a fresh process starts from (tests)."""
    _finalizer.forget()
    _swept.clear()


def _at_exit() -> None:
    left = _finalizer.wait(EXIT_WAIT_S, settled=True)
    if left:
        log.warning(
            "MLflow: %d DAG-run finalization(s) still pending at exit; the next scheduler start "
            "finishes them",
            left,
        )


def _sweep_if_scheduler(component: Any) -> None:
    # The scheduler's job learns its type right after on_starting; read it without a DB refresh.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job_type = vars(component).get("job_type")
        if job_type:
            if job_type == "SchedulerJob":
                sweep()
            return
        time.sleep(0.05)


@hookimpl
def on_starting(component: Any) -> None:
    if type(component).__name__ == "TaskRunnerMarker":  # task processes never sweep
        return
    threading.Thread(
        target=_sweep_if_scheduler, args=(component,), name="airflow-mlflow-sweep", daemon=True
    ).start()


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    _submit(dag_run, succeeded=True)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    _submit(dag_run, succeeded=False)
