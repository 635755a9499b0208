"""
Figure 2: HTTP requests per tracked task against a real ``mlflow server``.

One task logs 50 params, 500 metrics and one artifact (quick: 5, 50 and one). A counting
reverse proxy in front of the server counts what reaches it, by endpoint. Measured:

* the provider's ``MLflowLogOperator``: its ``execute`` with the run model (experiment, parent
  run of the DAG run, the task's own run, batched logging, the artifact, closing the run), as
  the first tracked task of a DAG run (which also creates the DAG run's parent run) and as a
  later one;
* ``@task.mlflow`` whose function logs with MLflow's batched fluent calls (``log_params``,
  ``log_metrics``, ``log_artifact``), as a later task of the same DAG run;
* the DAG-run step (the provider's listener closing the parent run), once per DAG run;
* the baseline: MLflow's fluent API call by call (``log_param`` and ``log_metric`` per value),
  as a hand-written task does it, into an existing experiment; and the same hand-written task
  using the batched calls.

Counts do not depend on timing; each scenario runs once per repetition and the repetitions
must agree.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench._common import (
    Figure,
    airflow_home,
    cli,
    mlflow_server,
    quiet_mlflow_client,
    ratio,
    server_conn,
)
from bench._proxy import CountingProxy

DAG_ID = "bench_requests"
TARGET = 5


def payload(n_params: int, n_metrics: int) -> tuple[dict[str, str], dict[str, float]]:
    params = {f"param_{i}": f"value_{i}" for i in range(n_params)}
    metrics = {f"metric_{i}": i / 7 for i in range(n_metrics)}
    return params, metrics


def fluent_task(tracking_uri: str, experiment: str, params, metrics, artifact: Path, batched: bool) -> None:
    """
    What a hand-written task does: its own run through MLflow's fluent API. Runs in a child
    process, as a task does, so the fluent API's global state stays out of the provider's runs.
    """
    import mlflow

    quiet_mlflow_client()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run():
        if batched:
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
        else:
            for key, value in params.items():
                mlflow.log_param(key, value)
            for key, value in metrics.items():
                mlflow.log_metric(key, value)
        mlflow.log_artifact(str(artifact))


FIRST_TASK = "MLflowLogOperator, first tracked task of a DAG run"
LATER_TASK = "MLflowLogOperator, later task of the DAG run"
DECORATED = "@task.mlflow (batched fluent calls), later task"
DAG_RUN_STEP = "DAG-run step (listener closes the parent), once per DAG run"
NEW_EXPERIMENT = "MLflowLogOperator, first task ever of its experiment"


def provider_scenarios(proxy: CountingProxy, params, metrics, artifact: Path, rep: str) -> dict[str, Counter]:
    """
    Request counts of the provider's scenarios: a first DAG run into a new experiment, then a
    second DAG run whose first task creates its parent run and whose later tasks find it.
    """
    from airflow_mlflow import MLflowLogOperator
    from airflow_mlflow.decorators.mlflow import _MLflowDecoratedOperator
    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.runs import finalize_dag_run
    from bench._tasks import count_by_verb, run_execute

    dag_id = f"{DAG_ID}_{rep}"  # a new experiment (named after the DAG) each repetition

    def log_operator(task_id: str) -> MLflowLogOperator:
        return MLflowLogOperator(task_id=task_id, params=params, metrics=metrics, artifacts=[str(artifact)])

    def decorated():
        import mlflow

        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(artifact))

    counts, verbs = {}, {}

    def measure(name: str, action) -> None:
        proxy.reset()
        tally: Counter[str] = Counter()
        action(count_by_verb(MLflowHook(), proxy.total, tally))
        counts[name] = proxy.counts()
        outside = sum(counts[name].values()) - sum(tally.values())
        if outside:
            tally["outside hook verbs (MLflow's fluent API)"] = outside
        verbs[name] = tally

    def task(operator, run_id: str):
        return lambda hook: run_execute(operator, dag_id, run_id, hook)

    measure(NEW_EXPERIMENT, task(log_operator("first"), "manual__1"))
    finalize_dag_run(MLflowHook(), dag_id, dag_id, "manual__1", succeeded=True)
    measure(FIRST_TASK, task(log_operator("first"), "manual__2"))
    measure(LATER_TASK, task(log_operator("later"), "manual__2"))
    decorated_task = _MLflowDecoratedOperator(
        task_id="decorated", python_callable=decorated, op_args=[], op_kwargs={}
    )
    measure(DECORATED, task(decorated_task, "manual__2"))
    measure(DAG_RUN_STEP, lambda hook: finalize_dag_run(hook, dag_id, dag_id, "manual__2", succeeded=True))
    return counts, verbs


def breakdown(counts: Counter) -> str:
    return ", ".join(f"{n}x {endpoint}" for endpoint, n in counts.most_common())


def run(args: argparse.Namespace) -> Figure:
    n_params, n_metrics = (5, 50) if args.quick else (50, 500)
    repetitions = 1 if args.quick else 2
    airflow_home(Path(tempfile.gettempdir()))
    quiet_mlflow_client()
    params, metrics = payload(n_params, n_metrics)
    figure = Figure(
        key="requests",
        title=f"2. HTTP requests for one tracked task logging {n_params} params, "
        f"{n_metrics} metrics and 1 artifact",
        metric="requests reaching the server",
        target=f"at most {TARGET} requests for the task",
    )
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory(prefix="bench-requests-") as tmp, mlflow_server() as url:
        artifact = Path(tmp, "report.txt")
        artifact.write_text("fold scores\n" * 1000)
        runs: list[dict[str, Counter]] = []
        with CountingProxy(url) as proxy:
            os.environ["AIRFLOW_CONN_MLFLOW_DEFAULT"] = server_conn(proxy.url)
            # The hand-written task logs into an existing experiment, as the provider's tasks do.
            fluent = f"bench_fluent_{os.getpid()}"
            MlflowClient(url).create_experiment(fluent)
            for rep in range(repetitions):
                counts: dict[str, Counter] = {}
                for batched in (False, True):
                    name = "hand-written, fluent API " + ("batched calls" if batched else "call by call")
                    proxy.reset()
                    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                        pool.submit(
                            fluent_task, proxy.url, fluent, params, metrics, artifact, batched
                        ).result()
                    counts[name] = proxy.counts()
                provider, verbs = provider_scenarios(proxy, params, metrics, artifact, f"{os.getpid()}_{rep}")
                counts.update(provider)
                runs.append(counts)
    totals = [{name: sum(c.values()) for name, c in counts.items()} for counts in runs]
    deterministic = all(t == totals[0] for t in totals)
    counts = runs[0]
    baseline_name = "hand-written, fluent API call by call"
    baseline = sum(counts[baseline_name].values())
    for name, endpoint_counts in counts.items():
        total = sum(endpoint_counts.values())
        figure.add(
            name + (" (baseline)" if name == baseline_name else ""),
            {
                "requests": total,
                "by endpoint": breakdown(endpoint_counts),
                **({"by provider step": breakdown(verbs[name])} if name in verbs else {}),
            },
            ratio=ratio(total, baseline),
            baseline=name == baseline_name,
        )
    later = sum(counts[LATER_TASK].values())
    first = sum(counts[FIRST_TASK].values())
    figure.target_met = later <= TARGET
    figure.summary = {
        "baseline": f"fluent call by call: {baseline} (batched: "
        f"{sum(counts['hand-written, fluent API batched calls'].values())})",
        "provider": f"MLflowLogOperator: {later} per task (+{first - later} for a DAG run's first); "
        f"@task.mlflow: {sum(counts[DECORATED].values())}",
        "ratio": f"{later / baseline:.3f}",
    }
    figure.notes.append(
        f"Judged on MLflowLogOperator as a task of a DAG run whose parent run exists ({later} requests). "
        f"Each DAG run adds {first - later} requests to its first tracked task (finding or creating "
        f"the parent run) and {sum(counts[DAG_RUN_STEP].values())} in the scheduler's listener; "
        f"the first DAG run into a new experiment adds "
        f"{sum(counts[NEW_EXPERIMENT].values()) - first} more (creating the experiment)."
    )
    figure.details = {
        "params": n_params,
        "metrics": n_metrics,
        "repetitions": repetitions,
        "deterministic": deterministic,
        "by_endpoint": {name: dict(c) for name, c in counts.items()},
        "by_provider_step": {name: dict(c) for name, c in verbs.items()},
    }
    if not deterministic:
        figure.notes.append(f"request counts differed between repetitions: {totals}")
    return figure


if __name__ == "__main__":
    cli(run, __doc__)
