"""
``make demo``: the scheduled retraining pipeline on the embedded MLflow store, start to finish.

Runs ``retrain_model`` for four consecutive days (each trains on its own data window; some days
drift), then ``score_batch`` with the resulting champion, and prints what landed in MLflow.
Everything lives in ``.airflow/`` in this checkout, recreated on each demo: Airflow's metadata
DB, and the embedded MLflow store in ``.airflow/mlflow/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from airflow_mlflow.tags import GATE_STATUS, ROLE, ROLE_TASK, gate_metric

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / ".airflow"
BIN = Path(sys.executable).parent
MODEL = "breast_cancer_classifier"
DAYS = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]


def airflow(*args: str, env: dict[str, str]) -> float:
    started = time.monotonic()
    with (HOME / "demo.log").open("a") as log:
        done = subprocess.run([str(BIN / "airflow"), *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"airflow {' '.join(args)} failed; the log is {HOME / 'demo.log'}")
    return time.monotonic() - started


def client():
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{HOME / 'mlflow' / 'mlflow.db'}")


def newest_version():
    return max(client().search_model_versions(f"name = '{MODEL}'"), key=lambda v: int(v.version))


def main() -> None:
    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "MLFLOW_"))}
    env.update(
        AIRFLOW_HOME=str(HOME),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags_examples"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
    )
    print(f"==> Airflow home {HOME} (fresh); MLflow: embedded store in {HOME / 'mlflow'}", flush=True)
    print(f"    airflow db migrate ... {airflow('db', 'migrate', env=env):.0f}s", flush=True)
    for day in DAYS:
        print(f"==> retrain_model for {day}: train on the day's window, register, gate, promote", flush=True)
        seconds = airflow("dags", "test", "retrain_model", day, env=env)
        v = newest_version()
        status = v.tags.get(GATE_STATUS, "?")
        print(f"    version {v.version}: gate {status.upper()} ({seconds:.0f}s)", flush=True)
        print(f"    {v.tags.get(gate_metric('accuracy'), '')}", flush=True)
    print("==> score_batch: load models:/breast_cancer_classifier@champion and score a batch", flush=True)
    airflow("dags", "test", "score_batch", env=env)
    summarize()


def summarize() -> None:
    mlflow_client = client()
    versions = sorted(mlflow_client.search_model_versions(f"name = '{MODEL}'"), key=lambda v: int(v.version))
    champion = mlflow_client.get_model_version_by_alias(MODEL, "champion")
    print()
    print(f"{'version':<8} {'window':<11} {'noise':<6} {'accuracy':<9} {'verdict':<9} {'stage':<11} alias")
    for v in versions:
        run = mlflow_client.get_run(v.run_id)
        aliases = ", ".join(mlflow_client.get_model_version(MODEL, v.version).aliases)
        print(
            f"{v.version:<8} {run.data.params['window_start'][:10]:<11} {run.data.params['label_noise']:<6} "
            f"{run.data.metrics['accuracy']:<9.4f} {v.tags.get(GATE_STATUS, '-'):<9} "
            f"{v.current_stage:<11} {aliases}"
        )
    scoring = mlflow_client.get_experiment_by_name("score_batch")
    (scored,) = mlflow_client.search_runs(
        [scoring.experiment_id],
        f"tags.`{ROLE}` = '{ROLE_TASK}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    print()
    rows, rate = scored.data.metrics["rows_scored"], scored.data.metrics["positive_rate"]
    print(f"Champion: version {champion.version}. score_batch scored {rows:.0f} rows with it")
    print(f"(positive rate {rate:.2f}); its predictions are an artifact of run {scored.info.run_id}.")
    print()
    print("Look further:")
    print("  make airflow     # Airflow's UI on http://localhost:8080 (this demo's DAG runs; login printed)")
    print("  make mlflow-ui   # MLflow's UI on http://localhost:5000 (runs, plots, models, verdict tags)")


if __name__ == "__main__":
    main()
