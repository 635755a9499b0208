"""Assets for registered models: what a downstream DAG schedules on."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from airflow.sdk import Asset

if TYPE_CHECKING:
    from urllib.parse import SplitResult

SCHEME = "mlflow-model"


def model_asset(
    name: str, *, alias: str | None = None, stage: str | None = None, mlflow_conn_id: str = "mlflow_default"
) -> Asset:
    """
    The Asset for a registered model, or for one place in it.

    * ``model_asset("churn")``: an event for every new version (``MLflowRegisterModelOperator``);
    * ``model_asset("churn", alias="champion")`` / ``stage="Production"``: an event each time that
      alias or stage moves (``MLflowPromoteModelOperator``, ``MLflowRollbackModelOperator``).

    Event extras carry ``{name, version, previous_version, run_id}``. The URI names the connection,
    so equal model names on different registries stay apart:
    ``mlflow-model://mlflow_default/churn/alias/champion``.
    """
    if alias and stage:
        raise ValueError("model_asset takes alias or stage, not both")
    path = quote(name, safe="")
    if alias:
        path += f"/alias/{quote(alias, safe='')}"
    elif stage:
        path += f"/stage/{quote(stage, safe='')}"
    return Asset(
        uri=f"{SCHEME}://{mlflow_conn_id}/{path}",
        name=f"mlflow model {name}" + (f"@{alias}" if alias else f"/{stage}" if stage else ""),
        group="mlflow-model",
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
