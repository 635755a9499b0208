"""
Figure 5: promotion-gate scalability on one real triggerer.

A native Airflow stack (``tests/e2e/_airflow.py``: PostgreSQL metadata, scheduler with the
LocalExecutor, dag-processor, triggerer, API server) runs ``gate_dags/gate_bench.py``: N
``MLflowMetricThresholdSensor`` s (N = 200; quick: 4), one per version of a registered model
whose metric is not logged yet. MLflow is a real ``mlflow server`` behind the counting proxy.

Phases, in one stack:

1. **idle**: the triggerer with no triggers, the baseline of its CPU and memory;
2. **poke** (the baseline for worker slots): the N gates in ``poke`` mode hold every worker slot
   (``[core] parallelism``) while they wait, and the rest cannot even start; the DAG run is then
   failed through the REST API;
3. **deferred**: the N gates defer (each runs once on a worker to check, then hands over to the
   triggerer); once all are deferred, a window measures the triggerer's CPU and peak RSS (its
   process tree, psutil), the requests per second reaching MLflow, and the task instances in
   ``running`` vs ``deferred`` (the metadata DB, sampled every second);
4. **fire**: the metric is logged on every version at once; the delay from each metric to its
   sensor firing (its task instance leaving ``deferred``, polled every 0.25 s) and, for those
   that finish within the wait, to ``success``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench._common import BENCH, Figure, cli, median, mlflow_server, p95, ratio
from bench._proxy import CountingProxy
from tests.e2e._airflow import wait_for

DEFERRED, POKE = "bench_gate_deferred", "bench_gate_poke"
MODEL, METRIC = "bench_gate_model", "accuracy"
PARALLELISM = 4


class ProcessTree:
    """CPU seconds and RSS of a process and all its descendants, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self._members():
            with contextlib.suppress(Exception):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def rss(self) -> int:
        total = 0
        for proc in self._members():
            with contextlib.suppress(Exception):
                total += proc.memory_info().rss
        return total

    def _members(self):
        with contextlib.suppress(Exception):
            return [self.root, *self.root.children(recursive=True)]
        return []

    def __enter__(self) -> ProcessTree:
        self.peak_rss = self.rss()

        def sample() -> None:
            while not self._stop.wait(0.5):
                self.peak_rss = max(self.peak_rss, self.rss())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()


class MetadataDB:
    """Task-instance states straight from the stack's PostgreSQL metadata DB."""

    def __init__(self, uri: str) -> None:
        import psycopg2

        self.conn = psycopg2.connect(uri.replace("+psycopg2", ""))
        self.conn.autocommit = True

    def states(self, dag_id: str, run_id: str) -> dict[int, str]:
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT map_index, state FROM task_instance WHERE dag_id = %s AND run_id = %s",
                (dag_id, run_id),
            )
            return {map_index: state or "none" for map_index, state in cur.fetchall()}

    def close(self) -> None:
        self.conn.close()


def bench_stack_class():
    from tests.e2e._airflow import AirflowStack

    class BenchStack(AirflowStack):
        """The e2e stack serving ``bench/gate_dags`` with N gates polling every ``interval`` s."""

        def __init__(self, workdir: Path, mlflow_url: str, n: int, interval: float) -> None:
            super().__init__(workdir, mlflow_server_url=mlflow_url)
            self.bench_env = {
                "AIRFLOW__CORE__DAGS_FOLDER": str(BENCH / "gate_dags"),
                "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4096",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
                "BENCH_GATE_N": str(n),
                "BENCH_GATE_INTERVAL": str(interval),
            }

        def _build_env(self) -> dict[str, str]:
            return {**super()._build_env(), **self.bench_env}

    return BenchStack


def register_versions(client, n: int) -> list[str]:
    """Versions 1..n of the bench model, each from its own run without the metric; their run ids."""
    experiment = client.create_experiment(f"bench_gate_{os.getpid()}")
    client.create_registered_model(MODEL)
    run_ids = []
    for _ in range(n):
        run = client.create_run(experiment)
        client.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        run_ids.append(run.info.run_id)
    return run_ids


