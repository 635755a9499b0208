"""The example pipeline (``dags_examples/``) on a real Airflow deployment, as shipped.

``retrain_model`` is triggered through the REST API for three days. Its ``@daily`` schedule is a
cron *trigger* timetable in Airflow 3, so a run with logical date D has the data interval [D, D]
and trains on day D's window, with that day's label noise (``LABEL_NOISE`` cycles from
2026-11-01: 0.03, 0.25, 0.0, 0.08). ``evaluate`` scores the candidate and the champion on the
shared holdout; the gate wants ``accuracy_score >= 0.85`` there and +0.005 over the champion's.
With the default params (C=1.0) that makes:

* 2026-11-01: version 1, no champion yet: passes, promoted;
* 2026-11-02: version 2, a quarter of the labels flipped: rejected (soft fail: gate and promotion
  skipped, the run succeeds);
* 2026-11-04: version 3, *worse* than version 1 on its own day's test split (a gate on each run's
  own metrics would reject it), better on the holdout: promoted; version 1 archived.

Each promotion emits an event on ``model_asset(MODEL, alias="champion")``, on which
``score_batch`` is scheduled: it must run because of those events, and log what it scored.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from tests.assertions import artifact_text, assert_logged_sklearn_model
from tests.e2e._airflow import ROOT, TERMINAL_STATES, wait_for

DAG_ID = "retrain_model"
SCORER = "score_batch"
MODEL = "breast_cancer_classifier"
DAYS = ("2026-11-01", "2026-11-02", "2026-11-04")
NOISE = {"2026-11-01": "0.03", "2026-11-02": "0.25", "2026-11-04": "0.08"}
VERDICT = {"2026-11-01": "passed", "2026-11-02": "rejected", "2026-11-04": "passed"}
PROMOTED = ("2026-11-01", "2026-11-04")
ACCURACY_GATE = (0.85, 0.005)  # threshold, min_absolute_change over the champion (on the holdout)
RUN_TIMEOUT = 240
SCORE_TIMEOUT = 180


# ---------------------------------------------------------------------- helpers


def drop_todays_scheduled_run(stack) -> None:
    """Delete the run the scheduler creates when ``retrain_model`` is unpaused.

    ``@daily`` with ``catchup=False`` makes Airflow schedule the latest cron tick (today, 00:00
    UTC) as soon as the DAG is unpaused: a deployment trains on today's window at once. The runs
    under test were queued before and start first (queued runs of a DAG start in ``run_after``
    order, one at a time here), so it is still queued; deleting it keeps the registry to the
    three days under test. (The dag-processor parses each file once per session, see
    ``_airflow.py``, so nothing flips the DAG's "max active runs reached" flag between our
    triggers and the unpause, which would postpone this run until after ours.)
    """
    scheduled = wait_for(
        "the scheduler to create today's scheduled run",
        lambda: stack.dag_runs(DAG_ID, run_type="scheduled"),
        60,
        0.5,
    )
    for run in scheduled:
        assert run["state"] == "queued", f"today's scheduled run did not wait behind ours: {run}"
        stack.api("DELETE", f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}", ok=(204,))


def when(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


def task_run(client, experiment_id: str, dag_run_id: str, task_id: str):
    """The one MLflow run of a task instance of a DAG run."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`airflow.run_id` = '{dag_run_id}' and tags.`airflow.task_id` = '{task_id}'",
    )
    assert len(runs) == 1, [(r.info.run_name, r.info.status) for r in runs]
    return runs[0]


def promotion_events(stack) -> list[dict]:
    """Asset events emitted by ``retrain_model``'s promote task, each with the runs it created."""
    params = {"source_dag_id": DAG_ID, "source_task_id": "promote", "limit": 100}
    return stack.api("GET", "/assets/events", params=params)["asset_events"]


