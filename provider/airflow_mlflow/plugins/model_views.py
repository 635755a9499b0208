"""
What the registry pages show: registered models, their versions with gate verdicts, people's
approvals and promotions, the champion history and one chart point per DAG run, read through
:class:`MLflowHook` only.

Nothing here knows about HTTP or Airflow's database: the routes hand in a hook and
``readable(dag_id)``, which says whether the user may read that DAG. Model versions carry their
Airflow lineage as tags (:data:`~airflow_mlflow.tags.DAG_ID` …), so a user sees a version only
when they may read the DAG that produced it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

from airflow_mlflow.approval import REJECTED, TIMEOUT
from airflow_mlflow.champion import Change, is_champion, read_history
from airflow_mlflow.evaluation import evaluated_metrics, gated_on_evaluation
from airflow_mlflow.tags import (
    APPROVAL_AT,
    APPROVAL_BY,
    APPROVAL_COMMENT,
    APPROVAL_DAG_RUN,
    APPROVAL_STATUS,
    DAG_ID,
    GATE_BASELINE_VERSION,
    GATE_DAG_RUN,
    GATE_METRIC_PREFIX,
    GATE_STATUS,
    LOGICAL_DATE,
    PROMOTION_AT,
    PROMOTION_DAG_RUN,
    ROLLBACK_AT,
    RUN_ID,
)

if TYPE_CHECKING:
    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.hooks.registry import ModelRecord, VersionRecord

#: Versions a model page reads (each costs a request or two against a server).
MAX_CHART_VERSIONS = 60
#: What a version without a gate verdict shows.
NOT_GATED = "not gated"

#: Says whether the user may read a DAG (None: a version registered outside Airflow).
Readable = Callable[[str | None], bool]


def when(ms: int | None) -> str:
    """Epoch milliseconds as a UTC time a reader can compare; empty for none."""
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def gate_of(tags: Mapping[str, str]) -> str:
    """``passed`` / ``rejected`` / ``waiting`` / ``not gated``, from a version's tags."""
    return tags.get(GATE_STATUS, NOT_GATED)


@dataclass(frozen=True)
class Decision:
    """A person's decision on a version (``MLflowApprovalOperator``), as the pages show it."""

    status: str  # approved | rejected
    by: str
    at: str
    comment: str = ""
    #: ``<dag_id>/<run_id>`` of the DAG run that asked (empty in a history entry).
    dag_run: str = ""

    @classmethod
    def of_version(cls, tags: Mapping[str, str]) -> Decision | None:
        """The decision recorded on a version (its whole comment), None without one."""
        status = tags.get(APPROVAL_STATUS)
        if not status:
            return None
        get = lambda key: tags.get(key) or ""  # noqa: E731
        return cls(status, get(APPROVAL_BY), get(APPROVAL_AT), get(APPROVAL_COMMENT), get(APPROVAL_DAG_RUN))

    @classmethod
    def of_change(cls, change: Change) -> Decision | None:
        """The approval a champion change carries (its comment shortened), None without one."""
        entry = change.approval
        if not entry or not entry.get("status"):
            return None
        return cls(entry["status"], entry.get("by", ""), entry.get("at", ""), entry.get("comment", ""))

    @property
    def rejected(self) -> bool:
        return self.status == REJECTED

    @property
    def who(self) -> str:
        """``by alice``, or ``(no answer in time)`` when the request timed out."""
        return "(no answer in time)" if self.by == TIMEOUT else f"by {self.by or 'unknown'}"

    @property
    def summary(self) -> str:
        """``approved by alice``, ``rejected by bob``, ``rejected (no answer in time)``."""
        return f"{self.status} {self.who}"