def window(seconds: float, proxy: CountingProxy, tree: ProcessTree, sample_states) -> dict:
    """Measure for ``seconds``: triggerer CPU and RSS, requests/s, and task-instance states."""
    proxy.reset()
    cpu_start, start = tree.cpu_seconds(), time.monotonic()
    tree.peak_rss = tree.rss()
    state_samples: list[Counter] = []
    while time.monotonic() - start < seconds:
        state_samples.append(Counter(sample_states().values()))
        time.sleep(1)
    elapsed = time.monotonic() - start
    requests = proxy.counts()
    return {
        "seconds": elapsed,
        "triggerer_cpu_percent": 100 * (tree.cpu_seconds() - cpu_start) / elapsed,
        "triggerer_peak_rss_mb": tree.peak_rss / 2**20,
        "requests_per_s": sum(requests.values()) / elapsed,
        "requests_by_endpoint": dict(requests),
        "max_running": max((s["running"] for s in state_samples), default=0),
        "max_deferred": max((s["deferred"] for s in state_samples), default=0),
        "median_running": median([s["running"] for s in state_samples]) if state_samples else 0,
        "waiting_for_a_slot": max((s["scheduled"] + s["queued"] for s in state_samples), default=0),
    }


def run(args: argparse.Namespace) -> Figure:
    n, interval = (4, 3.0) if args.quick else (200, 10.0)
    idle_s, poke_s, window_s = (5, 6, 10) if args.quick else (20, 30, 60)
    figure = Figure(
        key="gate",
        title=f"5. Gate scalability: {n} deferred MLflowMetricThresholdSensors on one triggerer "
        f"(poll every {interval:g} s)",
        metric="against the idle triggerer / the same gates in poke mode",
    )
    from mlflow import MlflowClient

    from tests.integration._mlflow_servers import drop_stale_databases

    drop_stale_databases()
    with (
        mlflow_server() as url,
        CountingProxy(url) as proxy,
        tempfile.TemporaryDirectory(prefix="bench-gate-") as workdir,
    ):
        client = MlflowClient(url)  # set-up and the metric go straight to the server, uncounted
        run_ids = register_versions(client, n)
        stack = bench_stack_class()(Path(workdir), proxy.url, n, interval)
        try:
            started = time.monotonic()
            stack.start()
            stack.wait_healthy()
            for dag_id in (POKE, DEFERRED):
                stack.unpause(dag_id)
            startup = time.monotonic() - started
            db = MetadataDB(stack.db_uri)
            tree = ProcessTree(stack.procs["triggerer"].pid)
            with tree:
                idle = window(idle_s, proxy, tree, dict)
                poke = measure_poke(stack, db, proxy, tree, n, poke_s)
                deferred, fire = measure_deferred(stack, db, proxy, tree, client, run_ids, interval, window_s)
            db.close()
        finally:
            stack.stop()
    report(figure, n, interval, startup, idle, poke, deferred, fire)
    return figure


def measure_poke(stack, db: MetadataDB, proxy, tree, n: int, window_s: float) -> dict:
    run_id = stack.trigger(POKE)
    slots = min(n, PARALLELISM)
    wait_for(
        f"{slots} poking gates",
        lambda: Counter(db.states(POKE, run_id).values())["running"] >= slots,
        300,
    )
    result = window(window_s, proxy, tree, lambda: db.states(POKE, run_id))
    stack.api("PATCH", f"/dags/{POKE}/dagRuns/{run_id}", json={"state": "failed"})
    wait_for(
        "the poking gates to stop",
        lambda: not Counter(db.states(POKE, run_id).values())["running"],
        120,
    )
    return result