def run_retraining(stack) -> dict[str, str]:
    """Trigger the three days, let them run one after another; run id by day."""
    stack.unpause(SCORER)  # first: a paused consumer gets no run queued by an asset event
    stack.wait_for_dag(DAG_ID)
    # Queued while the DAG is paused, each with run_after = its logical date: they start in day
    # order, one at a time (max_active_runs=1).
    run_ids = {}
    for day in DAYS:
        at = f"{day}T00:00:00Z"
        run_ids[day] = stack.trigger(DAG_ID, logical_date=at, run_after=at, unpause=False)
    stack.unpause(DAG_ID)
    drop_todays_scheduled_run(stack)

    gate_states: dict[str, set[str]] = {day: set() for day in DAYS}
    for day, run_id in run_ids.items():

        def on_poll(tis: list[dict], seen: set[str] = gate_states[day]) -> None:
            seen.update(t["state"] for t in tis if t["task_id"] == "gate" and t["state"])

        state = stack.wait(DAG_ID, run_id, timeout=RUN_TIMEOUT, on_poll=on_poll, interval=0.5)
        assert state == "success", stack.describe_failure(DAG_ID, run_id)

    runs = {day: stack.dag_run(DAG_ID, run_id) for day, run_id in run_ids.items()}
    for day, run in runs.items():
        assert run["run_type"] == "manual"
        assert run["data_interval_start"].startswith(day) and run["data_interval_end"].startswith(day)
    for earlier, later in zip(DAYS, DAYS[1:], strict=False):
        assert when(runs[later]["start_date"]) >= when(runs[earlier]["end_date"]), "the runs overlapped"
    assert stack.dag_runs(DAG_ID, run_type="scheduled") == []

    for n, (day, run_id) in enumerate(run_ids.items(), start=1):
        tis = {t["task_id"]: t for t in stack.task_instances(DAG_ID, run_id)}
        promoted = "success" if VERDICT[day] == "passed" else "skipped"
        assert {k: t["state"] for k, t in tis.items()} == {
            "train": "success",
            "register": "success",
            "evaluate": "success",
            "gate": promoted,
            "serve": promoted,
            "approve": promoted,  # require_approval is off: it records nothing and lets promote run
            "promote": promoted,
        }, stack.describe_failure(DAG_ID, run_id)
        # train logs the metrics before register runs, so the deferrable gate can decide at its
        # first check, in the worker, and does: it defers only while it must wait (see
        # test_gate_e2e for the triggerer). One try, never deferred.
        assert "deferred" not in gate_states[day], gate_states[day]
        assert tis["gate"]["try_number"] == 1
        gate_log = stack.task_log(DAG_ID, run_id, "gate", 1)
        assert "Pausing task as DEFERRED" not in gate_log
        assert f"Gate for model '{MODEL}' version {n} against baseline" in gate_log
        assert f": {VERDICT[day].upper()}" in gate_log
    return run_ids


def assert_training_runs(stack, client, run_ids: dict[str, str]) -> dict:
    """Each day's train run: params, metrics, evaluation artifacts, and its logged model."""
    experiment = client.get_experiment_by_name(DAG_ID)
    assert experiment is not None
    trained = {}
    for day, run_id in run_ids.items():
        run = task_run(client, experiment.experiment_id, run_id, "train")
        assert run.info.status == "FINISHED"
        assert run.data.params == {
            "C": "1.0",
            "max_iter": "1000",
            "model": "logistic_regression",
            "window_start": f"{day}T00:00:00+00:00",
            "rows": "320",
            "label_noise": NOISE[day],
        }
        assert set(run.data.metrics) == {"accuracy", "f1", "roc_auc"}
        assert all(0.0 < v <= 1.0 for v in run.data.metrics.values()), run.data.metrics
        evaluation = {f.path for f in client.list_artifacts(run.info.run_id, "evaluation")}
        assert evaluation == {"evaluation/confusion_matrix.png", "evaluation/metrics.json"}
        metrics_uri = f"{run.info.artifact_uri}/evaluation/metrics.json"
        table = json.loads(artifact_text(stack.mlflow_tracking_uri, metrics_uri))
        assert [row[0] for row in table["data"]] == ["accuracy", "f1", "roc_auc"]

        # The MLflow 3 logged model of this run, with its signature and input example.
        logged = assert_logged_sklearn_model(
            client, stack.mlflow_tracking_uri, experiment.experiment_id, run.info.run_id
        )
        trained[day] = (run, logged)
    return trained


