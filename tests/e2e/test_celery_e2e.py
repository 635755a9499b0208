"""The Celery tier: many overlapping DAG runs on two Celery workers, tracked into one MLflow server.

The stack (:mod:`tests.e2e._celery`): CeleryExecutor with Redis as broker and PostgreSQL as
result backend and metadata DB, two workers (separate processes, directories and hostnames),
scheduler, dag-processor, triggerer, API server, and ``mlflow server`` on PostgreSQL with proxied
artifacts. ``celery_fanout`` (``tests/dags/celery_fanout.py``: ten tasks, six of them mapped,
all using MLflow) is triggered :data:`RUNS` times at once, and what MLflow holds afterwards must be
exact: one parent per DAG run, one child per tracked task instance (the seven that are not registry
tasks) pointing at its own DAG run's parent, one model version per DAG run, nothing
left RUNNING, each task's run on the worker Airflow says ran it, both workers used, one champion
and a consistent champion history.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.dags.celery_fanout import DAG_ID, MODEL, SHARDS
from tests.e2e._airflow import TERMINAL_STATES, StackError
from tests.e2e._celery import CeleryStack
from tests.integration._mlflow_servers import ServerProcess, ServerStartError, drop_stale_databases

RUNS = int(os.environ.get("AMLF_CELERY_RUNS", "10"))
#: Task instances per DAG run; all but the registry tasks (which record on model versions, never
#: on runs of their own) have a child run.
TASKS_PER_RUN = SHARDS + 4
CHILDREN_PER_RUN = SHARDS + 1
RUNS_TIMEOUT = 600


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryStack]:
    workdir = tmp_path_factory.mktemp("e2e-celery")
    failure = None
    with contextlib.ExitStack() as cleanup:
        try:
            drop_stale_databases()
            server = ServerProcess(workdir / "mlflow-server")
            cleanup.callback(server.stop)
            server.start()
            assert server.port is not None
            stack = CeleryStack(workdir, mlflow_server_url=f"http://127.0.0.1:{server.port}")
            cleanup.callback(stack.stop)
            stack.start()
            info = server.wait_healthy()
            if info.url != stack.mlflow_server_url:
                raise StackError(f"mlflow server moved to {info.url} after Airflow was configured")
            stack.wait_healthy()
            stack.wait_workers_ready()
        except (StackError, ServerStartError, TimeoutError, subprocess.TimeoutExpired) as err:
            failure = f"Celery e2e stack did not start: {err}"
        else:
            print(f"\n[e2e] Celery stack healthy after {stack.startup_seconds:.1f} s at {stack.url}")
            yield stack
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    leftovers = stack.leftover_pids()
    assert not leftovers, f"processes of the Celery stack survived teardown: {leftovers}"


def xcom(stack: CeleryStack, dag_id: str, run_id: str, task_id: str, map_index: int = -1):
    path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
    return stack.api("GET", path, params={"map_index": map_index, "deserialize": True})["value"]


def wait_all(stack: CeleryStack, dag_id: str, run_ids: list[str], timeout: float) -> dict[str, dict]:
    """Every DAG run once it has ended (whatever its state)."""
    deadline = time.monotonic() + timeout
    while True:
        stack._check_alive()
        runs = {r["dag_run_id"]: r for r in stack.dag_runs(dag_id, limit=1000)}
        if all(runs.get(r, {}).get("state") in TERMINAL_STATES for r in run_ids):
            return {r: runs[r] for r in run_ids}
        if time.monotonic() > deadline:
            states = Counter(runs.get(r, {}).get("state") for r in run_ids)
            raise StackError(
                f"{dag_id}: not every run ended after {timeout:.0f} s: {dict(states)}\n"
                f"--- scheduler:\n{stack.log_tail('scheduler', 30)}"
            )
        time.sleep(2)


def test_the_workers_import_mlflow_before_they_fork(celery_stack):
    """airflow_mlflow.celery_config: each worker imported the preload; its task processes inherit it."""
    run_id = celery_stack.trigger("preload_probe")
    assert celery_stack.wait("preload_probe", run_id, timeout=180) == "success", (
        celery_stack.describe_failure("preload_probe", run_id)
    )
    assert xcom(celery_stack, "preload_probe", run_id, "inherited") == ["airflow_mlflow.preload", "mlflow"]
    (ti,) = celery_stack.task_instances("preload_probe", run_id)
    assert ti["hostname"] in celery_stack.worker_names


def test_overlapping_runs_on_two_workers_track_exactly(celery_stack):
    stack = celery_stack
    stack.unpause(DAG_ID)
    run_ids = [stack.trigger(DAG_ID, conf={"accuracy": 0.70 + 0.02 * (i % 10)}) for i in range(RUNS)]
    wait_all(stack, DAG_ID, run_ids, RUNS_TIMEOUT)
    stats = check_tracked_runs(stack, run_ids)
    print(f"\n[e2e] Celery: {stats}")


def check_tracked_runs(stack: CeleryStack, run_ids: list[str]) -> dict:
    """Every check of the tier on ended runs of ``celery_fanout`` (the bench reuses it); counts."""
    runs = {run_id: stack.dag_run(DAG_ID, run_id) for run_id in run_ids}
    # Airflow: the runs overlapped, every task ran on one of the workers.
    assert any(b["start_date"] < a["end_date"] for a in runs.values() for b in runs.values() if a is not b), (
        "the runs did not overlap"
    )
    tis = {run_id: stack.task_instances(DAG_ID, run_id) for run_id in run_ids}
    for run_id, run in runs.items():
        states = {(t["task_id"], t["map_index"]): t["state"] for t in tis[run_id]}
        assert len(states) == TASKS_PER_RUN, states
        upstream = {k: s for k, s in states.items() if k[0] != "promote"}
        assert set(upstream.values()) == {"success"}, stack.describe_failure(DAG_ID, run_id)
        # A promotion refused because the champion moved since its gate (a concurrent run promoted
        # meanwhile) fails, and with it the DAG run; the test checks below that it was that.
        promote = states[("promote", -1)]
        assert promote in {"success", "failed"}, stack.describe_failure(DAG_ID, run_id)
        assert run["state"] == promote, run
    ti_host = {
        (run_id, t["task_id"], t["map_index"]): t["hostname"] for run_id in run_ids for t in tis[run_id]
    }
    assert set(ti_host.values()) <= set(stack.worker_names)

    # MLflow: one parent per DAG run, one child per tracked task instance, under its own DAG run's parent.
    client = stack.mlflow_client()
    experiment = client.get_experiment_by_name(DAG_ID)
    everything = client.search_runs([experiment.experiment_id], max_results=5000)
    parents = [r for r in everything if r.data.tags.get("airflow.role") == "dag_run"]
    children = [r for r in everything if r.data.tags.get("airflow.role") == "task"]
    assert len(everything) == len(parents) + len(children)
    parent_of = {r.data.tags["airflow.run_id"]: r.info.run_id for r in parents}
    assert len(parents) == len(run_ids) and sorted(parent_of) == sorted(run_ids)
    assert len(children) == CHILDREN_PER_RUN * len(run_ids)
    keys = Counter(
        (c.data.tags["airflow.run_id"], c.data.tags["airflow.task_id"], int(c.data.tags["airflow.map_index"]))
        for c in children
    )
    assert [k for k, n in keys.items() if n > 1] == [], "duplicate children"
    tracked = {k for k in ti_host if k[1] in ("train", "summary")}
    assert set(keys) == tracked, "children do not match the tracked task instances"
    orphans = [
        c.info.run_id
        for c in children
        if c.data.tags.get("mlflow.parentRunId") != parent_of[c.data.tags["airflow.run_id"]]
    ]
    assert orphans == []
    assert [r.info.run_id for r in everything if r.info.status == "RUNNING"] == []
    for parent in parents:
        expected = "FAILED" if runs[parent.data.tags["airflow.run_id"]]["state"] == "failed" else "FINISHED"
        assert parent.info.status == expected

    # Each child ran where Airflow says its task instance ran; both workers took tasks.
    hosts = Counter(ti_host.values())
    assert set(hosts) == set(stack.worker_names), f"task instances per worker: {dict(hosts)}"
    hosts = Counter()
    for child in children:
        tags = child.data.tags
        key = (tags["airflow.run_id"], tags["airflow.task_id"], int(tags["airflow.map_index"]))
        assert tags["airflow.hostname"] == ti_host[key], (key, tags)
        assert int(tags["airflow.pid"]) > 1
        hosts[tags["airflow.hostname"]] += 1
    assert set(hosts) == set(stack.worker_names), f"tasks per worker: {dict(hosts)}"
    trains = [c for c in children if c.data.tags["airflow.task_id"] == "train"]
    assert {c.data.params["preloaded"] for c in trains} == {"True"}
    for child in children:
        tags = child.data.tags
        if tags["airflow.task_id"] == "promote" and runs[tags["airflow.run_id"]]["state"] == "failed":
            assert child.info.status == "FAILED"
            error = tags.get("airflow.try.1.error", "")
            assert "re-run the gate" in error or "changed the champion concurrently" in error, tags

    promotions = assert_registry(client, run_ids, tis)
    return {
        "parents": len(parents),
        "children": len(children),
        "hosts": dict(hosts),
        "promotions": promotions,
    }


def assert_registry(client, run_ids: list[str], tis: dict[str, list[dict]]) -> int:
    """One version per DAG run; the promoted ones form one chain of champions; one champion."""
    versions = {int(v.version): v for v in client.search_model_versions(f"name = '{MODEL}'")}
    assert sorted(versions) == list(range(1, len(run_ids) + 1))
    registered_by = Counter(v.tags["airflow.run_id"] for v in versions.values())
    assert registered_by == Counter(run_ids), "one version per DAG run"
    promoted_runs = {
        run_id
        for run_id, items in tis.items()
        for t in items
        if t["task_id"] == "promote" and t["state"] == "success"
    }
    history = json.loads(client.get_registered_model(MODEL).tags["airflow.champion_history"])
    assert [e["seq"] for e in history] == list(range(len(history)))
    assert [e["action"] for e in history] == ["promote"] * len(history)
    assert {e["dag_run"] for e in history} == {f"{DAG_ID}/{r}" for r in promoted_runs}
    assert len(history) == len(promoted_runs) >= 1
    previous = None
    for entry in history:
        assert entry["previous"] == previous, history
        assert entry["gate"] == "passed"
        version = versions[int(entry["version"])]
        assert version.tags["airflow.gate.status"] == "passed"
        assert version.tags["airflow.promotion.previous_version"] == (previous or "none")
        previous = entry["version"]
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == previous
    # Every run set "challenger" on its version, several at the same moment: one holder at the end.
    assert int(client.get_model_version_by_alias(MODEL, "challenger").version) in versions
    production = [n for n, v in versions.items() if v.current_stage == "Production"]
    assert production == [int(previous)]
    promoted = {int(e["version"]) for e in history}
    for n, version in versions.items():
        has_promotion = any(k.startswith("airflow.promotion.") for k in version.tags)
        assert has_promotion == (n in promoted), (n, version.tags)
    return len(history)
