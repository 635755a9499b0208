"""One MLflow store that real DAG runs (``dag.test()``) filled, shared by the plugin's view tests
(DAG runs are slow): the tracked example once, then gate_lifecycle three times (v1 promoted, v2
rejected, v3 promoted over v1). Each test reads it through ``mlflow_default``."""

from __future__ import annotations

import pytest

from airflow_mlflow.plugins import listener
from tests.dags import registry as registry_dags
from tests.dags import tracked as tracked_dags
from tests.support import copy_store, mlflow_conn_json


def run(dag, **conf):
    dag_run = dag.test(run_conf=conf or None)
    listener.drain()
    return dag_run


def everyone(dag_id: str | None) -> bool:
    return True


@pytest.fixture(scope="package")
def ui_store(mlflow_template, tmp_path_factory, airflow_db):
    """``(tracking uri, tracked DAG run, [three gate_lifecycle DAG runs])``."""
    uri = copy_store(mlflow_template, tmp_path_factory.mktemp("ui-store"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_conn_json(uri))
        tracked = run(tracked_dags.tracked)
        lifecycle = [run(registry_dags.gate_lifecycle, accuracy=a) for a in (0.8, 0.7, 0.9)]
    return uri, tracked, lifecycle


@pytest.fixture
def filled(ui_store, monkeypatch):
    """The filled store behind ``mlflow_default`` for this test."""
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_conn_json(ui_store[0]))
    return ui_store


@pytest.fixture
def tracked(filled):
    return filled[1]


@pytest.fixture
def lifecycle(filled):
    return filled[2]
