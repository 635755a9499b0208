"""
The webhook receiver: MLflow's registry webhooks as asset events on the model assets that chose
them (``model_asset(..., watch="webhook")``).

``POST /mlflow/webhooks/<conn_id>``, where ``conn_id`` is the ``mlflow`` connection the assets
name (``mlflow-model://<conn_id>/<model>[/alias/<alias>]``). MLflow cannot log in to Airflow, so
this route is not behind Airflow's login: it accepts only what MLflow signed with the connection's
``webhook_secret`` extra (HMAC-SHA256 over ``<delivery id>.<timestamp>.<body>``, the
``X-MLflow-Signature`` header ``v1,<base64>``), within :data:`TOLERANCE_SECONDS` of its timestamp
either way (else 401), and each delivery id once (else 409). A delivery already accepted is
refused across API-server workers and restarts: its id is in the extra of an asset event of the
window (Airflow's DB), and in this process's memory. Two workers handed the same delivery at the
same instant could both accept it; MLflow sends a delivery again only after an error or a
timeout, seconds later.

Events (extra ``{"from_webhook": true, "delivery_id", "payload"}``, the payload of
:func:`airflow_mlflow.registry_events.change_payload`):

* ``model_version.created`` on ``model_asset(name)``, unless ``MLflowRegisterModelOperator``
  registered the version (its outlet announced it);
* ``model_version_alias.created`` / ``.deleted`` on ``model_asset(name, alias=...)``, unless the
  provider's promotion or rollback made the move (:func:`~airflow_mlflow.registry_events.own_move`).

Only an asset Airflow knows with an ``MLflowWebhookTrigger`` watcher gets events (Airflow keeps
the watcher while a DAG scheduled on the asset is active and unpaused); other deliveries are
answered 200 and dropped, as are other event types.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from airflow_mlflow import compat
from airflow_mlflow.assets import SCHEME, model_asset
from airflow_mlflow.exceptions import MLflowProviderError, MLflowResourceNotFoundError
from airflow_mlflow.registry_events import (
    ALIAS_DELETED,
    ALIAS_SET,
    VERSION_CREATED,
    WEBHOOK_MOVE_WINDOW_SECONDS,
    change_payload,
    own_move,
    registered_by_provider,
)

log = logging.getLogger(__name__)

#: MLflow's headers and signature version (``mlflow.webhooks.constants``).
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
SIGNATURE_VERSION = "v1"
#: How far a delivery's timestamp may be from this server's clock, either way.
TOLERANCE_SECONDS = 300
#: The largest body accepted (a version's tags and description travel in it).
MAX_BODY_BYTES = 256 * 1024
#: The trigger whose watcher marks an asset as fed by webhooks (``model_asset(..., watch="webhook")``).
WEBHOOK_TRIGGER = "airflow_mlflow.triggers.registry_events.MLflowWebhookTrigger"
_CONN_ID = re.compile(r"[A-Za-z0-9_.\-]{1,250}")

router = APIRouter()


class Refused(Exception):
    """A delivery refused: the status, and a message without secrets (logged and answered)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Deliveries:
    """Delivery ids this process took (accepted or dropped), and those being handled now."""

    def __init__(self) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, delivery_id: str) -> bool:
        """Take ``delivery_id`` unless this process took it within the window already."""
        now = time.monotonic()
        with self._lock:
            while self._seen and next(iter(self._seen.values())) < now - 2 * TOLERANCE_SECONDS:
                self._seen.popitem(last=False)
            if delivery_id in self._seen:
                return False
            self._seen[delivery_id] = now
            return True

    def release(self, delivery_id: str) -> None:
        """Forget ``delivery_id``: handling it failed, MLflow may send it again."""
        with self._lock:
            self._seen.pop(delivery_id, None)

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


deliveries = _Deliveries()


