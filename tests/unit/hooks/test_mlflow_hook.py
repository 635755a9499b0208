"""``MLflowHook`` verbs against a real SQLite MLflow store."""

from __future__ import annotations

import json
import math
import os

import pytest

from airflow_mlflow.exceptions import MLflowConflictError, MLflowInputError, MLflowResourceNotFoundError
from airflow_mlflow.hooks.mlflow import MLflowHook


@pytest.fixture
def hook(store) -> MLflowHook:
    return MLflowHook()


@pytest.fixture
def run_id(hook) -> str:
    exp = hook.get_or_create_experiment("hook-tests")
    return hook.create_run(exp, "r", {"k": "v"}, start_time=1).run_id


@pytest.mark.usefixtures("airflow_db")  # the metadata DB is asked too: it must be readable
def test_embedded_default_is_created_on_first_use(monkeypatch, tmp_path, mlflow_template):
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    hook = MLflowHook()
    exp = hook.get_or_create_experiment("embedded")
    assert (tmp_path / "mlflow" / "mlflow.db").is_file()
    assert (
        hook.client.get_experiment(exp).artifact_location
        == (tmp_path / "mlflow" / "artifacts" / "embedded").as_uri()
    )
    assert hook.test_connection() == (True, f"Connected to MLflow at sqlite:///{tmp_path}/mlflow/mlflow.db")


def test_get_or_create_experiment_is_idempotent(hook):
    first = hook.get_or_create_experiment("e1")
    assert hook.get_or_create_experiment("e1") == first
    assert hook.find_experiment("e1") == first
    assert hook.find_experiment("missing") is None


def test_experiment_created_concurrently_is_reused(hook, store):
    # Another process creates the experiment between our lookup and our create.
    real_get = hook.client.get_experiment_by_name
    calls = []

    def racing_get(name):
        calls.append(name)
        if len(calls) == 1:
            store.client.create_experiment(name)
            return None
        return real_get(name)

    hook.client.get_experiment_by_name = racing_get
    exp_id = hook.get_or_create_experiment("raced")
    assert store.client.get_experiment_by_name("raced").experiment_id == exp_id


def test_deleted_experiment_is_refused_by_name(hook, store):
    exp = hook.get_or_create_experiment("gone")
    store.client.delete_experiment(exp)
    with pytest.raises(MLflowInputError, match="experiment 'gone' .* is deleted"):
        hook.get_or_create_experiment("gone")


def test_log_batch_splits_within_mlflow_limits(hook, store, run_id):
    requests = hook.log_batch(
        run_id,
        params={f"p{i}": i for i in range(250)},
        metrics={f"m{i}": i / 3 for i in range(2500)},
        tags={f"t{i}": "x" for i in range(150)},
    )
    data = store.client.get_run(run_id).data
    assert len(data.params) == 250 and len(data.metrics) == 2500 and data.tags["t149"] == "x"
    assert data.metrics["m2499"] == pytest.approx(2499 / 3)
    assert requests == 3  # 250 params and 150 tags need 3 batches; the metrics fit in their room


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": {"ok": 1, "loss": float("nan")}}, "metric 'loss' must be finite, got nan"),
        ({"metrics": {"auc": math.inf}}, "metric 'auc' must be finite, got inf"),
        ({"metrics": {"acc": "high"}}, "metric 'acc' must be a number, got str 'high'"),
        ({"metrics": {"flag": True}}, "metric 'flag' must be a number, got bool True"),
        ({"params": {"text": "x" * 6001}}, "param 'text' value is 6001 characters; MLflow allows 6000"),
        ({"params": {"bad key!": 1}}, "param key 'bad key!' is invalid"),
        ({"params": {"../escape": 1}}, "param key '../escape' is invalid"),
        ({"tags": {"k" * 251: "v"}}, "is 251 characters; MLflow allows 250"),
        ({"tags": {"note": "y" * 8001}}, "tag 'note' value is 8001 characters; MLflow allows 8000"),
    ],
)
def test_bad_input_writes_nothing(hook, store, run_id, kwargs, message):
    with pytest.raises(MLflowInputError) as err:
        hook.log_batch(run_id, **{"params": {"good": 1}, "metrics": {"good_metric": 1.0}, **kwargs})
    assert message in str(err.value)
    data = store.client.get_run(run_id).data
    assert data.params == {} and data.metrics == {}