def assert_registry(client, run_ids: dict[str, str], trained: dict) -> None:
    """Versions 1..3 with their stages, the champion alias, gate verdicts and promotion records."""
    own = {day: run.data.metrics["accuracy"] for day, (run, _) in trained.items()}
    records = {
        n: json.loads(client.get_model_version(MODEL, str(n)).tags["airflow.eval.result"]) for n in (1, 2, 3)
    }
    holdout = {day: records[n]["metrics"]["accuracy_score"] for n, day in enumerate(DAYS, start=1)}
    assert len({r["dataset"]["digest"] for r in records.values()}) == 1  # one holdout for all
    assert {r["dataset"]["name"] for r in records.values()} == {"holdout"}
    threshold, margin = ACCURACY_GATE
    first, second, third = (holdout[d] for d in DAYS)
    # The verdicts follow from the holdout numbers (bounds are inclusive) ...
    assert first >= threshold
    assert second < threshold or second < first + margin
    assert third >= threshold and third >= first + margin
    # ... and not from each day's own split, on which version 3 looks worse than version 1.
    assert own[DAYS[2]] < own[DAYS[0]]

    versions = {int(v.version): v for v in client.search_model_versions(f"name = '{MODEL}'")}
    assert {n: v.current_stage for n, v in versions.items()} == {1: "Archived", 2: "Staging", 3: "Production"}
    # str(): the SQL store hands back versions as ints, the REST client as strings.
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "3"
    for n, day in enumerate(DAYS, start=1):
        run, logged = trained[day]
        version = client.get_model_version(MODEL, str(n))
        tags = version.tags
        assert version.run_id == run.info.run_id
        assert version.source == f"models:/{logged.model_id}"
        assert tags["airflow.run_id"] == run_ids[day] and tags["airflow.task_id"] == "register"
        assert tags["airflow.gate.status"] == VERDICT[day]
        assert tags["airflow.gate.dag_run"] == f"{DAG_ID}/{run_ids[day]}"
        # Version 2 was rejected, so the champion version 3 was measured against is still 1.
        assert tags["airflow.gate.baseline_version"] == ("none" if n == 1 else "1")
        required = f">= {threshold:g}" + ("" if n == 1 else f" and >= baseline+{margin:g}")
        baseline = "n/a" if n == 1 else f"{first:.6g}"
        assert tags["airflow.gate.metric.accuracy_score"] == (
            f"accuracy_score: candidate {holdout[day]:.6g}, required {required}, "
            f"baseline {baseline} -> {VERDICT[day]}"
        )
        if day in PROMOTED:
            assert tags["airflow.serving.status"] == "passed" and float(tags["airflow.serving.p95_ms"]) < 500
            assert tags["airflow.promotion.previous_version"] == ("none" if n == 1 else "1")
            assert tags["airflow.promotion.dag_run"] == f"{DAG_ID}/{run_ids[day]}"
            assert tags["airflow.promotion.gate"] == "passed"
        else:
            assert not [k for k in tags if k.startswith(("airflow.promotion.", "airflow.serving."))], tags

    history = json.loads(client.get_registered_model(MODEL).tags["airflow.champion_history"])
    keys = ("seq", "action", "version", "previous", "dag_run", "gate")
    assert [{k: entry.get(k) for k in keys} for entry in history] == [
        dict(zip(keys, (0, "promote", "1", None, f"{DAG_ID}/{run_ids[DAYS[0]]}", "passed"), strict=True)),
        dict(zip(keys, (1, "promote", "3", "1", f"{DAG_ID}/{run_ids[DAYS[2]]}", "passed"), strict=True)),
    ]


