"""A deferrable gate times out by itself, even where nothing enforces the deferral's timeout."""

from __future__ import annotations

import time

import pytest

from airflow_mlflow.gate import GateSpec
from airflow_mlflow.plugins import listener
from airflow_mlflow.triggers.metric_threshold import MLflowMetricThresholdTrigger
from tests.assertions import assert_gate_timed_out
from tests.dags import registry as dags

pytestmark = pytest.mark.usefixtures("airflow_db")


# Before the fix ``dag.test()`` polled for as long as pytest let it: the inline trigger runner
# ignores the deferral's timeout. A generous limit, not a timing assertion: it must finish at all.
@pytest.mark.timeout(240, method="thread")  # a SIGALRM did not stop dag.test()
def test_deferrable_gate_times_out_under_dag_test_and_never_promotes(store):
    dag_run = dags.gate_deferred_timeout.test()
    listener.drain()
    # Same outcome as the poke-mode gate_timeout: soft_fail turns the timeout into a skip.
    assert_gate_timed_out(store.client, dag_run, "deferred_timeout_model")


def test_deadline_survives_serialization():
    deadline = time.time() + 20
    gate = GateSpec(model_name="m", thresholds={"acc": {"threshold": 0.5}}, version="1").to_json()
    trigger = MLflowMetricThresholdTrigger(gate=gate, deadline=deadline)
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


def test_a_waiting_gate_waits_through_an_mlflow_outage_until_its_deadline(monkeypatch):
    """An unreachable server is an outage to wait through, not a failed gate: the deadline decides."""
    import asyncio
    import json
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    extra = {"http_max_retries": 0, "http_timeout": 2}
    conn = {"conn_type": "mlflow", "host": "127.0.0.1", "port": port, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DOWN", json.dumps(conn))
    trigger = MLflowMetricThresholdTrigger(
        gate=GateSpec(model_name="m", thresholds={"acc": {"threshold": 0.5}}, version="1").to_json(),
        mlflow_conn_id="mlflow_down",
        poll_interval=0.2,
        deadline=time.time() + 2,
    )

    async def events():
        return [event.payload async for event in trigger.run()]

    assert asyncio.run(asyncio.wait_for(events(), 60)) == [{"status": "timeout", "verdict": None}]


def test_a_timeout_with_no_verdict_says_mlflow_was_unreachable():
    from airflow.sdk.exceptions import AirflowSensorTimeout

    from airflow_mlflow import MLflowMetricThresholdSensor

    sensor = MLflowMetricThresholdSensor(
        task_id="gate", model_name="m", thresholds={"acc": 0.5}, version="1", timeout=3
    )
    with pytest.raises(AirflowSensorTimeout, match="MLflow was unreachable until the deadline"):
        sensor.execute_complete({}, {"status": "timeout", "verdict": None})
