"""
The registry watchers of ``model_asset(..., watch=)``: the polling trigger's change detection
(first poll, a change, restarts, the provider's own changes, outages) against a real SQLite MLflow
store, with the asset state store Airflow injects replaced by an in-memory one of the same interface.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from airflow_mlflow import registry_events as events
from airflow_mlflow.assets import model_asset
from airflow_mlflow.exceptions import MLflowInputError
from airflow_mlflow.tags import DAG_ID, RUN_ID, TASK_ID
from airflow_mlflow.triggers.registry_events import (
    STATE_KEY,
    MLflowRegistryPollTrigger,
    MLflowWebhookTrigger,
)


class MemoryStateStore:
    """The asset state store's interface (``aget`` / ``aset``), keeping JSON as Airflow's DB does."""

    def __init__(self):
        self.values: dict[str, str] = {}

    async def aget(self, key, default=None):
        return json.loads(self.values[key]) if key in self.values else default

    async def aset(self, key, value):
        if value is None:
            raise ValueError("Cannot set value as None")
        self.values[key] = json.dumps(value)


def watcher(state: MemoryStateStore, **target) -> MLflowRegistryPollTrigger:
    """A trigger as the triggerer starts it: built from its kwargs, then given the asset's store."""
    trigger = MLflowRegistryPollTrigger(model_name="m", poll_interval=0.05, **target)
    trigger.asset_state_store = state
    return trigger


async def _collect(stream):
    return [event.payload async for event in stream]


def poll(trigger) -> list[dict]:
    return asyncio.run(asyncio.wait_for(_collect(trigger.poll_once()), 60))


def count_requests(trigger) -> list[str]:
    """Record the top-level ``MlflowClient`` calls of the trigger's hook (one request each on a server)."""
    client, calls, depth = trigger.hook.client, [], [0]
    for name in dir(type(client)):
        real = getattr(client, name)
        if name.startswith("_") or not callable(real):
            continue

        def counted(*args, _real=real, _name=name, **kwargs):
            if depth[0] == 0:
                calls.append(_name)
            depth[0] += 1
            try:
                return _real(*args, **kwargs)
            finally:
                depth[0] -= 1

        setattr(client, name, counted)
    return calls


def alias_event(version, previous, alias="champion"):
    change = events.ALIAS_DELETED if version is None else events.ALIAS_SET
    return events.change_payload(
        change=change, name="m", version=version, previous_version=previous, alias=alias, via="poll"
    )


@pytest.fixture
def client(store):
    """Model ``m`` with versions 1 and 2, ``champion`` on version 1."""
    client = store.client
    client.create_registered_model("m")
    for number in ("1", "2"):
        client.create_model_version("m", f"file:///tmp/m/{number}")
    client.set_registered_model_alias("m", "champion", "1")
    return client


def promote_as_airflow(version: str, *, alias: str | None = "champion", stage: str | None = None):
    """What ``MLflowPromoteModelOperator`` does: mark the version, then move the champion."""
    from airflow_mlflow.champion import Actor, Target, promote
    from airflow_mlflow.hooks.mlflow import MLflowHook

    change, _ = promote(MLflowHook(), Target("m", alias=alias, stage=stage), version, Actor("d", "r", "t"))
    assert change is not None and change.version == version


# ---------------------------------------------------------------------------------- alias


def test_the_first_poll_records_the_baseline_and_emits_nothing(client):
    state = MemoryStateStore()
    assert poll(watcher(state, alias="champion")) == []
    assert json.loads(state.values[STATE_KEY])["version"] == "1"


def test_an_alias_moved_by_hand_is_one_event_and_an_unchanged_poll_is_one_request(client):
    trigger = watcher(MemoryStateStore(), alias="champion")
    poll(trigger)
    requests = count_requests(trigger)
    client.set_registered_model_alias("m", "champion", "2")
    assert poll(trigger) == [alias_event("2", "1")]
    assert requests == ["get_registered_model", "get_model_version"]  # the change costs one more
    requests.clear()
    assert poll(trigger) == []
    assert requests == ["get_registered_model"]


def test_a_restart_neither_replays_nor_misses_a_change(client):
    state = MemoryStateStore()
    first = watcher(state, alias="champion")
    poll(first)
    client.set_registered_model_alias("m", "champion", "2")
    assert poll(first) == [alias_event("2", "1")]

    restarted = watcher(state, alias="champion")  # a new triggerer: same kwargs, same asset's store
    assert poll(restarted) == []
    client.set_registered_model_alias("m", "champion", "1")  # while the triggerer is down
    again = watcher(state, alias="champion")
    assert poll(again) == [alias_event("1", "2")]
    assert poll(again) == []
    assert poll(watcher(state, alias="champion")) == []


