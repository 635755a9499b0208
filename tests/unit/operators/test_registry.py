"""Registry operators' refusals and edge cases, on a real SQLite store.

``execute`` gets a minimal stand-in for Airflow's context (a task instance that records XCom);
MLflow itself is real.
"""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException

from airflow_mlflow.exceptions import MLflowConflictError, MLflowInputError, MLflowProviderError
from airflow_mlflow.operators.registry import (
    MLflowPromoteModelOperator,
    MLflowRegisterModelOperator,
    MLflowRollbackModelOperator,
)
from tests.support import operator_context


@pytest.fixture
def model(store):
    """Model ``m`` with versions 1 and 2 (no stage, no alias), each with a source run."""
    client = store.client
    exp = client.create_experiment("models", artifact_location=store.artifact_root.as_uri())
    client.create_registered_model("m")
    for accuracy in (0.8, 0.9):
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "accuracy", accuracy)
        client.create_model_version("m", f"file:///tmp/{accuracy}", run_id=run.info.run_id)
    return client


def promote(version, **kwargs):
    return MLflowPromoteModelOperator(task_id="promote", model_name="m", version=version, **kwargs)


def test_rejected_version_is_not_promoted(model):
    model.set_model_version_tag("m", "2", "airflow.gate.status", "rejected")
    model.set_model_version_tag("m", "2", "airflow.gate.dag_run", "retrain/r7")
    with pytest.raises(MLflowConflictError, match=r"version 2 was rejected by the gate \(retrain/r7\)"):
        promote(2).execute(operator_context())
    with pytest.raises(MlflowException, match="alias champion not found"):
        model.get_model_version_by_alias("m", "champion")


def test_champion_moved_after_the_gate_fails_naming_both(model):
    promote(1).execute(operator_context())
    model.set_model_version_tag("m", "2", "airflow.gate.status", "passed")
    model.set_model_version_tag("m", "2", "airflow.gate.baseline_version", "none")  # gated before v1 won
    with pytest.raises(MLflowConflictError) as err:
        promote(2).execute(operator_context())
    assert "compared version 2 against no champion, but the champion is now version 1" in str(err.value)
    assert model.get_model_version_by_alias("m", "champion").version in ("1", 1)


def test_alias_only_registry_moves_the_alias_and_no_stage(model):
    ctx = operator_context()
    result = promote(2, stage=None).execute(ctx)
    assert result == {"name": "m", "version": "2", "previous_version": None, "promoted": True}
    assert str(model.get_model_version_by_alias("m", "champion").version) == "2"
    assert {str(v.version): v.current_stage for v in model.search_model_versions("name = 'm'")} == {
        "1": "None",
        "2": "None",
    }
    assert ctx["ti"].xcom["mlflow_model_version"] == {"name": "m", "version": "2", "url": None}
    event = ctx["outlet_events"][promote(2, stage=None).outlets[0]]
    assert event.extra["version"] == "2" and event.extra["previous_version"] is None


def test_promoting_the_champion_again_is_a_no_op(model):
    promote(1).execute(operator_context())
    assert promote(1).execute(operator_context())["promoted"] is False


def test_rollback_needs_a_champion_and_a_history(model):
    with pytest.raises(MLflowConflictError, match="model 'm' has no champion to roll back"):
        MLflowRollbackModelOperator(task_id="rb", model_name="m").execute(operator_context())
    promote(1).execute(operator_context())
    with pytest.raises(MLflowConflictError, match="no earlier champion is recorded for version 1"):
        MLflowRollbackModelOperator(task_id="rb", model_name="m").execute(operator_context())


def test_promote_needs_a_target():
    with pytest.raises(MLflowInputError, match="give an alias, a stage, or both"):
        promote(1, stage=None, alias=None)


def test_unknown_stage_is_refused():
    with pytest.raises(
        MLflowInputError, match="stage 'Prod' is not one of None, Staging, Production, Archived"
    ):
        promote(1, stage="Prod")


def test_registering_a_missing_run_names_the_uri(store):
    op = MLflowRegisterModelOperator(task_id="register", model_uri="runs:/0123456789abcdef/model", name="m2")
    with pytest.raises(MLflowProviderError, match="registering 'runs:/0123456789abcdef/model' as model 'm2'"):
        op.execute(operator_context())


def test_templated_names_do_not_add_an_outlet_but_literal_ones_do():
    assert promote(1).outlets[0].uri == "mlflow-model://mlflow_default/m/alias/champion"
    templated = MLflowPromoteModelOperator(task_id="p", model_name="{{ params.m }}", version=1)
    assert templated.outlets == []
    register = MLflowRegisterModelOperator(task_id="r", model_uri="runs:/x/model", name="churn")
    assert register.outlets[0].uri == "mlflow-model://mlflow_default/churn"


def test_the_dags_own_watched_definition_of_the_asset_is_kept_and_gets_the_event(model):
    """A DAG that declares the champion asset with its watcher keeps it: no second, unwatched copy."""
    from airflow_mlflow.assets import model_asset

    watched = model_asset("m", alias="champion", watch="poll", poll_interval=15)
    op = promote(1, outlets=[watched])
    assert len(op.outlets) == 1 and op.outlets[0].watchers == watched.watchers
    ctx = operator_context()
    op.execute(ctx)
    assert ctx["outlet_events"][watched].extra["version"] == "1"


def test_a_champion_change_is_claimed_once(model, store):
    """Two tasks that both saw champion v1 race; the claim lets one through, and its retry."""
    from airflow_mlflow.hooks.mlflow import MLflowHook

    promote(1).execute(operator_context())  # change #0
    for version in ("2",):
        model.set_model_version_tag("m", version, "airflow.gate.baseline_version", "1")
    # Another DAG run already claimed change #1 (and is about to move the champion).
    assert MLflowHook().claim_name(".airflow-mlflow/champion-changes/m/1", "other_dag/r9/promote") == (
        "other_dag/r9/promote"
    )
    with pytest.raises(
        MLflowConflictError, match=r"other_dag/r9/promote changed the champion concurrently \(change #1\)"
    ):
        promote(2).execute(operator_context())
    assert str(model.get_model_version_by_alias("m", "champion").version) == "1"
    # The claim is hidden from the experiment list, and the claimant's own retry goes through.
    assert not [e for e in model.search_experiments() if e.name.startswith(".airflow-mlflow")]
    ctx = operator_context()
    ctx["ti"].dag_id, ctx["ti"].run_id, ctx["ti"].task_id = "other_dag", "r9", "promote"
    assert promote(2).execute(ctx)["promoted"] is True
    assert str(model.get_model_version_by_alias("m", "champion").version) == "2"


def test_a_retried_register_reuses_its_version(model, store, tmp_path):
    exp = store.client.get_experiment_by_name("models").experiment_id
    run = store.client.create_run(exp)
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    store.client.log_artifact(run.info.run_id, str(tmp_path / "MLmodel"), "model")
    op = MLflowRegisterModelOperator(task_id="register", model_uri=f"runs:/{run.info.run_id}/model", name="m")
    first = op.execute(operator_context())
    again = op.execute(operator_context())  # same dag_id / run_id / task_id: a retry
    assert first["version"] == again["version"] == "3"
    assert len(model.search_model_versions("name = 'm'")) == 3
    assert again["run_id"] == run.info.run_id
