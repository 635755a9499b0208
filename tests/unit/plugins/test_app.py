"""The plugin's routes: one module-level router, every route behind Airflow's login (FastAPI
plugin routes are not protected by Airflow unless they say so). Behaviour under a real API server
is covered by tests/faults/test_ui_routes.py and the browser tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def app_module():
    from airflow_mlflow.plugins import app

    return app


def dependencies(dependant) -> Iterator:
    for sub in dependant.dependencies:
        yield sub.call
        yield from dependencies(sub)


def test_every_route_requires_a_login_and_dag_routes_a_known_dag(app_module):
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.routing import APIRoute

    from airflow_mlflow.plugins import webhooks

    every = [r for r in app_module.create_app().routes if isinstance(r, APIRoute)]
    # The one exception: MLflow cannot log in; the receiver takes only what MLflow signed
    # (tests/unit/plugins/test_webhooks.py).
    assert [(r.path, r.methods) for r in every if r.path.startswith("/webhooks/")] == [
        ("/webhooks/{conn_id}", {"POST"})
    ]
    assert [r.path for r in webhooks.router.routes] == ["/webhooks/{conn_id}"]
    routes = [r for r in every if not r.path.startswith("/webhooks/")]
    assert {r.path for r in routes} == {"/dag-run", "/task", "/artifact", "/models", "/model", "/icon.svg"}
    assert {r.path for r in routes} == {r.path for r in app_module.router.routes}
    for route in routes:
        calls = list(dependencies(route.dependant))
        assert get_user in calls, route.path
        if "dag_id" in {p.name for p in route.dependant.query_params}:
            assert app_module.known_dag in calls, route.path
