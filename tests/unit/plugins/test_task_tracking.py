"""Tasks of any operator class, opted in, get the child run ``@task.mlflow`` would (issue 12)."""

from __future__ import annotations

import sys

import pytest

from airflow_mlflow.plugins import listener
from tests.assertions import runs_of_dag_run
from tests.dags import any_task

pytestmark = pytest.mark.usefixtures("airflow_db")


@pytest.fixture(autouse=True)
def fresh_listener():
    listener.reset()
    yield
    listener.reset()


@pytest.fixture(autouse=True)
def users_own_mlflow(tmp_path, monkeypatch) -> str:
    """Where an untracked task's MLflow code writes (the user's own setting), not MLflow's default
    ``./mlflow.db`` in whatever directory the task runs in."""
    uri = f"sqlite:///{tmp_path / 'users-own.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def _runs(store, dag, dag_run):
    exp = store.client.get_experiment_by_name(dag.dag_id)
    if exp is None:
        return [], []
    runs = runs_of_dag_run(store.client, dag.dag_id, dag_run.run_id)
    parents = [r for r in runs if r.data.tags.get("airflow.role") == "dag_run"]
    children = {r.info.run_name: r for r in runs if r.data.tags.get("airflow.role") == "task"}
    return parents, children


def _run(dag):
    dag_run = dag.test()
    listener.drain()
    return dag_run


def test_an_opted_in_dag_gets_one_parent_and_a_child_per_task_instance(store):
    dag_run = _run(any_task.mixed)
    assert dag_run.state == "success"
    parents, children = _runs(store, any_task.mixed, dag_run)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(children) == ["bash", "fold[0]", "fold[1]", "in_venv", "prepare", "report", "train"]
    for name, child in children.items():
        tags = child.data.tags
        assert child.info.status == "FINISHED", name
        assert tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert tags["airflow.try_number"] == "1" and tags["airflow.try.1.state"] == "success"
    bash = children["bash"]
    assert bash.data.tags["airflow.operator"] == ("airflow.providers.standard.operators.bash.BashOperator")
    assert bash.data.params["airflow.field.bash_command"] == any_task.python_c(
        any_task.ROWS_SCRIPT.replace("{{ params.rows }}", "7")
    )
    assert "airflow.duration_s" in bash.data.metrics
    # Code that knows nothing of Airflow or of the run: the script, and a @task.virtualenv callable.
    assert bash.data.metrics["rows"] == 7
    assert children["in_venv"].data.metrics["venv_score"] == 0.5
    assert children["prepare"].data.params["airflow.field.op_kwargs"] == '{"rows": 42}'
    assert children["fold[1]"].data.tags["airflow.map_index"] == "1"
    # The provider's own task opened its run itself, once: no second run from the listener.
    assert children["train"].data.metrics["score"] == 0.9
    assert "airflow.operator" not in children["train"].data.tags


def test_a_secret_in_a_templated_field_is_never_logged(store):
    dag_run = _run(any_task.mixed)
    _, children = _runs(store, any_task.mixed, dag_run)
    for child in children.values():
        data = child.data
        assert "airflow.field.env" not in data.params
        for value in (*data.params.values(), *data.tags.values()):
            assert "hunter2" not in value


def test_disable_tracking_excludes_a_task(store):
    dag_run = _run(any_task.partly)
    _, children = _runs(store, any_task.partly, dag_run)
    assert "report" not in children and "bash" in children and "train" in children


def test_a_dag_without_opt_in_gets_no_runs_but_its_own_mlflow_task(store, users_own_mlflow):
    from mlflow import MlflowClient

    dag_run = _run(any_task.plain)
    _, children = _runs(store, any_task.plain, dag_run)
    assert sorted(children) == ["train"]
    # The untracked script and venv callable wrote where the user's own settings say.
    own = MlflowClient(users_own_mlflow).search_runs(["0"])
    assert sorted(m for r in own for m in r.data.metrics) == ["rows", "venv_score"]


