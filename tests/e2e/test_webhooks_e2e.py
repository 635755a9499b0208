"""MLflow's registry webhooks into Airflow (issue 14), on the server stack: a real ``mlflow server``
(PostgreSQL) delivers to the plugin's receiver in Airflow's real API server.

``tests/dags/registry_webhooks.py`` schedules ``on_new_version`` on ``model_asset("webhooked",
watch="webhook")`` and ``on_live_alias`` on ``model_asset("webhooked", alias="live",
watch="webhook")``. The server stack's ``mlflow_default`` carries the ``webhook_secret`` the
webhook is registered with (``_airflow.py``).
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests
from mlflow.webhooks.delivery import _generate_hmac_signature

from tests.e2e._airflow import wait_for

pytestmark = pytest.mark.stack_modes("server")

MODEL = "webhooked"
VERSION_URI = f"mlflow-model://mlflow_default/{MODEL}"
ALIAS_URI = f"{VERSION_URI}/alias/live"
EVENTS = ["model_version.created", "model_version_alias.created", "model_version_alias.deleted"]


def events_of(stack, uri: str) -> list[dict]:
    events = stack.api("GET", "/assets/events", params={"limit": 100})["asset_events"]
    return sorted((e for e in events if e["uri"] == uri), key=lambda e: e["id"])


def finished_runs(stack, dag_id: str) -> list[dict]:
    runs = stack.dag_runs(dag_id)
    return runs if runs and all(r["state"] in ("success", "failed") for r in runs) else []


def post(stack, body: dict, *, secret: str | None, delivery_id: str | None = None, at: int | None = None):
    payload = json.dumps(body)
    delivery_id = delivery_id or str(uuid.uuid4())
    timestamp = str(at if at is not None else int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": timestamp,
    }
    if secret is not None:
        headers["X-MLflow-Signature"] = _generate_hmac_signature(secret, delivery_id, timestamp, payload)
    return requests.post(
        f"{stack.url}/mlflow/webhooks/mlflow_default", data=payload, headers=headers, timeout=30
    )


def test_mlflow_delivers_registry_changes_as_asset_events(airflow_stack):
    stack, client = airflow_stack, airflow_stack.mlflow_client()
    stack.watch_assets("on_new_version", [VERSION_URI])
    stack.watch_assets("on_live_alias", [ALIAS_URI])
    client.create_registered_model(MODEL)
    hook = client.create_webhook(
        name="airflow",
        url=f"{stack.url}/mlflow/webhooks/mlflow_default",
        events=EVENTS,
        secret=stack.webhook_secret,
    )
    time.sleep(2)  # the server's webhook cache (MLFLOW_WEBHOOK_CACHE_TTL, 1 s here) sees it
    try:
        run = client.create_run(client.create_experiment("webhooked-training"))
        # By hand, not by Airflow: no lineage tags.
        version = client.create_model_version(MODEL, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
        (run,) = wait_for(
            "on_new_version to run on MLflow's delivery", lambda: finished_runs(stack, "on_new_version"), 90
        )
        assert run["state"] == "success" and run["run_type"] == "asset_triggered"
        (created,) = stack.xcom("on_new_version", run["dag_run_id"], "changes")
        assert (created["change"], created["name"], created["version"], created["via"]) == (
            "version_created",
            MODEL,
            str(version.version),
            "webhook",
        )

        client.set_registered_model_alias(MODEL, "live", str(version.version))
        (run,) = wait_for(
            "on_live_alias to run on MLflow's delivery", lambda: finished_runs(stack, "on_live_alias"), 90
        )
        assert run["state"] == "success"
        (moved,) = stack.xcom("on_live_alias", run["dag_run_id"], "changes")
        assert (moved["change"], moved["alias"], moved["version"]) == (
            "alias_set",
            "live",
            str(version.version),
        )
        (event,) = events_of(stack, ALIAS_URI)
        assert event["extra"]["from_webhook"] is True and event["extra"]["delivery_id"]
    finally:
        client.delete_webhook(hook.webhook_id)


def test_unsigned_forged_stale_and_replayed_deliveries_are_refused(airflow_stack):
    stack = airflow_stack
    stack.watch_assets("on_live_alias", [ALIAS_URI])
    body = {
        "entity": "model_version_alias",
        "action": "created",
        "timestamp": "2026-12-01T00:00:00Z",
        "data": {"name": MODEL, "alias": "live", "version": "1"},
    }
    before = len(events_of(stack, ALIAS_URI))

    unsigned = post(stack, body, secret=None)
    forged = post(stack, body, secret="not-the-secret")
    stale = post(stack, body, secret=stack.webhook_secret, at=int(time.time()) - 3600)
    assert [r.status_code for r in (unsigned, forged, stale)] == [401, 401, 401], [
        r.text for r in (unsigned, forged, stale)
    ]
    assert len(events_of(stack, ALIAS_URI)) == before

    delivery = str(uuid.uuid4())
    first = post(stack, body, secret=stack.webhook_secret, delivery_id=delivery)
    assert first.status_code == 200, first.text
    assert len(events_of(stack, ALIAS_URI)) == before + 1
    replayed = post(stack, body, secret=stack.webhook_secret, delivery_id=delivery)
    assert replayed.status_code in (401, 409), replayed.text
    assert len(events_of(stack, ALIAS_URI)) == before + 1
    # Nothing in the answers gives the secret away.
    assert all(stack.webhook_secret not in r.text for r in (unsigned, forged, stale, first, replayed))