def measure_deferred(stack, db: MetadataDB, proxy, tree, client, run_ids, interval, window_s):
    n = len(run_ids)
    run_id = stack.trigger(DEFERRED)
    started = time.monotonic()
    proxy.reset()
    max_running = 0

    def all_deferred() -> bool:
        nonlocal max_running
        counts = Counter(db.states(DEFERRED, run_id).values())
        max_running = max(max_running, counts["running"])
        if counts["failed"] or counts["upstream_failed"]:
            raise RuntimeError(f"gates failed before deferring: {dict(counts)}")
        return counts["deferred"] == n

    wait_for(f"{n} deferred gates", all_deferred, 60 + 10 * n)
    to_defer = {
        "seconds": time.monotonic() - started,
        "max_running": max_running,
        "requests": proxy.total(),
    }
    steady = window(window_s, proxy, tree, lambda: db.states(DEFERRED, run_id))
    steady["to_defer"] = to_defer

    # Fire: the metric appears on every version at once.
    logged_at = {}
    for map_index, mlflow_run in enumerate(run_ids):
        client.log_metric(mlflow_run, METRIC, 0.9)
        logged_at[map_index] = time.monotonic()
    fired_at: dict[int, float] = {}
    done_at: dict[int, float] = {}
    waited = 2 * interval + 30
    deadline = time.monotonic() + waited
    while time.monotonic() < deadline and len(done_at) < n:
        now = time.monotonic()
        for map_index, state in db.states(DEFERRED, run_id).items():
            if state != "deferred":
                fired_at.setdefault(map_index, now)
            if state == "success":
                done_at.setdefault(map_index, now)
            elif state in {"failed", "skipped", "upstream_failed"}:
                raise RuntimeError(f"gate {map_index} ended {state} after its metric appeared")
        time.sleep(0.25)
    stack.api("PATCH", f"/dags/{DEFERRED}/dagRuns/{run_id}", json={"state": "failed"})
    fire = {
        "fired": len(fired_at),
        "succeeded": len(done_at),
        "fire_delays_s": [fired_at[i] - logged_at[i] for i in sorted(fired_at)],
        "success_delays_s": [done_at[i] - logged_at[i] for i in sorted(done_at)],
        "waited_s": waited,
    }
    return steady, fire


def times(value: float | None, precision: str) -> str:
    """``1.3x``, or ``-`` when the baseline was zero (e.g. no request at all in a window)."""
    return "-" if value is None else f"{value:{precision}f}x"


