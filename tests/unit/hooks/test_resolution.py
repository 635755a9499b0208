"""Every process of a DAG run resolves ``mlflow_default`` the same way; the embedded default only
when it is defined nowhere; an unreadable connection is an error (``resolve_config``)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from airflow_mlflow.hooks.mlflow import MLflowHook
from tests.support import copy_store

ROOT = Path(__file__).resolve().parents[3]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """A fresh AIRFLOW_HOME; no connection from the environment, so only the metadata DB has one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "tests" / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        # A PYTHONPATH already set (the old provider, to show a test fails there) comes first.
        PYTHONPATH=os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)])),
        **extra,
    )
    return env


RESOLVE = (
    "from airflow_mlflow.hooks.mlflow import MLflowHook\n"
    "try:\n"
    "    print('RESOLVED', MLflowHook().config.tracking_uri)\n"
    "except Exception as err:\n"
    "    print('RAISED', type(err).__name__, err)\n"
)


def resolve_in_subprocess(env: dict[str, str], prelude: str = "") -> subprocess.CompletedProcess:
    """``mlflow_default`` resolved by a fresh interpreter: prints RESOLVED <uri> or RAISED <error>."""
    code = prelude + RESOLVE
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)


def airflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.timeout(900)
def test_dags_test_tasks_and_listener_use_the_connection_from_the_metadata_db(tmp_path, mlflow_template):
    home = tmp_path / "home"
    uri = copy_store(mlflow_template, tmp_path / "store")
    env = clean_env(home)
    airflow(env, "db", "migrate")
    extra = {"tracking_uri": uri, "artifact_root": str(tmp_path / "store" / "artifacts")}
    airflow(
        env,
        "connections",
        "add",
        "mlflow_default",
        "--conn-type",
        "mlflow",
        "--conn-extra",
        json.dumps(extra),
    )
    airflow(env, "dags", "test", "tracked_example")

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tracked_example")
    assert exp is not None, "the tasks did not track to the connection's store"
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("airflow.role") == "dag_run"]
    assert len(parents) == 1 and len(runs) == 6
    # The listener (the CLI process, outside any task) finalized the same store.
    assert parents[0].info.status == "FINISHED"
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    assert not (home / "mlflow").exists(), "something fell back to the embedded store"


@pytest.mark.usefixtures("airflow_db")
def test_embedded_fallback_says_so_in_one_line_naming_the_store(monkeypatch, tmp_path, caplog):
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    caplog.set_level(logging.INFO)
    hook = MLflowHook()
    hook.get_or_create_experiment("e")
    hook.find_runs(hook.get_or_create_experiment("e"), {"airflow.role": "task"})
    MLflowHook().get_or_create_experiment("e")  # the next task of `airflow dags test`: said once
    store = str(tmp_path / "mlflow" / "mlflow.db")
    lines = [r.getMessage() for r in caplog.records if "embedded" in r.getMessage()]
    assert len(lines) == 1, lines
    assert store in lines[0] and "mlflow_default" in lines[0]
    assert [r.levelname for r in caplog.records if "embedded" in r.getMessage()] == ["WARNING"]


def test_unreadable_connection_is_an_error_naming_it(tmp_path):
    """A secrets backend that fails (not 'not found') must not turn into the embedded default."""
    home = tmp_path / "home"
    env = clean_env(
        home, AIRFLOW__SECRETS__BACKEND="tests.unit.hooks._broken_secrets.BrokenBackend", AMLF_HOME=str(home)
    )
    done = resolve_in_subprocess(env)
    assert "RAISED MLflowConnectionLookupError" in done.stdout, done.stdout + done.stderr[-2000:]
    assert "'mlflow_default'" in done.stdout and "secrets backend unreachable" in done.stdout
    assert not (home / "mlflow").exists()


def test_a_script_with_a_fresh_airflow_home_gets_the_embedded_store(tmp_path):
    """A notebook or script whose metadata DB was never migrated defines no connection."""
    home = tmp_path / "home"
    done = resolve_in_subprocess(clean_env(home))
    assert f"RESOLVED sqlite:///{home}/mlflow/mlflow.db" in done.stdout, done.stdout + done.stderr[-2000:]
    assert "defined nowhere" in done.stdout + done.stderr


def test_a_metadata_db_that_does_not_answer_is_an_error_not_the_embedded_default(tmp_path):
    home = tmp_path / "home"
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = clean_env(
        home,
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"postgresql+psycopg2://postgres@127.0.0.1:{port}/airflow",
    )
    done = resolve_in_subprocess(env)
    assert "RAISED MLflowConnectionLookupError" in done.stdout, done.stdout + done.stderr[-2000:]
    assert "'mlflow_default'" in done.stdout
    assert not (home / "mlflow").exists()


def test_connection_of_another_team_is_an_error_not_the_embedded_default(tmp_path):
    """Multi-team: the scheduler's listener (no team) cannot read a team's connection: it says so."""
    import sqlite3

    home = tmp_path / "home"
    env = clean_env(home, AIRFLOW__CORE__MULTI_TEAM="True")
    airflow(env, "db", "migrate")
    airflow(env, "teams", "create", "team_a")
    extra = json.dumps({"tracking_uri": f"sqlite:///{tmp_path}/team_a.db"})
    airflow(env, "connections", "add", "mlflow_default", "--conn-type", "mlflow", "--conn-extra", extra)
    with sqlite3.connect(home / "airflow.db") as db:
        db.execute("UPDATE connection SET team_name = 'team_a' WHERE conn_id = 'mlflow_default'")
    code = (
        "import os\n"
        "os.environ['_AIRFLOW_PROCESS_CONTEXT'] = 'server'  # as in the scheduler\n"
        "from airflow_mlflow.hooks.mlflow import MLflowHook\n"
        "print('TEAM', MLflowHook(team_name='team_a').config.tracking_uri)\n"
        "from airflow_mlflow.plugins.finalization import hook_for  # finalizing a DAG run of team_a\n"
        "print('LISTENER', hook_for({}, 'mlflow_default', 'team_a').config.tracking_uri)\n"
        "try:\n"
        "    MLflowHook().config\n"
        "except Exception as err:\n"
        "    print('RAISED', type(err).__name__, err)\n"
        "else:\n"
        "    print('RESOLVED')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert f"TEAM sqlite:///{tmp_path}/team_a.db" in done.stdout, done.stdout + done.stderr[-2000:]
    assert f"LISTENER sqlite:///{tmp_path}/team_a.db" in done.stdout
    assert "RAISED MLflowConnectionLookupError" in done.stdout, done.stdout + done.stderr[-2000:]
    assert "'mlflow_default'" in done.stdout and "team_a" in done.stdout
    assert not (home / "mlflow").exists()


@pytest.mark.timeout(600)
def test_unreadable_connection_fails_the_tasks_under_dags_test(tmp_path):
    """In the tasks (Task SDK) and the listener alike: an error naming the id, nothing embedded."""
    home = tmp_path / "home"
    env = clean_env(home)
    airflow(env, "db", "migrate")
    env["AIRFLOW__SECRETS__BACKEND"] = "tests.unit.hooks._broken_secrets.BrokenBackend"
    done = subprocess.run(
        [AIRFLOW, "dags", "test", "tracked_example"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=500,
    )
    out = done.stdout + done.stderr
    assert "MLflowConnectionLookupError: Connection 'mlflow_default' could not be read" in out, out[-3000:]
    assert not (home / "mlflow").exists(), "a task fell back to the embedded store"