def assert_scoring(stack, client, run_ids: dict[str, str]) -> None:
    """score_batch ran because of the promotion events, consumed each once, and logged its batch."""
    promotions = promotion_events(stack)
    assert sorted(
        (e["source_run_id"], e["extra"]["version"], e["extra"]["previous_version"]) for e in promotions
    ) == [
        (run_ids[DAYS[0]], "1", None),
        (run_ids[DAYS[2]], "3", "1"),
    ]
    assert {e["uri"] for e in promotions} == {f"mlflow-model://mlflow_default/{MODEL}/alias/champion"}

    def finished_runs() -> list[dict] | None:
        runs = stack.dag_runs(SCORER)
        consumed = all(e["created_dagruns"] for e in promotion_events(stack))
        return runs if consumed and runs and all(r["state"] in TERMINAL_STATES for r in runs) else None

    scoring = wait_for("score_batch to run for every promotion", finished_runs, SCORE_TIMEOUT)
    # The promotions are tens of seconds apart, so each gets its own run here. The scheduler may
    # fold events that arrive close together into one run, so what must hold is that every event
    # was consumed, each by exactly one run.
    assert 1 <= len(scoring) <= len(promotions)
    consumer: dict[int, str] = {}
    scored_version: dict[str, str] = {}
    for run in scoring:
        assert run["run_type"] == "asset_triggered", run
        assert run["state"] == "success", stack.describe_failure(SCORER, run["dag_run_id"])
        upstream = stack.api("GET", f"/dags/{SCORER}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents")
        events = upstream["asset_events"]
        assert events, run
        for event in events:
            assert event["id"] not in consumer, f"event {event['id']} consumed twice"
            consumer[event["id"]] = run["dag_run_id"]
        # score_batch records the version of the newest event it was triggered by.
        scored_version[run["dag_run_id"]] = max(events, key=lambda e: e["id"])["extra"]["version"]
    assert set(consumer) == {e["id"] for e in promotions}
    for event in promotions:
        assert [r["run_id"] for r in event["created_dagruns"]] == [consumer[event["id"]]]

    experiment = client.get_experiment_by_name(SCORER)
    assert experiment is not None
    for dag_run_id, version in scored_version.items():
        score = task_run(client, experiment.experiment_id, dag_run_id, "score")
        assert score.info.status == "FINISHED"
        assert score.data.params == {"model_name": MODEL, "model_version": version}
        assert score.data.metrics["rows_scored"] == 200.0
        assert 0.0 < score.data.metrics["positive_rate"] < 1.0
        files = [f.path for f in client.list_artifacts(score.info.run_id, "predictions")]
        assert files == ["predictions/predictions.csv"]
        predictions_uri = f"{score.info.artifact_uri}/predictions/predictions.csv"
        csv = artifact_text(stack.mlflow_tracking_uri, predictions_uri).splitlines()
        assert csv[0].startswith("mean radius,") and csv[0].endswith(",prediction")
        assert len(csv) == 201


# ---------------------------------------------------------------------- tests


def test_example_dags_are_served_through_the_symlinked_folder(airflow_stack):
    """The example folder is linked into the DAGs folder: its DAGs parse, its script adds none."""
    for dag_id in (DAG_ID, SCORER, "tracked_training"):
        airflow_stack.wait_for_dag(dag_id)
        fileloc = Path(airflow_stack.api("GET", f"/dags/{dag_id}/details")["fileloc"])
        assert fileloc.parent == airflow_stack.dags_folder / "examples"
        assert fileloc.resolve() == ROOT / "dags_examples" / fileloc.name  # the shipped file itself
    assert airflow_stack.api("GET", "/importErrors")["import_errors"] == []
    dags = airflow_stack.api("GET", "/dags", params={"limit": 100})["dags"]
    assert "demo.py" not in {Path(d["fileloc"]).name for d in dags}  # a script: it defines no DAG


def test_retraining_promotes_twice_and_each_promotion_schedules_scoring(airflow_stack):
    run_ids = run_retraining(airflow_stack)
    client = airflow_stack.mlflow_client()
    trained = assert_training_runs(airflow_stack, client, run_ids)
    assert_registry(client, run_ids, trained)
    assert_scoring(airflow_stack, client, run_ids)
