"""
Registry changes made outside Airflow, as asset events: the event triggers behind
``model_asset(..., watch="poll" | "webhook")`` (an ``AssetWatcher`` each).

* :class:`MLflowRegistryPollTrigger` reads the model from the triggerer every ``poll_interval``
  seconds: one request per poll (``get_registered_model``), one more only when something changed.
* :class:`MLflowWebhookTrigger` makes no request at all: it marks the asset as fed by the plugin's
  webhook receiver (:mod:`airflow_mlflow.plugins.webhooks`).

Imported when a DAG file using ``watch=`` is parsed: MLflow and the hook layer are imported only
when a trigger runs. Payloads and the provider's own changes: :mod:`airflow_mlflow.registry_events`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_mlflow import registry_events

if TYPE_CHECKING:
    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.hooks.records import ModelRecord, VersionRecord

#: The asset state store key the poll watcher keeps what it saw last under (JSON, see ``_Baseline``).
STATE_KEY = "mlflow_watch"
#: Trouble kinds: said once each, and once more when it is over.
_UNREACHABLE, _MISSING = "unreachable", "missing"


class _RegistryWatchTrigger(BaseEventTrigger):
    """What both watchers watch: a model, and one alias or one stage of it (neither: new versions)."""

    def __init__(
        self,
        *,
        model_name: str,
        alias: str | None = None,
        stage: str | None = None,
        mlflow_conn_id: str = "mlflow_default",
    ) -> None:
        from airflow_mlflow.validation import normalize_stage

        super().__init__()
        if not model_name or not isinstance(model_name, str):
            raise ValueError(
                f"{type(self).__name__}: model_name must be a non-empty string, got {model_name!r}"
            )
        if alias and stage:
            raise ValueError(f"{type(self).__name__}: watch alias={alias!r} or stage={stage!r}, not both")
        self.model_name = model_name
        self.alias = alias or None
        self.stage = stage or None
        self.mlflow_conn_id = mlflow_conn_id
        #: MLflow's spelling of the stage (``production`` watches ``Production``); kwargs stay as given.
        self.mlflow_stage = normalize_stage(stage) if stage else None

    def _kwargs(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "alias": self.alias,
            "stage": self.stage,
            "mlflow_conn_id": self.mlflow_conn_id,
        }

    @property
    def watched(self) -> str:
        """``alias:champion``, ``stage:Production`` or ``versions``: what this trigger reports."""
        if self.alias:
            return f"alias:{self.alias}"
        return f"stage:{self.mlflow_stage}" if self.mlflow_stage else "versions"

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", self._kwargs()


class MLflowRegistryPollTrigger(_RegistryWatchTrigger):
    """
    Announces changes of a registered model made anywhere (MLflow's UI, a CI job, a script) as
    events of the asset it watches; works with every MLflow, hosted ones included.

    What it watches follows the asset: with ``alias``, which version the alias names (set, moved,
    deleted); with ``stage``, the newest version in that stage; with neither, new versions of the
    model. Each poll is one request (``get_registered_model``); a change costs one more (the version
    the alias or stage moved to, or the list of the new versions).

    What it saw last is kept in the asset's state store (Airflow's metadata DB), written after the
    change's event was handed to the triggerer: a restarted triggerer neither replays a change nor
    misses one made while it was down. The very first poll only records what is there (no event);
    a model missing then counts as an empty one.

    Never announced: moves made by the provider's promotion or rollback (their version carries
    :data:`~airflow_mlflow.tags.CHAMPION_MOVE`) and versions registered by
    ``MLflowRegisterModelOperator`` (lineage tags): their operators' outlets announced them.

    While MLflow is unreachable or the model is missing it logs one warning, emits nothing and goes
    on polling; it says so again when the model is back.

    Event payloads: :func:`airflow_mlflow.registry_events.change_payload` with ``via="poll"``.
    MLflow records who created a version and when (``changed_by`` / ``changed_at`` of a new
    version), and when a version last changed (``changed_at`` of a stage move); it records neither
    for an alias, whose events leave them None.

    :param model_name: the registered model
    :param alias: watch this alias
    :param stage: watch this stage (deprecated in MLflow, still served by open-source servers)
    :param mlflow_conn_id: the ``mlflow`` connection
    :param poll_interval: seconds between polls
    """

    def __init__(
        self,
        *,
        model_name: str,
        alias: str | None = None,
        stage: str | None = None,
        mlflow_conn_id: str = "mlflow_default",
        poll_interval: float = 60.0,
    ) -> None:
        super().__init__(model_name=model_name, alias=alias, stage=stage, mlflow_conn_id=mlflow_conn_id)
        self.poll_interval = float(poll_interval)
        if self.poll_interval <= 0:
            raise ValueError(
                f"MLflowRegistryPollTrigger: poll_interval={poll_interval!r} must be a positive "
                "number of seconds"
            )
        #: The hook polls go through (built at the first poll, off the event loop).
        self.hook: MLflowHook | None = None
        self._baseline: dict[str, Any] | None = None
        self._loaded = False
        self._trouble: str | None = None
        self._memory: dict[str, Any] = {}
        #: When this instance's previous successful poll started (epoch seconds).
        self._polled_at: float | None = None

    def _kwargs(self) -> dict[str, Any]:
        return super()._kwargs() | {"poll_interval": self.poll_interval}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll forever: one event per change, nothing while nothing changes."""
        while True:
            try:
                async for event in self.poll_once():
                    yield event
            except Exception as err:  # a watcher must go on, not crash the triggerer's loop
                self._warn("failed", f"{type(err).__name__}: {err}")
            await asyncio.sleep(self.poll_interval)

    async def poll_once(self) -> AsyncIterator[TriggerEvent]:
        """One poll: the events of what changed since the last one (usually none)."""
        from airflow_mlflow.exceptions import MLflowResourceNotFoundError

        started = time.time()
        try:
            hook = await self._hook()
            model = await asyncio.to_thread(hook.get_model, self.model_name)
        except MLflowResourceNotFoundError as err:
            self._warn(_MISSING, str(err))
            if await self._load() is None:  # nothing there yet: whatever comes is a change
                await self._save(self._observe(None))
            return
        except Exception as err:  # refused, timed out, 5xx, no connection: wait it out
            self._warn(_UNREACHABLE, f"{type(err).__name__}: {err}")
            return
        self._recovered()
        baseline = await self._load()
        if baseline is None:
            await self._save(self._observe(model, newest=None))
            self.log.info("Watching %s of model %r from now on", self.watched, self.model_name)
            return
        recreated = bool(baseline.get("model_created")) and baseline["model_created"] != model.created
        changes = self._moved if self.alias or self.mlflow_stage else self._new_versions
        try:
            async for event in changes(hook, model, baseline, recreated):
                yield event
        except Exception as err:  # the change's second request failed: the next poll tries again
            self._warn(_UNREACHABLE, f"{type(err).__name__}: {err}")
            return
        self._polled_at = started

    def _since(self, baseline: dict[str, Any]) -> float:
        """
        Since when a move marked by the provider counts as its own: the previous poll of this
        instance, else (after a restart) when the state was last written.
        """
        return self._polled_at if self._polled_at is not None else float(baseline.get("seen_at") or 0)

    async def _moved(
        self, hook: MLflowHook, model: ModelRecord, baseline: dict[str, Any], recreated: bool
    ) -> AsyncIterator[TriggerEvent]:
        """The alias or stage names another version (or none) than last seen."""
        current = self._observe(model)
        version, previous = current["version"], baseline.get("version")
        if version == previous and not (recreated and version is not None):
            await self._save(current)
            return
        payload = None
        if version is None:
            kind = registry_events.ALIAS_DELETED if self.alias else registry_events.STAGE_CHANGED
            payload = self._payload(kind, None, previous)
        else:
            moved = await asyncio.to_thread(hook.get_model_version, self.model_name, version)
            own = registry_events.own_move(
                moved.tags, alias=self.alias, stage=self.mlflow_stage, since=self._since(baseline)
            )
            if own:
                self.log.info(
                    "%s of model %r moved to version %s by Airflow: announced already",
                    self.watched,
                    self.model_name,
                    version,
                )
            elif self.alias:
                payload = self._payload(registry_events.ALIAS_SET, version, previous)
            else:
                payload = self._payload(
                    registry_events.STAGE_CHANGED, version, previous, changed_at=_iso(moved.updated)
                )
        if payload is not None:
            self.log.info(
                "%s of model %r: version %s -> %s", self.watched, self.model_name, previous, version
            )
            yield TriggerEvent(payload)
        await self._save(current)

    async def _new_versions(
        self, hook: MLflowHook, model: ModelRecord, baseline: dict[str, Any], recreated: bool
    ) -> AsyncIterator[TriggerEvent]:
        """Versions newer than the newest one last seen, oldest first."""
        seen = 0 if recreated else int(baseline.get("newest") or 0)
        newest = _newest(model)
        if newest <= seen:
            if newest < seen or recreated:  # the newest versions were deleted: numbers go on from there
                await self._save(self._observe(model, newest=newest))
            return
        found = await asyncio.to_thread(hook.list_versions, self.model_name)
        for version in sorted((v for v in found if int(v.version) > seen), key=lambda v: int(v.version)):
            if registry_events.registered_by_provider(version.tags):
                self.log.info(
                    "Model %r version %s was registered by Airflow: announced already",
                    self.model_name,
                    version.version,
                )
            else:
                yield TriggerEvent(self._created(version, previous=seen or None))
            seen = int(version.version)
            await self._save(self._observe(model, newest=seen))
        await self._save(self._observe(model, newest=max(seen, newest)))

    def _observe(self, model: ModelRecord | None, newest: int | None = None) -> dict[str, Any]:
        """The state to keep after seeing ``model`` (None: no model), JSON for the asset state store."""
        state: dict[str, Any] = {"target": self.watched, "model_created": model.created if model else 0}
        if self.alias:
            state["version"] = model.aliases.get(self.alias) if model else None
        elif self.mlflow_stage:
            state["version"] = model.latest.get(self.mlflow_stage) if model else None
        else:
            state["newest"] = newest if newest is not None else _newest(model) if model else 0
        return state

    def _payload(self, change: str, version: str | None, previous: Any, **when: Any) -> dict[str, Any]:
        return registry_events.change_payload(
            change=change,
            name=self.model_name,
            version=version,
            previous_version=previous,
            alias=self.alias,
            stage=self.mlflow_stage,
            via="poll",
            **when,
        )

    def _created(self, version: VersionRecord, previous: int | None) -> dict[str, Any]:
        return self._payload(
            registry_events.VERSION_CREATED,
            version.version,
            previous,
            changed_by=version.user_id,
            changed_at=_iso(version.created),
        )

    async def _hook(self) -> MLflowHook:
        if self.hook is None:
            from airflow_mlflow.hooks.mlflow import MLflowHook

            hook = MLflowHook(mlflow_conn_id=self.mlflow_conn_id)
            await asyncio.to_thread(lambda: hook.config)  # the hook layer's one resolution, off the loop
            self.hook = hook
        return self.hook

    async def _load(self) -> dict[str, Any] | None:
        """What was seen last (read from the asset state store once per trigger instance)."""
        if not self._loaded:
            stored = await self._store_get()
            # Another target's state (cannot happen for one asset, but never compare across them).
            ok = isinstance(stored, dict) and stored.get("target") == self.watched
            self._baseline, self._loaded = (dict(stored) if ok else None), True
        return self._baseline

    async def _save(self, state: dict[str, Any]) -> None:
        """Keep ``state``; written (with when, ``seen_at``) only when it differs from what is kept."""
        kept = {k: v for k, v in (self._baseline or {}).items() if k != "seen_at"}
        if self._baseline is None or state != kept:
            state = {**state, "seen_at": time.time()}
            await self._store_set(state)
        else:
            state = self._baseline
        self._baseline, self._loaded = state, True

    async def _store_get(self) -> Any:
        store = self.asset_state_store
        if store is None:
            return self._memory.get(STATE_KEY)
        return await store.aget(STATE_KEY, None)

    async def _store_set(self, state: dict[str, Any]) -> None:
        store = self.asset_state_store
        if store is None:
            # Not run by a triggerer for an asset: what was seen lives as long as this instance.
            self._memory[STATE_KEY] = state
            return
        await store.aset(STATE_KEY, state)

    def _warn(self, kind: str, detail: str) -> None:
        if self._trouble != kind:
            what = {_UNREACHABLE: "MLflow unreachable", _MISSING: "model not found"}.get(kind, "poll failed")
            self.log.warning(
                "Watching %s of model %r: %s (%s); no events meanwhile, still polling every %ss",
                self.watched,
                self.model_name,
                what,
                detail,
                self.poll_interval,
            )
        self._trouble = kind

    def _recovered(self) -> None:
        if self._trouble is not None:
            back = "the model is there again" if self._trouble == _MISSING else "MLflow answers again"
            # At the warning's level: whoever was warned learns that it is over.
            self.log.warning("Watching %s of model %r: %s", self.watched, self.model_name, back)
        self._trouble = None


class MLflowWebhookTrigger(_RegistryWatchTrigger):
    """
    Marks an asset as fed by MLflow's webhooks: MLflow posts registry changes to the plugin's
    receiver (:mod:`airflow_mlflow.plugins.webhooks`), which finds the assets whose watcher is this
    trigger (by class path and kwargs) and adds their events. The trigger itself only waits: it
    makes no request and emits nothing.

    :param model_name: the registered model
    :param alias: the alias whose changes feed the asset
    :param stage: the stage (MLflow's webhooks announce no stage changes)
    :param mlflow_conn_id: the ``mlflow`` connection the model lives on
    """

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await asyncio.Event().wait()  # forever: the webhook receiver emits this asset's events
        yield TriggerEvent({})  # never reached; makes run() an async generator


def _newest(model: ModelRecord) -> int:
    """The newest version number of ``model`` (0: none)."""
    return max((int(v) for v in model.latest.values()), default=0)


def _iso(ms: int) -> str | None:
    from airflow_mlflow.timestamps import iso_utc

    return iso_utc(ms / 1000) if ms else None
