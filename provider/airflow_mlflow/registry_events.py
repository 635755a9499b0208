"""
Registry changes as Airflow asset events: what an event says, and which changes are the provider's own.

Three sources announce a change of a registered model on its :func:`~airflow_mlflow.assets.model_asset`:

* the provider's operators (register, promote, roll back), through their outlets: the event's
  extra is the payload itself;
* the polling watcher (:mod:`airflow_mlflow.triggers.registry_events`): Airflow wraps it as
  ``{"from_trigger": true, "payload": {...}}``;
* the webhook receiver (:mod:`airflow_mlflow.plugins.webhooks`): ``{"from_webhook": true,
  "delivery_id": ..., "payload": {...}}``.

:func:`event_payload` reads any of them. Watchers and the receiver never announce a change an
operator announced already: :func:`own_move` and :func:`registered_by_provider` tell them apart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from airflow_mlflow.tags import CHAMPION_MOVE, DAG_ID, RUN_ID, TASK_ID

#: What changed (a payload's ``change``).
VERSION_CREATED = "version_created"
ALIAS_SET = "alias_set"
ALIAS_DELETED = "alias_deleted"
STAGE_CHANGED = "stage_changed"
#: Clock slack between the task that marked a move, the triggerer and MLflow (seconds).
CLOCK_SLACK_SECONDS = 2.0
#: How close to a webhook's event time the provider's mark must be for the move to be its own.
WEBHOOK_MOVE_WINDOW_SECONDS = 60.0


def change_payload(
    *,
    change: str,
    name: str,
    version: str | None,
    previous_version: str | None = None,
    alias: str | None = None,
    stage: str | None = None,
    changed_by: str | None = None,
    changed_at: str | None = None,
    via: str,
) -> dict[str, Any]:
    """
    The payload of one registry change: ``name``, ``version`` (None when an alias was deleted),
    ``previous_version``, the ``alias`` or ``stage`` that moved, who changed it and when when
    MLflow says (``changed_by`` / ``changed_at``), and ``via`` (``poll`` or ``webhook``).
    """
    return {
        "change": change,
        "name": name,
        "version": None if version is None else str(version),
        "previous_version": None if previous_version is None else str(previous_version),
        "alias": alias,
        "stage": stage,
        "changed_by": changed_by,
        "changed_at": changed_at,
        "via": via,
    }


def event_payload(extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """The payload of an asset event on a model asset, whichever source emitted it."""
    extra = dict(extra or {})
    payload = extra.get("payload")
    return dict(payload) if isinstance(payload, Mapping) else extra


def own_move(
    version_tags: Mapping[str, str],
    *,
    alias: str | None = None,
    stage: str | None = None,
    since: float,
    until: float | None = None,
) -> bool:
    """
    Whether the provider's promotion or rollback moved ``alias`` (or ``stage``) to the version
    carrying ``version_tags`` between ``since`` and ``until`` (epoch seconds): the provider marks
    the version (:data:`~airflow_mlflow.tags.CHAMPION_MOVE`) just before it moves the champion, so
    a webhook MLflow sends at the move already finds the mark.

    The window is the caller's: the poll watcher's is "since my previous poll" (a move back to a
    version the provider promoted long ago is someone's, and is announced); the webhook
    receiver's is the minute around the event's time.
    """
    try:
        marker = json.loads(version_tags.get(CHAMPION_MOVE) or "null")
        at = datetime.fromisoformat(str(marker["at"]).replace("Z", "+00:00")).timestamp()
    except (ValueError, TypeError, KeyError):
        return False
    if alias is not None and marker.get("alias") != alias:
        return False
    if stage is not None and str(marker.get("stage")).lower() != stage.lower():  # MLflow ignores case
        return False
    return (
        since - CLOCK_SLACK_SECONDS <= at <= (time.time() if until is None else until) + CLOCK_SLACK_SECONDS
    )


def registered_by_provider(version_tags: Mapping[str, str]) -> bool:
    """Whether ``MLflowRegisterModelOperator`` registered the version (its lineage tags are set)."""
    return all(version_tags.get(key) for key in (DAG_ID, RUN_ID, TASK_ID))
