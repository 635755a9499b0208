"""
What the plugin's views show, gathered through :class:`MLflowHook` only.

Nothing here knows about HTTP or Airflow's database: the views hand in a hook and, for the
registry pages, ``readable(dag_id)``, which says whether the user may read that DAG. Model
versions carry their Airflow lineage as tags (``airflow.dag_id`` …), so a user sees a version
only when they may read the DAG that produced it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_mlflow.runs import DAG_RUN_KEY, ROLE, TI_KEY, TaskRunContext
from airflow_mlflow.tags import CHAMPION_HISTORY

if TYPE_CHECKING:
    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.hooks.registry import ModelRecord, VersionRecord
    from airflow_mlflow.hooks.tracking import ArtifactEntry, RunRecord

#: The alias the promotion operator moves by default; the champion is the version behind it.
CHAMPION_ALIAS = "champion"
#: Versions a model page reads (each costs a request or two against a server).
MAX_CHART_VERSIONS = 60
#: Metric histories drawn on a task page (one request each).
MAX_HISTORIES = 12
#: Artifact entries listed per run, and how deep folders are opened (one request per folder).
MAX_ARTIFACTS = 40
ARTIFACT_DEPTH = 2
GATE_PREFIX = "airflow.gate.metric."


def _when(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(run: RunRecord) -> str:
    if not run.end_time or not run.start_time:
        return ""
    seconds = (run.end_time - run.start_time) / 1000
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# ------------------------------------------------------------------------------ tracking


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

    @property
    def label(self) -> str:
        return self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"

    @property
    def started(self) -> str:
        return _when(self.run.start_time)

    @property
    def duration(self) -> str:
        return _duration(self.run)

    @property
    def tries(self) -> list[tuple[int, str, str]]:
        """``(try, state, error)`` for every attempt the run recorded."""
        tags = self.run.tags
        numbers = sorted(
            {int(k.split(".")[2]) for k in tags if k.startswith("airflow.try.") and k.split(".")[2].isdigit()}
        )
        return [
            (n, tags.get(f"airflow.try.{n}.state", ""), tags.get(f"airflow.try.{n}.error", ""))
            for n in numbers
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
    parents = [r for r in runs if r.tags.get(ROLE) == "dag_run"]
    parent = parents[0] if parents else None  # the oldest wins, as when the DAG run is closed
    tasks = [
        TaskView(
            run=r,
            task_id=r.tags.get("airflow.task_id", r.run_name),
            map_index=int(r.tags.get("airflow.map_index", "-1")),
            mlflow_url=hook.run_url(r.experiment_id, r.run_id),
            artifacts=_artifacts(hook, r.run_id),
        )
        for r in runs
        if r.tags.get(ROLE) == "task"
    ]
    tasks.sort(key=lambda t: (t.run.start_time, t.task_id, t.map_index))
    versions = _dag_run_versions(hook, dag_id, run_id, [t.run.run_id for t in tasks])
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
    One task instance's run with each metric's whole history, and the model versions
    registered from it. For a task that is not tracked (a registry task, say): None, and every
    version its DAG run registered, gated or promoted.
    """
    ctx = TaskRunContext(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index)
    experiments = _experiment_names(hook)
    runs = hook.find_runs(list(experiments), {TI_KEY: ctx.ti_key}) if experiments else []
    run = runs[0] if runs else None
    versions = _dag_run_versions(hook, dag_id, run_id, [run.run_id] if run else [])
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
    )
    for key in sorted(run.metrics)[:MAX_HISTORIES]:
        view.histories[key] = hook.metric_history(run.run_id, key)
    return view, versions


# ------------------------------------------------------------------------------ registry


@dataclass
class VersionView:
    """A model version with what decided its fate: gate verdict, promotion, metrics."""

    record: VersionRecord
    champion: bool = False
    metrics: Mapping[str, float] = field(default_factory=dict)
    run_tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.record.version

    @property
    def tags(self) -> Mapping[str, str]:
        return self.record.tags

    @property
    def dag_id(self) -> str | None:
        return self.tags.get("airflow.dag_id")

    @property
    def dag_run_id(self) -> str | None:
        return self.tags.get("airflow.run_id")

    @property
    def created(self) -> str:
        return _when(self.record.created)

    @property
    def logical_date(self) -> str:
        """The DAG run's logical date (a day), else when the version was registered."""
        raw = self.run_tags.get("airflow.logical_date")
        if raw:
            return raw[:10]
        return _when(self.record.created)[:16]

    @property
    def gate(self) -> str:
        """``passed`` / ``rejected`` / ``waiting`` / ``not gated``."""
        return self.tags.get("airflow.gate.status", "not gated")

    @property
    def gate_checks(self) -> list[str]:
        return [v for k, v in sorted(self.tags.items()) if k.startswith(GATE_PREFIX)]

    @property
    def gate_metrics(self) -> list[str]:
        return [k.removeprefix(GATE_PREFIX) for k in sorted(self.tags) if k.startswith(GATE_PREFIX)]

    @property
    def baseline(self) -> str:
        return self.tags.get("airflow.gate.baseline_version", "")

    @property
    def promoted_at(self) -> str:
        return self.tags.get("airflow.promotion.at", "")

    @property
    def outcome(self) -> str:
        """One line a reader can trust: what happened to this version, and why."""
        if self.champion:
            return "champion"
        if self.tags.get("airflow.rollback.at"):
            return "rolled back"
        if self.promoted_at:
            return "promoted, since replaced"
        if self.gate == "rejected":
            return "rejected by the gate"
        if self.gate == "passed":
            return "passed the gate, not promoted"
        return "candidate"


