"""
The run model: one MLflow run per DAG run, one child run per task instance.

Runs are found again by tags, never by memory, so a retried task reuses its run and a DAG run
that many tasks start at once ends with exactly one parent run:

* Each task looks for the parent of its DAG run; if there is none it creates a candidate, looks
  again, and keeps the oldest candidate (start time, then run id). A creator that lost deletes its
  own candidate.
* Two creators can still each see only their own candidate for a moment. When the DAG run ends,
  :func:`finalize_dag_run` re-points every child to the oldest parent and deletes the others, so
  the final state never depends on timing.
* The parent's id is also left on the experiment as a tag while the DAG run is active
  (:func:`airflow_mlflow.tags.parent_hint`), so later tasks find experiment and parent in one request.
  The tag is a shortcut, not the truth: the end-of-DAG-run step removes it.

How each attempt of a task instance is recorded on its run: :mod:`airflow_mlflow.attempts`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from airflow_mlflow.attempts import TASK_STATUS, attempt_tags, earlier_attempts, reconcile_attempts
from airflow_mlflow.exceptions import MLflowProviderError
from airflow_mlflow.tags import (
    DAG_ID,
    DAG_RUN_KEY,
    HOSTNAME,
    LOGICAL_DATE,
    MAP_INDEX,
    PID,
    ROLE,
    ROLE_DAG_RUN,
    ROLE_TASK,
    RUN_ID,
    TASK_ID,
    TI_KEY,
    TRY_NUMBER,
    URL,
    parent_hint,
    try_tag,
)
from airflow_mlflow.timestamps import now_ms

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.hooks.records import RunRecord

log = logging.getLogger(__name__)

#: MLflow's own tags: the parent of a nested run, and the run's description.
PARENT = "mlflow.parentRunId"
NOTE = "mlflow.note.content"


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class TaskRunContext:
    """Who is running: the Airflow identity a tracked task's MLflow run carries as tags."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    try_number: int = 1
    logical_date: str | None = None
    ui_base_url: str = "http://localhost:8080"

    @classmethod
    def from_context(cls, context: Context) -> TaskRunContext:
        from airflow.sdk.configuration import conf

        ti = context["ti"]
        logical_date = context.get("logical_date")
        map_index = getattr(ti, "map_index", -1)
        return cls(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            map_index=-1 if map_index is None else int(map_index),
            try_number=int(getattr(ti, "try_number", 1) or 1),
            logical_date=logical_date.isoformat() if logical_date else None,
            ui_base_url=conf.get("api", "base_url", fallback="http://localhost:8080").rstrip("/"),
        )

    @property
    def dag_run_key(self) -> str:
        return _digest(self.dag_id, self.run_id)

    @property
    def ti_key(self) -> str:
        return _digest(self.dag_id, self.run_id, self.task_id, self.map_index)

    @property
    def dag_run_url(self) -> str:
        from urllib.parse import quote

        return f"{self.ui_base_url}/dags/{quote(self.dag_id)}/runs/{quote(self.run_id, safe='')}"

    @property
    def task_url(self) -> str:
        mapped = f"/mapped/{self.map_index}" if self.map_index >= 0 else ""
        return f"{self.dag_run_url}/tasks/{self.task_id}{mapped}"

    @property
    def run_name(self) -> str:
        return self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"

    def _dated(self, tags: dict[str, str]) -> dict[str, str]:
        """Runs triggered without a logical date (Airflow 3's default for API runs) carry no such tag."""
        return {**tags, LOGICAL_DATE: self.logical_date} if self.logical_date else tags

    def parent_tags(self) -> dict[str, str]:
        return self._dated(
            {
                ROLE: ROLE_DAG_RUN,
                DAG_RUN_KEY: self.dag_run_key,
                DAG_ID: self.dag_id,
                RUN_ID: self.run_id,
                URL: self.dag_run_url,
                NOTE: f"Airflow DAG run [{self.dag_id} / {self.run_id}]({self.dag_run_url})",
            }
        )

    def task_tags(self) -> dict[str, str]:
        return self._dated(
            {
                ROLE: ROLE_TASK,
                DAG_RUN_KEY: self.dag_run_key,
                TI_KEY: self.ti_key,
                DAG_ID: self.dag_id,
                RUN_ID: self.run_id,
                TASK_ID: self.task_id,
                MAP_INDEX: str(self.map_index),
                TRY_NUMBER: str(self.try_number),
                URL: self.task_url,
                try_tag(self.try_number, "state"): "running",
                NOTE: f"Airflow task instance [{self.dag_id} / {self.run_id} / {self.run_name}]"
                f"({self.task_url})",
            }
        )


@dataclass(frozen=True)
class TaskRun:
    """The MLflow run a task logs to. ``to_json()`` is what operators push to XCom."""

    run_id: str
    experiment_id: str
    parent_run_id: str | None = None
    run_url: str | None = None
    #: Params already on the run (a retry may re-log them unchanged).
    params: dict[str, str] | None = None
    #: False when the run belongs to someone else (``run_id=`` given): its status is left alone.
    owned: bool = True
    artifact_uri: str | None = None
    #: The run as opened, RUNNING with the attempt's tags (``@task.mlflow``'s active run).
    record: RunRecord | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for local in ("params", "artifact_uri", "record"):
            data.pop(local)
        return data


