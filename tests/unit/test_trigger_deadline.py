"""A deferrable gate times out by itself, even where nothing enforces the deferral's timeout."""

from __future__ import annotations

import time

import pytest
from mlflow.exceptions import MlflowException

from airflow_mlflow.plugins import listener
from airflow_mlflow.triggers.registry import MLflowMetricThresholdTrigger
from tests.assertions import champion, states, versions
from tests.dags import registry as dags

pytestmark = pytest.mark.usefixtures("airflow_db")


# Before the fix ``dag.test()`` polled for as long as pytest let it: the inline trigger runner
# ignores the deferral's timeout. A generous limit, not a timing assertion: it must finish at all.
@pytest.mark.timeout(240, method="thread")  # a SIGALRM did not stop dag.test()
def test_deferrable_gate_times_out_under_dag_test_and_never_promotes(store):
    dag_run = dags.gate_deferred_timeout.test()
    listener.drain()
    # Same outcome as the poke-mode gate_timeout: soft_fail turns the timeout into a skip.
    assert states(dag_run) == {
        "train": "success",
        "register": "success",
        "gate": "skipped",
        "promote": "skipped",
    }
    (version,) = versions(store.client, "deferred_timeout_model").values()
    assert version.current_stage == "Staging"
    assert "airflow.gate.status" not in version.tags  # no verdict: it never decided
    with pytest.raises(MlflowException, match="alias champion not found"):
        champion(store.client, "deferred_timeout_model")


def test_deadline_survives_serialization():
    deadline = time.time() + 20
    trigger = MLflowMetricThresholdTrigger(
        model_name="m", thresholds={"acc": {"threshold": 0.5}}, version="1", deadline=deadline
    )
    classpath, kwargs = trigger.serialize()
    assert kwargs["deadline"] == deadline and isinstance(kwargs["deadline"], float)
    rebuilt = MLflowMetricThresholdTrigger(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)


def test_a_timeout_event_is_the_sensors_timeout():
    from airflow.sdk.exceptions import AirflowSensorTimeout

    from airflow_mlflow import MLflowMetricThresholdSensor
    from airflow_mlflow.gate import WAITING, Verdict

    sensor = MLflowMetricThresholdSensor(
        task_id="gate", model_name="m", thresholds={"acc": 0.5}, version="1", timeout=3
    )
    event = {"status": "timeout", "verdict": Verdict("m", "1", None, WAITING).to_json()}
    with pytest.raises(AirflowSensorTimeout, match="the gate waited 3.0 s without a decision"):
        sensor.execute_complete({}, event)
