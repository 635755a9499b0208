"""People and registry events in promotion (issue 14), on the real stack, after the retraining days.

Starts where ``test_retrain_e2e`` / ``test_ui_e2e`` leave the registry (v1 archived, v2 rejected,
v3 champion; this module runs the days itself otherwise), then:

1. someone moves ``@champion`` back to version 1 with a plain ``MlflowClient`` call: the
   triggerer's poll watcher on ``score_batch``'s asset sees it and ``score_batch`` runs on
   version 1, exactly once, within two poll intervals (plus the scheduler's pick-up);
2. ``retrain_model`` runs with ``require_approval``: 2026-11-05 (holdout accuracy 0.983 against
   version 1's 0.958: passes the gate) waits for a person, who rejects it through the REST API:
   the promotion is skipped, the run succeeds; 2026-11-07 (0.992) is approved: promoted over
   version 1. The
   watcher does not announce the provider's own promotion a second time. The model page shows
   both decisions in a browser.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e._airflow import wait_for
from tests.e2e.test_retrain_e2e import DAG_ID, MODEL, SCORER, task_run

CHAMPION_URI = f"mlflow-model://mlflow_default/{MODEL}/alias/champion"
POLL_INTERVAL = 15  # dags_examples/score_batch.py
#: The scheduler's pick-up of an asset event and the task's start, on two busy cores.
SCHEDULING_SLACK = 45
REJECTED_DAY, APPROVED_DAY = "2026-11-05", "2026-11-07"


def champion_events(stack) -> list[dict]:
    events = stack.api("GET", "/assets/events", params={"limit": 100})["asset_events"]
    return sorted((e for e in events if e["uri"] == CHAMPION_URI), key=lambda e: e["id"])


def watcher_events(stack) -> list[dict]:
    return [e for e in champion_events(stack) if (e.get("extra") or {}).get("from_trigger")]


def scored_version(stack, client, dag_run_id: str) -> str:
    experiment = client.get_experiment_by_name(SCORER)
    return task_run(client, experiment.experiment_id, dag_run_id, "score").data.params["model_version"]


def approval_run(stack, day: str) -> str:
    """Trigger one day with the approval step on; the run id once its approval waits."""
    at = f"{day}T00:00:00Z"
    run_id = stack.trigger(DAG_ID, conf={"require_approval": True}, logical_date=at, run_after=at)

    def waiting() -> bool:
        states = {t["task_id"]: t["state"] for t in stack.task_instances(DAG_ID, run_id)}
        if states.get("gate") == "skipped" or stack.dag_run(DAG_ID, run_id)["state"] == "failed":
            raise AssertionError(stack.describe_failure(DAG_ID, run_id))
        return states.get("approve") == "awaiting_input"

    wait_for(f"{day}'s approval to wait for a person", waiting, 240, 1)
    # Airflow 3.3.2 fails a task resumed within about five seconds of parking it ("finished with
    # state success, but the task instance's state attribute is queued", apache/airflow#67287).
    # A person takes longer than that; this test answers at once, so it waits as one would.
    time.sleep(6)
    return run_id


def respond(stack, run_id: str, option: str, comment: str) -> dict:
    path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails"
    body = {"chosen_options": [option], "params_input": {"comment": comment}}
    return stack.api("PATCH", path, json=body)


def test_a_champion_moved_by_hand_runs_scoring_once_through_the_watcher(airflow_stack, retrained):
    stack, client = airflow_stack, airflow_stack.mlflow_client()
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "3"
    (asset,) = stack.watch_assets(SCORER, [CHAMPION_URI])
    # The watcher's first poll records what it sees (no event); only then is a move a change.
    wait_for(
        "the watcher's first poll",
        lambda: stack.api("GET", f"/assets/{asset['id']}/state-store")["total_entries"],
        2 * POLL_INTERVAL,
    )
    scoring_before = {r["dag_run_id"] for r in stack.dag_runs(SCORER)}
    assert watcher_events(stack) == []

    client.set_registered_model_alias(MODEL, "champion", "1")
    moved = time.monotonic()

    def new_scoring_run() -> list[dict]:
        runs = [r for r in stack.dag_runs(SCORER) if r["dag_run_id"] not in scoring_before]
        return runs if runs and all(r["state"] in ("success", "failed") for r in runs) else []

    (run,) = wait_for(
        "score_batch to run on the moved champion", new_scoring_run, 2 * POLL_INTERVAL + SCHEDULING_SLACK
    )
    elapsed = time.monotonic() - moved
    assert run["state"] == "success", stack.describe_failure(SCORER, run["dag_run_id"])
    assert run["run_type"] == "asset_triggered"
    assert scored_version(stack, client, run["dag_run_id"]) == "1"

    (event,) = watcher_events(stack)
    payload = event["extra"]["payload"]
    assert {k: payload[k] for k in ("change", "name", "version", "previous_version", "alias", "via")} == {
        "change": "alias_set",
        "name": MODEL,
        "version": "1",
        "previous_version": "3",
        "alias": "champion",
        "via": "poll",
    }
    assert [r["run_id"] for r in event["created_dagruns"]] == [run["dag_run_id"]]
    # Exactly once: later polls see no change.
    time.sleep(max(0.0, 2 * POLL_INTERVAL - (time.monotonic() - moved)) + 2)
    assert len(watcher_events(stack)) == 1
    assert [r for r in stack.dag_runs(SCORER) if r["dag_run_id"] not in scoring_before] == [run]
    print(f"champion moved by hand -> score_batch finished {elapsed:.0f} s later")


@pytest.mark.stack_modes("server")  # the decision is tags through the hook: the same on either store
def test_a_person_rejects_then_approves_before_promotion(airflow_stack, retrained, session):
    stack, client = airflow_stack, airflow_stack.mlflow_client()
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"  # moved by hand above
    first_version = max(int(v.version) for v in client.search_model_versions(f"name = '{MODEL}'")) + 1

    rejected = approval_run(stack, REJECTED_DAY)
    detail = stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{rejected}/taskInstances/approve/-1/hitlDetails")
    body = detail["body"]
    assert f"### {MODEL}: version {first_version} → `@champion` and `Production`?" in body
    assert f"against version 1 ({DAG_ID}/{rejected})" in body
    assert f"| metric | candidate v{first_version} | champion v1 | required | verdict |" in body
    # The numbers the gate compared: both versions evaluated on the holdout, not each run's own.
    assert "| accuracy_score | 0.983333 | 0.958333 | >= 0.85 and >= baseline+0.005 | **passed** |" in body
    assert "evaluated on dataset `holdout`" in body
    assert detail["options"] == ["Approve", "Reject"] and detail["defaults"] == ["Reject"]
    answered = respond(stack, rejected, "Reject", "drift on the 5th <b>not</b> explained")
    assert answered["responded_by"]["name"] == "admin"
    assert stack.wait(DAG_ID, rejected, timeout=120) == "success", stack.describe_failure(DAG_ID, rejected)
    states = {t["task_id"]: t["state"] for t in stack.task_instances(DAG_ID, rejected)}
    assert states == {
        "train": "success",
        "register": "success",
        "evaluate": "success",
        "gate": "success",
        "serve": "success",
        "approve": "success",
        "promote": "skipped",
    }
    tags = client.get_model_version(MODEL, str(first_version)).tags
    assert tags["airflow.approval.status"] == "rejected" and tags["airflow.approval.by"] == "admin"
    assert tags["airflow.approval.comment"] == "drift on the 5th <b>not</b> explained"
    assert tags["airflow.approval.dag_run"] == f"{DAG_ID}/{rejected}"
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"

    promotions_before = len(champion_events(stack))
    approved = approval_run(stack, APPROVED_DAY)
    respond(stack, approved, "Approve", "checked the holdout")
    assert stack.wait(DAG_ID, approved, timeout=120) == "success", stack.describe_failure(DAG_ID, approved)
    second_version = str(first_version + 1)
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == second_version
    version = client.get_model_version(MODEL, second_version)
    assert version.current_stage == "Production"
    assert (version.tags["airflow.approval.status"], version.tags["airflow.approval.by"]) == (
        "approved",
        "admin",
    )
    import json

    latest = json.loads(client.get_registered_model(MODEL).tags["airflow.champion_history"])[-1]
    assert (latest["version"], latest["previous"]) == (second_version, "1")
    assert (
        latest["approval"]["status"] == "approved" and latest["approval"]["comment"] == "checked the holdout"
    )

    # The promotion's own event, once: the watcher recognises the provider's move and stays quiet.
    time.sleep(POLL_INTERVAL + 3)
    new = champion_events(stack)[promotions_before:]
    assert [(e["source_task_id"], e["extra"].get("version")) for e in new] == [("promote", second_version)]

    analyst = session("analyst")
    analyst.open(f"mlflow/model?name={MODEL}")
    page = analyst.page.content()
    assert "approved by admin" in page and "rejected by admin" in page
    assert "drift on the 5th &lt;b&gt;not&lt;/b&gt; explained" in page
    analyst.shot("7-model-page-approvals")
