"""``MLflowHook.log_metric_history`` against a real SQLite MLflow store."""

from __future__ import annotations

import pytest

from airflow_mlflow.exceptions import MLflowInputError
from airflow_mlflow.hooks.mlflow import MLflowHook


@pytest.fixture
def hook(store) -> MLflowHook:
    return MLflowHook()


@pytest.fixture
def run_id(hook) -> str:
    exp = hook.get_or_create_experiment("history-tests")
    return hook.create_run(exp, "curve", {}, start_time=1).run_id


def history(store, run_id: str, key: str) -> list[tuple[int, float, int]]:
    points = store.client.get_metric_history(run_id, key)
    return sorted((m.step, m.value, m.timestamp) for m in points)


def test_values_and_steps_land_as_the_whole_history(hook, store, run_id):
    values = [1 / (i + 1) for i in range(2500)]
    steps = [10 * i for i in range(2500)]
    requests = hook.log_metric_history(run_id, "loss", values, steps, timestamp=1_700_000_000_000)
    assert requests == 3  # 1000 points per request
    assert history(store, run_id, "loss") == [
        (s, v, 1_700_000_000_000) for s, v in zip(steps, values, strict=True)
    ]
    assert store.client.get_run(run_id).data.metrics["loss"] == pytest.approx(1 / 2500)


def test_steps_default_to_positions(hook, store, run_id):
    assert hook.log_metric_history(run_id, "acc", [0.5, "0.75", 1]) == 1  # numeric strings, as validated
    assert [(s, v) for s, v, _ in history(store, run_id, "acc")] == [(0, 0.5), (1, 0.75), (2, 1.0)]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (float("nan"), r"metric 'loss' must be finite, got nan"),
        ("high", r"metric 'loss' must be a number, got str 'high'"),
    ],
)
def test_a_bad_value_writes_nothing_and_names_key_and_value(hook, store, run_id, bad, message):
    values = [0.1] * 1500 + [bad]  # the bad point sits in the second batch
    with pytest.raises(MLflowInputError, match=message):
        hook.log_metric_history(run_id, "loss", values)
    assert history(store, run_id, "loss") == []


def test_steps_of_another_length_are_refused(hook, store, run_id):
    with pytest.raises(MLflowInputError, match=r"metric 'loss': steps has 2 entries for 3 values"):
        hook.log_metric_history(run_id, "loss", [0.3, 0.2, 0.1], [0, 1])
    assert history(store, run_id, "loss") == []
