"""
Figure 4: per-task overhead of tracking, on the embedded default (SQLite) and on a real server.

``task_dags/overhead.py`` has an untracked no-op task (``@task``, the baseline) and two tracked
no-op tasks (``@task.mlflow``): the first of a DAG run finds or creates the DAG run's parent
MLflow run, a later one only finds it. The DAG runs with ``dag.test()`` in one process, several
times after two warm-up runs, in a fresh ``AIRFLOW_HOME`` per store. Each task's wall time is
the time of the task runner's call for it (``run_task_in_process``, timed by wrapping it): the
whole task as the task runner sees it, its MLflow run opened and closed included. The DAG-run
step (the provider's listener closing the parent run, in a background thread of the
scheduler) is timed apart, as ``listener.drain()`` after each run.

In one process MLflow is imported once, by the warm-up. A real task process imports it for
each tracked task: that cold cost is measured apart, in fresh interpreters that have
``airflow.sdk`` loaded and build the provider's MLflow client.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

from bench._common import BENCH, ROOT, Figure, cli, median, mlflow_server, ratio, server_conn, spread

STORES = ("embedded", "server")
TASKS = {
    "untracked": "untracked @task (baseline)",
    "tracked_first": "@task.mlflow, first tracked task of the DAG run",
    "tracked_later": "@task.mlflow, later tracked task",
}

# A fresh task process: airflow.sdk loaded, then the provider's hook, its client and a first call.
COLD_CHILD = """
import json, sys, time
import airflow.sdk
start = time.perf_counter()
from airflow_mlflow.hooks.mlflow import MLflowHook
MLflowHook().client.search_experiments(max_results=1)
print(json.dumps({"ms": (time.perf_counter() - start) * 1000}))
"""


def measure_store(store: str, runs: int) -> dict:
    """In this process: time each task of the overhead DAG over ``runs`` dag.test() runs."""
    from bench._common import airflow_home, quiet_mlflow_client

    server_url = os.environ.pop("BENCH_STORE_URL", None)
    airflow_home(BENCH / "task_dags", migrate=True)
    quiet_mlflow_client()
    if server_url:
        from bench._common import server_conn

        os.environ["AIRFLOW_CONN_MLFLOW_DEFAULT"] = server_conn(server_url)

    import airflow.sdk.execution_time.supervisor as supervisor

    from airflow_mlflow.plugins import listener
    from bench.task_dags.overhead import overhead

    task_seconds: dict[str, list[float]] = defaultdict(list)
    run_in_process = supervisor.run_task_in_process

    def timed_run(ti, task):
        start = time.perf_counter()
        try:
            return run_in_process(ti=ti, task=task)
        finally:
            task_seconds[ti.task_id].append(time.perf_counter() - start)

    supervisor.run_task_in_process = timed_run
    dag_test, drain = [], []
    for i in range(runs + 2):
        if i == 2:  # two warm-up runs: imports, the store's and the experiment's creation
            task_seconds.clear()
            dag_test.clear()
            drain.clear()
        for task in overhead.tasks:
            task.__dict__.pop("hook", None)  # each task process builds its own hook and client
        start = time.perf_counter()
        dag_run = overhead.test()
        dag_test.append(time.perf_counter() - start)
        start = time.perf_counter()
        listener.drain()
        drain.append(time.perf_counter() - start)
        if dag_run.state != "success":
            raise RuntimeError(f"bench_overhead run {dag_run.run_id} ended {dag_run.state}")
    return {
        "tasks_ms": {task: [s * 1000 for s in values] for task, values in task_seconds.items()},
        "dag_test_ms": [s * 1000 for s in dag_test],
        "dag_run_step_ms": [s * 1000 for s in drain],
    }


def run_store(store: str, runs: int, server_url: str | None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if server_url:
        env["BENCH_STORE_URL"] = server_url
    out = subprocess.run(
        [sys.executable, "-m", "bench.task_overhead", "--child", store, "--runs", str(runs)],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if out.returncode != 0:
        raise RuntimeError(f"task overhead on {store} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cold_client_ms(store: str, server_url: str, repetitions: int) -> list[float]:
    """Fresh interpreters building the provider's client and making one call (after one untimed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(PYTHONPATH=str(ROOT), AIRFLOW_HOME=tempfile.mkdtemp(prefix="bench-cold-"))
    if store == "server":
        env["AIRFLOW_CONN_MLFLOW_DEFAULT"] = server_conn(server_url)
    samples = []
    for _ in range(repetitions + 1):  # the first creates the embedded store: not measured
        out = subprocess.run(
            [sys.executable, "-c", COLD_CHILD], env=env, capture_output=True, text=True, check=True
        )
        samples.append(json.loads(out.stdout.strip().splitlines()[-1])["ms"])
    return samples[1:]


def run(args: argparse.Namespace) -> Figure:
    runs = 2 if args.quick else 12
    figure = Figure(
        key="overhead",
        title="4. Per-task overhead: a tracked no-op task against an untracked one (dag.test(), in process)",
        metric="task wall time",
    )
    results = {}
    with mlflow_server() as url:
        for store in STORES:
            results[store] = run_store(store, runs, url if store == "server" else None)
        cold = {store: cold_client_ms(store, url, 2 if args.quick else 5) for store in STORES}
    for store in STORES:
        tasks = results[store]["tasks_ms"]
        base = median(tasks["untracked"])
        for task_id, label in TASKS.items():
            ms = spread(tasks[task_id])
            figure.add(
                f"{store}: {label}",
                {
                    "task ms (median)": ms["median"],
                    "task ms (min..max)": f"{ms['min']:.0f}..{ms['max']:.0f}",
                    "added by tracking ms": ms["median"] - base,
                },
                ratio=ratio(ms["median"], base),
                baseline=task_id == "untracked",
            )
        step = median(results[store]["dag_run_step_ms"])
        figure.notes.append(
            f"{store}: the DAG-run step (listener, off the task path) took {step:.0f} ms per DAG run; "
            f"a whole dag.test() of the 3-task DAG {median(results[store]['dag_test_ms']):.0f} ms."
        )
        figure.add(
            f"{store}: cold start of a task process (import MLflow, build the client, first call)",
            {
                "task ms (median)": median(cold[store]),
                "task ms (min..max)": f"{min(cold[store]):.0f}..{max(cold[store]):.0f}",
                "added by tracking ms": median(cold[store]),
            },
        )
    figure.notes.append(
        f"Medians of {runs} DAG runs per store after 2 warm-up runs. In a deployment every tracked "
        f"task also pays the cold start once, since each task runs in a new process: "
        f"importing MLflow, building its client and store, and a first call."
    )
    figure.details = {"runs": runs, "results": results, "cold_client_ms": cold}

    def task_ms(store: str, task_id: str) -> float:
        return median(results[store]["tasks_ms"][task_id])

    figure.summary = {
        "baseline": "untracked task: "
        + ", ".join(f"{store} {task_ms(store, 'untracked'):.0f} ms" for store in STORES),
        "provider": "tracked task: "
        + ", ".join(f"{store} {task_ms(store, 'tracked_later'):.0f} ms" for store in STORES)
        + ", plus a cold start per task process of "
        + ", ".join(f"{store} {median(cold[store]):.0f} ms" for store in STORES),
        "ratio": ", ".join(
            f"{store} {task_ms(store, 'tracked_later') / task_ms(store, 'untracked'):.1f}x"
            for store in STORES
        ),
    }
    return figure


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:  # one store, in its own process and AIRFLOW_HOME
        print(json.dumps(measure_store(sys.argv[2], int(sys.argv[4]))))
    else:
        cli(run, __doc__)
