"""Gate semantics (MLflow's MetricThreshold), parsing errors, and the trigger."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from airflow_mlflow.exceptions import MLflowInputError
from airflow_mlflow.gate import (
    PASSED,
    REJECTED,
    WAITING,
    Gate,
    GateSpec,
    Verdict,
    decide,
    parse_thresholds,
)
from airflow_mlflow.hooks.mlflow import MLflowHook
from airflow_mlflow.triggers.metric_threshold import MLflowMetricThresholdTrigger


def verdict_of(thresholds, candidate, baseline=None):
    return decide(
        "m",
        "2",
        candidate,
        "1" if baseline is not None else None,
        baseline or {},
        parse_thresholds(thresholds),
    )


@pytest.mark.parametrize(
    ("spec", "candidate", "baseline", "status"),
    [
        ({"threshold": 0.8}, 0.8, None, PASSED),  # >= is inclusive, as in MLflow
        ({"threshold": 0.8}, 0.79, None, REJECTED),
        ({"threshold": 0.3, "greater_is_better": False}, 0.3, None, PASSED),
        ({"threshold": 0.3, "greater_is_better": False}, 0.31, None, REJECTED),
        ({"min_absolute_change": 0.05}, 0.85, 0.8, PASSED),
        ({"min_absolute_change": 0.05}, 0.84, 0.8, REJECTED),
        ({"min_absolute_change": 0.05, "greater_is_better": False}, 0.25, 0.3, PASSED),
        ({"min_absolute_change": 0.05, "greater_is_better": False}, 0.26, 0.3, REJECTED),
        ({"min_relative_change": 0.1}, 0.88, 0.8, PASSED),
        ({"min_relative_change": 0.1}, 0.87, 0.8, REJECTED),
        ({"min_relative_change": 0.5}, -0.3, -0.6, PASSED),  # |baseline|: right direction below zero
        ({"min_relative_change": 0.5}, -0.31, -0.6, REJECTED),
        ({"min_relative_change": 0.1}, 0.0, 0.0, REJECTED),  # zero baseline: must beat it by 1e-10
        ({"min_relative_change": 0.1}, 1e-9, 0.0, PASSED),
        ({"min_relative_change": 0.1}, 0.1, None, PASSED),  # first model: relative checks do not apply
        ({"threshold": 0.5, "min_absolute_change": 0.1}, 0.55, None, PASSED),
        ({"threshold": 0.5, "min_absolute_change": 0.1}, 0.55, 0.5, REJECTED),
    ],
)
def test_metric_threshold_semantics(spec, candidate, baseline, status):
    verdict = verdict_of({"acc": spec}, {"acc": candidate}, None if baseline is None else {"acc": baseline})
    assert verdict.status == status, verdict.report()


def test_missing_metric_waits_but_a_definitive_miss_decides_at_once():
    thresholds = {"acc": {"threshold": 0.5}, "f1": {"threshold": 0.5}}
    assert verdict_of(thresholds, {"acc": 0.9}).status == WAITING
    assert verdict_of(thresholds, {"acc": 0.1}).status == REJECTED
    assert verdict_of(thresholds, {"acc": 0.9, "f1": 0.6}).status == PASSED


def test_baseline_without_the_metric_leaves_only_the_absolute_threshold():
    verdict = verdict_of(
        {"acc": {"threshold": 0.5, "min_absolute_change": 0.1}}, {"acc": 0.6}, {"other": 1.0}
    )
    assert verdict.status == PASSED
    assert verdict.checks[0].line() == "acc: candidate 0.6, required >= 0.5, baseline n/a -> passed"


def test_report_names_every_metric_with_its_numbers():
    verdict = verdict_of(
        {
            "acc": {"threshold": 0.9},
            "loss": {"threshold": 0.2, "greater_is_better": False, "min_absolute_change": 0.01},
        },
        {"acc": 0.85, "loss": 0.1},
        {"acc": 0.8, "loss": 0.105},
    )
    assert verdict.report().splitlines() == [
        "Gate for model 'm' version 2 against baseline 1: REJECTED",
        "  acc: candidate 0.85, required >= 0.9, baseline 0.8 -> rejected",
        "  loss: candidate 0.1, required <= 0.2 and <= baseline-0.01, baseline 0.105 -> rejected",
    ]
    assert Verdict.from_json(verdict.to_json()) == verdict


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        ({}, "thresholds must be a non-empty mapping"),
        ({"acc": "high"}, "thresholds['acc'] must be a mapping"),
        ({"acc": {"treshold": 0.5}}, "unknown field(s) ['treshold']"),
        ({"acc": {"threshold": "0.5"}}, "thresholds['acc'].threshold must be a number, got '0.5'"),
        ({"acc": {"threshold": 1, "greater_is_better": "yes"}}, "greater_is_better must be true or false"),
        ({"acc": {"min_absolute_change": 0}}, "min_absolute_change must be positive, got 0.0"),
        ({"acc": {"min_relative_change": 1.5}}, "min_relative_change must be between 0 and 1, got 1.5"),
        ({"acc": {"greater_is_better": True}}, "sets none of threshold, min_absolute_change"),
    ],
)
def test_bad_thresholds_name_the_metric_and_field(thresholds, message):
    with pytest.raises(MLflowInputError) as err:
        parse_thresholds(thresholds)
    assert message in str(err.value)


def test_malformed_verdict_is_refused():
    with pytest.raises(MLflowInputError, match="malformed gate verdict"):
        Verdict.from_json({"status": "passed"})


GATE = {
    "model_name": "m",
    "thresholds": {"acc": {"threshold": 0.5}},
    "version": "1",
    "alias": None,
    "stage": None,
    "baseline": "champion",
}
TRIGGER_KWARGS = {
    "gate": GATE,
    "mlflow_conn_id": "mlflow_default",
    "poll_interval": 0.1,
    "deadline": None,
}


def test_trigger_serializes_to_what_it_was_built_from():
    path, kwargs = MLflowMetricThresholdTrigger(**TRIGGER_KWARGS).serialize()
    assert path == "airflow_mlflow.triggers.metric_threshold.MLflowMetricThresholdTrigger"
    assert kwargs == TRIGGER_KWARGS
    assert MLflowMetricThresholdTrigger(**kwargs).serialize() == (path, kwargs)


def first_event(trigger):
    async def go():
        return await asyncio.wait_for(trigger.run().__anext__(), timeout=30)

    return asyncio.run(go())


def test_trigger_yields_one_final_verdict_from_a_real_store(store):
    hook = MLflowHook()
    exp = hook.get_or_create_experiment("trigger")
    run = store.client.create_run(exp)
    store.client.log_metric(run.info.run_id, "acc", 0.7)
    store.client.create_registered_model("m")
    store.client.create_model_version("m", "file:///tmp/model", run_id=run.info.run_id)
    event = first_event(MLflowMetricThresholdTrigger(**TRIGGER_KWARGS))
    assert event.payload["status"] == "done"
    assert Verdict.from_json(event.payload["verdict"]).status == PASSED


def test_trigger_reports_errors_as_an_event(store):
    event = first_event(
        MLflowMetricThresholdTrigger(**{**TRIGGER_KWARGS, "gate": {**GATE, "model_name": "missing"}})
    )
    assert event.payload["status"] == "error"
    assert "model 'missing' version 1" in event.payload["message"]


# -- what a poll reads ---------------------------------------------------------------------------

#: MlflowClient calls that each make one request to a tracking server.
READS = (
    "get_model_version",
    "get_model_version_by_alias",
    "search_model_versions",
    "get_run",
    "get_logged_model",
)


class CountingHook(MLflowHook):
    """The real hook, counting the client calls a poll makes (each is one request on a server)."""

    def __init__(self):
        super().__init__()
        self.reads: list[str] = []
        for name in READS:
            real = getattr(self.client, name)
            setattr(self.client, name, self._counted(name, real))

    def _counted(self, name, real):
        def call(*args, **kwargs):
            self.reads.append(name)
            return real(*args, **kwargs)

        return call

    def poll(self, gate):
        self.reads = []
        return gate.poll(), self.reads


@pytest.fixture
def models(store):
    """Model ``m``: version 1 (accuracy 0.8) behind ``champion``; version 2's run has no metrics yet."""
    client = store.client
    exp = client.create_experiment("gate-polls")
    client.create_registered_model("m")
    runs = []
    for version in ("1", "2"):
        run = client.create_run(exp)
        runs.append(run.info.run_id)
        client.create_model_version("m", f"file:///tmp/{version}", run_id=run.info.run_id)
    client.log_metric(runs[0], "accuracy", 0.8)
    client.log_metric(runs[0], "f1", 0.7)
    client.set_registered_model_alias("m", "champion", "1")
    return SimpleNamespace(client=client, champion_run=runs[0], candidate_run=runs[1])


