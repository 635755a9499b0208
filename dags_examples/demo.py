"""
``make demo``: the scheduled retraining pipeline on the embedded MLflow store, start to finish.

Runs ``retrain_model`` for four consecutive days (each trains on its own data window; some days
drift; candidate and champion are evaluated on one holdout, gated on that like-for-like comparison,
and a passing candidate is served and called before promotion), then ``score_batch`` with the
resulting champion; then ``retrain_from_script`` (an
unmodified training script in a ``BashOperator``, tracked by ``enable_tracking``) for two days;
and prints what landed in MLflow. Last, Airflow runs for a minute (scheduler, triggerer, API
server) while someone moves ``@champion`` by hand with a plain ``MlflowClient`` call: the
registry watcher turns the move into an asset event and ``score_batch`` runs on that version.
Everything lives in ``.airflow/`` in this checkout, recreated on each demo: Airflow's metadata
DB, and the embedded MLflow store in ``.airflow/mlflow/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from airflow_mlflow.evaluation import evaluated_metrics
from airflow_mlflow.tags import (
    GATE_BASELINE_VERSION,
    GATE_STATUS,
    OPERATOR_NAME,
    ROLE,
    ROLE_TASK,
    SERVING_P50_MS,
    SERVING_P95_MS,
    SERVING_STATUS,
    gate_metric,
)

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / ".airflow"
BIN = Path(sys.executable).parent
MODEL = "breast_cancer_classifier"
DAYS = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
SCRIPT_DAG = "retrain_from_script"
SCRIPT_MODEL = "breast_cancer_from_script"
SCRIPT_DAYS = ["2026-11-01", "2026-11-02"]


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


def newest_version(model: str = MODEL):
    return max(client().search_model_versions(f"name = '{model}'"), key=lambda v: int(v.version))


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
    what = "train on the day's window, register, evaluate on the holdout, gate, serve, promote"
    gated_days("retrain_model", MODEL, "accuracy_score", DAYS, what, env)
    print("==> score_batch: load models:/breast_cancer_classifier@champion and score a batch", flush=True)
    airflow("dags", "test", "score_batch", env=env)
    what = "a plain script in a BashOperator, then register, gate, promote"
    gated_days(SCRIPT_DAG, SCRIPT_MODEL, "accuracy", SCRIPT_DAYS, what, env)
    summarize()
    summarize_script()
    watch_a_move_by_hand(env)
    print()
    print("Look further:")
    print("  make airflow     # Airflow's UI on http://localhost:8080 (this demo's DAG runs; login printed)")
    print("  make mlflow-ui   # MLflow's UI on http://localhost:5000 (runs, plots, models, verdict tags)")


def gated_days(dag_id: str, model: str, metric: str, days: list[str], what: str, env: dict[str, str]) -> None:
    """``airflow dags test`` of a register/gate/promote DAG once per day, with each verdict."""
    for day in days:
        print(f"==> {dag_id} for {day}: {what}", flush=True)
        seconds = airflow("dags", "test", dag_id, day, env=env)
        v = newest_version(model)
        status = v.tags.get(GATE_STATUS, "?")
        print(f"    version {v.version}: gate {status.upper()} ({seconds:.0f}s)", flush=True)
        print(f"    {v.tags.get(gate_metric(metric), '')}", flush=True)
        if p95 := v.tags.get(SERVING_P95_MS):
            p50 = v.tags.get(SERVING_P50_MS)
            print(f"    serving check: {v.tags.get(SERVING_STATUS)}, p50 {p50} ms, p95 {p95} ms", flush=True)


def summarize() -> None:
    mlflow_client = client()
    versions = sorted(mlflow_client.search_model_versions(f"name = '{MODEL}'"), key=lambda v: int(v.version))
    champion = mlflow_client.get_model_version_by_alias(MODEL, "champion")
    print()
    by_number = {str(v.version): v for v in versions}  # the SQL store gives ints
    print("accuracy: on the day's own test split, and on the shared holdout (candidate; champion then)")
    head = f"{'version':<8} {'window':<11} {'noise':<6} {'own day':<8} {'holdout':<8} {'champion':<9}"
    print(f"{head} {'verdict':<9} {'p95 ms':<7} {'stage':<11} alias")
    for v in versions:
        run = mlflow_client.get_run(v.run_id)
        aliases = ", ".join(mlflow_client.get_model_version(MODEL, v.version).aliases)
        holdout = evaluated_metrics(v).get("accuracy_score", float("nan"))
        # The champion the gate held it against, evaluated in the same task on the same holdout.
        against = by_number.get(v.tags.get(GATE_BASELINE_VERSION, ""))
        champion_then = f"{evaluated_metrics(against)['accuracy_score']:.4f}" if against else "-"
        p95 = v.tags.get(SERVING_P95_MS) or "-"
        print(
            f"{v.version:<8} {run.data.params['window_start'][:10]:<11} {run.data.params['label_noise']:<6} "
            f"{run.data.metrics['accuracy']:<8.4f} {holdout:<8.4f} {champion_then:<9} "
            f"{v.tags.get(GATE_STATUS, '-'):<9} {p95[:6]:<7} {v.current_stage:<11} {aliases}"
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


def summarize_script() -> None:
    """Where the script's logging landed: the BashOperator task's child run, under the DAG run's parent."""
    mlflow_client = client()
    experiment = mlflow_client.get_experiment_by_name(SCRIPT_DAG)
    versions = sorted(
        mlflow_client.search_model_versions(f"name = '{SCRIPT_MODEL}'"), key=lambda v: int(v.version)
    )
    print()
    print(
        f"{SCRIPT_DAG}: scripts/train_classifier.py run by a BashOperator, opted in by enable_tracking(...)"
    )
    print(
        f"{'version':<8} {'seed':<9} {'accuracy':<9} {'verdict':<9} {'stage':<11} {'alias':<11} run of train"
    )
    for v in versions:
        run = mlflow_client.get_run(v.run_id)
        aliases = ", ".join(mlflow_client.get_model_version(SCRIPT_MODEL, v.version).aliases)
        print(
            f"{v.version:<8} {run.data.params['seed']:<9} {run.data.metrics['accuracy']:<9.4f} "
            f"{v.tags.get(GATE_STATUS, '-'):<9} {v.current_stage:<11} {aliases:<11} {run.info.run_id}"
        )
    first = mlflow_client.get_run(versions[0].run_id)
    parent = mlflow_client.get_run(first.data.tags["mlflow.parentRunId"])
    (logged,) = mlflow_client.search_logged_models(
        [experiment.experiment_id], filter_string=f"source_run_id = '{first.info.run_id}'"
    )
    params = ", ".join(f"{k}={first.data.params[k]}" for k in ("C", "max_iter", "seed"))
    metrics = ", ".join(f"{k}={first.data.metrics[k]:.4f}" for k in ("accuracy", "f1", "roc_auc"))
    print()
    print(f"Version 1 came from run {first.info.run_id}, the child run of task {first.info.run_name}")
    print(f"({ROLE}={first.data.tags[ROLE]}, a {first.data.tags[OPERATOR_NAME]}) under the DAG run's parent")
    print(f"{parent.info.run_id} ({ROLE}={parent.data.tags[ROLE]}). The script logged there")
    print(f"{params}; {metrics};")
    print(f"and model {logged.name!r} (models:/{logged.model_id}).")


