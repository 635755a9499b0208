"""
A tracked KubernetesPodOperator's pod and DockerOperator's container get the task's MLflow run
(issue 12): rendered with the operators' own code (``build_pod_request_obj``; docker-py's container
and host config), on runs opened in a real MLflow store. No cluster, no Docker engine.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pendulum
import pytest
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.docker.operators.docker import DockerOperator
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, dag

from airflow_mlflow import track_in_container, track_in_pod
from airflow_mlflow.containers import CONTAINER_PARAM, export
from airflow_mlflow.plugins import task_tracking
from airflow_mlflow.tracking import is_tracked

START = pendulum.datetime(2026, 1, 1, tz="UTC")
PASSWORD = "pw-s3cret-4711"
TOKEN = "tok-s3cret-0815"
SERVER = "http://mlflow.internal.example:5000"
IN_CLUSTER = "http://mlflow.mlflow.svc.cluster.local:5000"
EXPERIMENT = "containers"


def _conn(monkeypatch, conn_id: str, **fields) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "mlflow", **fields}))
    return conn_id


@pytest.fixture
def remote(monkeypatch):
    """An MLflow server with a login and password (only the environment is built from it)."""
    return _conn(
        monkeypatch,
        "mlflow_remote",
        host="mlflow.internal.example",
        port=5000,
        schema="http",
        login="alice",
        password=PASSWORD,
    )


@pytest.fixture
def run(store):
    """A real run in the store, in an experiment whose artifacts go through the server (proxied)."""
    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.runs import TaskRunContext, open_task_run

    store.client.create_experiment(EXPERIMENT, artifact_location="mlflow-artifacts:/containers")
    ctx = TaskRunContext(dag_id="d", run_id="manual__1", task_id="train")
    return open_task_run(MLflowHook(), ctx, experiment_name=EXPERIMENT, find_existing=True)


def _hook(conn_id: str):
    from airflow_mlflow.hooks.mlflow import MLflowHook

    return MLflowHook(conn_id)


def _pod_task(**kwargs):
    kwargs.setdefault("env_vars", {"MY_SETTING": "1", "MLFLOW_EXPERIMENT_NAME": "mine"})
    with DAG(dag_id="pods", schedule=None, start_date=START):
        return KubernetesPodOperator(
            task_id="train", image="python:3.11", namespace="ml", do_xcom_push=False, **kwargs
        )


def _docker_task(**kwargs):
    return DockerOperator(task_id="train", image="python:3.11", **kwargs)


def _exported(task, conn_id, run):
    """What the listener does in the task process: export on the attempt's (shallow) copy."""
    attempt = task.prepare_for_execution()
    names = task_tracking.export_env(attempt, _hook(conn_id), run, EXPERIMENT)
    return attempt, names


def _pod_env(attempt) -> dict:
    from kubernetes.client import ApiClient

    pod = attempt.build_pod_request_obj(dry_run=True)
    serialized = json.dumps(ApiClient().sanitize_for_serialization(pod))
    (container,) = pod.spec.containers
    return {var.name: var for var in container.env}, f"{pod}{serialized}"


def _container_config(attempt) -> tuple[dict, str]:
    """The body DockerOperator would send to ``POST /containers/create`` (docker-py builds it)."""
    import docker

    attempt._normalize_mounts()
    client = docker.APIClient(base_url="tcp://127.0.0.1:9", version="1.45")
    env_file = attempt.unpack_environment_variables(attempt.env_file) if attempt.env_file else {}
    config = client.create_container_config(
        image=attempt.image,
        command=attempt.command,
        environment={**env_file, **attempt.environment, **attempt._private_environment},
        host_config=client.create_host_config(mounts=attempt.mounts),
    )
    return config, json.dumps(config)


def _warnings(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and text in r.getMessage()]


# == KubernetesPodOperator =========================================================================


