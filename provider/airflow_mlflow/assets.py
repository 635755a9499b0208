"""Assets for registered models: what a downstream DAG schedules on."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from airflow.sdk import Asset, AssetWatcher

if TYPE_CHECKING:
    from urllib.parse import SplitResult

SCHEME = "mlflow-model"
#: How a model asset learns of changes made outside Airflow (``model_asset(..., watch=)``).
WATCH_MODES = ("poll", "webhook")


def model_asset(
    name: str,
    *,
    alias: str | None = None,
    stage: str | None = None,
    mlflow_conn_id: str = "mlflow_default",
    watch: str | None = None,
    poll_interval: float = 60.0,
) -> Asset:
    """
    The Asset for a registered model, or for one place in it.

    * ``model_asset("churn")``: an event for every new version (``MLflowRegisterModelOperator``);
    * ``model_asset("churn", alias="champion")`` / ``stage="Production"``: an event each time that
      alias or stage moves (``MLflowPromoteModelOperator``, ``MLflowRollbackModelOperator``).

    Event extras carry ``{name, version, previous_version, run_id}``. The URI names the connection,
    so equal model names on different registries stay apart:
    ``mlflow-model://mlflow_default/churn/alias/champion``.

    ``watch`` also makes changes done outside Airflow (MLflow's UI, a CI job, a script) events,
    chosen per asset in the DAG that schedules on it:

    * ``"poll"``: the triggerer reads the model every ``poll_interval`` seconds (one request per
      poll; works with every MLflow, hosted ones included);
    * ``"webhook"``: MLflow's webhooks post changes to the plugin's receiver (open-source MLflow
      >= 3.3 with a SQL store), see the README.

    Their events' extras are ``{"payload": {change, name, version, previous_version, alias, stage,
    changed_by, changed_at, via}, ...}``; :func:`airflow_mlflow.registry_events.event_payload`
    reads any event of a model asset. Changes the provider's operators announced are not
    announced again.
    """
    if alias and stage:
        raise ValueError("model_asset takes alias or stage, not both")
    if watch is not None and watch not in WATCH_MODES:
        raise ValueError(f"model_asset: watch={watch!r} is not one of {WATCH_MODES} (or None)")
    if poll_interval <= 0:
        raise ValueError(f"model_asset: poll_interval={poll_interval!r} must be a positive number of seconds")
    path = quote(name, safe="")
    if alias:
        path += f"/alias/{quote(alias, safe='')}"
    elif stage:
        path += f"/stage/{quote(stage, safe='')}"
    asset_name = f"mlflow model {name}" + (f"@{alias}" if alias else f"/{stage}" if stage else "")
    watchers = []
    if watch is not None:
        from airflow_mlflow.triggers.registry_events import MLflowRegistryPollTrigger, MLflowWebhookTrigger

        poll = watch == "poll"
        trigger_class = MLflowRegistryPollTrigger if poll else MLflowWebhookTrigger
        target = {"model_name": name, "alias": alias, "stage": stage, "mlflow_conn_id": mlflow_conn_id}
        if poll:
            target["poll_interval"] = float(poll_interval)
        watchers.append(AssetWatcher(name=f"mlflow-{watch}", trigger=trigger_class(**target)))
    return Asset(
        uri=f"{SCHEME}://{mlflow_conn_id}/{path}",
        name=asset_name,
        group="mlflow-model",
        watchers=watchers,
    )


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Airflow's check of ``mlflow-model://`` URIs (registered through the provider info)."""
    parts = [unquote(p) for p in uri.path.strip("/").split("/")] if uri.path.strip("/") else []
    if not uri.netloc:
        raise ValueError(
            f"{SCHEME} URI {uri.geturl()!r} must name the connection: {SCHEME}://<conn_id>/<model>"
        )
    if len(parts) not in (1, 3) or (len(parts) == 3 and parts[1] not in ("alias", "stage")):
        raise ValueError(
            f"{SCHEME} URI {uri.geturl()!r} must be {SCHEME}://<conn_id>/<model>[/alias/<alias>|/stage/<stage>]"
        )
    return uri