def test_a_move_made_by_the_providers_promotion_is_not_announced_again(client):
    state = MemoryStateStore()
    trigger = watcher(state, alias="champion")
    poll(trigger)
    promote_as_airflow("2")
    assert str(client.get_model_version_by_alias("m", "champion").version) == "2"
    assert poll(trigger) == []
    assert json.loads(state.values[STATE_KEY])["version"] == "2"  # skipped, but seen
    client.set_registered_model_alias("m", "champion", "1")  # a rollback by hand is announced
    assert poll(trigger) == [alias_event("1", "2")]


def test_a_move_by_hand_back_to_a_version_the_provider_promoted_is_announced(client):
    """Version 2 keeps the provider's mark after its promotion: a later move back to it is someone's."""
    trigger = watcher(MemoryStateStore(), alias="champion")
    poll(trigger)
    promote_as_airflow("2")
    assert poll(trigger) == []
    client.set_registered_model_alias("m", "champion", "1")
    time.sleep(events.CLOCK_SLACK_SECONDS + 0.2)  # the next poll starts clearly after the promotion
    assert poll(trigger) == [alias_event("1", "2")]
    client.set_registered_model_alias("m", "champion", "2")
    assert poll(trigger) == [alias_event("2", "1")]


def test_a_deleted_alias_is_an_event_without_a_version_and_setting_it_again_is_another(client):
    trigger = watcher(MemoryStateStore(), alias="champion")
    poll(trigger)
    client.delete_registered_model_alias("m", "champion")
    assert poll(trigger) == [alias_event(None, "1")]
    assert poll(trigger) == []
    client.set_registered_model_alias("m", "champion", "2")
    assert poll(trigger) == [alias_event("2", None)]


def test_another_alias_moving_is_not_this_assets_change(client):
    trigger = watcher(MemoryStateStore(), alias="champion")
    poll(trigger)
    client.set_registered_model_alias("m", "challenger", "2")
    assert poll(trigger) == []


# ---------------------------------------------------------------------------------- stage


def test_stage_moves_by_hand_are_events_and_the_providers_are_not(client):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stages are deprecated in MLflow, still served
        client.transition_model_version_stage("m", "1", "Production")
        state = MemoryStateStore()
        trigger = watcher(state, stage="production")  # MLflow's spelling is looked up
        assert poll(trigger) == []
        requests = count_requests(trigger)
        client.transition_model_version_stage("m", "2", "Production", archive_existing_versions=True)
        (event,) = poll(trigger)
        assert requests == ["get_registered_model", "get_model_version"]
        assert event["change"] == events.STAGE_CHANGED and event["via"] == "poll"
        assert (event["name"], event["version"], event["previous_version"]) == ("m", "2", "1")
        assert (event["stage"], event["alias"]) == ("Production", None)
        assert event["changed_at"].endswith("Z")  # MLflow's time of the version's last change
        requests.clear()
        assert poll(trigger) == [] and requests == ["get_registered_model"]

        promote_as_airflow("1", alias=None, stage="Production")
        assert client.get_model_version("m", "1").current_stage == "Production"
        assert poll(trigger) == []
        assert json.loads(state.values[STATE_KEY])["version"] == "1"


# ---------------------------------------------------------------------------------- new versions


def test_new_versions_by_hand_are_events_and_the_providers_registrations_are_not(client):
    state = MemoryStateStore()
    trigger = watcher(state)
    assert poll(trigger) == []
    requests = count_requests(trigger)
    assert poll(trigger) == [] and requests == ["get_registered_model"]

    client.create_model_version("m", "file:///tmp/m/3")  # a CI job, say
    lineage = {DAG_ID: "retrain", RUN_ID: "manual__1", TASK_ID: "register"}
    client.create_model_version("m", "file:///tmp/m/4", tags=lineage)  # MLflowRegisterModelOperator
    requests.clear()
    (event,) = poll(trigger)
    assert requests == ["get_registered_model", "search_model_versions"]
    assert event["change"] == events.VERSION_CREATED
    assert (event["version"], event["previous_version"]) == ("3", "2")
    assert event["alias"] is None and event["stage"] is None
    assert event["changed_at"].endswith("Z")
    assert json.loads(state.values[STATE_KEY])["newest"] == 4
    assert poll(trigger) == []

    for number in ("5", "6"):
        client.create_model_version("m", f"file:///tmp/m/{number}")
    assert [(e["version"], e["previous_version"]) for e in poll(trigger)] == [("5", "4"), ("6", "5")]
    assert poll(watcher(state)) == []  # restarted: nothing replayed