def resolve_experiment_name(hook: MLflowHook, explicit: str | None, dag_id: str) -> str:
    """The operator's ``experiment_name``, else the connection's, else the DAG id."""
    return explicit or hook.config.experiment_name or dag_id


def open_task_run(
    hook: MLflowHook,
    ctx: TaskRunContext,
    *,
    experiment_name: str | None = None,
    nested: bool = True,
    run_id: str | None = None,
    find_existing: bool = False,
) -> TaskRun:
    """
    Start (or, on a retry, reopen) the task instance's run; with ``run_id``, use that run as is.

    The attempt's start is recorded (``airflow.try.<n>.start``), and a retry closes the earlier
    attempts the run still shows as running or does not show at all.

    ``find_existing``: look for the task instance's run even on a first try (the listener: a
    deferred or rescheduled task resumes with the same try number and keeps its run and start).
    """
    started = now_ms()
    if run_id:
        run = hook.get_run(run_id)
        return TaskRun(
            run.run_id,
            run.experiment_id,
            run.tags.get(PARENT),
            hook.run_url(run.experiment_id, run.run_id),
            dict(run.params),
            owned=False,
            artifact_uri=run.artifact_uri,
            record=run,
        )

    experiment = hook.experiment(resolve_experiment_name(hook, experiment_name, ctx.dag_id))
    experiment_id = experiment.experiment_id
    parent_id = None
    if nested:
        parent_id = experiment.tags.get(parent_hint(ctx.dag_run_key)) or _ensure_parent(
            hook, experiment_id, ctx
        )
    tags = {**ctx.task_tags(), try_tag(ctx.try_number, "start"): str(started), **_where()}
    if parent_id:
        tags[PARENT] = parent_id
    # A first try has no run yet (clearing a task also raises its try number): skip the search.
    searched = ctx.try_number > 1 or find_existing
    existing = hook.find_runs(experiment_id, {TI_KEY: ctx.ti_key}) if searched else []
    if existing:
        run = existing[0]
        if run.tags.get(TRY_NUMBER) == str(ctx.try_number):  # the same attempt resumes
            tags.pop(try_tag(ctx.try_number, "start"), None)
        tags = {**earlier_attempts(run.tags, ctx.try_number), **tags}
        hook.set_run_status(run.run_id, "RUNNING")
        hook.log_batch(run.run_id, tags={k: v for k, v in tags.items() if run.tags.get(k) != v})
        run = replace(run, status="RUNNING", end_time=None, tags={**run.tags, **tags})
        params = dict(run.params)
    else:
        # Earlier attempts that never reached MLflow (it was down) are recorded as such.
        tags = {**earlier_attempts({}, ctx.try_number), **tags}
        run = hook.create_run(experiment_id, ctx.run_name, tags, start_time=started)
        params = {}
    url = hook.run_url(experiment_id, run.run_id)
    return TaskRun(
        run.run_id, experiment_id, parent_id, url, params, artifact_uri=run.artifact_uri, record=run
    )


def _where() -> dict[str, str]:
    """Where this attempt runs: the task instance's hostname as Airflow records it, and the pid."""
    from airflow_mlflow import compat

    return {HOSTNAME: compat.task_hostname(), PID: str(os.getpid())}


def close_task_run(
    hook: MLflowHook,
    task_run: TaskRun,
    ctx: TaskRunContext,
    outcome: str,
    error: BaseException | None = None,
    *,
    state_logged: bool = False,
    ended_as: str | None = None,
    metrics: Mapping[str, float] | None = None,
) -> None:
    """
    Record how this attempt ended (unless the task already logged :func:`attempt_tags` with its
    own batch), with ``metrics`` in the same batch, and end the run with the matching status
    (unless the task already ended it with that status: ``ended_as``).
    """
    if not task_run.owned:
        return
    tags = None if state_logged else attempt_tags(ctx, outcome, error)
    if tags or metrics:
        hook.log_batch(task_run.run_id, tags=tags, metrics=metrics)
    if ended_as != TASK_STATUS[outcome]:
        hook.set_run_status(task_run.run_id, TASK_STATUS[outcome])


def _ensure_parent(hook: MLflowHook, experiment_id: str, ctx: TaskRunContext) -> str:
    """The DAG run's parent run id: found, or created and elected; then left as a hint."""
    query = {ROLE: ROLE_DAG_RUN, DAG_RUN_KEY: ctx.dag_run_key}
    found = hook.find_runs(experiment_id, query)
    if found:
        winner = found[0]
        if winner.status != "RUNNING":  # the DAG run was cleared and runs again
            hook.set_run_status(winner.run_id, "RUNNING")
    else:
        mine = hook.create_run(experiment_id, ctx.run_id, ctx.parent_tags(), start_time=now_ms())
        winner = (hook.find_runs(experiment_id, query) or [mine])[0]
        if winner.run_id != mine.run_id:
            hook.delete_run(mine.run_id)
    try:
        hook.set_experiment_tag(experiment_id, parent_hint(ctx.dag_run_key), winner.run_id)
    except MLflowProviderError as err:
        # Only a shortcut for later tasks. MLflow's tag upsert is not atomic: tasks setting it at
        # the same moment can collide on PostgreSQL's unique key, which changes nothing here.
        log.info("Parent-run hint not set (%s); later tasks will search instead", err)
    return winner.run_id