def _is_champion(version: VersionRecord, model: ModelRecord | None) -> bool:
    if model and CHAMPION_ALIAS in model.aliases:
        return model.aliases[CHAMPION_ALIAS] == version.version
    return version.current_stage == "Production"


def _dag_run_versions(hook: MLflowHook, dag_id: str, run_id: str, run_ids: list[str]) -> list[VersionView]:
    """Versions registered from these runs, or registered, gated or promoted by the DAG run."""
    records = {(r.name, r.version): r for r in hook.versions_of_runs(run_ids)} if run_ids else {}
    for tags in (
        {"airflow.dag_id": dag_id, "airflow.run_id": run_id},
        {"airflow.gate.dag_run": f"{dag_id}/{run_id}"},
        {"airflow.promotion.dag_run": f"{dag_id}/{run_id}"},
    ):
        for r in hook.versions_with_tags(tags):
            records.setdefault((r.name, r.version), r)
    models = {name: hook.get_model(name) for name in {name for name, _ in records}}
    return [VersionView(r, champion=_is_champion(r, models[r.name])) for r in records.values()]


@dataclass
class ModelSummary:
    model: ModelRecord
    versions: list[VersionRecord]

    @property
    def latest(self) -> VersionRecord | None:
        return self.versions[0] if self.versions else None

    @property
    def champion(self) -> VersionRecord | None:
        return next((v for v in self.versions if _is_champion(v, self.model)), None)

    @property
    def dags(self) -> list[str]:
        return sorted({v.tags["airflow.dag_id"] for v in self.versions if "airflow.dag_id" in v.tags})

    @property
    def updated(self) -> str:
        return _when(self.model.updated)


Readable = Callable[[str | None], bool]


def _visible(versions: list[VersionRecord], readable: Readable) -> list[VersionRecord]:
    return [v for v in versions if readable(v.tags.get("airflow.dag_id"))]


def models_view(hook: MLflowHook, readable: Readable) -> list[ModelSummary]:
    """Registered models the user may see, each with its versions from readable DAGs."""
    summaries = []
    for model in hook.list_models():
        versions = _visible(hook.list_versions(model.name), readable)
        if versions:
            summaries.append(ModelSummary(model, versions))
    return summaries


@dataclass
class ChartPoint:
    """One DAG run's candidate on the model chart."""

    label: str
    value: float
    version: str
    gate: str
    champion: bool
    promoted: bool


@dataclass
class ModelView:
    model: ModelRecord
    versions: list[VersionView]
    history: list[dict[str, Any]]
    metric: str | None
    metrics: list[str]
    points: list[ChartPoint]

    @property
    def champion(self) -> VersionView | None:
        return next((v for v in self.versions if v.champion), None)


def model_view(
    hook: MLflowHook, name: str, readable: Readable, metric: str | None = None
) -> ModelView | None:
    """
    One model: its versions (newest first) with gate verdicts and metrics, the promotion
    history, and one chart point per DAG run for ``metric`` (default: the gate's first metric).
    None when the model does not exist or none of its versions comes from a readable DAG.
    """
    from airflow_mlflow.exceptions import MLflowResourceNotFoundError

    try:
        model = hook.get_model(name)
    except MLflowResourceNotFoundError:
        return None
    records = _visible(hook.list_versions(name), readable)
    if not records:
        return None
    versions = []
    for record in records[:MAX_CHART_VERSIONS]:
        metrics, run_tags = hook.version_source(record)
        versions.append(VersionView(record, _is_champion(record, model), metrics, run_tags))
    metrics = sorted({k for v in versions for k in v.metrics})
    gated = next((v.gate_metrics[0] for v in versions if v.gate_metrics), None)
    chosen = metric if metric in metrics else gated if gated in metrics else (metrics[0] if metrics else None)
    return ModelView(
        model=model,
        versions=versions,
        history=_history(model, readable),
        metric=chosen,
        metrics=metrics,
        points=_points(versions, chosen) if chosen else [],
    )


def _points(versions: list[VersionView], metric: str) -> list[ChartPoint]:
    """Oldest first; a DAG run that registered several versions counts with its newest."""
    by_run: dict[tuple[str | None, str | None], VersionView] = {}
    for v in sorted(versions, key=lambda v: int(v.version)):
        if metric in v.metrics:
            by_run[(v.dag_id, v.dag_run_id) if v.dag_run_id else (None, v.version)] = v
    return [
        ChartPoint(
            label=v.logical_date,
            value=v.metrics[metric],
            version=v.version,
            gate=v.gate,
            champion=v.champion,
            promoted=bool(v.promoted_at),
        )
        for v in by_run.values()
    ]


def _history(model: ModelRecord, readable: Readable) -> list[dict[str, Any]]:
    """Champion changes, newest first, as recorded by the promotion and rollback operators."""
    try:
        entries = json.loads(model.tags.get(CHAMPION_HISTORY) or "[]")
    except ValueError:
        return []
    if not isinstance(entries, list):
        return []
    shown = [
        e
        for e in entries
        if isinstance(e, dict) and readable(str(e.get("dag_run", "")).split("/")[0] or None)
    ]
    return list(reversed(shown))
