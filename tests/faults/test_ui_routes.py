"""Every route of the UI plugin, as a careless or hostile user would try it.

The routes are read from the plugin's FastAPI app (a new route is checked without editing this
file; a new query parameter fails until ``PARAMS`` gives it a value). They are served by
Airflow's real API server app, built in process (``airflow.api_fastapi.app.create_app``) in
multi-team mode with Airflow's simple auth manager on the test session's SQLite metadata DB;
tokens come from the auth manager's own ``/auth/token``. The DAGs are parsed by Airflow
(``DagBag`` + ``sync_bag_to_db``) into a bundle owned by ``ml-team``; users are ``admin``,
``analyst`` (viewer, ml-team) and ``outsider`` (viewer, other-team), as in the e2e stack.
MLflow is a real SQLite store filled with the provider's own hook and run tags.

DAGs: ``KEPT`` exists; ``DOOMED`` and ``DELETED`` are deleted through Airflow's REST API;
``UNKNOWN`` never existed in this Airflow (another Airflow writing to the same MLflow). What a
DAG unknown to Airflow tracked is readable by nobody (see ``airflow_mlflow.plugins.app.known_dag``).
"""

from __future__ import annotations

import json
import socket
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from markupsafe import escape

from airflow_mlflow.runs import TaskRunContext
from tests.support import copy_store, migrated_mlflow_db, mlflow_conn_json

TEAM, OTHER_TEAM = "ml-team", "other-team"
USERS = {"admin": ("admin", None), "analyst": ("viewer", TEAM), "outsider": ("viewer", OTHER_TEAM)}
BUNDLE = "faults-ui-bundle"
LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"
KEPT, DOOMED, DELETED, UNKNOWN = "ui_kept", "ui_doomed", "ui_deleted", "ui_unknown"
PARSED = (KEPT, DOOMED, DELETED)
RUN_ID = "manual__2026-11-01T00:00:00+00:00"
XSS = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')
#: Model names cannot hold "/": the second payload, with a single quote for good measure (item 6).
XSS_MODEL = XSS[1] + " O'Brien"
SECRET_PW = "SECRETPW-ui-routes"
TRAVERSALS = (
    "../outside.txt",
    "../../outside.txt",
    "sub/../../outside.txt",
    "..",
    "/etc/passwd",
    "%2e%2e/outside.txt",  # sent raw: the server decodes it to ../
    "%2E%2E%2Foutside.txt",
    "..%2Foutside.txt",
    "..%5Coutside.txt",  # a backslash
    "report.txt%00/../../outside.txt",
)
OUTSIDE_BYTES = b"outside-the-artifacts"

DAG_FILE = textwrap.dedent(
    f"""
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    dags = []
    for dag_id in {PARSED!r}:
        with DAG(dag_id, schedule=None) as dag:
            EmptyOperator(task_id="train")
        dags.append(dag)
    kept, doomed, deleted = dags
    """
)


def model_of(dag_id: str) -> str:
    return XSS_MODEL if dag_id == KEPT else f"{dag_id}_model"


def secret_of(dag_id: str) -> str:
    """What only readers of ``dag_id`` may see: a param value and an artifact's content."""
    return f"{dag_id}-only-for-its-readers"


