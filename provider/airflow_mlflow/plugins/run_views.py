"""
What the DAG-run and task views show: each tracked task instance's MLflow run with its params,
metrics, artifacts and logged models, and the model versions its DAG run touched, read through
:class:`MLflowHook` only. Nothing here knows about HTTP or Airflow's database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airflow_mlflow.plugins.model_views import VersionView, dag_run_versions, when
from airflow_mlflow.runs import TaskRunContext
from airflow_mlflow.tags import (
    DAG_RUN_KEY,
    MAP_INDEX,
    ROLE,
    ROLE_DAG_RUN,
    ROLE_TASK,
    TASK_ID,
    TI_KEY,
    try_numbers,
    try_tag,
)

if TYPE_CHECKING:
    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.hooks.records import ArtifactEntry, LoggedModelRecord, RunRecord

#: Metric histories drawn on a task page (one request each).
MAX_HISTORIES = 12
#: Artifact entries listed per run, and how deep folders are opened (one request per folder).
MAX_ARTIFACTS = 40
ARTIFACT_DEPTH = 2
#: Logged models listed on a task page (one request each, for its flavors).
MAX_LOGGED_MODELS = 10


def _duration(run: RunRecord) -> str:
    if not run.end_time or not run.start_time:
        return ""
    seconds = (run.end_time - run.start_time) / 1000
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


@dataclass
class TaskView:
    """One task instance's MLflow run."""

    run: RunRecord
    task_id: str
    map_index: int
    mlflow_url: str | None
    artifacts: list[ArtifactEntry] = field(default_factory=list)
    histories: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    versions: list[VersionView] = field(default_factory=list)
    #: The run's MLflow 3 logged models (task page only): their files are not the run's artifacts.
    logged_models: list[LoggedModelRecord] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"

    @property
    def started(self) -> str:
        return when(self.run.start_time)

    @property
    def duration(self) -> str:
        return _duration(self.run)

    @property
    def tries(self) -> list[tuple[int, str, str]]:
        """``(try, state, error)`` for every attempt the run recorded."""
        tags = self.run.tags
        return [
            (n, tags.get(try_tag(n, "state"), ""), tags.get(try_tag(n, "error"), ""))
            for n in try_numbers(tags)
        ]

    @property
    def params(self) -> list[tuple[str, str]]:
        return sorted(self.run.params.items())

    @property
    def metrics(self) -> list[tuple[str, float]]:
        return sorted(self.run.metrics.items())


@dataclass
class DagRunView:
    dag_id: str
    run_id: str
    parent: RunRecord | None
    experiment: str
    mlflow_url: str | None
    tasks: list[TaskView]
    versions: list[VersionView]

    @property
    def status(self) -> str:
        return self.parent.status if self.parent else ""


def _artifacts(hook: MLflowHook, run_id: str) -> list[ArtifactEntry]:
    """The run's artifacts, folders opened ``ARTIFACT_DEPTH`` levels deep, at most ``MAX_ARTIFACTS``."""
    found: list[ArtifactEntry] = []
    folders: list[tuple[str | None, int]] = [(None, 1)]
    while folders and len(found) < MAX_ARTIFACTS:
        folder, depth = folders.pop(0)
        for entry in hook.browse_artifacts(run_id, folder):
            found.append(entry)
            if entry.is_dir and depth < ARTIFACT_DEPTH:
                folders.append((entry.path, depth + 1))
    return sorted(found[:MAX_ARTIFACTS], key=lambda e: e.path)


def _experiment_names(hook: MLflowHook) -> dict[str, str]:
    return {e.experiment_id: e.name for e in hook.list_experiments()}


def dag_run_view(hook: MLflowHook, dag_id: str, run_id: str) -> DagRunView:
    """Every tracked task of one DAG run, with its params, metrics, artifacts and model versions."""
    key = TaskRunContext(dag_id=dag_id, run_id=run_id, task_id="").dag_run_key
    experiments = _experiment_names(hook)
    runs = hook.find_runs(list(experiments), {DAG_RUN_KEY: key}) if experiments else []
    parents = [r for r in runs if r.tags.get(ROLE) == ROLE_DAG_RUN]
    parent = parents[0] if parents else None  # the oldest wins, as when the DAG run is closed
    tasks = [
        TaskView(
            run=r,
            task_id=r.tags.get(TASK_ID, r.run_name),
            map_index=int(r.tags.get(MAP_INDEX, "-1")),
            mlflow_url=hook.run_url(r.experiment_id, r.run_id),
            artifacts=_artifacts(hook, r.run_id),
        )
        for r in runs
        if r.tags.get(ROLE) == ROLE_TASK
    ]
    tasks.sort(key=lambda t: (t.run.start_time, t.task_id, t.map_index))
    versions = dag_run_versions(hook, dag_id, run_id, [t.run.run_id for t in tasks])
    for task in tasks:
        task.versions = [v for v in versions if v.record.run_id == task.run.run_id]
    anchor = parent or (tasks[0].run if tasks else None)  # which experiment the DAG run logs to
    return DagRunView(
        dag_id=dag_id,
        run_id=run_id,
        parent=parent,
        experiment=experiments.get(anchor.experiment_id, "") if anchor else "",
        mlflow_url=hook.run_url(parent.experiment_id, parent.run_id) if parent else None,
        tasks=tasks,
        versions=versions,
    )


def task_view(
    hook: MLflowHook, dag_id: str, run_id: str, task_id: str, map_index: int
) -> tuple[TaskView | None, list[VersionView]]:
    """
    One task instance's run with each metric's whole history, its logged models, and the model
    versions registered from it. For a task that is not tracked (a registry task, say): None,
    and every version its DAG run registered, gated, approved or promoted.
    """
    ctx = TaskRunContext(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index)
    experiments = _experiment_names(hook)
    runs = hook.find_runs(list(experiments), {TI_KEY: ctx.ti_key}) if experiments else []
    run = runs[0] if runs else None
    versions = dag_run_versions(hook, dag_id, run_id, [run.run_id] if run else [])
    if run is None:
        return None, versions  # a registry task: what its DAG run did to model versions
    versions = [v for v in versions if v.record.run_id == run.run_id]
    view = TaskView(
        run=run,
        task_id=task_id,
        map_index=map_index,
        mlflow_url=hook.run_url(run.experiment_id, run.run_id),
        artifacts=_artifacts(hook, run.run_id),
        versions=versions,
        logged_models=hook.logged_models_of_run(run.experiment_id, run.run_id, MAX_LOGGED_MODELS),
    )
    for key in sorted(run.metrics)[:MAX_HISTORIES]:
        view.histories[key] = hook.metric_history(run.run_id, key)
    return view, versions