def test_a_pod_gets_the_runs_environment_and_credentials_only_by_secret_reference(remote, run, caplog):
    task = track_in_pod(_pod_task(), credentials_secret="mlflow-creds", tracking_uri=IN_CLUSTER)
    attempt, names = _exported(task, remote, run)
    env, pod_text = _pod_env(attempt)
    assert env["MLFLOW_TRACKING_URI"].value == IN_CLUSTER
    assert env["MLFLOW_RUN_ID"].value == run.run_id
    assert env["MLFLOW_EXPERIMENT_ID"].value == run.experiment_id
    assert env["MLFLOW_EXPERIMENT_NAME"].value == "mine" and env["MY_SETTING"].value == "1"  # the user's win
    for var, key in (("MLFLOW_TRACKING_USERNAME", "username"), ("MLFLOW_TRACKING_PASSWORD", "password")):
        assert env[var].value is None
        ref = env[var].value_from.secret_key_ref
        assert (ref.name, ref.key, ref.optional) == ("mlflow-creds", key, None)
    assert "MLFLOW_TRACKING_TOKEN" not in env
    assert PASSWORD not in pod_text and "alice" not in pod_text
    assert set(names) == set(env) - {"MY_SETTING", "MLFLOW_EXPERIMENT_NAME"}
    # The DAG's operator is untouched: only the attempt's copy changed.
    assert task.env_vars == {"MY_SETTING": "1", "MLFLOW_EXPERIMENT_NAME": "mine"}
    assert _warnings(caplog, "MLflow") == []


def test_a_rendered_env_list_and_the_users_own_secret_win(remote, run):
    from airflow.providers.cncf.kubernetes.secret import Secret
    from kubernetes.client import models as k8s

    user_var = k8s.V1EnvVar(name="MLFLOW_RUN_ID", value="the-users")
    task = _pod_task(
        env_vars=[user_var], secrets=[Secret("env", "MLFLOW_TRACKING_PASSWORD", "own-secret", "pw")]
    )
    track_in_pod(task, credentials_secret="mlflow-creds", tracking_uri=IN_CLUSTER)
    attempt, _ = _exported(task, remote, run)
    pod = attempt.build_pod_request_obj(dry_run=True)
    env = pod.spec.containers[0].env
    names = [var.name for var in env]
    assert names.count("MLFLOW_RUN_ID") == 1 and names.count("MLFLOW_TRACKING_PASSWORD") == 1
    by_name = {var.name: var for var in env}
    assert by_name["MLFLOW_RUN_ID"].value == "the-users"
    assert by_name["MLFLOW_TRACKING_PASSWORD"].value_from.secret_key_ref.name == "own-secret"
    assert by_name["MLFLOW_TRACKING_USERNAME"].value_from.secret_key_ref.name == "mlflow-creds"
    assert task.env_vars == [user_var]


def test_without_a_secret_the_pod_gets_no_credentials_and_the_log_says_which_parameter(remote, run, caplog):
    attempt, names = _exported(track_in_pod(_pod_task(), tracking_uri=IN_CLUSTER), remote, run)
    env, pod_text = _pod_env(attempt)
    assert env["MLFLOW_RUN_ID"].value == run.run_id
    assert not {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} & set(env)
    assert PASSWORD not in pod_text
    (warning,) = _warnings(caplog, "credentials")
    assert "task train" in warning and "credentials_secret=" in warning and "'password'" in warning


def test_a_token_is_referenced_by_its_key_and_a_ca_bundle_path_is_not_exported(monkeypatch, run, caplog):
    conn = _conn(
        monkeypatch,
        "mlflow_token",
        host=SERVER,
        extra=json.dumps({"token": TOKEN, "ca_bundle": "/etc/ca.pem"}),
    )
    task = track_in_pod(
        _pod_task(), credentials_secret="mlflow", token_key="api-token", tracking_uri=IN_CLUSTER
    )
    attempt, _ = _exported(task, conn, run)
    env, pod_text = _pod_env(attempt)
    ref = env["MLFLOW_TRACKING_TOKEN"].value_from.secret_key_ref
    assert (ref.name, ref.key) == ("mlflow", "api-token")
    assert "MLFLOW_TRACKING_USERNAME" not in env and "MLFLOW_TRACKING_SERVER_CERT_PATH" not in env
    assert TOKEN not in pod_text
    (warning,) = _warnings(caplog, "ca_bundle")
    assert "/etc/ca.pem" in warning and "MLFLOW_TRACKING_SERVER_CERT_PATH" in warning


