"""
Figure 7: a tracked no-op task's wall time against an untracked one on a real LocalExecutor,
by where the task process gets MLflow from.

The e2e stack (scheduler, dag-processor, triggerer, API server; ``mlflow_default`` on a real
``mlflow server``) runs ``task_dags/noop_fleet.py`` (K untracked, K ``@task.mlflow`` and K
listener-tracked no-op tasks, independent of each other, after one unmeasured ``@task.mlflow``
opener that opens the DAG run's parent run) several times after a warm-up run, in three
set-ups of the LocalExecutor's workers:

* ``fork``: Airflow's default on Linux before Python 3.14: workers are forked from the scheduler,
  which has imported MLflow already (the provider's DAG-run listener runs there);
* ``forkserver``: ``[scheduler] mp_start_method = forkserver`` (Python 3.14's default), nothing
  preloaded: each task process imports MLflow;
* ``forkserver_preload``: the same with ``mp_forkserver_preload = airflow_mlflow.preload``.

A task's wall time is its task instance's duration as Airflow records it: from the supervisor
starting the task process to its end, so the task process's start-up, the DAG file's parse and
MLflow's import are all in it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench._common import BENCH, Figure, cli, median, mlflow_server, ratio, spread

DAG_ID = "bench_noop_fleet"
KINDS = {
    "untracked": "untracked @task (baseline)",
    "decorated": "@task.mlflow",
    "listener": "plain @task under enable_tracking",
}
MODES = {
    "fork": "workers forked from the scheduler (default start method)",
    "forkserver": "forkserver, nothing preloaded",
    "forkserver_preload": "forkserver + airflow_mlflow.preload",
}
START_METHOD = {
    "fork": {},
    "forkserver": {"AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver"},
    "forkserver_preload": {
        "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
        "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": "airflow_mlflow.preload",
    },
}
TARGET = 1.5


def measure(workdir: Path, url: str, mode: str, k: int, runs: int) -> dict[str, list[float]]:
    from tests.e2e._airflow import AirflowStack

    stack = AirflowStack(
        workdir / mode,
        mlflow_server_url=url,
        dag_sources={"bench": BENCH / "task_dags"},
        env_overrides={
            "BENCH_FLEET_K": str(k),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            **START_METHOD[mode],
        },
    )
    durations: dict[str, list[float]] = {kind: [] for kind in KINDS}
    try:
        stack.start()
        stack.wait_healthy()
        # A warm-up run: the LocalExecutor starts its workers (and the forkserver, if any).
        for index in range(runs + 1):
            run_id = stack.trigger(DAG_ID)
            state = stack.wait(DAG_ID, run_id, timeout=600)
            if state != "success":
                raise RuntimeError(f"{DAG_ID} {run_id} {state}:\n{stack.describe_failure(DAG_ID, run_id)}")
            if index == 0:
                continue
            for ti in stack.task_instances(DAG_ID, run_id):
                if ti["task_id"] in durations:  # not the opener
                    durations[ti["task_id"]].append(float(ti["duration"]))
    finally:
        stack.stop()
    return durations


def run(args: argparse.Namespace) -> Figure:
    k, runs = (2, 1) if args.quick else (4, 5)
    figure = Figure(
        key="task_start",
        title=f"7. Task wall time on a LocalExecutor: {k} no-op tasks of each kind, {runs} DAG runs",
        metric="tracked task's median wall time / the untracked task's, same stack",
        target=f"with MLflow imported once per worker: tracked <= {TARGET}x untracked (median)",
    )
    from tests.integration._mlflow_servers import drop_stale_databases

    drop_stale_databases()
    results: dict[str, dict[str, list[float]]] = {}
    with mlflow_server() as url, tempfile.TemporaryDirectory(prefix="bench-start-") as workdir:
        for mode in MODES:
            started = time.monotonic()
            results[mode] = measure(Path(workdir), url, mode, k, runs)
            figure.details[f"{mode}_seconds"] = time.monotonic() - started
    met = True
    rows = []
    for mode, label in MODES.items():
        base = median(results[mode]["untracked"])
        for kind, kind_label in KINDS.items():
            values = results[mode][kind]
            r = None if kind == "untracked" else ratio(median(values), base)
            if mode != "forkserver" and r is not None:
                met = met and r <= TARGET
            figure.add(f"{label}: {kind_label}", spread(values), ratio=r, baseline=kind == "untracked")
            rows.append([label, kind_label, median(values), min(values), r])
    figure.table = {
        "columns": ["LocalExecutor workers", "task", "median s", "fastest s", "ratio"],
        "rows": rows,
    }
    figure.target_met = met
    preloaded = {kind: median(values) for kind, values in results["forkserver_preload"].items()}
    figure.summary = {
        "baseline": f"untracked @task {preloaded['untracked']:.2f} s",
        "provider": f"@task.mlflow {preloaded['decorated']:.2f} s (forkserver + airflow_mlflow.preload)",
        "ratio": f"{ratio(preloaded['decorated'], preloaded['untracked']):.2f}",
    }
    figure.details["durations"] = results
    figure.notes.append(
        "Duration is Airflow's task-instance duration (task process start to end); the scheduler's "
        "latency between tasks is not in it."
    )
    return figure


if __name__ == "__main__":
    cli(run, __doc__)