def same_decision(verdict, thresholds, **gate):
    """The verdict a fresh, one-shot evaluation reaches (evaluated_at aside)."""
    fresh = Gate(MLflowHook(), GateSpec(model_name="m", thresholds=thresholds, **gate)).poll()
    return verdict.to_json() | {"evaluated_at": 0} == fresh.to_json() | {"evaluated_at": 0}


def test_a_waiting_pinned_gate_reads_only_the_candidates_run(models):
    thresholds = {"accuracy": {"threshold": 0.5, "min_absolute_change": 0.05}}
    hook = CountingHook()
    gate = Gate(hook, GateSpec(model_name="m", thresholds=thresholds, version="2"))
    verdict, reads = hook.poll(gate)
    assert (verdict.status, reads) == (WAITING, ["get_model_version", "get_run"])
    assert verdict.baseline_version is None
    assert "the baseline's bounds (read once every metric is logged)" in verdict.checks[0].required
    verdict, reads = hook.poll(gate)
    assert (verdict.status, reads) == (WAITING, ["get_run"])  # one request per poll while waiting

    models.client.log_metric(models.candidate_run, "accuracy", 0.9)
    verdict, reads = hook.poll(gate)
    assert (verdict.status, verdict.baseline_version) == (PASSED, "1")
    assert reads == ["get_run", "get_model_version_by_alias", "get_run"]
    assert same_decision(verdict, thresholds, version="2")


