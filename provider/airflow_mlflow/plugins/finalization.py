"""
What the listener's worker does: finalize an ended DAG run's MLflow side, and sweep for DAG runs
whose finalization never ran.

* :class:`Finalization`: one ended DAG run, closed by :func:`airflow_mlflow.runs.finalize_dag_run`
  for each (connection, experiment) its tracked tasks used. A try that cannot reach MLflow is
  repeated every :data:`RETRY_INTERVAL_S` seconds; the log gets one warning per DAG run when it
  starts failing and one info line when it is done, not a line per try.
* :class:`Sweep`: MLflow itself is the durable record. Every DAG run whose parent is open leaves a
  :func:`airflow_mlflow.tags.parent_hint` tag on its experiment, removed by its finalization. The
  sweep reads the experiments of each ``mlflow`` connection this process can list
  (``mlflow_default``, ``AIRFLOW_CONN_*`` variables and connections of the metadata DB; one request
  per 1000 experiments), and queues a :class:`Finalization` for each hint whose DAG run Airflow's
  DB shows as ended.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from airflow_mlflow.plugins.retry_worker import log, reason, worker
from airflow_mlflow.tags import DAG_ID, PARENT_HINT_PREFIX, RUN_ID

#: Seconds between two tries of a finalization that could not reach MLflow.
RETRY_INTERVAL_S = 10.0
#: The longest a sweep waits before looking again at a connection that did not answer.
SWEEP_MAX_INTERVAL_S = 600.0
_ENDED = {"success": True, "failed": False}


@dataclass
class Finalization:
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
    #: Pending until done (an exiting process waits for it).
    durable = True

    @property
    def key(self) -> tuple[str, str, str]:
        return ("dag_run", self.dag_id, self.run_id)

    def merge(self, newer: Finalization) -> None:
        """The same DAG run ended again (cleared and re-run): its latest outcome wins."""
        self.succeeded = newer.succeeded
        self.absorb(newer)

    def absorb(self, other: Finalization) -> None:
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
                hook = hook_for(self.hooks, conn_id, _dag_team(self.dag_id))
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
                    reason(err),
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
                    reason(err),
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
class Sweep:
    """Find DAG runs that ended while their finalization could not run, and queue them."""

    #: None: every ``mlflow`` connection this process can list (read by the worker thread:
    #: importing Airflow's models from two threads at once can deadlock on the import lock).
    conn_ids: set[str] | None = None
    tries: int = 0
    warned: set[str] = field(default_factory=set)
    hooks: dict[str, Any] = field(default_factory=dict)
    #: Pending only until its first try has queued what it found.
    durable = False

    @property
    def key(self) -> tuple[str, str, str]:
        return ("sweep", "", "")

    def merge(self, newer: Sweep) -> None:
        self.absorb(newer)

    def retry_interval(self) -> float:
        """
        Backs off to :data:`SWEEP_MAX_INTERVAL_S`: a connection that never answers (a stale one,
        say) must not hold the worker for its retry budget every few seconds, delaying the
        finalizations of DAG runs that track elsewhere.
        """
        return min(RETRY_INTERVAL_S * 2 ** max(self.tries - 1, 0), SWEEP_MAX_INTERVAL_S)

    def absorb(self, other: Sweep) -> None:
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
                        reason(err),
                        RETRY_INTERVAL_S,
                    )
        for item in found:
            worker().submit(item)
        if found:
            log.info(
                "MLflow: %d ended DAG run(s) still open in MLflow, finalizing: %s",
                len(found),
                ", ".join(f"{f.dag_id}/{f.run_id}" for f in found),
            )
        return not self.conn_ids

    def _sweep(self, conn_id: str) -> list[Finalization]:
        from airflow_mlflow.exceptions import MLflowResourceNotFoundError

        hook = hook_for(self.hooks, conn_id)
        if hook.config.embedded and not _embedded_store_exists(hook.config):
            return []  # never create the embedded store just to look into it
        found = []
        for experiment in hook.list_experiments():
            for key, parent_id in experiment.tags.items():
                if not key.startswith(PARENT_HINT_PREFIX):
                    continue
                try:
                    parent = hook.get_run(parent_id)
                except MLflowResourceNotFoundError:
                    continue
                dag_id, run_id = parent.tags.get(DAG_ID), parent.tags.get(RUN_ID)
                state = _dag_run_state(dag_id, run_id) if dag_id and run_id else None
                if state in _ENDED:
                    found.append(Finalization(dag_id, run_id, _ENDED[state], {(conn_id, experiment.name)}))
        return found


def hook_for(cache: dict[str, Any], conn_id: str, team_name: str | None = None) -> Any:
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
        log.debug("MLflow: task states of %s/%s unreadable: %s", dag_id, run_id, reason(err))
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
        log.debug("MLflow: connections of the metadata DB unreadable: %s", reason(err))
    return ids


def _is_mlflow_uri_or_json(value: str) -> bool:
    value = value.strip()
    if value.startswith("{"):
        try:
            return json.loads(value).get("conn_type") == "mlflow"
        except (ValueError, AttributeError):
            return False
    return value.split("://", 1)[0] == "mlflow"


def _ui_base_url() -> str | None:
    try:
        from airflow.configuration import conf

        return conf.get("api", "base_url", fallback=None)
    except Exception:
        return None