@dataclass
class Stack:
    client: object  # fastapi.testclient.TestClient of Airflow's API server app
    tokens: dict[str, str]
    task_runs: dict[str, str]
    artifacts_dir: Path
    routes: list = field(default_factory=list)

    def get(self, path: str, user: str | None, params: dict | str | None = None, **kw):
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        query = params if isinstance(params, str) else urlencode(params or {})
        return self.client.get(f"{path}?{query}" if query else path, headers=headers, **kw)

    def delete_dag(self, dag_id: str) -> None:
        """Delete a DAG the way an admin does: Airflow's REST API (``airflow dags delete`` does the same)."""
        auth = {"Authorization": f"Bearer {self.tokens['admin']}"}
        assert self.client.delete(f"/api/v2/dags/{dag_id}", headers=auth).status_code == 204
        assert self.client.get(f"/api/v2/dags/{dag_id}", headers=auth).status_code == 404

    def params(self, route, dag_id: str) -> dict[str, str]:
        """Values for every query parameter the route (and its dependencies) takes."""
        from fastapi.dependencies.utils import get_flat_dependant

        values = {
            "dag_id": dag_id,
            "run_id": RUN_ID,
            "task_id": "train",
            "map_index": "-1",
            "mlflow_run_id": self.task_runs[dag_id],
            "path": "report.txt",
            "name": model_of(dag_id),
            "metric": "score",
            "version": "1",
        }
        names = {p.name for p in get_flat_dependant(route.dependant).query_params}
        missing = names - set(values)
        assert not missing, f"{route.path}: give PARAMS a value for {sorted(missing)}"
        return {name: values[name] for name in sorted(names)}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def parse_into_airflow(folder: Path) -> None:
    """Teams, a bundle owned by ``TEAM``, and the DAGs parsed and stored by Airflow's own code."""
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.team import Team
    from airflow.utils.session import create_session

    folder.mkdir()
    (folder / "ui_dags.py").write_text(DAG_FILE)
    with create_session() as session:
        teams = {t.name: t for t in session.query(Team)}
        for name in (TEAM, OTHER_TEAM):
            if name not in teams:
                teams[name] = Team(name=name)
                session.add(teams[name])
        bundle = session.get(DagBundleModel, BUNDLE) or DagBundleModel(name=BUNDLE)
        bundle.teams = [teams[TEAM]]
        session.add(bundle)
    bag = DagBag(dag_folder=folder, bundle_path=folder, bundle_name=BUNDLE)
    assert sorted(bag.dags) == sorted(PARSED), bag.import_errors
    sync_bag_to_db(bag, BUNDLE, None)


def forget_airflow_state(dag_ids) -> None:
    from airflow.api.common.delete_dag import delete_dag
    from airflow.exceptions import DagNotFound
    from airflow.models.dagbundle import DagBundleModel
    from airflow.utils.session import create_session

    for dag_id in dag_ids:
        try:
            delete_dag(dag_id)
        except DagNotFound:
            pass
    with create_session() as session:
        bundle = session.get(DagBundleModel, BUNDLE)
        if bundle is not None:
            bundle.teams = []
            session.delete(bundle)


def fill_mlflow(artifacts_dir: Path, tmp: Path) -> dict[str, str]:
    """Per DAG: a DAG-run parent, a tracked task with params, a metric, artifacts, a model version."""
    from mlflow import MlflowClient

    from airflow_mlflow.hooks.mlflow import MLflowHook

    hook = MLflowHook()
    client: MlflowClient = hook.client
    task_runs = {}
    for dag_id in (*PARSED, UNKNOWN):
        ctx = TaskRunContext(dag_id=dag_id, run_id=RUN_ID, task_id="train", logical_date=XSS[1])
        experiment = hook.get_or_create_experiment(dag_id)
        parent = hook.create_run(experiment, XSS[1], ctx.parent_tags(), start_time=1)
        tags = {**ctx.task_tags(), "mlflow.parentRunId": parent.run_id, "airflow.try.1.error": XSS[0]}
        run = hook.create_run(experiment, XSS[0], tags, start_time=2)
        hook.log_batch(
            run.run_id,
            params={"secret": secret_of(dag_id), "script": XSS[0], "img": XSS[1]},
            metrics={"score": 0.5},
            tags={"note": XSS[0]},
        )
        files = tmp / dag_id
        (files / "sub").mkdir(parents=True)
        (files / "report.txt").write_text(secret_of(dag_id))
        (files / "evil.html").write_text(f"<html>{XSS[0]}</html>")
        (files / "evil.svg").write_text(f'<svg xmlns="http://www.w3.org/2000/svg">{XSS[0]}</svg>')
        (files / XSS[1].replace("/", "")).write_text("named to hurt")
        (files / "sub" / "inner.txt").write_text("inner")
        hook.log_artifacts(run.run_id, files)
        hook.set_run_status(run.run_id, "FINISHED")
        hook.set_run_status(parent.run_id, "FINISHED")
        client.create_registered_model(model_of(dag_id), description=XSS[0])
        client.create_model_version(
            model_of(dag_id),
            f"runs:/{run.run_id}/model",
            run_id=run.run_id,
            description=XSS[0],
            tags={
                "airflow.dag_id": dag_id,
                "airflow.run_id": RUN_ID,
                "airflow.gate.status": "passed",
                "airflow.gate.metric.score": XSS[0],
            },
        )
        task_runs[dag_id] = run.run_id
        # A file next to the run's artifacts, where ``../outside.txt`` would reach.
        run_artifacts = Path(urlsplit(run.artifact_uri).path)
        assert run_artifacts.is_relative_to(artifacts_dir), run.artifact_uri
        (run_artifacts.parent / "outside.txt").write_bytes(OUTSIDE_BYTES)
        (run_artifacts.parent.parent / "outside.txt").write_bytes(OUTSIDE_BYTES)
    return task_runs