def expected_signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """MLflow's signature of a delivery: ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def verify(conn_id: str, headers: Any, body: bytes, now: float | None = None) -> tuple[str, int]:
    """``(delivery id, timestamp)`` of a delivery MLflow signed with ``conn_id``'s secret, else
    :class:`Refused`."""
    delivery_id = (headers.get(DELIVERY_ID_HEADER) or "").strip()
    raw_timestamp = (headers.get(TIMESTAMP_HEADER) or "").strip()
    signatures = (headers.get(SIGNATURE_HEADER) or "").split()
    if not delivery_id or not raw_timestamp or not signatures:
        missing = [
            name
            for name, value in (
                (SIGNATURE_HEADER, signatures),
                (TIMESTAMP_HEADER, raw_timestamp),
                (DELIVERY_ID_HEADER, delivery_id),
            )
            if not value
        ]
        raise Refused(401, f"unsigned delivery: {', '.join(missing)} missing")
    if len(delivery_id) > 200:
        raise Refused(401, f"{DELIVERY_ID_HEADER} is longer than 200 characters")
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise Refused(401, f"{TIMESTAMP_HEADER} {raw_timestamp[:40]!r} is not a Unix time") from None
    skew = (time.time() if now is None else now) - timestamp
    if abs(skew) > TOLERANCE_SECONDS:
        raise Refused(
            401, f"{TIMESTAMP_HEADER} is {skew:+.0f} s from now (allowed: {TOLERANCE_SECONDS} s either way)"
        )
    secret = _secret(conn_id)
    expected = expected_signature(secret, delivery_id, raw_timestamp, body)
    if not any(hmac.compare_digest(expected.encode(), s.encode()) for s in signatures):
        raise Refused(401, f"{SIGNATURE_HEADER} does not match the connection's webhook_secret")
    return delivery_id, timestamp


def _secret(conn_id: str) -> str:
    from airflow.sdk.exceptions import AirflowNotFoundException

    from airflow_mlflow.exceptions import MLflowConnectionLookupError
    from airflow_mlflow.hooks.resolution import resolve_config

    try:
        secret = resolve_config(conn_id).webhook_secret
    except AirflowNotFoundException:
        raise Refused(403, f"no connection {conn_id!r}: nothing takes its webhooks") from None
    except MLflowConnectionLookupError:
        raise Refused(503, f"connection {conn_id!r} cannot be read now") from None
    except MLflowProviderError:
        raise Refused(403, f"connection {conn_id!r} is not a valid mlflow connection") from None
    if not secret:
        raise Refused(403, f"connection {conn_id!r} has no webhook_secret extra: its webhooks are refused")
    return secret


def parse(body: bytes) -> tuple[str, dict[str, Any], str | None]:
    """``(event type, data, when)`` of MLflow's envelope ``{entity, action, timestamp, data}``."""
    try:
        envelope = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise Refused(400, f"the body is not JSON: {err}") from None
    if not isinstance(envelope, dict):
        raise Refused(400, f"the body must be a JSON object, got {type(envelope).__name__}")
    entity, action, data = envelope.get("entity"), envelope.get("action"), envelope.get("data")
    if not isinstance(entity, str) or not isinstance(action, str):
        raise Refused(400, "the body must carry 'entity' and 'action' strings")
    if not isinstance(data, dict):
        raise Refused(400, f"'data' must be a JSON object, got {type(data).__name__}")
    when = envelope.get("timestamp")
    return f"{entity}.{action}", data, when if isinstance(when, str) else None


def _field(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value):
        raise Refused(400, f"'data.{name}' must be a non-empty string, got {value!r}")
    return str(value)


def _version_tags(conn_id: str, name: str, version: str) -> dict[str, str]:
    from airflow_mlflow.hooks.mlflow import MLflowHook

    try:
        return dict(MLflowHook(mlflow_conn_id=conn_id).get_model_version(name, version).tags)
    except MLflowResourceNotFoundError:
        return {}  # deleted since: not a move the provider is making
    except MLflowProviderError as err:
        raise Refused(
            503, f"model {name!r} version {version} cannot be read from MLflow now: {err}"
        ) from None


