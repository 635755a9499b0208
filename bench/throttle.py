"""
Figure 6: a burst of tracked runs against a rate-limited MLflow (hosted MLflow answers 429 above
a few requests per second per workspace).

A throttling proxy in front of a real ``mlflow server`` answers ``429`` with ``Retry-After: 1``
when more than RATE requests arrived within the last second. N runs (quick: 12) start at once,
one thread each, and each does what a tracked task does through ``MLflowHook``: open a run, log
a batch of params and metrics, finish it. Variants:

* no ``max_requests_per_second``, the provider's default retry budget (4 retries);
* no ``max_requests_per_second``, ``http_max_retries=10``;
* ``max_requests_per_second`` = 0.7 x RATE, the default retry budget, one process;
* (not in quick mode) the same N runs in PROCESSES processes, each with 0.7 x RATE / PROCESSES:
  the limiter is per process, so a deployment divides the server's rate by its parallel tasks.

Every run is read back from the server directly (not through the proxy): FINISHED, its params
and metrics all there.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench._common import Figure, airflow_home, cli, mlflow_server, quiet_mlflow_client
from bench._proxy import ThrottlingProxy, peak_per_second

RATE = 10
SHARE = 0.7
PROCESSES = 5


def conn_json(url: str, **extra: object) -> str:
    host, port = url.removeprefix("http://").split(":")
    return json.dumps(
        {"conn_type": "mlflow", "host": host, "port": int(port), "schema": "http", "extra": extra}
    )


def expected(i: int) -> tuple[dict[str, str], dict[str, float]]:
    return {"index": str(i), "lr": "0.01"}, {"loss": 1.0 / (1 + i), "accuracy": i / 100}


def burst(conn_id: str, experiment_id: str, indexes: list[int], tag: str, start_at: float = 0.0) -> dict:
    """
    One thread per index runs a tracked run through ``MLflowHook`` on ``conn_id``; all start
    together (at ``start_at``, wall clock, when given). Returns ``{"runs": {i: run_id},
    "errors": {i: message}, "seconds": wall time of the burst}``.
    """
    from airflow_mlflow.hooks.mlflow import MLflowHook

    runs: dict[int, str] = {}
    errors: dict[int, str] = {}
    barrier = threading.Barrier(len(indexes) + 1)

    def one(i: int) -> None:
        hook = MLflowHook(mlflow_conn_id=conn_id)
        _ = hook.config, hook.client  # resolved before the start line, as a task has
        barrier.wait()
        try:
            params, metrics = expected(i)
            run = hook.create_run(experiment_id, f"{tag}-{i}", {"bench.burst": tag}, int(time.time() * 1000))
            hook.log_batch(run.run_id, params=params, metrics=metrics)
            hook.set_run_status(run.run_id, "FINISHED")
            runs[i] = run.run_id
        except Exception as err:  # a failed task, as Airflow would record it
            errors[i] = f"{type(err).__name__}: {err}"[:300]

    threads = [threading.Thread(target=one, args=(i,)) for i in indexes]
    for thread in threads:
        thread.start()
    if start_at:
        time.sleep(max(0.0, start_at - time.time()))
    barrier.wait()
    started = time.monotonic()
    for thread in threads:
        thread.join()
    return {"runs": runs, "errors": errors, "seconds": time.monotonic() - started}


def _burst_in_child(
    conn_id: str, conn: str, experiment_id: str, indexes: list[int], tag: str, at: float
) -> dict:
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = conn
    quiet_mlflow_client()
    return burst(conn_id, experiment_id, indexes, tag, at)


def problems(server_url: str, runs: dict[int, str]) -> list[str]:
    """What is wrong with each run as the server stores it (read directly, not through the proxy)."""
    from mlflow import MlflowClient

    client, found = MlflowClient(server_url), []
    for i, run_id in sorted(runs.items()):
        run = client.get_run(run_id)
        params, metrics = expected(i)
        if run.info.status != "FINISHED" or not run.info.end_time:
            found.append(f"run {i} ({run_id}) is {run.info.status}")
        if dict(run.data.params) != params or dict(run.data.metrics) != metrics:
            found.append(f"run {i} ({run_id}) has {run.data.params} {run.data.metrics}")
    return found


def measure(server_url: str, proxy: ThrottlingProxy, experiment_id: str, n: int, name: str, **extra) -> dict:
    """One variant: its burst through ``proxy``, then every run checked on the server."""
    processes = extra.pop("processes", 1)
    conn_id = f"bench_burst_{name}"
    conn = conn_json(proxy.url, **extra)
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = conn
    proxy.reset()
    if processes == 1:
        result = burst(conn_id, experiment_id, list(range(n)), name)
    else:
        slices = [list(range(n))[p::processes] for p in range(processes)]
        at = time.time() + 25  # after every child has imported Airflow and MLflow
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(processes, mp_context=context) as pool:
            args = (conn_id, conn, experiment_id)
            futures = [pool.submit(_burst_in_child, *args, s, name, at) for s in slices]
            parts = [future.result() for future in futures]
        result = {
            "runs": {int(k): v for part in parts for k, v in part["runs"].items()},
            "errors": {int(k): v for part in parts for k, v in part["errors"].items()},
            "seconds": max(part["seconds"] for part in parts),
        }
    wrong = problems(server_url, result["runs"])
    return {
        "runs completed": len(result["runs"]) - len({w.split()[1] for w in wrong}),
        "tasks failed": len(result["errors"]),
        "429s": proxy.throttled,
        "requests forwarded": proxy.total(),
        "peak requests/s forwarded": proxy.peak_rate(),
        "peak requests/s offered": peak_per_second(proxy.times + proxy.refused),
        "seconds": result["seconds"],
        "errors": sorted(set(result["errors"].values()))[:3] + wrong[:3],
    }


def run(args: argparse.Namespace) -> Figure:
    n = 12 if args.quick else 50
    airflow_home(Path(tempfile.gettempdir()))
    quiet_mlflow_client()
    limit = round(SHARE * RATE, 3)
    from airflow_mlflow.hooks.config import DEFAULT_HTTP_MAX_RETRIES  # after airflow_home()

    # Explicit budgets: the bench's environment sets MLflow's retries to 0 for its other figures.
    default = {"http_max_retries": DEFAULT_HTTP_MAX_RETRIES}
    variants = [
        ("unlimited", "no limit, default retry budget (4 retries)", default),
        ("unlimited_retries10", "no limit, http_max_retries=10", {"http_max_retries": 10}),
        (
            f"limit_{limit:g}",
            f"max_requests_per_second={limit:g}, default retry budget, one process",
            {**default, "max_requests_per_second": limit},
        ),
    ]
    if not args.quick:
        per = round(limit / PROCESSES, 3)
        variants.append(
            (
                f"limit_{per:g}_x{PROCESSES}",
                f"max_requests_per_second={per:g}, default retry budget, {PROCESSES} processes",
                {**default, "max_requests_per_second": per, "processes": PROCESSES},
            )
        )
    figure = Figure(
        key="throttle",
        title=f"6. A burst of {n} tracked runs against MLflow limited to {RATE} requests/s (429 above)",
        metric="tasks failed by throttling",
        target="with max_requests_per_second under the server's rate: every run correct, no task failed",
    )
    measured: dict[str, dict] = {}
    with mlflow_server() as url, ThrottlingProxy(url, RATE) as proxy:
        from mlflow import MlflowClient

        experiment_id = MlflowClient(url).create_experiment(
            f"bench_throttle_{os.getpid()}_{int(time.time())}"
        )
        for key, label, extra in variants:
            measured[key] = values = measure(url, proxy, experiment_id, n, key, **extra)
            figure.add(label, {k: v for k, v in values.items() if k != "errors"}, baseline=key == "unlimited")
            print(f"[throttle] {label}: {values}", flush=True)
    limited = [v for k, v in measured.items() if k.startswith("limit")]
    figure.target_met = all(v["runs completed"] == n and v["tasks failed"] == 0 for v in limited)
    base, lim = measured["unlimited"], limited[0]
    figure.summary = {
        "baseline": f"no limit: {base['runs completed']}/{n} runs, {base['tasks failed']} failed, "
        f"{base['429s']} 429s",
        "provider": f"limit {limit:g}/s: {lim['runs completed']}/{n} runs, {lim['tasks failed']} failed, "
        f"{lim['429s']} 429s, {lim['seconds']:.0f} s",
        "ratio": "-",
    }
    figure.notes += [
        "MLflow's own retry (urllib3, Retry-After honoured) is the only retry layer; the limiter "
        "only waits before each request and never fails one.",
        "The limiter is per process: N parallel task processes on one connection need "
        "max_requests_per_second of about the server's rate / N (last row).",
    ]
    figure.details = {"rate": RATE, "runs": n, "variants": measured}
    return figure


if __name__ == "__main__":
    cli(run, __doc__)