@pytest.fixture(scope="module")
def stack(tmp_path_factory, airflow_db) -> Iterator[Stack]:
    from fastapi.routing import APIRoute
    from fastapi.testclient import TestClient

    from airflow_mlflow.plugins import app as plugin_app
    from airflow_mlflow.plugins import webhooks

    tmp = tmp_path_factory.mktemp("ui-routes")
    store = copy_store(migrated_mlflow_db(tmp / "template"), tmp / "mlflow")
    artifacts = tmp / "mlflow" / "artifacts"
    passwords = {name: f"{name}-pw" for name in USERS}
    (tmp / "passwords.json").write_text(json.dumps(passwords))
    broken = f"http://user:{SECRET_PW}@127.0.0.1:{closed_port()}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRFLOW__CORE__MULTI_TEAM", "True")
        bundles = [
            {"name": "dags-folder", "classpath": LOCAL_BUNDLE, "kwargs": {}},
            {
                "name": BUNDLE,
                "classpath": LOCAL_BUNDLE,
                "kwargs": {"path": str(tmp / "dags")},
                "team_name": TEAM,
            },
        ]
        env.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
        env.setenv(
            "AIRFLOW__CORE__AUTH_MANAGER",
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        )
        env.setenv(
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
            ",".join(f"{n}:{role}" + (f":{team}" if team else "") for n, (role, team) in USERS.items()),
        )
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(tmp / "passwords.json"))
        env.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "ui-routes-" * 8)
        env.setenv("AIRFLOW__API__SECRET_KEY", "ui-routes-key-" * 4)
        env.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_conn_json(store, artifact_root=str(artifacts)))
        env.setenv(
            "AIRFLOW_CONN_MLFLOW_BROKEN",
            json.dumps({"conn_type": "mlflow", "extra": {"tracking_uri": broken, "http_max_retries": 0}}),
        )
        from airflow.api_fastapi.app import create_app, purge_cached_app

        forget_airflow_state((*PARSED, UNKNOWN))
        parse_into_airflow(tmp / "dags")
        task_runs = fill_mlflow(artifacts, tmp / "files")
        purge_cached_app()
        plugin_app._hooks.clear()
        client = TestClient(create_app(apps="core"))
        tokens = {}
        for name, password in passwords.items():
            resp = client.post("/auth/token", json={"username": name, "password": password})
            assert resp.status_code == 201, resp.text
            tokens[name] = resp.json()["access_token"]
        # The pages: every route but the webhook receiver's, which MLflow (no Airflow login) calls
        # and which takes only signed deliveries (test_the_webhook_receiver_refuses_the_unsigned).
        receiver = {r.path for r in webhooks.router.routes}
        routes = [
            r for r in plugin_app.create_app().routes if isinstance(r, APIRoute) and r.path not in receiver
        ]
        made = Stack(client, tokens, task_runs, artifacts, routes)
        made.delete_dag(DOOMED)
        try:
            yield made
        finally:
            client.close()
            purge_cached_app()
            plugin_app._hooks.clear()
            forget_airflow_state((*PARSED, UNKNOWN))


def dag_routes(stack: Stack) -> list:
    return [r for r in stack.routes if "dag_id" in stack.params(r, KEPT)]


def test_the_plugin_is_mounted_and_its_routes_are_read_from_its_app(stack):
    paths = {r.path for r in stack.routes}
    assert {"/dag-run", "/task", "/artifact", "/models", "/model", "/icon.svg"} <= paths
    assert {r.path for r in dag_routes(stack)} >= {"/dag-run", "/task", "/artifact"}
    # The routes answer under Airflow's API server, not only in the bare plugin app.
    assert stack.get("/mlflow/models", "analyst").status_code == 200


def test_the_webhook_receiver_refuses_the_unsigned(stack):
    """The one route outside Airflow's login: nothing unsigned gets through, with or without a token."""
    for headers in (
        {},
        {"Authorization": "Bearer forged"},
        {"Authorization": f"Bearer {stack.tokens['admin']}"},
    ):
        resp = stack.client.post(
            "/mlflow/webhooks/mlflow_default",
            json={"entity": "model_version", "action": "created", "data": {"name": "m", "version": "1"}},
            headers=headers,
        )
        assert resp.status_code in (401, 403), (headers.keys(), resp.status_code, resp.text)