def _epoch(when: str | None) -> float | None:
    """Epoch seconds of the envelope's ISO 8601 ``timestamp``; None when absent or unreadable."""
    try:
        moment = datetime.fromisoformat(str(when).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def handle(conn_id: str, delivery_id: str, timestamp: int, body: bytes) -> dict[str, Any]:
    """Turn one verified delivery into at most one asset event; what happened, as the answer's JSON."""
    kind, data, when = parse(body)
    alias = None
    if kind == "model_version.created":
        name, version = _field(data, "name"), _field(data, "version")
        tags = data.get("tags") if isinstance(data.get("tags"), dict) else {}
        uri = model_asset(name, mlflow_conn_id=conn_id).uri
        payload = change_payload(
            change=VERSION_CREATED, name=name, version=version, changed_at=when, via="webhook"
        )
        if registered_by_provider(tags):
            return {"status": "ignored", "reason": "registered by the provider (its operator announced it)"}
    elif kind in ("model_version_alias.created", "model_version_alias.deleted"):
        name, alias = _field(data, "name"), _field(data, "alias")
        created = kind.endswith(".created")
        version = _field(data, "version") if created else None
        uri = model_asset(name, alias=alias, mlflow_conn_id=conn_id).uri
        payload = change_payload(
            change=ALIAS_SET if created else ALIAS_DELETED,
            name=name,
            version=version,
            alias=alias,
            changed_at=when,
            via="webhook",
        )
    else:
        return {
            "status": "ignored",
            "reason": f"event {kind!r} is not one this receiver turns into asset events",
        }
    since = datetime.fromtimestamp(timestamp - TOLERANCE_SECONDS - 1, tz=UTC)
    with compat.metadata_session() as session:
        asset = compat.watched_asset(session, uri, WEBHOOK_TRIGGER)
        if asset is None:
            return {"status": "ignored", "reason": f"no webhook-watched asset {uri}"}
        extras = compat.asset_event_extras_since(session, f"{SCHEME}://{conn_id}/", since)
        if any(e.get("from_webhook") and e.get("delivery_id") == delivery_id for e in extras):
            raise Refused(409, f"delivery {delivery_id} was accepted already (a replay)")
        if alias is not None and version is not None:
            moved_at = _epoch(when) or float(timestamp)  # the event's time, else the delivery's
            window = WEBHOOK_MOVE_WINDOW_SECONDS
            tags = _version_tags(conn_id, name, version)
            if own_move(tags, alias=alias, since=moved_at - window, until=moved_at + window):
                return {"status": "ignored", "reason": "moved by the provider (its operator announced it)"}
        extra = {"from_webhook": True, "delivery_id": delivery_id, "payload": payload}
        compat.register_asset_event(session, asset, extra)
    return {"status": "accepted", "asset": uri, "payload": payload}


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise Refused(413, f"the body is {declared} bytes; at most {MAX_BODY_BYTES} are accepted")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Refused(413, f"the body is over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/webhooks/{conn_id}")
async def receive(conn_id: str, request: Request) -> JSONResponse:
    """
    MLflow's webhook deliveries for connection ``conn_id``. Not behind Airflow's login: MLflow
    signs each delivery with the connection's ``webhook_secret`` instead (see the module doc).
    """
    delivery_id = None
    try:
        if not _CONN_ID.fullmatch(conn_id):
            raise Refused(404, "not a connection id")
        body = await _read_body(request)
        delivery_id, timestamp = await run_in_threadpool(verify, conn_id, request.headers, body)
        if not deliveries.claim(delivery_id):
            delivery_id = None  # the claim is the first delivery's, not this one's
            raise Refused(409, "this delivery was accepted already (a replay)")
        answer = await run_in_threadpool(handle, conn_id, delivery_id, timestamp, body)
    except Refused as refused:
        if delivery_id is not None and refused.status >= 500:
            deliveries.release(delivery_id)
        log.warning(
            "MLflow webhook for connection %r refused (%d): %s", conn_id[:250], refused.status, refused
        )
        return JSONResponse({"detail": str(refused)}, status_code=refused.status)
    except Exception:
        if delivery_id is not None:
            deliveries.release(delivery_id)
        log.exception("MLflow webhook for connection %r failed", conn_id)
        return JSONResponse(
            {"detail": "the delivery could not be handled; MLflow may retry"}, status_code=503
        )
    log.info(
        "MLflow webhook %s for connection %r: %s",
        delivery_id,
        conn_id,
        answer.get("reason") or answer["status"],
    )
    return JSONResponse(answer)