def watch_a_move_by_hand(env: dict[str, str]) -> None:
    """
    Airflow on the demo's home for about a minute; someone moves ``@champion`` by hand in MLflow;
    ``score_batch`` (scheduled on ``model_asset(..., alias="champion", watch="poll")``) runs on it.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {
        **env,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # loopback only, for a minute
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": "0",
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),  # standalone runs `airflow`
        # Task workers start as fresh interpreters, not forks of a scheduler whose threads (the
        # provider's DAG-run listener among them) may hold a lock at that moment: a task forked
        # then hung here once, before its first line.
        "AIRFLOW__CORE__MP_START_METHOD": "spawn",
    }
    mlflow = client()
    before = str(mlflow.get_model_version_by_alias(MODEL, "champion").version)
    by_hand = str(
        min(
            int(v.version)
            for v in mlflow.search_model_versions(f"name = '{MODEL}'")
            if v.current_stage == "Archived"
        )
    )
    print(
        f"==> Airflow on {url} for a minute; then @champion moves by hand from version {before} to {by_hand}"
    )
    airflow("dags", "unpause", "score_batch", env=env)
    with (HOME / "demo.log").open("a") as log:
        proc = subprocess.Popen(
            [str(BIN / "airflow"), "standalone"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        api = f"{url}/api/v2"
        asset = wait(
            lambda: next(iter(get(f"{api}/assets", uri_pattern=f"{MODEL}/alias/champion")["assets"]), None),
            "the champion asset",
        )
        wait(
            lambda: get(f"{api}/assets/{asset['id']}/state-store")["total_entries"],
            "the watcher's first read of the registry",
        )
        known = {r["dag_run_id"] for r in get(f"{api}/dags/score_batch/dagRuns")["dag_runs"]}
        mlflow.set_registered_model_alias(MODEL, "champion", by_hand)  # what someone does in MLflow's UI
        moved = time.monotonic()

        def scored():
            """The new score_batch run the watcher's event started, once it has ended."""
            for run in get(f"{api}/dags/score_batch/dagRuns")["dag_runs"]:
                if run["dag_run_id"] in known or run["state"] not in ("success", "failed"):
                    continue
                events = get(f"{api}/dags/score_batch/dagRuns/{run['dag_run_id']}/upstreamAssetEvents")
                # A run also lists the events of the retraining's own promotions since the last one.
                for event in events["asset_events"]:
                    payload = (event.get("extra") or {}).get("payload") or {}
                    if payload.get("version") == by_hand:
                        return run, payload
            return None

        found = wait(scored, "score_batch to run on the moved champion", fatal=False)
        if found is None:
            # Seen now and then on this SQLite-backed Airflow (not on the e2e tier's PostgreSQL):
            # the scoring task hangs before its first line. The watcher's part is in the log.
            print(f"    score_batch did not finish within {WAIT_SECONDS}s; the log is {HOME / 'demo.log'}")
            return
        run, payload = found
        moved_by = f"{payload['alias']} {payload['previous_version']} -> {payload['version']}"
        print(f"    watcher: {moved_by} ({payload['change']}, via {payload['via']})")
        took = time.monotonic() - moved
        version = scored_version(run["dag_run_id"])
        print(f"    score_batch {run['state']} on version {version}, {took:.0f}s after the move")
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen) -> None:
    """Stop ``airflow standalone`` and every process it started (its own process group)."""
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and group_alive(proc):
            time.sleep(0.5)
        if not group_alive(proc):
            break
    # Task processes lead process groups of their own, in standalone's session: stop those too.
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if os.getsid(int(entry.name)) == proc.pid:
                os.kill(int(entry.name), signal.SIGKILL)


def group_alive(proc: subprocess.Popen) -> bool:
    proc.poll()
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    return True


def get(url: str, **query: str):
    from urllib.parse import urlencode

    with urllib.request.urlopen(f"{url}?{urlencode(query)}" if query else url, timeout=10) as response:
        return json.load(response)


#: How long the demo's last step waits for each thing it shows.
WAIT_SECONDS = 150


def wait(probe, what: str, timeout: float = WAIT_SECONDS, *, fatal: bool = True):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if value := probe():
                return value
        time.sleep(1)
    if fatal:
        sys.exit(f"timed out waiting for {what}; the log is {HOME / 'demo.log'}")
    return None


def scored_version(dag_run_id: str) -> str:
    mlflow = client()
    experiment = mlflow.get_experiment_by_name("score_batch")
    (run,) = mlflow.search_runs(
        [experiment.experiment_id],
        f"tags.`airflow.run_id` = '{dag_run_id}' and tags.`{ROLE}` = '{ROLE_TASK}'",
    )
    return run.data.params["model_version"]


if __name__ == "__main__":
    main()
