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
