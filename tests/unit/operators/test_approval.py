"""``MLflowApprovalOperator``: the request a reviewer reads, and the decision it records.

The wait itself (Airflow parks the task until someone answers through the API) is covered end
to end in tests/e2e/test_approval_e2e.py; here ``execute_complete`` gets the event Airflow hands
a resumed task, and MLflow is a real SQLite store.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from airflow_mlflow.champion import read_history
from airflow_mlflow.exceptions import MLflowConflictError, MLflowInputError
from airflow_mlflow.gate import MetricCheck, Verdict
from airflow_mlflow.operators.approval import MLflowApprovalOperator, parse_required
from airflow_mlflow.operators.registry import MLflowPromoteModelOperator
from tests.support import operator_context

WHEN = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def model(store):
    """Model ``m``: version 1 champion (accuracy 0.90), version 2 gated and passed (0.93)."""
    client = store.client
    exp = client.create_experiment("models", artifact_location=store.artifact_root.as_uri())
    client.create_registered_model("m")
    for accuracy, f1 in ((0.90, 0.88), (0.93, 0.91)):
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "accuracy", accuracy)
        client.log_metric(run.info.run_id, "f1", f1)
        client.create_model_version("m", f"file:///tmp/{accuracy}", run_id=run.info.run_id)
    MLflowPromoteModelOperator(task_id="p", model_name="m", version=1).execute(operator_context())
    check = MetricCheck("accuracy", 0.93, 0.90, ">= 0.85 and >= baseline+0.005", "passed")
    for key, value in Verdict("m", "2", "1", "passed", (check,)).version_tags("retrain/r2").items():
        client.set_model_version_tag("m", "2", key, value)
    return client


def approval(**kwargs) -> MLflowApprovalOperator:
    return MLflowApprovalOperator(task_id="approve", model_name="m", version="2", **kwargs)


def answer(option: str, user: dict | None = None, comment: str | None = None) -> dict:
    return {
        "chosen_options": [option],
        "params_input": {"comment": comment} if comment is not None else {},
        "responded_at": WHEN,
        "responded_by_user": user,
    }


def test_the_request_shows_candidate_against_champion_with_the_gate(model, monkeypatch):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example:8080")
    from airflow_mlflow.approval import render_request
    from airflow_mlflow.hooks.mlflow import MLflowHook

    body = render_request(MLflowHook(), "m", "2", "champion", "Production")
    assert "### m: version 2 → `@champion` and `Production`?" in body
    assert "The gate **passed** version 2 against version 1 (retrain/r2)." in body
    assert "| metric | candidate v2 | champion v1 | required | verdict |" in body
    # Gated metrics first, with the threshold and the verdict; the others for context.
    rows = [line for line in body.splitlines() if line.startswith("| accuracy") or line.startswith("| f1")]
    assert rows == [
        "| accuracy | 0.93 | 0.9 | >= 0.85 and >= baseline+0.005 | **passed** |",
        "| f1 | 0.91 | 0.88 | not gated |  |",
    ]
    assert "[model page](http://airflow.example:8080/mlflow/model?name=m&version=2)" in body
    assert "[model page](http://airflow.example:8080/mlflow/model?name=m&version=1)" in body
    assert "No answer in time counts as a rejection." in body


def test_a_gate_on_evaluations_shows_the_evaluated_numbers_not_the_runs(model):
    """Gated with source="evaluation": the table holds what the gate compared, on shared data."""
    from airflow_mlflow.approval import render_request
    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.tags import EVALUATION

    for version, accuracy in (("1", 0.95), ("2", 0.97)):
        record = {"dataset": {"name": "holdout", "digest": "d1g"}, "metrics": {"accuracy_score": accuracy}}
        model.set_model_version_tag("m", version, EVALUATION, json.dumps(record))
    check = MetricCheck("accuracy_score", 0.97, 0.95, ">= 0.85 and >= baseline+0.005", "passed")
    for key, value in Verdict("m", "2", "1", "passed", (check,)).version_tags("retrain/r2").items():
        model.set_model_version_tag("m", "2", key, value)

    body = render_request(MLflowHook(), "m", "2", "champion", None)
    assert "Metrics of both versions evaluated on dataset `holdout` (digest d1g)." in body
    rows = [line for line in body.splitlines() if line.startswith("| ") and "metric" not in line]
    # The runs' own accuracy (0.93 against 0.90, each on its own data) is not shown beside it.
    assert rows == ["| accuracy_score | 0.97 | 0.95 | >= 0.85 and >= baseline+0.005 | **passed** |"]


def test_names_from_users_cannot_break_the_table(store):
    client = store.client
    name = "a|b`c\nd"
    client.create_registered_model(name)
    client.create_model_version(name, "file:///tmp/x")
    from airflow_mlflow.approval import render_request
    from airflow_mlflow.hooks.mlflow import MLflowHook

    body = render_request(MLflowHook(), name, "1", "champion", None)
    assert body.splitlines()[0] == "### a\\|b'c d: version 1 → `@champion`?"
    assert "no champion" in body and "Version 1 was not gated." in body


def test_approval_is_recorded_and_travels_into_the_promotion_history(model):
    result = approval().execute_complete(
        operator_context(), answer("Approve", {"id": "7", "name": "alice"}, "looks right")
    )
    assert result["chosen_options"] == ["Approve"] and result["responded_at"] == WHEN.isoformat()
    tags = model.get_model_version("m", "2").tags
    assert {k: v for k, v in tags.items() if k.startswith("airflow.approval.")} == {
        "airflow.approval.status": "approved",
        "airflow.approval.by": "alice",
        "airflow.approval.at": WHEN.isoformat(),
        "airflow.approval.comment": "looks right",
        "airflow.approval.dag_run": "d/manual__1",
    }
    MLflowPromoteModelOperator(task_id="p", model_name="m", version="2").execute(operator_context())
    latest = read_history(model.get_registered_model("m").tags)[-1]
    assert (latest.version, latest.previous) == ("2", "1")
    assert latest.approval == {
        "status": "approved",
        "by": "alice",
        "at": WHEN.isoformat(),
        "comment": "looks right",
    }


def test_a_rejected_version_is_refused_by_the_promotion(model):
    approval().execute_complete(operator_context(), answer("Reject", {"id": "8", "name": "bob"}, "drifted"))
    assert model.get_model_version("m", "2").tags["airflow.approval.status"] == "rejected"
    refused = r"version 2 was rejected by bob at 2026-12-01T09:30:00\+00:00"
    with pytest.raises(MLflowConflictError, match=refused):
        MLflowPromoteModelOperator(task_id="p", model_name="m", version="2").execute(operator_context())
    assert str(model.get_model_version_by_alias("m", "champion").version) == "1"


def test_no_answer_in_time_is_a_rejection_by_timeout(model):
    op = approval()
    assert op.defaults == ["Reject"]
    op.execute_complete(operator_context(), answer("Reject"))  # what Airflow hands over at the deadline
    tags = model.get_model_version("m", "2").tags
    assert (tags["airflow.approval.status"], tags["airflow.approval.by"]) == ("rejected", "timeout")


def test_a_long_comment_is_kept_on_the_version_and_shortened_in_the_history(model):
    comment = "x" * 1000
    approval().execute_complete(operator_context(), answer("Approve", {"id": "7", "name": "alice"}, comment))
    assert model.get_model_version("m", "2").tags["airflow.approval.comment"] == comment
    MLflowPromoteModelOperator(task_id="p", model_name="m", version="2").execute(operator_context())
    raw = json.loads(model.get_registered_model("m").tags["airflow.champion_history"])
    assert len(raw[-1]["approval"]["comment"]) == 200


def test_when_not_required_it_does_not_ask(model):
    ctx = operator_context()
    assert approval(required="False").execute(ctx) == {"approved": None, "required": False}
    assert "airflow.approval.status" not in model.get_model_version("m", "2").tags


@pytest.mark.parametrize(("value", "expected"), [(True, True), ("False", False), ("true", True), ("", False)])
def test_required_reads_rendered_params(value, expected):
    assert parse_required(value) is expected


def test_a_required_value_that_is_not_a_bool_is_named():
    with pytest.raises(MLflowInputError, match="required must be true or false, got 'sometimes'"):
        parse_required("sometimes")


def test_the_form_has_a_comment_field_and_the_users_fields_not_the_dags_params():
    from airflow.sdk import DAG, Param

    with DAG("d", schedule=None, params={"C": Param(1.0, type="number")}):
        op = approval(params={"ticket": Param("", type="string")})
    assert set(op.serialized_params) == {"comment", "ticket"}
    assert op.subject == "Promote m version 2?"
    # A reviewer answers the form's fields only (Airflow checks the keys against the form).
    op.validate_params_input({"comment": "ok", "ticket": "T-1"})
    with pytest.raises(ValueError, match="does not match"):
        op.validate_params_input({"comment": "ok"})
