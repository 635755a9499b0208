"""
The webhook receiver (``POST /mlflow/webhooks/<conn_id>``) against a real Airflow metadata DB and
a real SQLite MLflow store: requests are signed with MLflow's own signing function, the assets
and their ``MLflowWebhookTrigger`` watchers are written by Airflow's own DAG sync, and events are
read back from Airflow's asset event table.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime

import pytest

from airflow_mlflow.assets import model_asset
from airflow_mlflow.plugins import webhooks
from tests.support import mlflow_conn_json

SECRET = "wh-s3cr3t-for-tests"


@pytest.fixture
def client(store, airflow_db, monkeypatch):
    """The plugin's app; ``mlflow_default`` (the store) takes webhooks signed with SECRET."""
    from fastapi.testclient import TestClient

    from airflow_mlflow.plugins.app import create_app

    conn = mlflow_conn_json(store.tracking_uri, artifact_root=str(store.artifact_root), webhook_secret=SECRET)
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", conn)
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_NOSECRET", mlflow_conn_json(store.tracking_uri))
    webhooks.deliveries.clear()
    with TestClient(create_app()) as test_client:
        yield test_client
    webhooks.deliveries.clear()


@pytest.fixture
def model() -> str:
    """A model name of this test's own (the Airflow DB is shared by the session)."""
    return f"wh-{uuid.uuid4().hex[:10]}"


