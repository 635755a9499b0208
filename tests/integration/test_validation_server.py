"""
Validation against a real ``mlflow server`` on PostgreSQL: what the server stores is accepted, what
it refuses is refused by the provider before the first request.
"""

from __future__ import annotations

import json
import re

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from airflow_mlflow.exceptions import MLflowInputError
from airflow_mlflow.hooks.mlflow import MLflowHook


@pytest.fixture
def hook(mlflow_server, monkeypatch) -> MLflowHook:
    host, port = mlflow_server.url.removeprefix("http://").split(":")
    conn = {"conn_type": "mlflow", "host": host, "port": int(port), "schema": "http"}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    return MLflowHook()


@pytest.fixture
def run_id(hook) -> str:
    exp = hook.get_or_create_experiment("validation-server")
    return hook.create_run(exp, "r", {}, start_time=1).run_id


def test_unicode_keys_are_stored_by_the_server(hook, mlflow_server, run_id):
    keys = {"ключ": 1, "精度/δ": 2, "métrique: a-b.c": 3}
    hook.log_batch(run_id, params=keys, metrics=keys, tags=keys)
    data = MlflowClient(mlflow_server.url).get_run(run_id).data
    assert data.params == {k: str(v) for k, v in keys.items()}
    assert data.metrics == {k: float(v) for k, v in keys.items()}
    assert {k: data.tags[k] for k in keys} == {k: str(v) for k, v in keys.items()}


def test_a_nul_character_the_server_cannot_store_is_refused_first(hook, mlflow_server, run_id):
    client = MlflowClient(mlflow_server.url)
    other = client.create_run(client.get_run(run_id).info.experiment_id).info.run_id
    with pytest.raises(MlflowException):  # the server's PostgreSQL store fails on it
        client.log_param(other, "p", "a\x00b")
    params = {f"p{i:03}": i for i in range(150)} | {"z": "a\x00b"}
    with pytest.raises(MLflowInputError, match=r"params: param 'z' value 'a\\x00b' contains a NUL character"):
        hook.log_batch(run_id, params=params)
    assert client.get_run(run_id).data.params == {}


@pytest.mark.parametrize(
    ("name", "stored_as"), [("bad#1.png", "bad"), ("q?x.png", "q"), ("p%41.png", "pA.png")]
)
def test_an_artifact_name_the_server_would_rename_is_refused_before_any_upload(
    hook, mlflow_server, run_id, tmp_path, name, stored_as
):
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "ok.png").write_text("ok")
    (plots / name).write_text("bad")
    client = MlflowClient(mlflow_server.url)
    # Why: MLflow's own client puts the name in the URL unquoted, and the file lands elsewhere.
    client.log_artifact(run_id, str(plots / name), "probe")
    assert [a.path for a in client.list_artifacts(run_id, "probe")] == [f"probe/{stored_as}"]
    with pytest.raises(MLflowInputError, match=re.escape(f"would be stored as 'plots/{name}'")):
        hook.log_artifacts(run_id, plots, "plots")
    assert client.list_artifacts(run_id, "plots") == []
