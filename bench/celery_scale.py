"""
Figure 8: many overlapping DAG runs on the CeleryExecutor (two workers), tracked into one
``mlflow server`` through a counting proxy.

The Celery e2e tier's stack (``tests/e2e/_celery.py``: Redis broker, PostgreSQL result backend and
metadata DB, two Celery workers with the provider's Celery config, scheduler, dag-processor,
triggerer, API server) and DAG (``tests/dags/celery_fanout.py``: ten tasks using MLflow, six mapped).
N runs (50; quick: 10) are triggered at once, first of the same DAG untracked
(``celery_fanout_untracked``: plain tasks, no MLflow, the same model fit), then of the tracked DAG:

* throughput: DAG runs per minute, from the first trigger to the last run's end, tracked vs
  untracked (ratio);
* MLflow requests per DAG run (everything the tasks, the listener and the scheduler sent through
  the proxy) and the peak requests in any one second, against a budget of 3 requests/s;
* the tier's checks (``tests/e2e/test_celery_e2e.py``): exactly N parents, 7 x N children, no
  orphan, no duplicate, nothing RUNNING, both workers used, one champion, a consistent history.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
import time
from pathlib import Path

from bench._common import Figure, cli, mlflow_server
from bench._proxy import CountingProxy

BUDGET_RPS = 3.0


def timed_runs(stack, dag_id: str, n: int) -> tuple[list[str], float]:
    from tests.e2e.test_celery_e2e import wait_all

    stack.unpause(dag_id)
    started = time.monotonic()
    run_ids = [stack.trigger(dag_id, conf={"accuracy": 0.70 + 0.02 * (i % 10)}) for i in range(n)]
    wait_all(stack, dag_id, run_ids, timeout=60 * 60)
    return run_ids, time.monotonic() - started


def measure(args: argparse.Namespace) -> Figure:
    # Not quiet_mlflow_client(): the stack's processes inherit this environment, and its tasks keep
    # MLflow's default retries, as a deployment would.
    from tests.dags.celery_fanout import DAG_ID, UNTRACKED_DAG_ID
    from tests.e2e._celery import CeleryStack
    from tests.e2e.test_celery_e2e import check_tracked_runs

    n = 10 if args.quick else 50
    workdir = Path(tempfile.mkdtemp(prefix="bench-celery-"))  # kept when a check fails: the logs
    with mlflow_server() as url, CountingProxy(url) as proxy, contextlib.ExitStack() as cleanup:
        stack = CeleryStack(workdir, mlflow_server_url=proxy.url)
        cleanup.callback(stack.stop)
        stack.start()
        stack.wait_healthy()
        stack.wait_workers_ready()
        for dag_id in (DAG_ID, UNTRACKED_DAG_ID):
            stack.wait_for_dag(dag_id)

        _, untracked_s = timed_runs(stack, UNTRACKED_DAG_ID, n)
        proxy.reset()
        run_ids, tracked_s = timed_runs(stack, DAG_ID, n)
        time.sleep(5)  # the scheduler's end-of-DAG-run step for the last runs
        requests, peak, counts = proxy.total(), proxy.peak_rate(), proxy.counts()
        try:
            stats = check_tracked_runs(stack, run_ids)
        except AssertionError:
            print(f"[bench] a check failed; the stack's files are in {workdir}", flush=True)
            raise
    shutil.rmtree(workdir, ignore_errors=True)
    leftovers = stack.leftover_pids()

    per_min = {"untracked": 60 * n / untracked_s, "tracked": 60 * n / tracked_s}
    ratio = per_min["tracked"] / per_min["untracked"]
    mean_rps = requests / tracked_s
    figure = Figure(
        key="celery_scale",
        title=f"8. {n} overlapping DAG runs (10 tasks each) on 2 Celery workers",
        metric="DAG runs per minute",
        target=f"peak MLflow requests per second <= {BUDGET_RPS:g} (a hosted workspace's budget)",
        target_met=peak <= BUDGET_RPS,
    )
    figure.add("untracked", {"runs_per_min": per_min["untracked"], "seconds": untracked_s}, baseline=True)
    figure.add(
        "tracked",
        {
            "runs_per_min": per_min["tracked"],
            "seconds": tracked_s,
            "requests_per_dag_run": requests / n,
            "mean_rps": mean_rps,
            "peak_rps": peak,
        },
        ratio=ratio,
    )
    figure.summary = {
        "baseline": f"untracked {per_min['untracked']:.1f} runs/min",
        "provider": f"tracked {per_min['tracked']:.1f} runs/min, {requests / n:.0f} requests/run, "
        f"peak {peak} req/s",
        "ratio": f"{ratio:.2f}",
    }
    figure.notes.append(
        f"checks: {stats['parents']} parents, {stats['children']} children, 0 orphans, 0 duplicates, "
        f"nothing RUNNING, tasks per worker {stats['hosts']}, {stats['promotions']} promotions "
        f"({n - stats['promotions']} refused: the champion moved since their gate), one champion"
    )
    figure.details = {
        "n": n,
        "requests": requests,
        "top_endpoints": dict(counts.most_common(12)),
        "checks": stats,
        "leftover_pids": leftovers,
    }
    return figure


if __name__ == "__main__":
    cli(measure, __doc__)
