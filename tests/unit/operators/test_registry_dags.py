"""The model lifecycle as DAGs through ``dag.test()`` on a real SQLite store."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_mlflow.plugins import listener
from tests.assertions import assert_gate_timed_out, champion, check_lifecycle, states, versions, xcom_value
from tests.dags import registry as dags

pytestmark = pytest.mark.usefixtures("airflow_db")


def run(dag, **conf):
    dag_run = dag.test(run_conf=conf or None)
    listener.drain()
    return dag_run


def test_lifecycle_promote_reject_promote_rollback(store):
    check_lifecycle(run, store.client)


def test_register_and_promote_emit_asset_events_with_the_versions(store):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    dag_run = run(dags.gate_lifecycle, accuracy=0.8)
    run_id = versions(store.client)["1"].run_id

    def extras(uri):
        with create_session() as session:
            query = (
                select(AssetEvent)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .where(AssetModel.uri == uri, AssetEvent.source_run_id == dag_run.run_id)
            )
            return [e.extra for e in session.scalars(query)]

    promoted = {
        "name": "gate_model",
        "version": "1",
        "previous_version": None,
        "promoted": True,
        "run_id": run_id,
    }
    assert extras("mlflow-model://mlflow_default/gate_model/alias/champion") == [promoted]
    registered = extras("mlflow-model://mlflow_default/gate_model")
    assert [{k: e[k] for k in ("name", "version", "previous_version", "run_id")} for e in registered] == [
        {"name": "gate_model", "version": "1", "previous_version": None, "run_id": run_id}
    ]
    # The "MLflow Model Version" link payload; a SQLite store has no UI, so no URL in it.
    assert xcom_value(dag_run, "promote", "mlflow_model_version") == {
        "name": "gate_model",
        "version": "1",
        "url": None,
    }
    # No MLflow UI for a SQLite store: the link leads to the version on the Airflow UI's models page.
    assert xcom_value(dag_run, "gate", "_link_MLflowModelVersionLink") == (
        "plugin/mlflow-models/mlflow/model?name=gate_model&version=1"
    )


@pytest.mark.parametrize(
    ("dag_name", "model"), [("gate_deferred", "deferred_model"), ("gate_rescheduled", "rescheduled_model")]
)
def test_waiting_gate_passes_once_the_metric_appears(store, dag_name, model):
    client = store.client
    logged_at = []

    def log_metric_when_registered():
        deadline = time.time() + 90
        while time.time() < deadline:
            found = versions(client, model)
            if "1" in found:
                time.sleep(3)  # the gate sees the metric missing and waits meanwhile
                logged_at.append(time.time())
                client.log_metric(found["1"].run_id, "late_accuracy", 0.75)
                return
            time.sleep(0.2)

    helper = threading.Thread(target=log_metric_when_registered, daemon=True)
    helper.start()
    dag_run = run(getattr(dags, dag_name))
    helper.join(timeout=5)
    assert states(dag_run) == {
        "train": "success",
        "register": "success",
        "gate": "success",
        "promote": "success",
    }
    v = versions(client, model)["1"]
    assert v.tags["airflow.gate.status"] == "passed"
    assert "late_accuracy: candidate 0.75" in v.tags["airflow.gate.metric.late_accuracy"]
    # The verdict came after the metric did: the gate waited rather than deciding early.
    evaluated = (
        time.mktime(time.strptime(v.tags["airflow.gate.evaluated_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    )
    assert logged_at and evaluated >= int(logged_at[0])
    assert champion(client, model) == "1"


def test_a_timed_out_gate_never_promotes(store):
    assert_gate_timed_out(store.client, run(dags.gate_timeout), "timeout_model")