def report(figure: Figure, n, interval, startup, idle, poke, deferred, fire) -> None:
    slots = min(n, PARALLELISM)
    per_poll = {
        "poke": poke["requests_per_s"] * interval / slots,
        "deferred": deferred["requests_per_s"] * interval / n,
    }
    vs = {
        "cpu": times(ratio(deferred["triggerer_cpu_percent"], idle["triggerer_cpu_percent"]), ".1"),
        "rss": times(ratio(deferred["triggerer_peak_rss_mb"], idle["triggerer_peak_rss_mb"]), ".2"),
        "requests": times(ratio(deferred["requests_per_s"], poke["requests_per_s"]), ".1"),
        "per_poll": times(ratio(per_poll["deferred"], per_poll["poke"]), ".2"),
    }
    polls_per_s = n / interval
    cpu_ms_per_poll = 10 * (deferred["triggerer_cpu_percent"] - idle["triggerer_cpu_percent"]) / polls_per_s
    figure.add("idle triggerer", idle, baseline=True)
    figure.add(f"{n} gates, poke mode", poke, baseline=True)
    figure.add(
        f"{n} gates, deferred",
        {k: v for k, v in deferred.items() if k != "to_defer"},
        ratio=ratio(deferred["triggerer_cpu_percent"], idle["triggerer_cpu_percent"]),
    )
    delays, done = fire["fire_delays_s"], fire["success_delays_s"]
    fired_median, fired_p95 = (median(delays), p95(delays)) if delays else (float("nan"), float("nan"))
    figure.add("metric appears, gates fire", fire)
    columns = ["", "idle triggerer", f"{n} gates, poke mode", f"{n} gates, deferred", "deferred vs baseline"]
    figure.table = {
        "columns": columns,
        "rows": [
            ["worker slots held", "-", poke["max_running"], deferred["max_running"], "target 0"],
            [
                "gates waiting for a worker slot",
                "-",
                poke["waiting_for_a_slot"],
                deferred["waiting_for_a_slot"],
                "",
            ],
            ["gates polling MLflow", 0, slots, deferred["max_deferred"], ""],
            [
                "triggerer CPU %",
                idle["triggerer_cpu_percent"],
                poke["triggerer_cpu_percent"],
                deferred["triggerer_cpu_percent"],
                f"{vs['cpu']} idle",
            ],
            [
                "triggerer peak RSS MB (process tree)",
                idle["triggerer_peak_rss_mb"],
                poke["triggerer_peak_rss_mb"],
                deferred["triggerer_peak_rss_mb"],
                f"{vs['rss']} idle",
            ],
            [
                "requests/s reaching MLflow",
                idle["requests_per_s"],
                poke["requests_per_s"],
                deferred["requests_per_s"],
                f"{vs['requests']} poke",
            ],
            [
                "requests per gate poll",
                "-",
                per_poll["poke"],
                per_poll["deferred"],
                f"{vs['per_poll']} poke",
            ],
            ["triggerer CPU ms per gate poll", "-", "-", cpu_ms_per_poll, ""],
            [
                "metric appears -> gate fires, s (median / p95)",
                "-",
                "-",
                f"{median(delays):.1f} / {p95(delays):.1f} ({len(delays)}/{n} fired)"
                if delays
                else "none fired",
                f"poll interval {interval:g} s",
            ],
            [
                "metric appears -> task success, s (median / p95)",
                "-",
                "-",
                f"{median(done):.1f} / {p95(done):.1f} ({len(done)}/{n} within {fire['waited_s']:.0f} s)"
                if done
                else f"none within {fire['waited_s']:.0f} s",
                f"[core] parallelism {PARALLELISM}",
            ],
        ],
    }
    to_defer = deferred["to_defer"]
    figure.target = "0 worker slots held by deferred gates"
    figure.target_met = deferred["max_running"] == 0
    figure.summary = {
        "baseline": f"poke: {poke['max_running']} slots held, {poke['waiting_for_a_slot']} gates waiting "
        f"for one; idle triggerer {idle['triggerer_cpu_percent']:.1f}% CPU, "
        f"{idle['triggerer_peak_rss_mb']:.0f} MB",
        "provider": f"deferred: {deferred['max_running']} slots; triggerer "
        f"{deferred['triggerer_cpu_percent']:.1f}% CPU, {deferred['triggerer_peak_rss_mb']:.0f} MB; "
        f"{deferred['requests_per_s']:.0f} requests/s; fires {fired_median:.1f} s "
        f"(p95 {fired_p95:.1f}) after the metric",
        "ratio": f"slots 0/{poke['max_running']}; CPU {vs['cpu']} idle; RSS {vs['rss']} idle",
    }
    figure.notes.append(
        f"Deferring the {n} gates took {to_defer['seconds']:.0f} s: each first runs on a worker "
        f"(at most {to_defer['max_running']} at once, [core] parallelism {PARALLELISM}) to check "
        f"once, then defers; {to_defer['requests']} requests reached MLflow meanwhile. After firing, "
        f"each gate runs on a worker again to record its verdict, so successes queue behind "
        f"[core] parallelism. The stack started in {startup:.0f} s."
    )
    figure.notes.append(
        "Requests per poll by endpoint (deferred window): "
        + ", ".join(
            f"{endpoint} {count * interval / n / deferred['seconds']:.2f}"
            for endpoint, count in sorted(deferred["requests_by_endpoint"].items())
        )
        + "."
    )
    figure.details = {"n": n, "interval": interval, "startup_s": startup}


if __name__ == "__main__":
    cli(run, __doc__)
