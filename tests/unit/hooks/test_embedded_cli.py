"""``airflow dags test`` in a fresh AIRFLOW_HOME with no ``mlflow_default``: the embedded default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow import MlflowClient

from tests.assertions import assert_tracked_dag

ROOT = Path(__file__).resolve().parents[3]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def dags_test(home: Path, dags_folder: Path, dag_id: str, *confs: str) -> MlflowClient:
    """``airflow dags test`` once per conf (once without one), on a fresh home's embedded store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
    )
    env["PYTHONPATH"] = str(ROOT)
    runs = [["dags", "test", dag_id, *(["-c", conf] if conf else [])] for conf in (confs or [None])]
    for args in (["db", "migrate"], *runs):
        done = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    db = home / "mlflow" / "mlflow.db"
    assert db.is_file() and (home / "mlflow" / "artifacts").is_dir()
    return MlflowClient(f"sqlite:///{db}")


def only_dag_run(client: MlflowClient, experiment: str) -> SimpleNamespace:
    exp = client.get_experiment_by_name(experiment).experiment_id
    (parent,) = client.search_runs([exp], filter_string="tags.`airflow.role` = 'dag_run'", run_view_type=3)
    return SimpleNamespace(dag_id=experiment, run_id=parent.data.tags["airflow.run_id"])


def test_tracked_dag_via_cli_on_embedded_default(tmp_path):
    client = dags_test(tmp_path / "home", ROOT / "tests" / "dags", "tracked_example")
    runs = assert_tracked_dag(client, only_dag_run(client, "tracked_example"))
    exp = client.get_experiment_by_name("tracked_example").experiment_id
    everything = client.search_runs([exp], run_view_type=3)  # deleted ones too: no duplicates at all
    assert len(everything) == 6
    assert not [r for r in everything if r.info.status == "RUNNING"]
    assert str(tmp_path / "home" / "mlflow" / "artifacts") in runs["report"].info.artifact_uri


@pytest.mark.timeout(900)
def test_example_dag_logs_sklearn_models_on_embedded_default(tmp_path):
    client = dags_test(tmp_path / "home", ROOT / "dags_examples", "tracked_training")
    dag_run = only_dag_run(client, "tracked_training")
    exp = client.get_experiment_by_name("tracked_training").experiment_id
    runs = {r.info.run_name: r for r in client.search_runs([exp])}
    assert runs[dag_run.run_id].info.status == "FINISHED"
    trains = [runs[f"train[{i}]"] for i in range(3)]
    assert [r.data.params["C"] for r in trains] == ["0.01", "0.1", "1.0"]
    assert all(0.9 < r.data.metrics["accuracy"] <= 1 for r in trains)
    best = max(r.data.metrics["accuracy"] for r in trains)
    assert runs["summary"].data.metrics["best_accuracy"] == pytest.approx(best)
    models = client.search_logged_models([exp])
    assert sorted(m.source_run_id for m in models) == sorted(r.info.run_id for r in trains)


@pytest.mark.timeout(900)
def test_model_lifecycle_via_cli_on_embedded_default(tmp_path):
    home = tmp_path / "home"
    confs = ['{"accuracy": 0.8}', '{"accuracy": 0.7}', '{"accuracy": 0.9}']
    client = dags_test(home, ROOT / "tests" / "dags", "gate_lifecycle", *confs)
    dags_test(home, ROOT / "tests" / "dags", "gate_rollback")
    versions = {str(v.version): v for v in client.search_model_versions("name = 'gate_model'")}
    assert {v: m.current_stage for v, m in versions.items()} == {
        "1": "Production",
        "2": "Staging",
        "3": "Archived",
    }
    assert str(client.get_model_version_by_alias("gate_model", "champion").version) == "1"
    assert [versions[v].tags["airflow.gate.status"] for v in "123"] == ["passed", "rejected", "passed"]
    assert versions["2"].tags["airflow.gate.metric.accuracy"].endswith("baseline 0.8 -> rejected")
    assert versions["3"].tags["airflow.promotion.previous_version"] == "1"
    history = json.loads(client.get_registered_model("gate_model").tags["airflow.champion_history"])
    assert [(e["seq"], e["action"], e["version"]) for e in history] == [
        (0, "promote", "1"),
        (1, "promote", "3"),
        (2, "rollback", "1"),
    ]
