"""The gate's modules before the rename stay importable: a deferred task stores its trigger's path."""

from __future__ import annotations

import importlib
import sys

import pytest

from airflow_mlflow.gate import GateSpec
from airflow_mlflow.sensors.metric_threshold import MLflowMetricThresholdSensor
from airflow_mlflow.triggers.metric_threshold import MLflowMetricThresholdTrigger

#: What a gate that deferred before the gate spec stored with its task (the path and kwargs of then).
LEGACY = (
    "airflow_mlflow.triggers.registry.MLflowMetricThresholdTrigger",
    {
        "model_name": "m",
        "thresholds": {"acc": {"threshold": 0.5, "greater_is_better": True}},
        "version": "1",
        "alias": None,
        "stage": None,
        "baseline": "champion",
        "mlflow_conn_id": "mlflow_default",
        "poll_interval": 0.1,
        "deadline": 123.0,
    },
)


def test_the_old_sensor_module_warns_and_re_exports_the_sensor():
    name = "airflow_mlflow.sensors.registry"
    sys.modules.pop(name, None)
    with pytest.warns(DeprecationWarning, match=f"{name} is deprecated"):
        module = importlib.import_module(name)
    assert module.MLflowMetricThresholdSensor is MLflowMetricThresholdSensor


def test_a_trigger_deferred_before_the_upgrade_resumes_with_its_stored_kwargs():
    from airflow._shared.module_loading import import_string  # as the triggerer loads a trigger

    path, kwargs = LEGACY
    cls = import_string(path)
    assert issubclass(cls, MLflowMetricThresholdTrigger)  # importing it does not warn: using it does
    with pytest.warns(DeprecationWarning, match="triggers.registry is deprecated"):
        trigger = cls(**kwargs)
    assert trigger.gate == GateSpec(
        model_name="m", thresholds={"acc": {"threshold": 0.5}}, version="1", baseline="champion"
    )
    assert (trigger.mlflow_conn_id, trigger.poll_interval, trigger.deadline) == ("mlflow_default", 0.1, 123.0)
    # Serialized again, it carries the spec; the old path takes that form too.
    again_path, again = trigger.serialize()
    assert again["gate"] == trigger.gate.to_json()
    with pytest.warns(DeprecationWarning):
        assert import_string(again_path)(**again).serialize() == (again_path, again)