def consumer(*assets, paused: bool = False) -> str:
    """A DAG scheduled on ``assets``, written to Airflow's DB as the DAG processor writes it."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.models.dag import DagModel
    from airflow.sdk import DAG
    from airflow.serialization.definitions.dag import SerializedDAG
    from airflow.utils.session import create_session
    from sqlalchemy import update

    dag = DAG(dag_id=f"consumer_{uuid.uuid4().hex[:10]}", schedule=list(assets))
    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    # Airflow keeps watchers only for assets of active, unpaused DAGs: write, unpause, write again.
    for _ in range(2):
        with create_session() as session:
            SerializedDAG.bulk_write_to_db("dags-folder", None, [dag], session=session)
            session.execute(update(DagModel).where(DagModel.dag_id == dag.dag_id).values(is_paused=paused))
    return dag.dag_id


def events(uri: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == uri)
            .order_by(AssetEvent.id)
        )
        return [dict(r) for r in rows]


def envelope(entity: str, action: str, data: dict) -> str:
    """The body MLflow sends (``mlflow.webhooks.delivery._send_webhook_request``)."""
    when = datetime.now(UTC).isoformat()
    return json.dumps({"entity": entity, "action": action, "timestamp": when, "data": data})


def signed(
    body: str, *, secret: str = SECRET, delivery_id: str | None = None, at: float | None = None
) -> dict:
    """MLflow's headers for ``body``, signed by MLflow's own function."""
    from mlflow.webhooks.delivery import _generate_hmac_signature

    delivery_id = delivery_id or str(uuid.uuid4())
    timestamp = str(int(time.time() if at is None else at))
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": timestamp,
        "X-MLflow-Signature": _generate_hmac_signature(secret, delivery_id, timestamp, body),
    }


def post(client, body: str, headers: dict, conn_id: str = "mlflow_default"):
    return client.post(f"/webhooks/{conn_id}", content=body.encode(), headers=headers)


def version_created(model: str, version: str = "1", tags: dict | None = None) -> str:
    data = {"name": model, "version": version, "source": "models:/m-1", "run_id": None}
    return envelope("model_version", "created", {**data, "tags": tags or {}, "description": None})


def registered(store, model: str, tmp_path) -> str:
    """A version registered by hand (no Airflow lineage), with its alias unset."""
    store.client.create_registered_model(model)
    return str(store.client.create_model_version(model, str(tmp_path), run_id=None).version)


def test_the_marker_is_the_watcher_model_asset_puts_on_the_asset():
    from airflow_mlflow.triggers.registry_events import MLflowWebhookTrigger

    (watcher,) = model_asset("churn", watch="webhook").watchers
    assert isinstance(watcher.trigger, MLflowWebhookTrigger)
    assert watcher.trigger.serialize()[0] == webhooks.WEBHOOK_TRIGGER


def test_a_signed_new_version_is_one_event(client, model):
    uri = model_asset(model).uri
    consumer(model_asset(model, watch="webhook"))
    headers = signed(body := version_created(model, "3"))
    answer = post(client, body, headers)
    assert answer.status_code == 200 and answer.json()["status"] == "accepted", answer.text
    (extra,) = events(uri)
    assert extra["from_webhook"] is True and extra["delivery_id"] == headers["X-MLflow-Delivery-Id"]
    payload = extra["payload"]
    assert (payload["change"], payload["name"], payload["version"], payload["via"]) == (
        "version_created",
        model,
        "3",
        "webhook",
    )
    assert payload["changed_at"] == json.loads(body)["timestamp"]


def test_an_alias_moved_by_hand_is_one_event_and_its_deletion_another(client, store, model, tmp_path):
    champion = model_asset(model, alias="champion")
    consumer(model_asset(model, alias="champion", watch="webhook"))
    version = registered(store, model, tmp_path)
    store.client.set_registered_model_alias(model, "champion", version)
    created = envelope(
        "model_version_alias", "created", {"name": model, "alias": "champion", "version": version}
    )
    assert post(client, created, signed(created)).json()["status"] == "accepted"
    deleted = envelope("model_version_alias", "deleted", {"name": model, "alias": "champion"})
    assert post(client, deleted, signed(deleted)).json()["status"] == "accepted"
    first, second = (e["payload"] for e in events(champion.uri))
    assert (first["change"], first["alias"], first["version"]) == ("alias_set", "champion", version)
    assert (second["change"], second["alias"], second["version"]) == ("alias_deleted", "champion", None)


def test_the_providers_own_promotion_is_no_event(client, store, model, tmp_path):
    from airflow_mlflow import champion
    from airflow_mlflow.hooks.mlflow import MLflowHook

    consumer(model_asset(model, alias="champion", watch="webhook"))
    version = registered(store, model, tmp_path)
    target = champion.Target(model, alias="champion", stage=None)
    champion.promote(MLflowHook(), target, version, champion.Actor("retrain", "run-1", "promote"))
    body = envelope(
        "model_version_alias", "created", {"name": model, "alias": "champion", "version": version}
    )
    answer = post(client, body, signed(body))
    assert answer.status_code == 200 and answer.json()["status"] == "ignored", answer.text
    assert "provider" in answer.json()["reason"]
    assert events(model_asset(model, alias="champion").uri) == []


def test_an_alias_on_a_version_deleted_since_is_still_an_event(client, store, model, tmp_path):
    consumer(model_asset(model, alias="champion", watch="webhook"))
    registered(store, model, tmp_path)
    body = envelope("model_version_alias", "created", {"name": model, "alias": "champion", "version": "7"})
    answer = post(client, body, signed(body))
    assert answer.status_code == 200 and answer.json()["status"] == "accepted", answer.text


def test_a_version_the_provider_registered_is_no_event(client, model):
    consumer(model_asset(model, watch="webhook"))
    lineage = {"airflow.dag_id": "retrain", "airflow.run_id": "r1", "airflow.task_id": "register"}
    body = version_created(model, tags=lineage)
    assert post(client, body, signed(body)).json()["status"] == "ignored"
    assert events(model_asset(model).uri) == []


@pytest.mark.parametrize("case", ["no watcher", "polled instead", "paused consumer", "unknown asset"])
def test_only_webhook_watched_assets_get_events(client, model, case):
    if case == "no watcher":
        consumer(model_asset(model))
    elif case == "polled instead":
        consumer(model_asset(model, watch="poll"))
    elif case == "paused consumer":
        consumer(model_asset(model, watch="webhook"), paused=True)
    body = version_created(model)
    answer = post(client, body, signed(body))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "status": "ignored",
        "reason": f"no webhook-watched asset {model_asset(model).uri}",
    }
    assert events(model_asset(model).uri) == []


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("unsigned", 401),
        ("no delivery id", 401),
        ("wrong secret", 401),
        ("body changed after signing", 401),
        ("stale timestamp", 401),
        ("future timestamp", 401),
        ("connection without a secret", 403),
        ("unknown connection", 403),
    ],
)
def test_anything_not_signed_by_mlflow_with_the_secret_is_refused(client, model, case, status, caplog):
    consumer(model_asset(model, watch="webhook"))
    body = version_created(model)
    headers = signed(body)
    conn_id = "mlflow_default"
    if case == "unsigned":
        del headers["X-MLflow-Signature"]
    elif case == "no delivery id":
        del headers["X-MLflow-Delivery-Id"]
    elif case == "wrong secret":
        headers = signed(body, secret="not-the-secret")
    elif case == "body changed after signing":
        body = version_created(model, "2")
    elif case == "stale timestamp":
        headers = signed(body, at=time.time() - webhooks.TOLERANCE_SECONDS - 30)
    elif case == "future timestamp":
        headers = signed(body, at=time.time() + webhooks.TOLERANCE_SECONDS + 30)
    elif case == "connection without a secret":
        conn_id = "mlflow_nosecret"
    else:
        conn_id = "mlflow_nowhere"
    with caplog.at_level(logging.INFO):
        answer = post(client, body, headers, conn_id)
    assert answer.status_code == status, answer.text
    assert events(model_asset(model).uri) == []
    assert SECRET not in caplog.text and SECRET not in answer.text
    assert "refused" in caplog.text


def test_a_replayed_delivery_is_refused_in_this_process_and_after_a_restart(client, model):
    consumer(model_asset(model, watch="webhook"))
    headers = signed(body := version_created(model))
    assert post(client, body, headers).json()["status"] == "accepted"
    assert post(client, body, headers).status_code == 409  # this process remembers it
    webhooks.deliveries.clear()  # another API-server worker, or this one restarted
    answer = post(client, body, headers)
    assert answer.status_code == 409 and "replay" in answer.json()["detail"], answer.text
    assert len(events(model_asset(model).uri)) == 1
    other = signed(body)  # MLflow's next delivery of the same change has a new id
    assert post(client, body, other).json()["status"] == "accepted"
    assert len(events(model_asset(model).uri)) == 2


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ("{not json", 400, "not JSON"),
        ("[1, 2]", 400, "JSON object"),
        ('{"entity": "model_version", "action": "created", "data": {"version": "1"}}', 400, "data.name"),
        ('{"entity": "prompt", "action": "created", "data": {"name": "p"}}', 200, "'prompt.created'"),
        ("x" * (webhooks.MAX_BODY_BYTES + 1), 413, "at most"),
    ],
)
def test_signed_bodies_it_cannot_use(client, body, status, says):
    answer = post(client, body, signed(body))
    assert answer.status_code == status and says in answer.text, answer.text


def test_mlflows_own_test_delivery_is_answered_ok(client):
    """``MlflowClient.test_webhook`` sends an example payload: a 200 tells MLflow the URL works."""
    from mlflow.entities.webhook import WebhookAction, WebhookEntity, WebhookEvent
    from mlflow.webhooks.types import get_example_payload_for_event

    data = get_example_payload_for_event(WebhookEvent(WebhookEntity.MODEL_VERSION, WebhookAction.CREATED))
    body = envelope("model_version", "created", dict(data))
    answer = post(client, body, signed(body))
    assert answer.status_code == 200 and answer.json()["status"] == "ignored", answer.text