@dataclass
class VersionView:
    """A model version with what decided its fate: gate verdict, approval, promotion, metrics."""

    record: VersionRecord
    champion: bool = False
    metrics: Mapping[str, float] = field(default_factory=dict)
    run_tags: Mapping[str, str] = field(default_factory=dict)
    #: On a DAG run's pages, ``<dag_id>/<run_id>``: only the decision that DAG run recorded is shown.
    approval_run: str | None = None

    @property
    def version(self) -> str:
        return self.record.version

    @property
    def tags(self) -> Mapping[str, str]:
        return self.record.tags

    @property
    def dag_id(self) -> str | None:
        return self.tags.get(DAG_ID)

    @property
    def dag_run_id(self) -> str | None:
        return self.tags.get(RUN_ID)

    @property
    def created(self) -> str:
        return when(self.record.created)

    @property
    def logical_date(self) -> str:
        """The DAG run's logical date (a day), else when the version was registered."""
        raw = self.run_tags.get(LOGICAL_DATE)
        if raw:
            return raw[:10]
        return when(self.record.created)[:16]

    @property
    def gate(self) -> str:
        """``passed`` / ``rejected`` / ``waiting`` / ``not gated``."""
        return gate_of(self.tags)

    @property
    def gate_checks(self) -> list[str]:
        return [v for k, v in sorted(self.tags.items()) if k.startswith(GATE_METRIC_PREFIX)]

    @property
    def gate_metrics(self) -> list[str]:
        return [
            k.removeprefix(GATE_METRIC_PREFIX) for k in sorted(self.tags) if k.startswith(GATE_METRIC_PREFIX)
        ]

    @property
    def baseline(self) -> str:
        return self.tags.get(GATE_BASELINE_VERSION, "")

    @property
    def promoted_at(self) -> str:
        return self.tags.get(PROMOTION_AT, "")

    @property
    def decision(self) -> Decision | None:
        """The latest decision a person (or a timeout) made on the version."""
        return Decision.of_version(self.tags)

    @property
    def approval(self) -> Decision | None:
        """The decision shown: the version's, or on a DAG run's pages the one that DAG run recorded."""
        decision = self.decision
        if decision and self.approval_run and decision.dag_run != self.approval_run:
            return None
        return decision

    @property
    def outcome(self) -> str:
        """One line a reader can trust: what happened to this version, and why."""
        if self.champion:
            return "champion"
        if self.tags.get(ROLLBACK_AT):
            return "rolled back"
        if self.promoted_at:
            return "promoted, since replaced"
        if self.gate == "rejected":
            return "rejected by the gate"
        decision = self.decision
        if decision and decision.rejected:
            return decision.summary
        if decision:
            return f"{decision.summary}, not promoted"
        if self.gate == "passed":
            return "passed the gate, not promoted"
        return "candidate"


def _is_champion(version: VersionRecord, model: ModelRecord) -> bool:
    """Asked of the promotion model, with the model's aliases (versions from a search have none)."""
    return is_champion(version, read_history(model.tags), model.aliases)


def dag_run_versions(hook: MLflowHook, dag_id: str, run_id: str, run_ids: list[str]) -> list[VersionView]:
    """
    Versions registered from these runs, or registered, gated, approved or promoted by the DAG
    run; each shows the approval decision this DAG run recorded, if any.
    """
    dag_run = f"{dag_id}/{run_id}"
    records = {(r.name, r.version): r for r in hook.versions_of_runs(run_ids)} if run_ids else {}
    for tags in (
        {DAG_ID: dag_id, RUN_ID: run_id},
        {GATE_DAG_RUN: dag_run},
        {APPROVAL_DAG_RUN: dag_run},
        {PROMOTION_DAG_RUN: dag_run},
    ):
        for r in hook.versions_with_tags(tags):
            records.setdefault((r.name, r.version), r)
    models = {name: hook.get_model(name) for name in {name for name, _ in records}}
    return [
        VersionView(r, champion=_is_champion(r, models[r.name]), approval_run=dag_run)
        for r in records.values()
    ]


@dataclass
class ModelSummary:
    model: ModelRecord
    versions: list[VersionRecord]

    @property
    def latest(self) -> VersionRecord | None:
        return self.versions[0] if self.versions else None

    @property
    def latest_gate(self) -> str:
        """The newest version's gate verdict."""
        return gate_of(self.latest.tags) if self.latest else NOT_GATED

    @cached_property
    def champion(self) -> VersionRecord | None:
        history = read_history(self.model.tags)
        return next((v for v in self.versions if is_champion(v, history, self.model.aliases)), None)

    @property
    def dags(self) -> list[str]:
        return sorted({v.tags[DAG_ID] for v in self.versions if DAG_ID in v.tags})

    @property
    def updated(self) -> str:
        return when(self.model.updated)


def _visible(versions: list[VersionRecord], readable: Readable) -> list[VersionRecord]:
    return [v for v in versions if readable(v.tags.get(DAG_ID))]


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
    history: list[Change]
    metric: str | None
    metrics: list[str]
    points: list[ChartPoint]

    @property
    def champion(self) -> VersionView | None:
        return next((v for v in self.versions if v.champion), None)

    @property
    def history_rows(self) -> list[tuple[Change, Decision | None]]:
        """The history as shown: each change with the approval it carries (None without one)."""
        return [(change, Decision.of_change(change)) for change in self.history]


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
    history = read_history(model.tags)
    versions = []
    for record in records[:MAX_CHART_VERSIONS]:
        metrics, run_tags = hook.version_source(record)
        if gated_on_evaluation(record.tags, metrics):  # the numbers its verdict is about, too
            metrics = {**metrics, **evaluated_metrics(record)}
        versions.append(VersionView(record, is_champion(record, history, model.aliases), metrics, run_tags))
    metrics = sorted({k for v in versions for k in v.metrics})
    gated = next((v.gate_metrics[0] for v in versions if v.gate_metrics), None)
    chosen = metric if metric in metrics else gated if gated in metrics else (metrics[0] if metrics else None)
    return ModelView(
        model=model,
        versions=versions,
        history=_shown(history, readable),
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


def _shown(history: list[Change], readable: Readable) -> list[Change]:
    """Champion changes, newest first, made by DAGs the user may read (or outside Airflow)."""
    return [c for c in reversed(history) if readable((c.dag_run or "").split("/")[0] or None)]