def test_a_logged_metric_held_against_the_baseline_still_rejects_at_once(models):
    thresholds = {"accuracy": {"min_absolute_change": 0.05}, "f1": {"threshold": 0.5}}
    models.client.log_metric(models.candidate_run, "accuracy", 0.82)  # f1 not logged yet
    hook = CountingHook()
    verdict, reads = hook.poll(Gate(hook, GateSpec(model_name="m", thresholds=thresholds, version="2")))
    assert verdict.status == REJECTED  # 0.82 < champion 0.8 + 0.05, whatever f1 turns out to be
    assert "get_model_version_by_alias" in reads
    assert same_decision(verdict, thresholds, version="2")


def test_a_logged_metric_under_an_absolute_threshold_waits_without_the_baseline(models):
    thresholds = {"accuracy": {"threshold": 0.5}, "f1": {"min_relative_change": 0.1}}
    models.client.log_metric(models.candidate_run, "accuracy", 0.9)  # f1 not logged yet
    hook = CountingHook()
    verdict, reads = hook.poll(Gate(hook, GateSpec(model_name="m", thresholds=thresholds, version="2")))
    assert (verdict.status, reads) == (WAITING, ["get_model_version", "get_run"])
    models.client.log_metric(models.candidate_run, "f1", 0.7)  # not 10% above the champion's 0.7
    verdict = Gate(MLflowHook(), GateSpec(model_name="m", thresholds=thresholds, version="2")).poll()
    assert (verdict.status, verdict.baseline_version) == (REJECTED, "1")


def test_a_candidate_behind_an_alias_is_looked_up_on_every_poll(models):
    thresholds = {"accuracy": {"threshold": 0.5}}
    models.client.set_registered_model_alias("m", "challenger", "2")
    hook = CountingHook()
    gate = Gate(hook, GateSpec(model_name="m", thresholds=thresholds, alias="challenger", baseline=None))
    assert hook.poll(gate)[0].status == WAITING
    models.client.set_registered_model_alias("m", "challenger", "1")  # the alias moves while waiting
    verdict, reads = hook.poll(gate)
    assert (verdict.status, verdict.candidate_version) == (PASSED, "1")
    assert reads == ["get_model_version_by_alias", "get_run"]


# -- the gate spec: written once, carried across the deferral -------------------------------------


def test_a_spec_parses_its_thresholds_and_round_trips_through_json():
    spec = GateSpec(
        model_name="m", thresholds={"acc": 0.5, "loss": {"threshold": 0.3, "greater_is_better": False}}
    )
    assert spec.thresholds["acc"].threshold == 0.5 and spec.thresholds["loss"].greater_is_better is False
    assert spec.to_json()["thresholds"] == {
        "acc": {"threshold": 0.5},
        "loss": {"threshold": 0.3, "greater_is_better": False},
    }
    assert GateSpec.from_json(spec.to_json()) == spec
    assert GateSpec(model_name="m", thresholds=spec.thresholds, version=2).version == "2"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"model_name": "m", "thresholds": {"acc": 0.5}, "color": "red"}, "malformed gate spec"),
        ({"thresholds": {"acc": 0.5}}, "malformed gate spec"),
        ({"model_name": "m", "thresholds": {"acc": "high"}}, "thresholds['acc'] must be a mapping"),
    ],
)
def test_a_malformed_spec_is_refused(data, message):
    with pytest.raises(MLflowInputError) as err:
        GateSpec.from_json(data)
    assert message in str(err.value)


def test_the_sensor_defers_with_the_spec_it_pokes_with(models):
    from airflow.sdk.exceptions import TaskDeferred

    from airflow_mlflow.sensors.metric_threshold import MLflowMetricThresholdSensor

    sensor = MLflowMetricThresholdSensor(
        task_id="gate", model_name="m", thresholds={"accuracy": 0.5}, version=2, deferrable=True, timeout=60
    )
    ti = SimpleNamespace(xcom_push=lambda key, value: None)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({"ti": ti})
    trigger = deferred.value.trigger
    assert (
        trigger.gate
        == sensor.gate_spec
        == GateSpec(model_name="m", thresholds={"accuracy": 0.5}, version="2")
    )
    assert trigger.serialize()[1]["gate"] == sensor.gate_spec.to_json()
