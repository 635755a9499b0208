"""
``make demo``: run the tracked example DAG on the embedded MLflow store and show what landed.

Everything stays inside this checkout: Airflow's home is ``.airflow/`` and the embedded MLflow
store is ``.airflow/mlflow/`` (SQLite database and artifacts).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / ".airflow"
DAG_ID = "tracked_training"
BIN = Path(sys.executable).parent


def step(message: str) -> float:
    print(f"==> {message}", flush=True)
    return time.monotonic()


def airflow(*args: str, env: dict[str, str]) -> None:
    log = HOME / "demo.log"
    with log.open("a") as out:
        result = subprocess.run([str(BIN / "airflow"), *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        sys.exit(f"airflow {' '.join(args)} failed; see {log}")


def main() -> None:
    HOME.mkdir(exist_ok=True)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_MLFLOW", "MLFLOW_TRACKING"))
    }
    env.update(
        AIRFLOW_HOME=str(HOME),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags_examples"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
    )
    started = step(f"Airflow home: {HOME} (metadata DB migrates on first use)")
    airflow("db", "migrate", env=env)
    print(f"    done in {time.monotonic() - started:.0f}s")
    started = step(f"airflow dags test {DAG_ID}: 3 mapped training tasks and a summary, tracked in MLflow")
    airflow("dags", "test", DAG_ID, env=env)
    print(f"    done in {time.monotonic() - started:.0f}s")
    summarize(HOME / "mlflow")


def summarize(store: Path) -> None:
    os.environ["AIRFLOW_HOME"] = str(HOME)
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(DAG_ID)
    runs = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=50
    )
    latest = next(r for r in runs if r.data.tags.get("airflow.role") == "dag_run")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == latest.info.run_id]
    step(f"MLflow experiment {DAG_ID!r}, DAG run {latest.info.run_name}: parent run {latest.info.status}")
    print(f"    {'run':<12} {'status':<9} {'params':<40} metrics")
    for run in sorted(children, key=lambda r: r.info.run_name):
        params = ", ".join(f"{k}={v}" for k, v in sorted(run.data.params.items()) if k != "dataset")
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(run.data.metrics.items()))
        print(f"    {run.info.run_name:<12} {run.info.status:<9} {params:<40} {metrics}")
    print()
    print(f"Runs are in {store / 'mlflow.db'}, artifacts (models) in {store / 'artifacts'}.")
    print(f"Browse them: {BIN / 'mlflow'} ui --backend-store-uri sqlite:///{store / 'mlflow.db'}")


if __name__ == "__main__":
    main()
