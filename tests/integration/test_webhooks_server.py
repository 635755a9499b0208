"""
MLflow's own webhook deliveries, end to end on one machine: a real ``mlflow server`` (PostgreSQL,
two workers) with a registered webhook posts to the plugin's app served by uvicorn, and the
changes made by hand land as asset events in Airflow's DB; the provider's own promotion does not.

The server runs as the README's set-up says: ``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true`` (the
receiver is on 127.0.0.1), ``MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https`` (no TLS here) and one
``MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY`` for both workers.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from airflow_mlflow.assets import model_asset
from tests.integration import _mlflow_servers
from tests.integration._mlflow_servers import HOST, MLflowServer, ServerProcess, _free_port
from tests.unit.plugins.test_webhooks import consumer, events

SECRET = "integration-webhook-secret"
EVENTS = ["model_version.created", "model_version_alias.created", "model_version_alias.deleted"]


@pytest.fixture(scope="module")
def webhook_server(tmp_path_factory) -> Iterator[MLflowServer]:
    from cryptography.fernet import Fernet

    settings = {
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "MLFLOW_WEBHOOK_REQUEST_MAX_RETRIES": "1",
    }
    plain_env = _mlflow_servers._server_env
    proc = ServerProcess(tmp_path_factory.mktemp("webhook-server"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_mlflow_servers, "_server_env", lambda extra: plain_env({**extra, **settings}))
        proc.start()
    try:
        yield proc.wait_healthy()
    finally:
        proc.stop()


@pytest.fixture
def receiver(webhook_server, airflow_db, monkeypatch) -> Iterator[str]:
    """The plugin's app on a local port; ``mlflow_default`` is the server, with SECRET."""
    import uvicorn

    from airflow_mlflow.plugins import webhooks
    from airflow_mlflow.plugins.app import create_app

    conn = {
        "conn_type": "mlflow",
        "host": HOST,
        "port": webhook_server.port,
        "extra": {"webhook_secret": SECRET},
    }
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    webhooks.deliveries.clear()
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host=HOST, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_for(uri: str, count: int, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while len(found := events(uri)) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def test_changes_made_in_mlflow_become_asset_events(webhook_server, receiver, tmp_path):
    from mlflow import MlflowClient

    from airflow_mlflow import champion
    from airflow_mlflow.hooks.mlflow import MLflowHook

    client = MlflowClient(webhook_server.url)
    model = f"wh-it-{uuid.uuid4().hex[:8]}"
    versions, champion_asset = model_asset(model), model_asset(model, alias="champion")
    consumer(model_asset(model, watch="webhook"), model_asset(model, alias="champion", watch="webhook"))
    hook = client.create_webhook(
        name="airflow", url=f"{receiver}/webhooks/mlflow_default", events=EVENTS, secret=SECRET
    )
    try:
        assert client.test_webhook(hook.webhook_id).success  # MLflow's example: answered, no event
        run = client.create_run(client.create_experiment(f"exp-{model}")).info.run_id
        client.create_registered_model(model)
        first = client.create_model_version(model, f"runs:/{run}/model", run_id=run).version
        second = client.create_model_version(model, f"runs:/{run}/model", run_id=run).version
        assert [e["payload"]["version"] for e in wait_for(versions.uri, 2)] == [str(first), str(second)]

        client.set_registered_model_alias(model, "champion", str(first))  # by hand
        (moved,) = wait_for(champion_asset.uri, 1)
        assert moved["from_webhook"] and moved["payload"]["change"] == "alias_set"
        assert moved["payload"]["version"] == str(first)

        # The provider's own promotion: announced by its operator, not again by the receiver.
        target = champion.Target(model, alias="champion", stage=None)
        champion.promote(MLflowHook(), target, str(second), champion.Actor("retrain", "r-1", "promote"))
        client.delete_registered_model_alias(model, "champion")  # by hand again
        found = wait_for(champion_asset.uri, 2)
        assert [(e["payload"]["change"], e["payload"]["version"]) for e in found] == [
            ("alias_set", str(first)),
            ("alias_deleted", None),
        ]
        time.sleep(2)  # deliveries are sent from a thread pool: let a late one arrive
        assert events(champion_asset.uri) == found
        assert len({e["delivery_id"] for e in found + events(versions.uri)}) == 4
    finally:
        client.delete_webhook(hook.webhook_id)
