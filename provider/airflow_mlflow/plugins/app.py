"""
The plugin's web app, mounted by Airflow's API server under ``/mlflow``.

Every route but the webhook receiver (:mod:`airflow_mlflow.plugins.webhooks`, which accepts only
what MLflow signed) requires an Airflow login (the UI's session cookie or a bearer token) through
Airflow's own security dependencies: the DAG-run, task and artifact views require read access
to that DAG and that Airflow knows the DAG now (see :func:`known_dag`), and the registry pages
show only model versions produced by DAGs the user may read now.
Pages are rendered on the server: the Airflow UI embeds them in sandboxed frames.
"""

from __future__ import annotations

import mimetypes
import threading
import time
from typing import TYPE_CHECKING

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_mlflow.exceptions import MLflowInputError, MLflowProviderError, MLflowResourceNotFoundError
from airflow_mlflow.plugins import chart, model_views, rendering, run_views, webhooks
from airflow_mlflow.tags import DAG_ID

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.plugins.model_views import Readable

#: Artifacts larger than this are listed but not served through Airflow.
MAX_ARTIFACT_BYTES = 10 * 1024 * 1024
#: How long a hook (and its MLflow client) is reused before the connection is read again.
HOOK_TTL_SECONDS = 300
_INLINE_TYPES = {"text/plain", "application/json", "image/png", "image/jpeg", "image/svg+xml", "text/csv"}

#: What the views answer when MLflow refuses (anything else is a bad gateway: MLflow failed).
_ERROR_STATUS = ((MLflowResourceNotFoundError, 404), (MLflowInputError, 400))

_hooks: dict[str, tuple[float, MLflowHook]] = {}
_hooks_lock = threading.Lock()


def conn_id() -> str:
    from airflow.configuration import conf

    return conf.get("mlflow", "conn_id", fallback="mlflow_default")


def get_hook() -> MLflowHook:
    """The API server's hook for ``[mlflow] conn_id``, re-read every few minutes."""
    from airflow_mlflow.hooks.mlflow import MLflowHook

    name = conn_id()
    with _hooks_lock:
        made, hook = _hooks.get(name, (0.0, None))
        if hook is None or time.monotonic() - made > HOOK_TTL_SECONDS:
            hook = MLflowHook(mlflow_conn_id=name)
            _hooks[name] = (time.monotonic(), hook)
    return hook


def known_dag(dag_id: str, session: SessionDep) -> None:
    """
    Refuse (404) a DAG that Airflow does not know now, whoever asks.

    MLflow runs name their DAG in a tag that outlives the DAG: it may have been deleted, never
    parsed, or belong to another Airflow writing to the same MLflow server. Airflow's permission
    check cannot place such a DAG in a team (no team passes for everyone who may read DAGs at
    all), so it would let any viewer read what the DAG tracked. Decision: what a DAG unknown to
    this Airflow tracked is readable by nobody through these views, admins included (the auth
    manager has no generic notion of an admin to single them out); MLflow's own UI still shows
    it to whoever MLflow lets in. Runs after the permission check, as Airflow's own routes do,
    so a user learns nothing of DAGs they may not read.
    """
    from airflow.models.dag import DagModel

    if session.get(DagModel, dag_id) is None:
        raise HTTPException(404, f"DAG {dag_id!r} is not known to this Airflow.")


def _artifact_path(path: str) -> str:
    """A path inside a run's artifacts: anything that could leave them is refused here, whatever the store."""
    parts = path.split("/")
    if path.startswith("/") or "\\" in path or "\x00" in path or any(p in {"", ".", ".."} for p in parts):
        raise HTTPException(400, f"artifact path {path!r} must be relative, inside the run's artifacts")
    return path


def _map_index(raw: str | None) -> int:
    """The UI fills ``{MAP_INDEX}`` only for mapped tasks; anything else means unmapped."""
    try:
        return int(raw) if raw is not None else -1
    except ValueError:
        return -1


#: In this order: permission first, then whether Airflow knows the DAG (see known_dag).
READ_RUN = [Depends(requires_access_dag("GET", DagAccessEntity.RUN)), Depends(known_dag)]
READ_TASK = [Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE)), Depends(known_dag)]

#: Every route declares its auth dependency: Airflow does not protect plugin routes by itself.
router = APIRouter()


