"""
Figure 3: logging throughput of a training curve against a real ``mlflow server``.

One metric key, steps 0..N-1 (N = 100,000; quick: 10,000), logged into a fresh run:

* the baseline: raw ``MlflowClient.log_batch`` in chunks of 1000, the most the server accepts
  per request;
* the provider: ``MLflowHook.log_metric_history(run_id, key, values, steps)``, which checks
  every value before the first request and sends batches of 1000;
* per-point ``mlflow.log_metric`` (the fluent API), measured on a sample of 500 points
  (quick: 200) and extrapolated linearly to N: at one request per point, the full curve would
  take many minutes.

Points per second are medians of several repetitions, interleaved so drift hits all alike.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench._common import Figure, airflow_home, cli, mlflow_server, quiet_mlflow_client, ratio, spread

CHUNK = 1000
TARGET = 0.9
KEY = "loss"


def curve(n: int, start: int = 0) -> list[tuple[int, float]]:
    return [(step, 1.0 / (1 + step)) for step in range(start, start + n)]


def raw_log_batch(client, run_id: str, points: list[tuple[int, float]]) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(KEY, value, now, step) for step, value in points]
    for i in range(0, len(metrics), CHUNK):
        client.log_batch(run_id, metrics=metrics[i : i + CHUNK], synchronous=True)


def provider_history(hook, run_id: str, points: list[tuple[int, float]]) -> None:
    steps, values = zip(*points, strict=True)
    hook.log_metric_history(run_id, KEY, values, steps)


def fluent_per_point(run_id: str, points: list[tuple[int, float]]) -> None:
    import mlflow

    with mlflow.start_run(run_id=run_id):
        for step, value in points:
            mlflow.log_metric(KEY, value, step=step)


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> Figure:
    n, sample, repetitions = (10_000, 200, 2) if args.quick else (100_000, 500, 3)
    airflow_home(Path(tempfile.gettempdir()))
    quiet_mlflow_client()
    figure = Figure(
        key="throughput",
        title=f"3. Logging a {n:,}-point training curve (one metric key) to a real mlflow server",
        metric="points per second",
        target=f"provider at least {TARGET}x raw log_batch",
    )
    with mlflow_server() as url:
        import mlflow
        from mlflow import MlflowClient

        from airflow_mlflow.hooks.mlflow import MLflowHook
        from bench._common import server_conn

        os.environ["AIRFLOW_CONN_MLFLOW_DEFAULT"] = server_conn(url)
        mlflow.set_tracking_uri(url)
        client = MlflowClient(url)
        hook = MLflowHook()
        experiment = client.create_experiment(f"bench_throughput_{os.getpid()}")

        def new_run() -> str:
            return client.create_run(experiment).info.run_id

        def check(run_id: str, expected: int) -> None:
            logged = client.get_metric_history(run_id, KEY)
            if len(logged) != expected:
                raise AssertionError(f"run {run_id} has {len(logged)} points of {KEY}, expected {expected}")

        # Warm-up, not measured: connection pools, the server's first queries on a new run.
        raw_log_batch(client, new_run(), curve(2 * CHUNK))
        provider_history(hook, new_run(), curve(2 * CHUNK))
        points = curve(n)
        seconds: dict[str, list[float]] = {"raw": [], "provider": []}
        for rep in range(repetitions):
            for name, log in (("raw", raw_log_batch), ("provider", None)):
                run_id = new_run()
                if log is None:
                    seconds[name].append(timed(lambda r=run_id: provider_history(hook, r, points)))
                else:
                    seconds[name].append(timed(lambda r=run_id, f=log: f(client, r, points)))
                if rep == 0:  # reading 100,000 points back is slow; once per path is proof enough
                    check(run_id, n)
        sampled: dict[str, list[float]] = {"fluent": []}
        for _ in range(repetitions):
            run_id = new_run()
            sampled["fluent"].append(timed(lambda r=run_id: fluent_per_point(r, curve(sample))))

    raw = spread([n / s for s in seconds["raw"]])
    rows = [
        ("raw MlflowClient.log_batch, 1000 per request (baseline)", raw, n, n // CHUNK, True),
        (
            "provider, MLflowHook.log_metric_history",
            spread([n / s for s in seconds["provider"]]),
            n,
            -(-n // CHUNK),
            False,
        ),
        (
            f"per-point mlflow.log_metric (sample of {sample:,}, extrapolated)",
            spread([sample / s for s in sampled["fluent"]]),
            sample,
            n,
            False,
        ),
    ]
    for name, rate, measured, requests, is_baseline in rows:
        figure.add(
            name,
            {
                "points/s (median)": rate["median"],
                "points/s (min..max)": f"{rate['min']:,.0f}..{rate['max']:,.0f}",
                f"seconds for {n:,} points": n / rate["median"],
                "points measured per repetition": measured,
                f"requests for {n:,} points": requests,
            },
            ratio=ratio(rate["median"], raw["median"]),
            baseline=is_baseline,
        )
    provider_ratio = figure.rows[1].ratio
    figure.target_met = provider_ratio is not None and provider_ratio >= TARGET
    figure.summary = {
        "baseline": f"raw log_batch: {raw['median']:,.0f} points/s",
        "provider": f"{figure.rows[1].values['points/s (median)']:,.0f} points/s "
        f"(per-point log_metric: {figure.rows[2].values['points/s (median)']:,.0f})",
        "ratio": f"{provider_ratio:.2f}",
    }
    figure.notes.append(
        "log_metric_history checks every value (a number, finite) before its first request, so a bad "
        "point writes nothing; that check is included in its time."
    )
    figure.details = {"points": n, "sample": sample, "repetitions": repetitions, "seconds": seconds}
    figure.details["sampled_seconds"] = sampled
    return figure


if __name__ == "__main__":
    cli(run, __doc__)