def test_numeric_strings_from_templates_are_metrics(hook, store, run_id):
    hook.log_batch(run_id, metrics={"auc": "0.91", "n": 3})
    assert store.client.get_run(run_id).data.metrics == {"auc": 0.91, "n": 3.0}


def test_params_relogged_unchanged_pass_changed_fail(hook, store, run_id):
    hook.log_batch(run_id, params={"lr": 0.1, "depth": 3})
    known = dict(store.client.get_run(run_id).data.params)
    assert hook.log_batch(run_id, params={"lr": 0.1}, known_params=known) == 0
    with pytest.raises(
        MLflowConflictError,
        match=r"param 'depth' of run \w+ was already logged as '3'; this attempt logs '4'",
    ):
        hook.log_batch(run_id, params={"lr": 0.1, "depth": 4, "new": 1}, known_params=known)
    assert store.client.get_run(run_id).data.params == {"lr": "0.1", "depth": "3"}


def test_missing_run_is_a_typed_error(hook):
    with pytest.raises(MLflowResourceNotFoundError, match="run 0123456789abcdef"):
        hook.get_run("0123456789abcdef")


def test_artifacts_file_and_folder(hook, store, run_id, tmp_path):
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "a.txt").write_text("a")
    (tmp_path / "model.txt").write_text("m")
    hook.log_artifacts(run_id, tmp_path / "plots", "plots")
    hook.log_artifacts(run_id, tmp_path / "model.txt")
    assert sorted(hook.list_artifacts(run_id)) == ["model.txt", "plots"]
    with pytest.raises(MLflowInputError, match="artifact '/nope' does not exist"):
        hook.log_artifacts(run_id, "/nope")


def test_http_client_carries_credentials_without_touching_environ(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_REMOTE",
        json.dumps(
            {"conn_type": "mlflow", "host": "127.0.0.1", "port": 5999, "login": "alice", "password": "pw"}
        ),
    )
    before = dict(os.environ)
    hook = MLflowHook(mlflow_conn_id="mlflow_remote")
    tracking = hook.client._tracking_client.store.get_host_creds()
    registry = hook.client._get_registry_client().store.get_host_creds()
    assert (tracking.host, tracking.username, tracking.password) == ("http://127.0.0.1:5999", "alice", "pw")
    assert (registry.username, registry.password) == ("alice", "pw")
    assert dict(os.environ) == before


def test_credentials_env_is_scoped_and_restored(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_REMOTE",
        json.dumps({"conn_type": "mlflow", "host": "h", "extra": {"token": "tok"}}),
    )
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "previous")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    hook = MLflowHook(mlflow_conn_id="mlflow_remote")
    with hook.credentials_env():
        assert os.environ["MLFLOW_TRACKING_TOKEN"] == "tok"
    assert os.environ["MLFLOW_TRACKING_TOKEN"] == "previous"
    with pytest.raises(RuntimeError), hook.credentials_env():
        raise RuntimeError
    assert os.environ["MLFLOW_TRACKING_TOKEN"] == "previous"
    assert "MLFLOW_TRACKING_USERNAME" not in os.environ


def test_test_connection_reports_failure_without_secrets(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_REMOTE",
        json.dumps(
            {"conn_type": "mlflow", "host": "127.0.0.1", "port": 9, "login": "u", "password": "hunter2"}
        ),
    )
    ok, message = MLflowHook(mlflow_conn_id="mlflow_remote").test_connection()
    assert not ok and "hunter2" not in message


def test_version_metrics_fall_back_to_the_logged_model(hook, store):
    """A version registered from an MLflow 3 logged model, with no source run of its own."""
    client = store.client
    exp = hook.get_or_create_experiment("logged-models")
    logged = client.create_logged_model(exp, name="clf")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "auc", 0.93, model_id=logged.model_id)
    version = hook.register_model_version(f"models:/{logged.model_id}", "clf")
    assert version.run_id is None and version.model_id == logged.model_id
    assert hook.version_metrics(version) == {"auc": 0.93}
