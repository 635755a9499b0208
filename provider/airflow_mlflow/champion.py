"""
The promotion model: who is champion, how the champion changes, and the record of its changes.

The champion of a registered model is the version behind an alias (default ``champion``) and/or in
a stage (default ``Production``): the *target* a promotion moves. Every change of champion
(promotion or rollback) is

* numbered (``seq``) from the model's history, read before the champion itself: a change is
  recorded only after it moved the champion, so whoever sees the same number sees the same champion;
* claimed once (compare-and-set): a write-once MLflow name per (model, seq), held by the task
  instance that makes the change (its retry finds its own claim and goes on);
* settled: exactly one version left in the stage (MLflow archives the others in separate
  statements, and people move stages by hand);
* recorded on the versions (``airflow.promotion.*`` / ``airflow.rollback.*`` tags) and appended to
  the model's history tag (:data:`~airflow_mlflow.tags.CHAMPION_HISTORY`, JSON, newest last, capped).

The operators validate and call :func:`promote` / :func:`rollback`; the UI reads the history with
:func:`read_history` and asks :func:`is_champion`. Nothing else knows the history's JSON layout or
the claim's name. Not imported when a DAG file is parsed: the registry operators import it when
their task runs, and take the target's defaults and check (:data:`DEFAULT_ALIAS`,
:data:`DEFAULT_STAGE`, :func:`check_target`, re-exported here) from :mod:`airflow_mlflow.validation`.
The hook layer is imported only where a change is made. Everything here talks to MLflow through
:class:`MLflowHook`'s verbs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_mlflow.exceptions import MLflowConflictError
from airflow_mlflow.tags import (
    APPROVAL_DAG_RUN,
    CHAMPION_HISTORY,
    CHAMPION_MOVE,
    DAG_ID,
    GATE_BASELINE_VERSION,
    GATE_DAG_RUN,
    GATE_STATUS,
    PROMOTION_AT,
    PROMOTION_DAG_RUN,
    PROMOTION_GATE,
    PROMOTION_PREVIOUS_VERSION,
    ROLLBACK_AT,
    ROLLBACK_DAG_RUN,
    ROLLBACK_RESTORED_AT,
    RUN_ID,
    TASK_ID,
    VERSION_LINEAGE,
)
from airflow_mlflow.timestamps import iso_utc
from airflow_mlflow.validation import DEFAULT_ALIAS, DEFAULT_STAGE, check_target

if TYPE_CHECKING:
    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.hooks.registry import VersionRecord

PROMOTE, ROLLBACK = "promote", "rollback"
#: Champion changes kept in the model's history tag.
HISTORY_LIMIT = 40
#: MLflow tag values stop at 8000 characters; the history drops its oldest entries to fit.
HISTORY_MAX_CHARS = 7900
#: Claims of champion changes: ``<hidden prefix>champion-changes/<model>/<seq>``, see :func:`claim_name`.
CLAIM_FOLDER = "champion-changes"


@dataclass(frozen=True)
class Change:
    """
    One champion change, as recorded in the model's history.

    ``version`` became champion, replacing ``previous``; ``alias`` / ``stage`` are the target it
    moved (None in entries written before they were recorded). ``dag_run`` is ``<dag_id>/<run_id>``,
    ``gate`` the candidate's gate verdict at promotion.
    """

    seq: int
    action: str  # "promote" | "rollback"
    version: str
    previous: str | None
    at: str
    dag_run: str | None = None
    gate: str | None = None
    alias: str | None = None
    stage: str | None = None
    #: A person's sign-off on the promoted version (``status``, ``by``, ``at``, ``comment``).
    approval: Mapping[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "seq": self.seq,
            "action": self.action,
            "version": self.version,
            "previous": self.previous,
            "at": self.at,
            "dag_run": self.dag_run,
        }
        if self.action == PROMOTE or self.gate is not None:
            entry["gate"] = self.gate
        for key in ("alias", "stage", "approval"):  # absent rather than null: the tag's room is limited
            if getattr(self, key) is not None:
                entry[key] = getattr(self, key)
        return entry

    @classmethod
    def from_json(cls, entry: Any, position: int) -> Change | None:
        """A stored entry, or None when it is not one (``seq`` defaults to its position)."""
        if not isinstance(entry, Mapping) or entry.get("action") not in (PROMOTE, ROLLBACK):
            return None
        version, seq = entry.get("version"), entry.get("seq", position)
        if not isinstance(version, (str, int)) or isinstance(version, bool) or str(version) == "":
            return None
        try:
            seq = int(seq)
        except (TypeError, ValueError):
            return None

        def text(key: str) -> str | None:
            value = entry.get(key)
            return None if value is None else str(value)

        approval = entry.get("approval")
        return cls(
            seq=seq,
            action=str(entry["action"]),
            version=str(version),
            previous=text("previous"),
            at=text("at") or "",
            dag_run=text("dag_run"),
            gate=text("gate"),
            alias=text("alias"),
            stage=text("stage"),
            approval={str(k): str(v) for k, v in approval.items()} if isinstance(approval, Mapping) else None,
        )


def read_history(model_tags: Mapping[str, str]) -> list[Change]:
    """The champion changes recorded on a model (its tags), oldest first; unreadable ones skipped."""
    raw = model_tags.get(CHAMPION_HISTORY)
    try:
        entries = json.loads(raw) if raw else []
    except ValueError:
        return []
    if not isinstance(entries, list):
        return []
    changes = (Change.from_json(entry, position) for position, entry in enumerate(entries))
    return [change for change in changes if change is not None]


def next_seq(history: Sequence[Change]) -> int:
    """The number of the next champion change."""
    return history[-1].seq + 1 if history else 0


def history_tag(history: Sequence[Change], change: Change) -> dict[str, str]:
    """The model tag recording ``history`` plus ``change``: the newest entries that fit."""
    from airflow_mlflow.hooks.registry import dumps

    entries = [c.to_json() for c in [*history, change][-HISTORY_LIMIT:]]
    while len(dumps(entries)) > HISTORY_MAX_CHARS and len(entries) > 1:
        entries.pop(0)
    return {CHAMPION_HISTORY: dumps(entries)}


def claim_name(model: str, seq: int) -> str:
    """
    The write-once name that champion change ``seq`` of ``model`` claims: under the tracking
    hook's hidden-experiment prefix, so the (deleted) claim experiments never show in lists.
    """
    from airflow_mlflow.hooks.tracking import HIDDEN_EXPERIMENT_PREFIX  # execute time only

    return f"{HIDDEN_EXPERIMENT_PREFIX}{CLAIM_FOLDER}/{model}/{seq}"


def _target(history: Sequence[Change]) -> tuple[str | None, str | None]:
    """The (alias, stage) the latest change that recorded one moved; else the defaults."""
    for change in reversed(history):
        if change.alias or change.stage:
            return change.alias, change.stage
    return DEFAULT_ALIAS, DEFAULT_STAGE


def is_champion(
    version: VersionRecord, history: Sequence[Change], aliases: Mapping[str, str] | None = None
) -> bool:
    """
    Whether ``version`` is its model's champion: behind the alias of the latest recorded change
    (when that alias is set), else in its stage; without a recorded target, behind ``champion``,
    else in ``Production``.

    ``aliases``: the model's alias -> version map. Pass it for versions from a search, which
    leaves aliases out; without it, the version's own ``aliases`` are used.
    """
    alias, stage = _target(history)
    if alias:
        if aliases is not None and alias in aliases:
            return str(aliases[alias]) == version.version
        if aliases is None and alias in version.aliases:
            return True
    return bool(stage) and version.current_stage == stage


@dataclass(frozen=True)
class Target:
    """Where one model's champion lives: an alias and/or a stage (the operators' arguments)."""

    model: str
    alias: str | None = DEFAULT_ALIAS
    stage: str | None = DEFAULT_STAGE
    archive_existing: bool = True

    def __post_init__(self) -> None:
        check_target(self.alias, self.stage)

    def champion(self, hook: MLflowHook) -> VersionRecord | None:
        """The version there now: behind the alias when one is managed, else in the stage."""
        if self.alias:
            return hook.get_version_by_alias(self.model, self.alias)
        return hook.get_version_by_stage(self.model, self.stage or DEFAULT_STAGE)

    def move(self, hook: MLflowHook, version: str) -> None:
        """Point the alias and/or the stage at ``version``."""
        if self.alias:
            hook.set_alias(self.model, self.alias, version)
        if self.stage:
            hook.transition_stage(self.model, version, self.stage, archive_existing=self.archive_existing)

    def settle(self, hook: MLflowHook) -> VersionRecord | None:
        """
        Leave exactly one version in the stage: the champion. MLflow archives the others in
        separate statements, and people move stages by hand; this repairs either.
        """
        champion = self.champion(hook)
        if not (champion and self.stage and self.archive_existing):
            return champion
        for other in hook.list_versions(self.model):
            if other.current_stage == self.stage and other.version != champion.version:
                hook.transition_stage(self.model, other.version, "Archived")
        if hook.get_model_version(self.model, champion.version).current_stage != self.stage:
            hook.transition_stage(self.model, champion.version, self.stage)
        return champion


@dataclass(frozen=True)
class Actor:
    """The task instance making a change: it holds the change's claim, or registers a version."""

    dag_id: str
    run_id: str
    task_id: str
    url: str | None = None

    def lineage_tags(self) -> dict[str, str | None]:
        """The lineage a registered version carries (:data:`~airflow_mlflow.tags.VERSION_LINEAGE`)."""
        return dict(zip(VERSION_LINEAGE, (self.dag_id, self.run_id, self.task_id, self.url), strict=True))

    def registered(self, version: VersionRecord) -> bool:
        """Whether this task instance (an earlier try of it) registered ``version``."""
        mine = self.lineage_tags()
        return all(version.tags.get(key) == mine[key] for key in (DAG_ID, RUN_ID, TASK_ID))

    @property
    def dag_run(self) -> str:
        return f"{self.dag_id}/{self.run_id}"

    @property
    def owner(self) -> str:
        return f"{self.dag_id}/{self.run_id}/{self.task_id}"


