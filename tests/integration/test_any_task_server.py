"""Tasks of any operator (issue 12) against a real ``mlflow server`` with basic auth, run by
``dag.test()``: the mixed DAG of ``tests/dags/any_task.py`` (PythonOperator, a BashOperator running
an unmodified MLflow script, ``@task.virtualenv``, a mapped ``@task``, ``@task.mlflow``, a retried
task) tracked by ``track_all_tasks`` with one task disabled. The connection's password and the DAG's
templated secret appear in no param, tag, task log or rendered field; a wrong password leaves the
tasks running untracked. (``enable_tracking`` itself: the unit tier and the e2e tier's
``retrain_from_script`` on an mlflow server.)"""

from __future__ import annotations

import json
import logging
import os
import secrets

import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

from airflow_mlflow.plugins import listener
from tests.assertions import assert_one_tree, runs_of_dag_run
from tests.dags import any_task

pytestmark = pytest.mark.usefixtures("airflow_db")

#: The secret the mixed DAG's BashOperator holds in its templated ``env``.
TEMPLATED_SECRET = "hunter2"
TASKS = ["bash", "fold[0]", "fold[1]", "in_venv", "prepare", "report", "train"]


@pytest.fixture(scope="module")
def account(mlflow_auth_server) -> tuple[str, str]:
    """A non-admin user: the experiments its DAG runs create are its own."""
    user, password = "any-task-user", f"pw-{secrets.token_urlsafe(12)}"
    mlflow_auth_server.create_user(user, password)
    return user, password


@pytest.fixture
def server(mlflow_auth_server, account, monkeypatch, tmp_path):
    """``mlflow_default`` points at the server with the user's login and password; nothing else in
    this process's environment names MLflow credentials."""
    user, password = account
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    # Should tracking fail, the script and the venv callable write here, not to ./mlflow.db.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'untracked.db'}")
    host, port = mlflow_auth_server.url.removeprefix("http://").split(":")
    conn = {"conn_type": "mlflow", "host": host, "port": int(port), "login": user, "password": password}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    return mlflow_auth_server


def admin_client(server, monkeypatch) -> MlflowClient:
    """Read what the DAG run wrote, as the admin (set only after the run: tasks never see it)."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", server.admin_username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.admin_password)
    return MlflowClient(server.url)


def run_dag(dag):
    dag_run = dag.test()
    listener.drain()
    return dag_run


def runs_by_role(client, dag, dag_run):
    runs = runs_of_dag_run(client, dag.dag_id, dag_run.run_id)
    parents = [r for r in runs if r.data.tags.get("airflow.role") == "dag_run"]
    children = {r.info.run_name: r for r in runs if r.data.tags.get("airflow.role") == "task"}
    return parents, children


def everything_in_mlflow(client, experiment: str) -> list[str]:
    """Every param and tag (keys and values) of every run of the experiment, deleted ones too, and
    the experiment's own tags."""
    exp = client.get_experiment_by_name(experiment)
    found = [*exp.tags, *exp.tags.values()]
    for run in client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL):
        found += [*run.data.params, *run.data.params.values(), *run.data.tags, *run.data.tags.values()]
    return found


def rendered_fields(dag_run) -> list[str]:
    """The rendered template fields Airflow stored for the DAG run (what its UI shows), raw rows."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(RTIF).where(RTIF.dag_id == dag_run.dag_id, RTIF.run_id == dag_run.run_id)
        )
        return [f"{r.task_id}[{r.map_index}] {json.dumps(r.rendered_fields, default=str)}" for r in rows]


def test_the_mixed_dag_against_a_basic_auth_server(server, account, monkeypatch, tmp_path, capfd, caplog):
    """One DAG run (minutes on this server) for all of it: ``track_all_tasks`` tracks the DAG, which
    is not opted in; ``disable_tracking`` leaves ``report`` out; ``flaky`` is retried."""
    _, password = account
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("AIRFLOW__MLFLOW__TRACK_ALL_TASKS", "True")
    dag = any_task.all_but_report
    dag_run = run_dag(dag)
    assert dag_run.state == "success"
    logs = "".join(capfd.readouterr()) + caplog.text

    client = admin_client(server, monkeypatch)
    parents, children = runs_by_role(client, dag, dag_run)
    flaky = children.pop("flaky")
    assert_one_tree(parents, children, [name for name in TASKS if name != "report"])
    assert children["fold[1]"].data.tags["airflow.map_index"] == "1"
    # Code that knows nothing of Airflow, in processes of its own, wrote into its task's run with
    # the user's credentials: the script of the BashOperator and the @task.virtualenv callable.
    assert children["bash"].data.metrics["rows"] == 7
    assert children["in_venv"].data.metrics["venv_score"] == 0.5
    assert children["train"].data.metrics["score"] == 0.9
    assert not (tmp_path / "untracked.db").exists()  # nothing ran untracked
    # The retried task reused its run, both attempts on it.
    assert flaky.info.status == "FINISHED" and flaky.data.tags["airflow.try_number"] == "2"
    assert flaky.data.tags["airflow.try.1.state"] == "failed"
    assert flaky.data.tags["airflow.try.2.state"] == "success"

    # The secrets: where they are expected, the grep finds them ...
    assert password in os.environ["AIRFLOW_CONN_MLFLOW_DEFAULT"]
    assert TEMPLATED_SECRET in json.dumps(dag.get_task("bash").env)
    # ... the logs were captured at INFO, the export to the child processes included ...
    assert f"MLflow run {children['bash'].info.run_id}" in logs
    assert "MLFLOW_TRACKING_PASSWORD" in logs  # the variable's name, in the export's log line
    # ... and Airflow stored the rendered fields, the bash command with its rendered param.
    stored = rendered_fields(dag_run)
    assert len(stored) == len(TASKS) + 1 and any("log_metric" in row and ", 7)" in row for row in stored)
    written = everything_in_mlflow(client, dag.dag_id)
    for secret in (password, TEMPLATED_SECRET):
        assert not [v for v in written if secret in v], secret
        assert not [row for row in stored if secret in row], secret
        assert secret not in logs


def test_a_wrong_password_leaves_the_task_running_untracked_with_one_warning(
    server, account, monkeypatch, tmp_path, capfd, caplog
):
    user, password = account
    wrong = f"{password}-wrong"
    host, port = server.url.removeprefix("http://").split(":")
    conn = {"conn_type": "mlflow", "host": host, "port": int(port), "login": user, "password": wrong}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    dag_run = any_task.script.test()
    listener.reset()  # the DAG run's end would retry in the background: refused credentials stay refused
    assert dag_run.state == "success"  # the script ran, untracked
    logs = "".join(capfd.readouterr()) + caplog.text
    warnings = [r.getMessage() for r in caplog.records if "MLflow tracking of this task" in r.getMessage()]
    assert (
        len(warnings) == 1
        and "start failed (the task is not affected; connection 'mlflow_default')" in warnings[0]
    )
    assert "401" in warnings[0] or "Unauthorized" in warnings[0] or "credentials" in warnings[0].lower()
    assert wrong not in logs and password not in logs
    assert (tmp_path / "untracked.db").exists()  # the script wrote where its own environment said
    assert admin_client(server, monkeypatch).get_experiment_by_name(any_task.script.dag_id) is None
