"""
The listener's background worker: one daemon thread working a queue of items, each tried until it
succeeds, so MLflow latency or an outage never stalls the scheduler loop.

An item (:mod:`airflow_mlflow.plugins.finalization`) has a ``key`` (an item submitted again while
queued merges into the queued one), ``attempt()`` (True when done), ``retry_interval()``,
``tries``, ``merge``/``absorb``, and ``durable``: a durable item (a DAG run to finalize) is pending
until done; another (a sweep) only until its first try.

The thread imports what it needs up front (:data:`WARM_UP`) holding a lock that ``os.fork()``
waits for. At interpreter exit a process waits at most :data:`EXIT_WAIT_S` seconds for pending
durable items.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from typing import Any

from airflow_mlflow.compat import MLFLOW_PRELOAD

#: The listener's log, whichever of its modules writes (operators grep the scheduler's log for it).
log = logging.getLogger("airflow_mlflow.plugins.listener")

#: The longest an exiting process waits for pending finalizations.
EXIT_WAIT_S = 60.0
THREAD_NAME = "airflow-mlflow-finalize"
MAX_REASON_CHARS = 300


def reason(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:MAX_REASON_CHARS]


class RetryWorker:
    """One daemon thread working a queue of items, each tried until it succeeds."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: dict[Any, tuple[float, Any]] = {}
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
                self._thread = threading.Thread(target=self._work, name=THREAD_NAME, daemon=True)
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
                log.debug("MLflow: finalization step failed: %s", reason(err), exc_info=True)
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
        once); return the number of durable items (DAG-run finalizations) still pending.
        """
        deadline = None if timeout is None else time.monotonic() + timeout

        def pending() -> list:
            # A sweep is waited for until its first try has queued what it found, not beyond.
            items = [item for _, item in self._queue.values()] + [self._in_flight]
            return [i for i in items if i is not None and (i.durable or not i.tries)]

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
            return len([item for item in pending() if item.durable])

    def forget(self) -> None:
        """Drop every pending item (tests, between cases)."""
        with self._cond:
            self._queue.clear()
            self._generation += 1  # and what is in flight now is not queued again


_worker = RetryWorker()


def worker() -> RetryWorker:
    """This process's worker (a forked child gets a fresh one: threads do not survive a fork)."""
    return _worker


#: Held by the worker thread while it imports, and by ``os.fork()``: a process forked while another
#: thread is inside an import inherits that module's lock held for ever, and its first import of
#: the module hangs (the scheduler forks LocalExecutor workers right when a sweep starts).
_fork_guard = threading.Lock()
#: What the worker imports (measured: a finalization imports nothing else after these), up front
#: under the guard.
WARM_UP = (
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
    *MLFLOW_PRELOAD,  # MLflow's modules (internal paths: they live in the compat seam)
)


class _QuietRetries(logging.Filter):
    """urllib3 logs each retry of MLflow's client; the worker logs once per DAG run instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return threading.current_thread().name != THREAD_NAME


def _warm_up() -> None:
    import importlib

    logging.getLogger("urllib3.connectionpool").addFilter(_QuietRetries())
    with _fork_guard:
        for name in WARM_UP:
            try:
                importlib.import_module(name)
            except Exception as err:  # e.g. no SQL store support: imported later, if ever needed
                log.debug("MLflow: %s not preloaded: %s", name, reason(err))


def _after_fork_in_child() -> None:
    # The worker thread does not survive a fork: the parent keeps the queue, the child starts afresh.
    global _worker
    _fork_guard.release()
    _worker = RetryWorker()


os.register_at_fork(
    before=_fork_guard.acquire, after_in_parent=_fork_guard.release, after_in_child=_after_fork_in_child
)


def _at_exit() -> None:
    left = _worker.wait(EXIT_WAIT_S, settled=True)
    if left:
        log.warning(
            "MLflow: %d DAG-run finalization(s) still pending at exit; the next scheduler start "
            "finishes them",
            left,
        )
