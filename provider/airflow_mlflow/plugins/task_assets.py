"""
A tracked task's Airflow assets on its MLflow run, and its MLflow run on the asset events it emits.

* Each inlet ``Asset`` becomes a dataset input of the run (MLflow's "Datasets used"): its name,
  a digest of its URI, source type :data:`SOURCE_TYPE` and the URI as source, with MLflow's
  ``mlflow.data.context`` input tag set to ``airflow.inlet``. MLflow keeps one input per run and
  ``(name, digest)``, so a retried or resumed attempt adds nothing.
* The outlet assets' URIs are the run's ``airflow.outlets`` tag (a JSON list).
* The asset event the task emits for each outlet ``Asset`` carries the run in its extra
  (:data:`EVENT_RUN_ID`, :data:`EVENT_EXPERIMENT_ID`), set before ``execute``: a key the task sets
  itself (``outlet_events[asset].extra[...]``, ``yield Metadata(...)``) wins.

An asset reference (``Asset.ref(name=...)``, ``Asset.ref(uri=...)``) counts as the asset Airflow
knows by that name or URI. An ``AssetAlias`` (its assets are known only from the events the task
adds) and other lineage objects are left out, with a debug line.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

from airflow_mlflow import compat
from airflow_mlflow.tags import INLET_CONTEXT, OUTLETS
from airflow_mlflow.validation import MAX_TAG_VALUE_LENGTH

if TYPE_CHECKING:
    from airflow.sdk import Asset

    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.runs import TaskRun

log = logging.getLogger(__name__)

#: MLflow dataset source type of an Airflow asset; the source is the asset's URI.
SOURCE_TYPE = "airflow_asset"
#: Keys of the run in the extra of an asset event a tracked task emits.
EVENT_RUN_ID = "mlflow_run_id"
EVENT_EXPERIMENT_ID = "mlflow_experiment_id"


def concrete_assets(objects: Any, what: str) -> list[Asset]:
    """
    The assets of a task's ``inlets`` or ``outlets``, once each (by URI), in order: ``Asset``s, and
    the assets asset references name (``Asset.ref(...)``, asked from Airflow).
    """
    from airflow.sdk import Asset

    found: dict[str, Asset] = {}
    for obj in objects or ():
        asset = obj if isinstance(obj, Asset) else compat.resolve_asset_ref(obj)
        if asset is not None and asset.uri:
            found.setdefault(asset.uri, asset)
        else:
            log.debug("MLflow: %s %r is no asset with a URI; not recorded on the run", what, obj)
    return list(found.values())


def digest(uri: str) -> str:
    """A dataset digest for an asset: stable, short (as MLflow's own, 10 hex characters)."""
    return hashlib.sha256(uri.encode()).hexdigest()[:10]


def dataset_inputs(task: Any) -> list:
    """The task's inlet assets as the hook's dataset inputs."""
    from airflow_mlflow.hooks.tracking import DatasetInput

    return [
        DatasetInput(asset.name or asset.uri, digest(asset.uri), SOURCE_TYPE, asset.uri, INLET_CONTEXT)
        for asset in concrete_assets(getattr(task, "inlets", None), "inlet")
    ]


def outlet_tags(task: Any) -> dict[str, str]:
    """``{airflow.outlets: <JSON list of URIs>}``; URIs past MLflow's tag value limit are left out."""
    kept: list[str] = []
    assets = concrete_assets(getattr(task, "outlets", None), "outlet")
    for asset in assets:
        if len(json.dumps([*kept, asset.uri])) > MAX_TAG_VALUE_LENGTH:
            log.warning(
                "MLflow: tag %s lists %d of the task's %d outlets (MLflow's limit is %d characters)",
                OUTLETS,
                len(kept),
                len(assets),
                MAX_TAG_VALUE_LENGTH,
            )
            break
        kept.append(asset.uri)
    return {OUTLETS: json.dumps(kept)} if kept else {}


def mark_outlet_events(task: Any, context: Any, run: TaskRun) -> None:
    """Put the run on the extra of each outlet asset's event, unless the task sets those keys."""
    events = context.get("outlet_events") if context else None
    if events is None:
        return
    for asset in concrete_assets(getattr(task, "outlets", None), "outlet"):
        extra = events[asset].extra
        extra.setdefault(EVENT_RUN_ID, run.run_id)
        extra.setdefault(EVENT_EXPERIMENT_ID, run.experiment_id)


def record(task: Any, context: Any, hook: MLflowHook, run: TaskRun) -> None:
    """What :mod:`task_tracking` does for assets when the run is open (before ``execute``)."""
    mark_outlet_events(task, context, run)
    if inputs := dataset_inputs(task):
        hook.log_inputs(run.run_id, inputs)
