"""``retrain_from_script`` (``dags_examples/script_training.py``) through ``airflow dags test``
against a basic-auth ``mlflow server``, as a non-admin user: the unmodified script authenticates
with the credentials the task handed its process, its metrics and model land in the task's child
run, and the model is registered, gated and promoted from there. The connection's password is in
no task log and in no param or tag of anything the DAG run wrote."""

from __future__ import annotations

import json
import secrets

import pytest
from mlflow import MlflowClient

from tests import script_pipeline as pipeline


@pytest.mark.timeout(900)
def test_the_script_pipeline_on_a_basic_auth_server(mlflow_auth_server, tmp_path, monkeypatch):
    user, password = "script-user", f"pw-{secrets.token_urlsafe(16)}"
    mlflow_auth_server.create_user(user, password)
    conn = {
        "conn_type": "mlflow",
        "host": mlflow_auth_server.host,
        "port": mlflow_auth_server.port,
        "login": user,
        "password": password,
    }
    home = tmp_path / "home"
    env = pipeline.dags_test_env(home, AIRFLOW_CONN_MLFLOW_DEFAULT=json.dumps(conn))
    pipeline.airflow_cli(env, "db", "migrate")
    run_id, output = pipeline.dags_test(env, "2026-11-01")

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", mlflow_auth_server.admin_username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", mlflow_auth_server.admin_password)
    client = MlflowClient(mlflow_auth_server.url)
    trained = pipeline.assert_training(client, mlflow_auth_server.url, run_id, "20261101")
    assert pipeline.assert_registry(client, [trained]) == ["passed"]
    assert trained.run.info.artifact_uri.startswith("mlflow-artifacts:/")  # uploaded through the server
    assert "MLFLOW_TRACKING_PASSWORD" in output  # the task did hand the script its credentials...

    # ... and the password itself is nowhere: not in the task logs (``dags test`` prints them; any
    # log file under the home too), not in any param, tag or name MLflow holds for the DAG run.
    logs = [output] + [p.read_text(errors="replace") for p in home.rglob("*.log") if p.is_file()]
    assert not [text for text in logs if password in text]
    experiment = client.get_experiment_by_name(pipeline.DAG_ID)
    written = [*experiment.tags, *experiment.tags.values()]
    for run in client.search_runs([experiment.experiment_id], run_view_type=3):
        data = run.data
        written += [*data.params, *data.params.values(), *data.tags, *data.tags.values(), *data.metrics]
    for version in client.search_model_versions(f"name = '{pipeline.MODEL}'"):
        written += [*version.tags, *version.tags.values(), version.source, version.description or ""]
    written += [*client.get_registered_model(pipeline.MODEL).tags.values()]
    assert written and not [value for value in written if password in value]