def test_track_all_tasks_tracks_an_unmodified_dag(store, monkeypatch):
    monkeypatch.setenv("AIRFLOW__MLFLOW__TRACK_ALL_TASKS", "True")
    dag_run = _run(any_task.plain)
    parents, children = _runs(store, any_task.plain, dag_run)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(children) == ["bash", "fold[0]", "fold[1]", "in_venv", "prepare", "report", "train"]
    assert children["bash"].data.metrics["rows"] == 7


def test_a_failed_task_ends_its_run_failed(store):
    dag_run = _run(any_task.failing)
    assert dag_run.state == "failed"
    parents, children = _runs(store, any_task.failing, dag_run)
    assert children["bash"].info.status == "FAILED"
    assert children["bash"].data.tags["airflow.try.1.state"] == "failed"
    assert parents[0].info.status == "FAILED"


def test_a_connection_or_variable_password_rendered_into_a_field_is_never_logged(store, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SECRET_DB", "postgres://user:s3cr3t-pw@db:5432/x")
    monkeypatch.setenv("AIRFLOW_VAR_API_PASSWORD", "hunter2-var")
    dag_run = _run(any_task.secrets)
    assert dag_run.state == "success"
    _, children = _runs(store, any_task.secrets, dag_run)
    assert sorted(children) == ["plain", "uses_secrets"]
    assert children["plain"].data.params["airflow.field.bash_command"] == "echo fine"
    data = children["uses_secrets"].data
    assert "airflow.field.bash_command" not in data.params
    for value in (*data.params.values(), *data.tags.values()):
        assert "s3cr3t-pw" not in value and "hunter2-var" not in value and "***" not in value


def test_a_tracking_error_never_reaches_the_task(store, monkeypatch, caplog):
    from airflow_mlflow import runs

    real = runs.open_task_run

    def broken(*args, **kwargs):
        # The listener's calls; @task.mlflow's own still work.
        if sys._getframe(1).f_globals["__name__"] == "airflow_mlflow.plugins.task_tracking":
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(runs, "open_task_run", broken)
    dag_run = _run(any_task.partly)
    assert dag_run.state == "success"
    warnings = [r for r in caplog.records if "MLflow tracking of this task start failed" in r.message]
    assert len(warnings) == 5  # one each: prepare, bash, in_venv, fold[0], fold[1]
    # The end of the DAG run records the attempts that never reached MLflow, as for an outage.
    _, children = _runs(store, any_task.partly, dag_run)
    assert children["bash"].data.tags["airflow.try.1.state"] == "success"


def test_a_resumed_attempt_reuses_its_run_and_start(store):
    """A deferred task resumes in a new process with the same try number (no hook in between)."""
    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.runs import TaskRunContext, open_task_run

    hook = MLflowHook()
    ctx = TaskRunContext(dag_id="d", run_id="manual__1", task_id="wait")
    first = open_task_run(hook, ctx, find_existing=True)
    start = hook.get_run(first.run_id).tags["airflow.try.1.start"]
    again = open_task_run(hook, ctx, find_existing=True)
    assert again.run_id == first.run_id
    assert hook.get_run(first.run_id).tags["airflow.try.1.start"] == start


def test_an_unmodified_script_in_a_bash_operator_logs_into_the_tasks_run(store):
    import os

    before = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    dag_run = _run(any_task.script)
    assert dag_run.state == "success"
    parents, children = _runs(store, any_task.script, dag_run)
    assert sorted(children) == ["train"] and len(parents) == 1
    train = children["train"]
    assert train.info.status == "FINISHED"
    assert train.data.metrics["m"] == 1.5 and train.data.params["p"] == "x"
    assert train.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    # Nothing entered this process's environment; ``env`` stays as the DAG wrote it (no field).
    assert {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")} == before
    assert "airflow.field.env" not in train.data.params
    from airflow.models.renderedtifields import RenderedTaskInstanceFields

    (ti,) = dag_run.get_task_instances()
    rendered = RenderedTaskInstanceFields.get_templated_fields(ti)
    assert "MLFLOW_" not in str(rendered) and rendered["env"] is None


def test_the_child_environment_carries_credentials_and_the_run_only():
    from airflow.sdk import Connection

    from airflow_mlflow.hooks.mlflow import MLflowHook

    conn = Connection(conn_id="c", conn_type="mlflow", host="https://h", login="u", password="pw-123")
    env = MLflowHook.from_connection(conn, "c").child_env("r1", "7", "exp")
    assert env["MLFLOW_TRACKING_USERNAME"] == "u" and env["MLFLOW_TRACKING_PASSWORD"] == "pw-123"
    assert (env["MLFLOW_RUN_ID"], env["MLFLOW_EXPERIMENT_ID"], env["MLFLOW_EXPERIMENT_NAME"]) == (
        "r1",
        "7",
        "exp",
    )
    assert "MLFLOW_TRACKING_TOKEN" not in env and all(isinstance(v, str) for v in env.values())


def test_a_retried_task_reuses_its_run(store):
    dag_run = _run(any_task.retry)
    assert dag_run.state == "success"
    _, children = _runs(store, any_task.retry, dag_run)
    (flaky,) = children.values()
    tags = flaky.data.tags
    assert flaky.info.status == "FINISHED" and tags["airflow.try_number"] == "2"
    assert tags["airflow.try.1.state"] == "failed" and tags["airflow.try.2.state"] == "success"


def test_an_external_python_task_logs_into_its_run(store):
    import os

    dag_run = _run(any_task.external)
    assert dag_run.state == "success"
    _, children = _runs(store, any_task.external, dag_run)
    assert children["train"].data.metrics["ext"] == 2.5
    assert children["train"].info.status == "FINISHED"
    assert "MLFLOW_RUN_ID" not in os.environ


# -- assets (issue 12, item 3): inlets as dataset inputs, outlets as a tag, the run on asset events


def _asset_events(uri, dag_run):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = (
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == uri, AssetEvent.source_run_id == dag_run.run_id)
        )
        return {e.source_task_id: dict(e.extra or {}) for e in session.scalars(query)}


def _dataset_inputs(store, run):
    inputs = store.client.get_run(run.info.run_id).inputs.dataset_inputs
    return {
        i.dataset.name: (
            i.dataset.digest,
            i.dataset.source_type,
            i.dataset.source,
            {t.key: t.value for t in i.tags},
        )
        for i in inputs
    }, len(inputs)


def test_inlets_are_dataset_inputs_outlets_a_tag_and_asset_events_carry_the_run(store):
    import json

    from airflow_mlflow.plugins.task_assets import digest
    from tests.dags import assets_tracking as dags

    dag_run = _run(dags.tracked)
    assert dag_run.state == "success"
    _, children = _runs(store, dags.tracked, dag_run)
    featurize, publish = children["featurize"], children["publish"]
    inputs, count = _dataset_inputs(store, featurize)
    context = {"mlflow.data.context": "airflow.inlet"}
    # RAW is listed twice, an AssetAlias once (left out), FEATURES by a reference to its name.
    assert count == 3 and inputs == {
        "raw_orders": (digest(dags.RAW.uri), "airflow_asset", dags.RAW.uri, context),
        "model_input": (digest(dags.MODEL_INPUT.uri), "airflow_asset", dags.MODEL_INPUT.uri, context),
        "order_features": (digest(dags.FEATURES.uri), "airflow_asset", dags.FEATURES.uri, context),
    }
    assert len(digest(dags.RAW.uri)) == 10 and digest(dags.RAW.uri) == digest(dags.RAW.uri)
    assert json.loads(featurize.data.tags["airflow.outlets"]) == [dags.REPORT.uri]
    assert json.loads(publish.data.tags["airflow.outlets"]) == [dags.FEATURES.uri, dags.REPORT.uri]
    experiment_id = featurize.info.experiment_id
    report = _asset_events(dags.REPORT.uri, dag_run)
    assert report["featurize"] == {
        "mlflow_run_id": featurize.info.run_id,
        "mlflow_experiment_id": experiment_id,
    }
    assert report["publish"] == {"mlflow_run_id": publish.info.run_id, "mlflow_experiment_id": experiment_id}
    # The task's own Metadata keeps its keys, the one it shares with the provider included.
    assert _asset_events(dags.FEATURES.uri, dag_run)["publish"] == {
        "rows": 42,
        "mlflow_experiment_id": "user-value",
        "mlflow_run_id": publish.info.run_id,
    }


def test_a_retried_task_logs_its_inlets_once(store):
    from tests.dags import assets_tracking as dags

    dag_run = _run(dags.retried)
    assert dag_run.state == "success"
    _, children = _runs(store, dags.retried, dag_run)
    featurize = children["featurize"]
    assert featurize.data.tags["airflow.try.2.state"] == "success"
    inputs, count = _dataset_inputs(store, featurize)
    assert count == 3 and sorted(inputs) == ["model_input", "order_features", "raw_orders"]
    event = _asset_events(dags.REPORT.uri, dag_run)["featurize"]
    assert event["mlflow_run_id"] == featurize.info.run_id


def test_an_untracked_task_logs_no_assets_and_its_events_no_run(store):
    from tests.dags import assets_tracking as dags

    dag_run = _run(dags.untracked)
    assert dag_run.state == "success"
    assert _runs(store, dags.untracked, dag_run) == ([], [])
    assert _asset_events(dags.REPORT.uri, dag_run) == {"featurize": {}, "publish": {}}
    assert _asset_events(dags.FEATURES.uri, dag_run)["publish"] == {
        "rows": 42,
        "mlflow_experiment_id": "user-value",
    }


def test_the_outlets_tag_stays_within_mlflows_limit(caplog):
    import json
    from types import SimpleNamespace

    from airflow.sdk import Asset, AssetAlias

    from airflow_mlflow.plugins.task_assets import outlet_tags
    from airflow_mlflow.validation import MAX_TAG_VALUE_LENGTH

    many = [Asset(uri=f"s3://bucket/{i:04d}/{'x' * 90}") for i in range(100)]
    tag = outlet_tags(SimpleNamespace(outlets=[AssetAlias("a"), *many]))["airflow.outlets"]
    kept = json.loads(tag)
    assert len(tag) <= MAX_TAG_VALUE_LENGTH and kept == [a.uri for a in many[: len(kept)]]
    assert 0 < len(kept) < 100 and f"lists {len(kept)} of the task's 100 outlets" in caplog.text
    assert outlet_tags(SimpleNamespace(outlets=[AssetAlias("a")])) == {}


def test_log_inputs_checks_every_dataset_before_writing(store):
    from airflow_mlflow.exceptions import MLflowInputError
    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.hooks.tracking import DatasetInput

    hook = MLflowHook()
    run_id = hook.create_run(hook.get_or_create_experiment("inputs"), "r", {}, 0).run_id
    good = DatasetInput("a", "0123456789", "airflow_asset", "s3://b/a", "airflow.inlet")
    bad = DatasetInput("b", "x" * 40, "airflow_asset", "s3://b/b")
    with pytest.raises(MLflowInputError, match=r"dataset input 'b' of run .*: digest 'x+'… is 40 characters"):
        hook.log_inputs(run_id, [good, bad])
    assert store.client.get_run(run_id).inputs.dataset_inputs == []
    assert hook.log_inputs(run_id, [good]) == hook.log_inputs(run_id, [good]) == 1
    assert len(store.client.get_run(run_id).inputs.dataset_inputs) == 1


def test_only_a_resumed_process_looks_for_its_attempts_run(store, monkeypatch):
    """
    A deferred task runs twice with the same try number: the process resuming it finds the run
    its first process opened (Airflow tells it so at start); a fresh attempt creates its run
    without a search.
    """
    from airflow_mlflow.hooks.mlflow import MLflowHook

    searched: list[dict] = []
    real = MLflowHook.find_runs

    def counting(self, experiment_id, query, *args, **kwargs):
        searched.append(query)
        return real(self, experiment_id, query, *args, **kwargs)

    monkeypatch.setattr(MLflowHook, "find_runs", counting)
    dag_run = _run(any_task.deferred)
    assert dag_run.state == "success"
    _, children = _runs(store, any_task.deferred, dag_run)
    assert sorted(children) == ["wait"]  # one run, not one per process
    wait = children["wait"]
    assert wait.info.status == "FINISHED" and wait.data.tags["airflow.try.1.state"] == "success"
    assert len([q for q in searched if "airflow.ti_key" in q]) == 1  # the resumed process only