def claim(hook: MLflowHook, model: str, seq: int, actor: Actor) -> None:
    """
    Compare-and-set: only one task may make champion change number ``seq``. A retry of the same
    task instance finds its own claim and goes on.
    """
    holder = hook.claim_name(claim_name(model, seq), actor.owner)
    if holder != actor.owner:
        raise MLflowConflictError(
            f"model {model!r}: {holder} changed the champion concurrently (change #{seq}); "
            "this task did not overwrite it. Re-run the gate against the new champion."
        )


def _mark_move(
    hook: MLflowHook, target: Target, version: str, seq: int, previous: str | None, actor: Actor
) -> None:
    """
    Mark ``version`` as being made champion by the provider, before the move: MLflow announces an
    alias change (webhook) the moment it happens, before anything after the move is written.
    """
    from airflow_mlflow.hooks.registry import dumps

    marker = {
        "seq": seq,
        "alias": target.alias,
        "stage": target.stage,
        "previous": previous,
        "dag_run": actor.dag_run,
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),  # watchers compare it with poll times
    }
    hook.set_version_tags(target.model, version, {CHAMPION_MOVE: dumps(marker)})


def _begin(hook: MLflowHook, target: Target) -> tuple[list[Change], int]:
    """The history and the next change's number, read before the champion (see the module doc)."""
    history = read_history(hook.get_model_tags(target.model))
    return history, next_seq(history)