def test_a_model_deleted_and_registered_again_announces_its_versions(client):
    import time

    trigger = watcher(MemoryStateStore())
    poll(trigger)  # versions 1 and 2 seen
    client.delete_registered_model("m")
    assert poll(trigger) == []
    time.sleep(0.01)  # another creation time
    client.create_registered_model("m")
    client.create_model_version("m", "file:///tmp/m/new-1")
    assert [(e["version"], e["previous_version"]) for e in poll(trigger)] == [("1", None)]


# ---------------------------------------------------------------------------------- trouble


@pytest.fixture
def logs():
    """What the triggers log (Airflow logs through structlog), as ``(level, message)`` pairs."""
    from structlog.testing import capture_logs

    with capture_logs() as captured:
        yield captured


def said(logs, level: str) -> list[str]:
    return [entry["event"] for entry in logs if entry["log_level"] == level]


def test_mlflow_down_means_one_warning_no_event_and_no_crash(monkeypatch, logs):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conn = {"conn_type": "mlflow", "host": "127.0.0.1", "port": port, "extra": {"http_max_retries": 0}}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DOWN", json.dumps(conn))
    state = MemoryStateStore()
    trigger = watcher(state, alias="champion", mlflow_conn_id="mlflow_down")
    for _ in range(3):
        assert poll(trigger) == []
    (warning,) = said(logs, "warning")
    assert "model 'm': MLflow unreachable" in warning
    assert state.values == {}  # nothing known, so no baseline: the first answer will be one


def test_a_missing_model_is_an_empty_baseline_said_once_and_its_registration_an_event(store, logs):
    trigger = watcher(MemoryStateStore(), alias="champion")
    assert poll(trigger) == [] and poll(trigger) == []
    (warning,) = said(logs, "warning")
    assert "model 'm': model not found" in warning
    client = store.client
    client.create_registered_model("m")
    client.create_model_version("m", "file:///tmp/m/1")
    client.set_registered_model_alias("m", "champion", "1")
    assert poll(trigger) == [alias_event("1", None)]
    assert poll(trigger) == []
    assert said(logs, "warning")[1:] == ["Watching alias:champion of model 'm': the model is there again"]


# ---------------------------------------------------------------------------------- run()


def test_run_polls_and_yields_each_change(client):
    state = MemoryStateStore()
    trigger = watcher(state, alias="champion")

    async def scenario():
        stream = trigger.run()
        first = asyncio.ensure_future(anext(stream))
        while STATE_KEY not in state.values:  # the baseline is taken
            await asyncio.sleep(0.02)
        await asyncio.to_thread(client.set_registered_model_alias, "m", "champion", "2")
        event = await asyncio.wait_for(first, 30)
        with pytest.raises(TimeoutError):  # nothing more changed
            await asyncio.wait_for(anext(stream), 0.5)
        await stream.aclose()
        return event.payload

    assert asyncio.run(scenario()) == alias_event("2", "1")
    assert json.loads(state.values[STATE_KEY])["version"] == "2"


def test_the_webhook_marker_waits_without_requests_or_events(store):
    trigger = MLflowWebhookTrigger(model_name="m", alias="champion")

    async def first_event():
        return await asyncio.wait_for(anext(trigger.run()), 0.5)

    with pytest.raises(TimeoutError):
        asyncio.run(first_event())


# ---------------------------------------------------------------------------------- wiring


@pytest.mark.parametrize("watch", ["poll", "webhook"])
def test_model_asset_watchers_serialize_to_their_kwargs(watch):
    asset = model_asset("churn", alias="champion", watch=watch, poll_interval=5)
    (asset_watcher,) = asset.watchers
    classpath, kwargs = asset_watcher.trigger.serialize()
    expected = {"model_name": "churn", "alias": "champion", "stage": None, "mlflow_conn_id": "mlflow_default"}
    if watch == "poll":
        expected["poll_interval"] = 5.0
    assert kwargs == expected
    assert classpath == f"airflow_mlflow.triggers.registry_events.{type(asset_watcher.trigger).__name__}"
    rebuilt = type(asset_watcher.trigger)(**kwargs)  # as the triggerer inflates it
    assert rebuilt.serialize() == (classpath, kwargs)


def test_a_trigger_watching_an_alias_and_a_stage_is_refused():
    with pytest.raises(ValueError, match="alias='champion' or stage='Production', not both"):
        MLflowRegistryPollTrigger(model_name="m", alias="champion", stage="Production")
    with pytest.raises(MLflowInputError, match="stage 'Prod' is not one of"):
        MLflowRegistryPollTrigger(model_name="m", stage="Prod")