def render(template: str, status: int = 200, **values) -> HTMLResponse:
    html = rendering.render(template, conn_id=conn_id(), **values)
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def readable_by(user: BaseUser) -> Readable:
    from airflow.api_fastapi.app import get_auth_manager

    manager = get_auth_manager()
    # Read from Airflow's DAG table now: a deleted DAG is in no one's set (see known_dag).
    dag_ids = manager.get_authorized_dag_ids(user=user, method="GET")
    # Versions registered outside Airflow belong to no DAG: shown to who may read DAGs at all.
    unowned = manager.is_authorized_dag(method="GET", user=user)
    return lambda dag_id: dag_id in dag_ids if dag_id else unowned


def refused(request: Request, err: StarletteHTTPException) -> HTMLResponse:
    """Airflow's auth dependencies answer in JSON; a page in the UI's frame says it in words."""
    dag_id = request.query_params.get("dag_id")
    messages = {
        401: "Log in to Airflow to see its MLflow views.",
        403: f"You may not read DAG {dag_id}: ask an admin for access." if dag_id else "Access denied.",
    }
    return render(
        "error.html", status=err.status_code, message=messages.get(err.status_code, str(err.detail))
    )


def mlflow_failed(request: Request, err: MLflowProviderError) -> HTMLResponse:
    status = next((code for kind, code in _ERROR_STATUS if isinstance(err, kind)), 502)
    return render("error.html", status=status, message=str(err))


@router.get("/dag-run", response_class=HTMLResponse, dependencies=READ_RUN)
def dag_run(dag_id: str, run_id: str) -> HTMLResponse:
    view = run_views.dag_run_view(get_hook(), dag_id, run_id)
    return render("dag_run.html", view=view)


@router.get("/task", response_class=HTMLResponse, dependencies=READ_TASK)
def task(dag_id: str, run_id: str, task_id: str, map_index: str | None = None) -> HTMLResponse:
    index = _map_index(map_index)
    view, versions = run_views.task_view(get_hook(), dag_id, run_id, task_id, index)
    values = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": index}
    return render("task.html", view=view, versions=versions, **values)


@router.get("/artifact", dependencies=READ_RUN)
def artifact(dag_id: str, mlflow_run_id: str, path: str) -> Response:
    path = _artifact_path(path)
    hook = get_hook()
    # The DAG permission was checked for dag_id: serve only runs that DAG tracked.
    if hook.get_run(mlflow_run_id).tags.get(DAG_ID) != dag_id:
        raise HTTPException(404, f"run {mlflow_run_id} was not tracked by DAG {dag_id!r}")
    data = hook.read_artifact(mlflow_run_id, path, MAX_ARTIFACT_BYTES)
    kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
    name = path.rsplit("/", 1)[-1].replace('"', "")
    inline = kind in _INLINE_TYPES
    disposition = "inline" if inline else "attachment"
    headers = {
        "Content-Disposition": f'{disposition}; filename="{name}"',
        "X-Content-Type-Options": "nosniff",
        # Artifacts are user content: never let one run script in Airflow's origin.
        "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self'",
    }
    # Served as what it is only when shown inline; HTML (or anything else) is a download.
    media_type = "text/plain" if kind == "image/svg+xml" else kind if inline else "application/octet-stream"
    return Response(data, media_type=media_type, headers=headers)


@router.get("/models", response_class=HTMLResponse)
def models(user: GetUserDep) -> HTMLResponse:
    return render("models.html", models=model_views.models_view(get_hook(), readable_by(user)))


@router.get("/model", response_class=HTMLResponse)
def model(user: GetUserDep, name: str, metric: str | None = None, version: str | None = None) -> HTMLResponse:
    view = model_views.model_view(get_hook(), name, readable_by(user), metric)
    if view is None:
        return render(
            "error.html", status=404, message=f"No model {name!r} with versions from DAGs you can read."
        )
    plot = chart.model_chart(view.points, view.metric or "")
    return render("model.html", view=view, chart=plot, selected=version)


@router.get("/icon.svg")
def icon(user: GetUserDep) -> Response:
    return Response(ICON, media_type="image/svg+xml", headers={"Cache-Control": "private, max-age=86400"})


def create_app() -> FastAPI:
    """The plugin's app: the router, with errors answered as pages the UI's frame can show."""
    app = FastAPI(title="MLflow for Airflow", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(StarletteHTTPException, refused)
    app.add_exception_handler(MLflowProviderError, mlflow_failed)
    app.include_router(router)
    app.include_router(webhooks.router)
    return app


ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="#0194e2" '
    'stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><path d="M3 17l5-6 4 4 8-10"/>'
    '<path d="M15 5h5v5"/><path d="M3 21h18"/></svg>'
)
