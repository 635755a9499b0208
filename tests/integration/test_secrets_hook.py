"""Secrets, at the hook level, against a basic-auth ``mlflow server``: with the password in the
connection's password field, and separately inside ``tracking_uri``, nothing the provider writes
(MLflow params, tags, notes; XCom; error messages; log records) holds it, and a task leaves
``os.environ`` as it found it. (Process-level greps are in tests/faults/.)"""

from __future__ import annotations

import json
import logging
import os
import secrets
import traceback

import pytest
from mlflow import MlflowClient

from airflow_mlflow.exceptions import MLflowAuthError
from airflow_mlflow.hooks.mlflow import MLflowHook
from airflow_mlflow.plugins import listener
from tests.assertions import assert_tracked_dag
from tests.dags import tracked as dags

pytestmark = pytest.mark.usefixtures("airflow_db")


def connection(url: str, user: str, password: str, where: str) -> str:
    host, port = url.removeprefix("http://").split(":")
    if where == "uri":
        return json.dumps(
            {"conn_type": "mlflow", "extra": {"tracking_uri": f"http://{user}:{password}@{host}:{port}"}}
        )
    return json.dumps(
        {"conn_type": "mlflow", "host": host, "port": int(port), "login": user, "password": password}
    )


def environ() -> dict[str, str]:
    """This process's environment, less what Airflow sets for a task (``AIRFLOW_CTX_*``) and MLflow's
    telemetry session id (its client sets and unsets it by itself)."""
    ignored = ("AIRFLOW_CTX_", "_MLFLOW_TELEMETRY_")
    return {k: v for k, v in os.environ.items() if not k.startswith(ignored)}


def everything_written(client: MlflowClient, dag_run) -> list[str]:
    """Every param, tag (notes included) and metric key of the DAG run's experiment, and its XComs."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    exp = client.get_experiment_by_name(dag_run.dag_id)
    found = [*exp.tags.values(), *exp.tags]
    for run in client.search_runs([exp.experiment_id], run_view_type=3):
        found += [*run.data.params.values(), *run.data.tags.values(), *run.data.metrics, run.info.run_name]
    with create_session() as session:
        rows = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id))
        found += [json.dumps(XComModel.deserialize_value(row), default=str) for row in rows]
    return found


@pytest.fixture(scope="module")
def account(mlflow_auth_server) -> tuple[str, str]:
    """One user for both cases: the experiment its first DAG run creates is that user's."""
    user, password = "secrets-user", f"pw-{secrets.token_urlsafe(12)}"
    mlflow_auth_server.create_user(user, password)
    return user, password


@pytest.mark.parametrize("where", ["password", "uri"])
def test_no_secret_in_anything_the_provider_writes(mlflow_auth_server, account, monkeypatch, caplog, where):
    user, password = account
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", connection(mlflow_auth_server.url, user, password, where)
    )
    environ_before = environ()
    caplog.set_level(logging.INFO)

    dag_run = dags.tracked.test()
    listener.drain()
    assert dag_run.state == "success"
    assert environ() == environ_before  # dag.test() runs the tasks in this process

    admin = (mlflow_auth_server.admin_username, mlflow_auth_server.admin_password)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", admin[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", admin[1])
    client = MlflowClient(mlflow_auth_server.url)
    assert_tracked_dag(client, dag_run)  # the credentials worked, wherever they were written
    assert not [v for v in everything_written(client, dag_run) if password in v]
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")

    # A refused call: the error, its traceback (what a task log prints) and the "Test" button.
    wrong = password[::-1]
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", connection(mlflow_auth_server.url, user, wrong, where))
    hook = MLflowHook()
    with pytest.raises(MLflowAuthError) as err:
        hook.get_or_create_experiment("anything")
    shown = "".join(traceback.format_exception(err.value))
    assert wrong not in shown and password not in shown
    ok, message = hook.test_connection()
    assert not ok and wrong not in message
    assert wrong not in repr(hook.config)

    logged = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert not [line for line in logged if password in line or wrong in line]