def test_a_connection_without_credentials_references_the_secret_optionally(monkeypatch, run):
    conn = _conn(monkeypatch, "mlflow_open", host=SERVER)
    attempt, _ = _exported(track_in_pod(_pod_task(), credentials_secret="maybe"), conn, run)
    env, _ = _pod_env(attempt)
    assert env["MLFLOW_TRACKING_URI"].value == SERVER
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        assert env[var].value_from.secret_key_ref.optional is True


@pytest.mark.parametrize("embedded", [True, False], ids=["embedded-default", "sqlite-connection"])
def test_a_store_on_the_worker_is_not_exported_and_the_log_says_why(store, run, caplog, embedded):
    from airflow_mlflow.hooks.mlflow import MLflowHook

    hook = MLflowHook.from_connection(None) if embedded else MLflowHook()
    task = track_in_pod(_pod_task(), credentials_secret="mlflow-creds", tracking_uri=IN_CLUSTER)
    attempt = task.prepare_for_execution()
    assert task_tracking.export_env(attempt, hook, run, EXPERIMENT) == []
    env, _ = _pod_env(attempt)
    assert sorted(env) == ["MLFLOW_EXPERIMENT_NAME", "MY_SETTING"]
    (warning,) = _warnings(caplog, "gets no MLflow environment")
    assert "task train's pod" in warning and "'mlflow_default'" in warning and "The task runs" in warning
    if embedded:
        assert "the embedded MLflow store is a SQLite file on this worker" in warning
    else:
        assert f"tracking_uri '{store.tracking_uri}' is a file on this worker" in warning


def test_a_loopback_server_is_exported_with_a_warning_unless_tracking_uri_is_given(monkeypatch, run, caplog):
    conn = _conn(monkeypatch, "mlflow_local", host="127.0.0.1", port=5000, schema="http")
    attempt, _ = _exported(track_in_pod(_pod_task()), conn, run)
    env, _ = _pod_env(attempt)
    assert env["MLFLOW_TRACKING_URI"].value == "http://127.0.0.1:5000"
    (warning,) = _warnings(caplog, "loopback")
    assert "task train's pod" in warning and "tracking_uri=" in warning
    caplog.clear()
    _exported(track_in_pod(_pod_task(), tracking_uri=IN_CLUSTER), conn, run)
    assert _warnings(caplog, "loopback") == []


def test_a_local_artifact_store_is_named_in_the_log(monkeypatch, store, caplog):
    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.runs import TaskRunContext, open_task_run

    local = open_task_run(
        MLflowHook(), TaskRunContext(dag_id="d", run_id="r", task_id="t"), experiment_name="x"
    )
    conn = _conn(monkeypatch, "mlflow_open", host=SERVER)
    attempt, names = _exported(track_in_pod(_pod_task()), conn, local)
    assert "MLFLOW_RUN_ID" in names
    (warning,) = _warnings(caplog, "stores artifacts at")
    assert local.artifact_uri in warning and "mounts the same storage" in warning


def test_a_tracked_pod_task_without_the_helper_gets_nothing(remote, run):
    from airflow_mlflow import enable_tracking

    attempt, names = _exported(enable_tracking(_pod_task()), remote, run)
    assert names == [] and attempt.env_vars == {"MY_SETTING": "1", "MLFLOW_EXPERIMENT_NAME": "mine"}


