"""Processes SIGKILLed on the real stack: a task process in the middle of its work, and the
scheduler while the DAG-run listener's finalization is in flight.

What must hold (issue 10): a killed task's run ends KILLED, or is reused and FINISHED by the
retry, with the killed attempt recorded as such (``airflow.try.1.state`` not ``running``) and each
attempt's steps there exactly once; nothing stays RUNNING after the DAG run ends; a parent whose
finalization died with the scheduler reaches its final state once a scheduler runs again.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.faults.conftest import (
    FINALIZE_TIMEOUT,
    experiment_runs,
    finalized_parent,
    split_runs,
    steps_by_attempt,
)

ENDED = {"killed", "failed"}


@pytest.mark.timeout(300)
def test_task_process_sigkilled_run_ends_killed_or_is_finished_by_the_retry(faults, calm_runs):
    stack, client = faults.stack, faults.client
    dag_id = "faults_kill"
    run_id = calm_runs[dag_id]
    victims = ("victim_retried", "victim_final")
    pid_files = [Path(calm_runs["pid_dir"]) / f"{task}.1.pid" for task in victims]
    faults.wait_until("both victims to write their pid", lambda: all(p.exists() for p in pid_files), 180, 0.3)
    for pid_file in pid_files:
        pid = int(pid_file.read_text())
        # A task process of this stack: a descendant of the scheduler (LocalExecutor).
        assert pid in stack.pids("scheduler"), (pid_file.name, pid, stack.pids("scheduler"))
        os.kill(pid, signal.SIGKILL)

    assert stack.wait(dag_id, run_id, timeout=180) == "failed", stack.describe_failure(dag_id, run_id)
    tis = {t["task_id"]: t for t in stack.task_instances(dag_id, run_id)}
    assert (tis["victim_retried"]["state"], tis["victim_retried"]["try_number"]) == ("success", 2)
    assert (tis["victim_final"]["state"], tis["victim_final"]["try_number"]) == ("failed", 1)

    parent = faults.wait_until(
        "the parent to be finalized", lambda: finalized_parent(client, dag_id, run_id), FINALIZE_TIMEOUT
    )
    assert parent.info.status == "FAILED"
    runs = experiment_runs(client, dag_id, run_id)
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"], "runs left RUNNING"
    parents, children = split_runs(runs)
    by_name = {r.info.run_name: r for r in children}
    assert len(parents) == 1 and sorted(by_name) == sorted(victims), [r.info.run_name for r in runs]

    retried = by_name["victim_retried"]
    tags = retried.data.tags
    assert retried.info.status == "FINISHED"
    assert tags.get("airflow.try.1.state") in ENDED, tags
    assert tags.get("airflow.try.2.state") == "success", tags
    assert steps_by_attempt(client, retried, "progress") == {1: list(range(5)), 2: list(range(5))}

    final = by_name["victim_final"]
    assert final.data.tags.get("airflow.try.1.state") in ENDED, final.data.tags
    assert steps_by_attempt(client, final, "progress") == {1: list(range(5))}
    # Issue 10: "Task process SIGKILLed: its run ends KILLED (or is reused and FINISHED by the retry)".
    assert final.info.status == "KILLED", (final.info.status, final.data.tags)


@pytest.mark.timeout(300)
def test_scheduler_killed_while_finalization_is_in_flight(faults, tmp_path):
    stack, client = faults.stack, faults.client
    faults.wait_quiet()
    dag_id = "faults_end"
    release = tmp_path / "release"
    run_id = stack.trigger(dag_id, conf={"release": str(release), "fail": False})

    def holding() -> bool:
        states = {t["task_id"]: t["state"] for t in stack.task_instances(dag_id, run_id)}
        return states == {"tracked": "success", "hold": "running"}

    faults.wait_until("the DAG run to hold after tracking", holding, 180, 0.5)
    faults.server.pause()  # requests now hang until their timeout
    try:
        release.touch()
        assert stack.wait(dag_id, run_id, timeout=60) == "success", stack.describe_failure(dag_id, run_id)
        # The listener has the finalization in hand, blocked on the paused server: kill it there.
        time.sleep(2)
        stack.kill("scheduler")
    finally:
        faults.server.resume()
    assert finalized_parent(client, dag_id, run_id) is None, "finalized before the scheduler was killed"
    stack.relaunch("scheduler")
    relaunched = time.monotonic()

    parent = faults.wait_until(
        "the relaunched scheduler to finalize the parent",
        lambda: finalized_parent(client, dag_id, run_id),
        FINALIZE_TIMEOUT,
    )
    print(f"\n[faults] parent finalized {time.monotonic() - relaunched:.1f} s after the scheduler's relaunch")
    assert parent.info.status == "FINISHED"
    _, children = split_runs(experiment_runs(client, dag_id, run_id))
    assert [(r.info.run_name, r.info.status) for r in children] == [("tracked", "FINISHED")]
    stack.wait_healthy(120, again=True)
