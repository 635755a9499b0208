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


#: A comment from a user, with markup the pages must escape.
HOSTILE_COMMENT = "<script>alert(1)</script> ship it"


@pytest.fixture
def approvals(store):
    """
    Model ``churn``, each version from DAG ``retrain`` run ``day<n>``, gated and passed: v1
    promoted without asking; v2 approved by alice (``HOSTILE_COMMENT``) and promoted over v1; v3
    rejected by bob; v4 rejected by a timeout of another DAG run (``approve/manual__4``).
    Decisions and promotions are written by the provider's own code.
    """
    from airflow_mlflow import tags
    from airflow_mlflow.approval import record_decision
    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.operators.registry import MLflowPromoteModelOperator
    from tests.support import operator_context

    client = store.client
    client.create_registered_model("churn")
    for day in (1, 2, 3, 4):
        lineage = {tags.DAG_ID: "retrain", tags.RUN_ID: f"day{day}", tags.GATE_STATUS: "passed"}
        client.create_model_version("churn", f"file:///tmp/churn/{day}", tags=lineage)
    hook = MLflowHook()

    def promote(version: str) -> None:
        MLflowPromoteModelOperator(task_id="p", model_name="churn", version=version, stage=None).execute(
            operator_context()
        )

    def decide(version: str, approved: bool, user: str | None, comment: str, dag_run: str) -> None:
        who = {"id": user, "name": user} if user else None
        at = f"2026-12-0{version}T09:30:00+00:00"
        record_decision(
            hook, "churn", version, approved=approved, user=who, at=at, comment=comment, dag_run=dag_run
        )

    promote("1")
    decide("2", True, "alice", HOSTILE_COMMENT, "retrain/day2")
    promote("2")
    decide("3", False, "bob", "drifted on the March data", "retrain/day3")
    decide("4", False, None, "", "approve/manual__4")
    return hook