def test_a_mapped_pod_task_and_its_xcom_arg_are_tracked():
    with DAG(dag_id="mapped_pods", schedule=None, start_date=START):
        mapped = KubernetesPodOperator.partial(task_id="m", image="x").expand(arguments=[["a"], ["b"]])
        track_in_pod(mapped, credentials_secret="s")
        plain = KubernetesPodOperator(task_id="p", image="x")
        track_in_pod(plain.output, tracking_uri=IN_CLUSTER)
    assert is_tracked(mapped) and is_tracked(plain)
    assert mapped.params[CONTAINER_PARAM]["credentials_secret"] == "s"
    assert plain.params[CONTAINER_PARAM]["tracking_uri"] == IN_CLUSTER


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: track_in_pod(BashOperator(task_id="b", bash_command="x")),
            TypeError,
            "track_in_pod: task 'b' is a BashOperator, not a KubernetesPodOperator",
        ),
        (
            lambda: track_in_container(_pod_task()),
            TypeError,
            "track_in_container: task 'train' is a KubernetesPodOperator, not a DockerOperator",
        ),
        (
            lambda: track_in_pod(_pod_task(), credentials_secret="My_Secret"),
            ValueError,
            "credentials_secret must name a Kubernetes Secret (lower-case letters, digits, '-' and "
            "'.'), got 'My_Secret'",
        ),
        (
            lambda: track_in_pod(_pod_task(), password_key="pass word"),
            ValueError,
            "password_key must be a Secret key ([-._a-zA-Z0-9]+), got 'pass word'",
        ),
        (
            lambda: track_in_pod(_pod_task(), tracking_uri="sqlite:///x.db"),
            ValueError,
            "tracking_uri must be an http(s) URL of an MLflow server, got 'sqlite:///x.db'",
        ),
        (
            lambda: track_in_container(_docker_task(), credentials_file="creds"),
            ValueError,
            "credentials_file must be an absolute path, got 'creds'",
        ),
    ],
)
def test_bad_arguments_name_the_field_and_the_value(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)


def test_a_tracking_uri_with_credentials_is_refused_without_showing_them():
    with pytest.raises(ValueError, match="must not carry credentials") as info:
        track_in_pod(_pod_task(), tracking_uri=f"http://alice:{PASSWORD}@mlflow:5000")
    assert PASSWORD not in str(info.value) and "'mlflow:5000'" in str(info.value)


# == DockerOperator =================================================================================