def test_every_route_requires_a_login(stack):
    wrong = []
    for route in stack.routes:
        # No login: 401 (or a redirect to it). A forged token: Airflow's own answer, 401 or 403.
        for headers, refusals in (
            ({}, {401, 302, 303, 307}),
            ({"Authorization": "Bearer forged"}, {401, 403}),
        ):
            query = urlencode(stack.params(route, KEPT))
            resp = stack.client.get(f"/mlflow{route.path}?{query}", headers=headers, follow_redirects=False)
            if resp.status_code not in refusals or secret_of(KEPT) in resp.text:
                wrong.append((route.path, headers, resp.status_code))
    assert wrong == []


#: (user, DAG) -> statuses every DAG-scoped route may answer. A DAG Airflow does not know is read
#: by nobody. Airflow caches a DAG's team for a while: another team may get 403 for a DAG just
#: deleted, as from Airflow's own API.
DAG_ACCESS = {
    ("admin", KEPT): {200},
    ("analyst", KEPT): {200},
    ("outsider", KEPT): {403},
    **{(user, dag): {404} for user in ("admin", "analyst") for dag in (DOOMED, UNKNOWN)},
    ("outsider", DOOMED): {403, 404},
    ("outsider", UNKNOWN): {404},
}


def test_dag_routes_answer_only_to_who_may_read_the_dag_now(stack):
    wrong = []
    for route in dag_routes(stack):
        for (user, dag_id), expected in DAG_ACCESS.items():
            resp = stack.get(f"/mlflow{route.path}", user, stack.params(route, dag_id))
            leaked = expected != {200} and secret_of(dag_id) in resp.text
            if resp.status_code not in expected or leaked:
                wrong.append((route.path, user, dag_id, resp.status_code, expected, leaked))
    assert wrong == []
    # The refusals say why, in the error page the UI frames.
    resp = stack.get("/mlflow/dag-run", "outsider", {"dag_id": UNKNOWN, "run_id": RUN_ID})
    assert f"DAG {UNKNOWN!r} is not known to this Airflow" in resp.text.replace("&#39;", "'")
    assert "<html" in resp.text.lower()


def test_airflow_itself_agrees_on_those_dags(stack):
    """The plugin never answers 200 where Airflow's own API refuses the DAG."""
    for (user, dag_id), expected in DAG_ACCESS.items():
        resp = stack.client.get(
            f"/api/v2/dags/{dag_id}", headers={"Authorization": f"Bearer {stack.tokens[user]}"}
        )
        assert (resp.status_code == 200) == (expected == {200}), (user, dag_id, resp.status_code)


def registry_status(stack: Stack, user: str) -> tuple[set[str], dict[str, int]]:
    listed = stack.get("/mlflow/models", user)
    assert listed.status_code == 200, listed.text
    shown = {d for d in (*PARSED, UNKNOWN) if str(escape(model_of(d))) in listed.text}
    opened = {
        d: stack.get("/mlflow/model", user, {"name": model_of(d)}).status_code for d in (*PARSED, UNKNOWN)
    }
    return shown, opened


def test_registry_pages_hide_versions_of_dags_the_user_may_not_read_now(stack):
    for user, shown_expected in (
        ("admin", {KEPT, DELETED}),
        ("analyst", {KEPT, DELETED}),
        ("outsider", set()),
    ):
        shown, opened = registry_status(stack, user)
        if DELETED not in shown:  # test_a_dag_deleted_through_airflow… ran first
            shown_expected = shown_expected - {DELETED}
        assert shown == shown_expected, user
        assert {d for d, status in opened.items() if status == 200} == shown_expected, (user, opened)
        assert {status for d, status in opened.items() if d not in shown_expected} == {404}, (user, opened)


def test_a_dag_deleted_through_airflow_is_refused_afterwards(stack):
    """Issue 10 item 1: the MLflow data outlives the DAG; the views must not."""
    dag_route_paths = [r.path for r in dag_routes(stack)]

    def statuses(user):
        return {
            path: stack.get(f"/mlflow{path}", user, stack.params(r, DELETED)).status_code
            for r in dag_routes(stack)
            for path in [r.path]
        }

    assert statuses("analyst") == dict.fromkeys(dag_route_paths, 200)
    assert statuses("outsider") == dict.fromkeys(dag_route_paths, 403)
    stack.delete_dag(DELETED)
    for user in USERS:
        refusals = {403, 404} if user == "outsider" else {404}  # the team cache, see DAG_ACCESS
        assert set(statuses(user).values()) <= refusals, user
        shown, opened = registry_status(stack, user)
        assert DELETED not in shown and opened[DELETED] == 404, user
    resp = stack.get(
        "/mlflow/artifact",
        "outsider",
        {"dag_id": DELETED, "mlflow_run_id": stack.task_runs[DELETED], "path": "report.txt"},
    )
    assert secret_of(DELETED) not in resp.text