def promote(
    hook: MLflowHook, target: Target, version: str, actor: Actor
) -> tuple[Change | None, VersionRecord]:
    """
    Make ``version`` the champion: refused when the gate rejected it, or when the champion moved
    since the gate compared against it. Returns the recorded change (None when ``version`` was
    champion already: nothing to do) and the candidate.
    """
    from airflow_mlflow.approval import approval_of

    model = target.model
    candidate = hook.get_model_version(model, version)
    gate = candidate.tags.get(GATE_STATUS)
    if gate == "rejected":
        raise MLflowConflictError(
            f"model {model!r} version {version} was rejected by the gate "
            f"({candidate.tags.get(GATE_DAG_RUN)}); it will not be promoted"
        )
    approval = approval_of(candidate.tags)
    if approval and approval["status"] == "rejected":
        raise MLflowConflictError(
            f"model {model!r} version {version} was rejected by {approval['by']} at {approval['at']} "
            f"({candidate.tags.get(APPROVAL_DAG_RUN)}); it will not be promoted"
        )
    history, seq = _begin(hook, target)
    current = target.champion(hook)
    previous = current.version if current else None
    if previous == version:
        return None, candidate
    expected = candidate.tags.get(GATE_BASELINE_VERSION)
    if expected is not None and (previous or "none") != expected:
        raise MLflowConflictError(
            f"model {model!r}: the gate compared version {version} against "
            f"{'version ' + expected if expected != 'none' else 'no champion'}, but the champion is now "
            f"{'version ' + previous if previous else 'unset'}; re-run the gate before promoting"
        )
    claim(hook, model, seq, actor)
    _mark_move(hook, target, version, seq, previous, actor)
    target.move(hook, version)
    target.settle(hook)
    at = iso_utc()
    hook.set_version_tags(
        model,
        version,
        {
            PROMOTION_PREVIOUS_VERSION: previous or "none",
            PROMOTION_AT: at,
            PROMOTION_DAG_RUN: actor.dag_run,
            PROMOTION_GATE: gate or "not gated",
        },
    )
    change = Change(
        seq, PROMOTE, version, previous, at, actor.dag_run, gate, target.alias, target.stage, approval
    )
    hook.set_model_tags(model, history_tag(history, change))
    return change, candidate


def rollback(hook: MLflowHook, target: Target, actor: Actor) -> tuple[Change, VersionRecord]:
    """
    Restore the champion the current one replaced (by its latest recorded promotion); the current
    one is archived when a stage is managed. Returns the recorded change and the restored version.
    """
    model = target.model
    history, seq = _begin(hook, target)
    current = target.champion(hook)
    if current is None:
        raise MLflowConflictError(f"model {model!r} has no champion to roll back")
    promoted = [c for c in history if c.action == PROMOTE and c.version == current.version]
    restore = promoted[-1].previous if promoted else None
    if not restore:
        raise MLflowConflictError(
            f"model {model!r}: no earlier champion is recorded for version {current.version}; "
            "nothing to roll back to"
        )
    claim(hook, model, seq, actor)
    _mark_move(hook, target, restore, seq, current.version, actor)
    target.move(hook, restore)
    target.settle(hook)
    at = iso_utc()
    hook.set_version_tags(model, current.version, {ROLLBACK_AT: at, ROLLBACK_DAG_RUN: actor.dag_run})
    hook.set_version_tags(model, restore, {ROLLBACK_RESTORED_AT: at})
    change = Change(
        seq, ROLLBACK, restore, current.version, at, actor.dag_run, alias=target.alias, stage=target.stage
    )
    hook.set_model_tags(model, history_tag(history, change))
    return change, hook.get_model_version(model, restore)