def test_a_container_gets_the_runs_environment_and_a_credentials_file_mount(remote, run, caplog):
    task = _docker_task(
        environment={"MLFLOW_EXPERIMENT_NAME": "mine"},
        env_file="MLFLOW_HTTP_REQUEST_TIMEOUT=99\n",
        private_environment={"API_KEY": "k"},
    )
    track_in_container(
        task, tracking_uri="http://host.docker.internal:5000", credentials_file="/etc/mlflow/creds"
    )
    attempt, names = _exported(task, remote, run)
    config, text = _container_config(attempt)
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["MLFLOW_TRACKING_URI"] == "http://host.docker.internal:5000"
    assert env["MLFLOW_RUN_ID"] == run.run_id and env["MLFLOW_EXPERIMENT_ID"] == run.experiment_id
    assert env["MLFLOW_EXPERIMENT_NAME"] == "mine" and env["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "99"
    assert env["API_KEY"] == "k"
    assert not {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} & set(env)
    (mount,) = config["HostConfig"]["Mounts"]
    assert mount == {
        "Target": "/root/.mlflow/credentials",
        "Source": "/etc/mlflow/creds",
        "Type": "bind",
        "ReadOnly": True,
    }
    assert PASSWORD not in text and "alice" not in text
    assert "/root/.mlflow/credentials (credentials file)" in names
    assert task.environment == {"MLFLOW_EXPERIMENT_NAME": "mine"} and task.mounts == []
    assert _warnings(caplog, "MLflow") == []


def test_a_container_without_a_credentials_file_gets_no_credentials(remote, run, caplog):
    task = track_in_container(_docker_task(network_mode="host"))
    attempt, _ = _exported(task, remote, run)
    config, text = _container_config(attempt)
    assert f"MLFLOW_TRACKING_URI={SERVER}" in config["Env"] and PASSWORD not in text
    (warning,) = _warnings(caplog, "credentials")
    assert "task train's container" in warning and "credentials_file=" in warning


def test_a_token_is_not_given_to_a_container_and_the_log_says_why(monkeypatch, run, caplog):
    conn = _conn(monkeypatch, "mlflow_token", host=SERVER, extra=json.dumps({"token": TOKEN}))
    attempt, _ = _exported(track_in_container(_docker_task()), conn, run)
    _, text = _container_config(attempt)
    assert TOKEN not in text
    (warning,) = _warnings(caplog, "credentials")
    assert "MLFLOW_TRACKING_TOKEN" in warning


def test_a_loopback_server_warns_unless_the_container_shares_the_hosts_network(monkeypatch, run, caplog):
    conn = _conn(monkeypatch, "mlflow_local", host="localhost", port=5000, schema="http")
    _exported(track_in_container(_docker_task()), conn, run)
    assert len(_warnings(caplog, "loopback")) == 1
    caplog.clear()
    _exported(track_in_container(_docker_task(network_mode="host")), conn, run)
    assert _warnings(caplog, "loopback") == []


def test_the_embedded_default_is_not_given_to_a_container(store, run, caplog):
    from airflow_mlflow.hooks.mlflow import MLflowHook

    task = track_in_container(_docker_task(), credentials_file="/etc/mlflow/creds")
    attempt = task.prepare_for_execution()
    assert export(attempt, MLflowHook.from_connection(None), run, EXPERIMENT) == []
    assert attempt.environment == {} and attempt.mounts == []
    (warning,) = _warnings(caplog, "embedded MLflow store")
    assert "task train's container" in warning


def test_other_operators_are_left_to_the_other_exports(remote, run):
    assert export(BashOperator(task_id="b", bash_command="x"), _hook(remote), run, EXPERIMENT) is None


# == as the task process sees the task ===============================================================


@dag(dag_id="containers_pod", schedule=None, start_date=START, catchup=False)
def _pod_dag():
    track_in_pod(
        KubernetesPodOperator(task_id="pod", image="x", namespace="ml", do_xcom_push=False),
        credentials_secret="mlflow-creds",
        tracking_uri=IN_CLUSTER,
    )


pod_dag = _pod_dag()


def test_the_settings_survive_parsing_serialization_and_the_attempts_copy(remote, run):
    """The task process parses the DAG file (a DagBag) and exports on the attempt's copy."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    bag = DagBag(dag_folder=__file__, safe_mode=False)
    assert bag.import_errors == {}
    parsed = bag.dags["containers_pod"]
    scheduler_copy = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(parsed))
    assert is_tracked(scheduler_copy.task_dict["pod"])
    attempt, names = _exported(parsed.task_dict["pod"], remote, run)
    env, pod_text = _pod_env(attempt)
    assert env["MLFLOW_TRACKING_URI"].value == IN_CLUSTER and env["MLFLOW_RUN_ID"].value == run.run_id
    assert env["MLFLOW_TRACKING_PASSWORD"].value_from.secret_key_ref.name == "mlflow-creds"
    assert PASSWORD not in pod_text


# == import cost ====================================================================================


def test_importing_the_helpers_loads_neither_kubernetes_docker_nor_mlflow():
    probe = (
        "import json, sys\n"
        "import airflow_mlflow.containers\n"
        "from airflow_mlflow import track_in_pod, track_in_container\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('mlflow', 'kubernetes', 'docker') or m.startswith('airflow_mlflow.hooks'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_mlflow_reads_credentials_from_the_file_format_the_docstring_gives(tmp_path):
    """What track_in_container mounts: ``~/.mlflow/credentials``, section [mlflow]."""
    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow" / "credentials").write_text(
        f"[mlflow]\nmlflow_tracking_username = alice\nmlflow_tracking_password = {PASSWORD}\n"
    )
    probe = "from mlflow.utils.credentials import read_mlflow_creds; print(tuple(read_mlflow_creds()))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={**env, "HOME": str(tmp_path)},
    )
    assert out.stdout.strip().splitlines()[-1] == repr(("alice", PASSWORD))