def test_user_content_comes_back_escaped_on_every_page(stack):
    pages = {}
    for route in stack.routes:
        resp = stack.get(f"/mlflow{route.path}", "analyst", stack.params(route, KEPT))
        assert resp.status_code == 200, (route.path, resp.text[:500])
        pages[route.path] = resp
    pages["/model?metric"] = stack.get("/mlflow/model", "analyst", {"name": XSS_MODEL, "metric": XSS[0]})
    pages["/model?version"] = stack.get("/mlflow/model", "analyst", {"name": XSS_MODEL, "version": XSS[1]})
    pages["/task?task_id"] = stack.get(
        "/mlflow/task", "analyst", {"dag_id": KEPT, "run_id": XSS[1], "task_id": XSS[0], "map_index": XSS[1]}
    )
    pages["/dag-run?run_id"] = stack.get("/mlflow/dag-run", "analyst", {"dag_id": KEPT, "run_id": XSS[0]})
    pages["/model?name"] = stack.get("/mlflow/model", "analyst", {"name": XSS[0]})
    pages["/dag-run?dag_id"] = stack.get("/mlflow/dag-run", "analyst", {"dag_id": XSS[1], "run_id": "r"})
    html_pages = {k: r for k, r in pages.items() if r.headers["content-type"].startswith("text/html")}
    assert set(pages) - set(html_pages) <= {"/artifact", "/icon.svg"}
    raw = [(k, p) for k, r in html_pages.items() for p in XSS if p in r.text]
    assert raw == []
    escaped = {p: [k for k, r in html_pages.items() if str(escape(p)) in r.text] for p in XSS}
    # Each payload was stored and shown (escaped) somewhere: the check above could fail.
    assert {"/dag-run", "/task"} <= set(escaped[XSS[0]]) and {"/models", "/model"} <= set(escaped[XSS[1]])


@pytest.mark.parametrize("name", ["evil.html", "evil.svg"])
def test_artifacts_never_run_as_pages_of_airflow(stack, name):
    resp = stack.get(
        "/mlflow/artifact", "analyst", {"dag_id": KEPT, "mlflow_run_id": stack.task_runs[KEPT], "path": name}
    )
    assert resp.status_code == 200
    assert not resp.headers["content-type"].startswith(("text/html", "image/svg"))
    assert "sandbox" in resp.headers["content-security-policy"]
    assert resp.headers["x-content-type-options"] == "nosniff"


def test_artifact_path_traversal_is_refused(stack):
    run = stack.task_runs[KEPT]
    ok = stack.get(
        "/mlflow/artifact", "analyst", {"dag_id": KEPT, "mlflow_run_id": run, "path": "sub/inner.txt"}
    )
    assert ok.status_code == 200 and ok.content == b"inner"
    served = []
    for path in TRAVERSALS:
        query = f"dag_id={KEPT}&mlflow_run_id={run}&path={path}"  # raw: encoded dots reach the server
        resp = stack.get("/mlflow/artifact", "analyst", query)
        if resp.status_code not in (400, 404) or OUTSIDE_BYTES in resp.content or b"root:" in resp.content:
            served.append((path, resp.status_code, resp.content[:80]))
    assert served == []


def test_no_page_shows_the_connection_password_when_mlflow_fails(stack, monkeypatch):
    """Issue 10 item 3, on the UI: MLflow unreachable through a tracking_uri with a password in it."""
    monkeypatch.setenv("AIRFLOW__MLFLOW__CONN_ID", "mlflow_broken")
    seen = []
    for route in stack.routes:
        for user in ("admin", "analyst", "outsider"):
            resp = stack.get(f"/mlflow{route.path}", user, stack.params(route, KEPT))
            if SECRET_PW in resp.text:
                seen.append((route.path, user, resp.status_code))
            if route.path == "/models" and user == "admin":
                assert resp.status_code == 502, resp.text[:300]  # it did try MLflow, and failed
    assert seen == []
