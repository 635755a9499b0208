"""What ``dags_examples/script_training.py`` (``retrain_from_script``) leaves in MLflow, checked the
same way on every tier: the embedded store through ``airflow dags test`` (unit), a basic-auth
``mlflow server`` (integration), and the real scheduler (e2e).

Per DAG run: one parent run, one child run for ``train`` (the ``BashOperator``; the registry
tasks open none) holding what the unmodified script logged (params, metrics, its logged model with
signature and input example), and one model version registered from that model, with the gate's
verdict; a passing version is promoted.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.assertions import assert_logged_sklearn_model

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
EXAMPLES = ROOT / "dags_examples"
DAG_ID = "retrain_from_script"
MODEL = "breast_cancer_from_script"
SCRIPT = "scripts/train_classifier.py"
#: The gate of the DAG: accuracy >= 0.85 and at least 0.005 over the champion.
THRESHOLD, MARGIN = 0.85, 0.005
METRICS = {"accuracy", "f1", "roc_auc"}


def dags_test_env(home: Path, **extra: str) -> dict[str, str]:
    """A fresh AIRFLOW_HOME serving the example DAGs; no connection or MLflow setting inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__", "MLFLOW_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(EXAMPLES),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


def airflow_cli(env: dict[str, str], *args: str) -> str:
    """Run the ``airflow`` CLI; its output (stdout and stderr), which must report success."""
    done = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, cwd=ROOT)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def dags_test(env: dict[str, str], day: str) -> tuple[str, str]:
    """``airflow dags test retrain_from_script <day>``: the DAG run's id and the output."""
    output = airflow_cli(env, "dags", "test", DAG_ID, day)
    finished = rf"DagRun Finished: dag_id={DAG_ID}, .*?run_id=([^,]+),.*state=success"
    (run_id,) = re.findall(finished, output)
    return run_id, output


@dataclass(frozen=True)
class Trained:
    """One DAG run's training: its Airflow run id, the seed the command passed, and what MLflow holds."""

    dag_run_id: str
    seed: str
    run: Any  # mlflow.entities.Run of the train task
    model: Any  # mlflow.entities.LoggedModel the script logged in it


def assert_training(client, tracking_uri: str, dag_run_id: str, seed: str) -> Trained:
    """The DAG run's parent and its one child, ``train``, with what the script logged."""
    experiment = client.get_experiment_by_name(DAG_ID)
    assert experiment is not None, f"no experiment {DAG_ID!r}"
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`airflow.run_id` = '{dag_run_id}'"
    )
    roles = {}
    for run in runs:
        roles.setdefault(run.data.tags.get("airflow.role"), []).append(run)
    (parent,) = roles.pop("dag_run")
    (train,) = roles.pop("task")  # register, gate and promote are the provider's: no run of their own
    assert roles == {}, roles
    assert parent.info.status == "FINISHED" and parent.data.tags["airflow.dag_id"] == DAG_ID

    tags, params, metrics = train.data.tags, train.data.params, train.data.metrics
    assert train.info.status == "FINISHED" and train.info.run_name == "train"
    assert tags["mlflow.parentRunId"] == parent.info.run_id
    assert tags["airflow.task_id"] == "train" and tags["airflow.try.1.state"] == "success"
    assert tags["airflow.operator"] == "airflow.providers.standard.operators.bash.BashOperator"
    command = params.pop("airflow.field.bash_command")
    assert SCRIPT in command and command.endswith(f"--C 1.0 --max-iter 1000 --seed {seed}"), command
    # Everything else the script logged itself, knowing nothing of Airflow.
    assert params == {
        "C": "1.0",
        "max_iter": "1000",
        "test_size": "0.3",
        "seed": seed,
        "model": "logistic_regression",
        "train_rows": "398",
    }
    assert set(metrics) == METRICS | {"airflow.duration_s"}, metrics
    assert all(0.9 < metrics[m] <= 1.0 for m in METRICS), metrics
    assert metrics["airflow.duration_s"] > 0

    logged = assert_logged_sklearn_model(client, tracking_uri, experiment.experiment_id, train.info.run_id)
    return Trained(dag_run_id, seed, train, logged)


def expected_verdicts(trained: list[Trained]) -> list[str]:
    """The gate's verdicts, derived from the accuracies (bounds inclusive)."""
    verdicts, champion = [], None
    for t in trained:
        accuracy = t.run.data.metrics["accuracy"]
        passed = accuracy >= THRESHOLD and (champion is None or accuracy >= champion + MARGIN)
        verdicts.append("passed" if passed else "rejected")
        champion = accuracy if passed else champion
    return verdicts


def assert_registry(client, trained: list[Trained]) -> list[str]:
    """Version n registered from the n-th DAG run's train run, gated, promoted if it passed."""
    verdicts = expected_verdicts(trained)
    assert verdicts[0] == "passed"  # the first version has no champion to beat
    versions = {int(v.version): v for v in client.search_model_versions(f"name = '{MODEL}'")}
    assert sorted(versions) == list(range(1, len(trained) + 1))
    promoted = [n for n, verdict in enumerate(verdicts, start=1) if verdict == "passed"]
    for n, (t, verdict) in enumerate(zip(trained, verdicts, strict=True), start=1):
        version = versions[n]
        tags = version.tags
        assert version.run_id == t.run.info.run_id
        assert version.source == f"models:/{t.model.model_id}"
        assert tags["airflow.run_id"] == t.dag_run_id and tags["airflow.task_id"] == "register"
        assert tags["airflow.gate.status"] == verdict, tags
        assert tags["airflow.gate.dag_run"] == f"{DAG_ID}/{t.dag_run_id}"
        if verdict == "passed":
            assert tags["airflow.promotion.dag_run"] == f"{DAG_ID}/{t.dag_run_id}"
            earlier = [p for p in promoted if p < n]
            assert tags["airflow.promotion.previous_version"] == (str(earlier[-1]) if earlier else "none")
            stage = "Production" if n == promoted[-1] else "Archived"
        else:
            assert not [k for k in tags if k.startswith("airflow.promotion.")], tags
            stage = "Staging"
        assert version.current_stage == stage, (n, version.current_stage)
    # str(): the SQL store hands back versions as ints, the REST client as strings.
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == str(promoted[-1])
    return verdicts