def finalize_dag_run(
    hook: MLflowHook,
    experiment_name: str,
    dag_id: str,
    run_id: str,
    succeeded: bool,
    task_states: Mapping[tuple[str, int], tuple[str, int]] | None = None,
    tasks: Collection[str] = (),
    ui_base_url: str | None = None,
) -> dict[str, Any]:
    """
    Close the MLflow side of a finished DAG run: one parent, every child pointing at it, every
    attempt recorded, nothing left RUNNING. Returns what it did, for the log.

    :param task_states: ``(task_id, map_index) -> (state, try_number)`` of the DAG run's task
        instances, as Airflow knows them (None when unknown): attempts the runs still show as
        running, or do not show, are recorded from it, and a child left RUNNING ends with its
        task instance's outcome (KILLED when unknown).
    :param tasks: ids of the tasks that track into this experiment: a task instance of one of them
        that ran but has no run (MLflow was down, ``tracking_failure="warn"``) gets one, recording
        its attempts
    """
    ctx = TaskRunContext(dag_id=dag_id, run_id=run_id, task_id="", **_url(ui_base_url))
    unrecorded = {
        key: ti
        for key, ti in (task_states or {}).items()
        if key[0] in tasks and ti[1] >= 1 and ti[0] in TASK_STATUS
    }
    experiment = hook.experiment(experiment_name, create=False)
    if experiment is None and unrecorded:
        experiment = hook.experiment(experiment_name)
    if experiment is None:
        return {"experiment": experiment_name, "parent": None}
    experiment_id = experiment.experiment_id
    parents = hook.find_runs(experiment_id, {ROLE: ROLE_DAG_RUN, DAG_RUN_KEY: ctx.dag_run_key})
    children = hook.find_runs(experiment_id, {ROLE: ROLE_TASK, DAG_RUN_KEY: ctx.dag_run_key})
    winner = parents[0].run_id if parents else None
    killed, reconciled = [], []
    for child in children:
        unrecorded.pop(_ti_key(child.tags), None)
        fixes: dict[str, str] = {}
        if winner and child.tags.get(PARENT, winner) != winner:
            fixes[PARENT] = winner
        ti = _task_state(child.tags, task_states)
        if ti is not None:
            fixes.update(reconcile_attempts(child.tags, *ti, left_open=child.status == "RUNNING"))
        if fixes:
            hook.log_batch(child.run_id, tags=fixes)
            if len(fixes) > (PARENT in fixes):
                reconciled.append(child.run_id)
        if child.status == "RUNNING":
            # A run nobody closed: its task succeeded while MLflow was unreachable, or its
            # process died (KILLED, as when Airflow's state is unknown).
            status = "FINISHED" if ti is not None and ti[0] == "success" else "KILLED"
            hook.set_run_status(child.run_id, status)
            if status == "KILLED":
                killed.append(child.run_id)
    if unrecorded and winner is None:
        winner = hook.create_run(experiment_id, run_id, ctx.parent_tags(), start_time=now_ms()).run_id
    for (task_id, map_index), (state, try_number) in sorted(unrecorded.items()):
        tctx = TaskRunContext(dag_id, run_id, task_id, map_index, try_number, **_url(ui_base_url))
        tags = {**tctx.task_tags(), PARENT: winner, **reconcile_attempts({}, state, try_number)}
        run = hook.create_run(experiment_id, tctx.run_name, tags, start_time=now_ms())
        hook.set_run_status(run.run_id, _final_status(state))
        reconciled.append(run.run_id)
    for extra in parents[1:]:
        hook.delete_run(extra.run_id)
    if winner:
        hook.set_run_status(winner, "FINISHED" if succeeded else "FAILED")
    if parent_hint(ctx.dag_run_key) in experiment.tags:
        hook.delete_experiment_tag(experiment_id, parent_hint(ctx.dag_run_key))
    return {
        "experiment": experiment_name,
        "parent": winner,
        "killed": killed,
        "merged": [p.run_id for p in parents[1:]],
        **({"reconciled": reconciled} if reconciled else {}),
    }


def _ti_key(tags: Mapping[str, str]) -> tuple[str, int] | None:
    try:
        return (tags.get(TASK_ID, ""), int(tags.get(MAP_INDEX, "-1")))
    except ValueError:
        return None


def _task_state(
    tags: Mapping[str, str], task_states: Mapping[tuple[str, int], tuple[str, int]] | None
) -> tuple[str, int] | None:
    return (task_states or {}).get(_ti_key(tags))


def _url(ui_base_url: str | None) -> dict[str, str]:
    return {"ui_base_url": ui_base_url.rstrip("/")} if ui_base_url else {}


def _final_status(ti_state: str) -> str:
    return "FINISHED" if ti_state == "success" else "FAILED"
