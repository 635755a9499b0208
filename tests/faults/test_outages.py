"""MLflow outages on the real stack: the server SIGKILLed in the middle of tasks, and down when
DAG runs end, each time for longer than the MLflow client's retry budget (a few seconds, set by
the connection's ``http_*`` extras, see conftest.py).

What must hold (issue 10): tasks fail clearly and retry until they succeed; MLflow ends up with one
parent per DAG run and one child per task instance; every step of every attempt is there exactly
once (the attempt rule: a point belongs to attempt n when try.n.start <= timestamp <
try.(n+1).start); a DAG run that ended during the outage has a FINISHED or FAILED parent within a
minute of MLflow's return, and its ``airflow.parent.*`` hint is gone; nothing stays RUNNING.
"""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import (
    FINALIZE_TIMEOUT,
    RETRY_BUDGET,
    experiment_runs,
    finalized_parent,
    split_runs,
    steps_by_attempt,
)

STEPS = 30
#: How long the server stays dead before it is restarted (its start-up adds about 20 s more).
OUTAGE = 15


def _children(client, experiment: str, run_id: str) -> list:
    return split_runs(experiment_runs(client, experiment, run_id))[1]


@pytest.mark.timeout(420)
def test_server_killed_mid_task_tasks_fail_retry_and_succeed(faults):
    stack, client = faults.stack, faults.client
    dag_id = "faults_curve"
    run_id = stack.trigger(dag_id, conf={"steps": STEPS, "step_seconds": 0.3})

    def curves_under_way() -> dict[str, int] | None:
        children = _children(client, dag_id, run_id)
        counts = {r.info.run_name: len(client.get_metric_history(r.info.run_id, "loss")) for r in children}
        return counts if len(counts) == 2 and min(counts.values()) >= 3 else None

    before_kill = faults.wait_until("both curves to log 3 steps", curves_under_way, 180, 0.3)
    faults.kill_server()
    killed = time.monotonic()
    time.sleep(OUTAGE)
    back = faults.restart_server()
    print(f"\n[faults] MLflow down for {back - killed:.1f} s (the client's budget: about {RETRY_BUDGET} s)")

    state = stack.wait(dag_id, run_id, timeout=240)
    assert state == "success", stack.describe_failure(dag_id, run_id) + faults.dump()
    tis = {t["map_index"]: t for t in stack.task_instances(dag_id, run_id)}
    assert sorted(tis) == [0, 1]
    for ti in tis.values():
        assert ti["try_number"] >= 2, f"the outage did not fail curve[{ti['map_index']}]: {ti}"
        # Failed clearly: the first attempt's log names the server it could not reach.
        log = stack.task_log(dag_id, run_id, "curve", 1, ti["map_index"])
        assert f"{faults.info.host}:{faults.info.port}" in log, log[-3000:]

    parent = faults.wait_until(
        "the parent to be finalized", lambda: finalized_parent(client, dag_id, run_id), FINALIZE_TIMEOUT
    )
    parents, children = split_runs(experiment_runs(client, dag_id, run_id))
    assert [p.info.run_id for p in parents] == [parent.info.run_id] and parent.info.status == "FINISHED"
    assert sorted(r.info.run_name for r in children) == ["curve[0]", "curve[1]"], (
        "one child per task instance"
    )
    for run in children:
        tags = run.data.tags
        name = run.info.run_name
        final = tis[int(tags["airflow.map_index"])]["try_number"]
        assert run.info.status == "FINISHED", (name, run.info.status)
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["airflow.try_number"] == str(final)
        attempts = {n: tags.get(f"airflow.try.{n}.state") for n in range(1, final + 1)}
        assert attempts[final] == "success", (name, attempts)
        # Every earlier attempt is recorded, those that failed while MLflow was down included.
        assert all(attempts[n] in {"failed", "killed"} for n in range(1, final)), (name, attempts)

        steps = steps_by_attempt(client, run, "loss")
        assert steps[final] == list(range(STEPS)), (name, steps)
        for n, logged in steps.items():
            assert logged == list(range(len(logged))), f"{name} attempt {n}: steps {logged}"
        assert len(steps.get(1, [])) >= before_kill[name], (name, before_kill, steps)


@pytest.mark.timeout(300)
def test_dag_runs_ending_while_mlflow_is_down_are_finalized_when_it_returns(faults, tmp_path):
    stack, client = faults.stack, faults.client
    dag_id = "faults_end"
    release = tmp_path / "release"
    runs = {
        "FINISHED": stack.trigger(dag_id, conf={"release": str(release), "fail": False}),
        "FAILED": stack.trigger(dag_id, conf={"release": str(release), "fail": True}),
    }

    def holding(run_id: str) -> bool:
        states = {t["task_id"]: t["state"] for t in stack.task_instances(dag_id, run_id)}
        return states == {"tracked": "success", "hold": "running"}

    for run_id in runs.values():
        faults.wait_until(f"{run_id} to hold after tracking", lambda r=run_id: holding(r), 180, 0.5)
    faults.kill_server()
    release.touch()
    for expected, run_id in runs.items():
        state = stack.wait(dag_id, run_id, timeout=60)
        assert state == ("success" if expected == "FINISHED" else "failed"), stack.describe_failure(
            dag_id, run_id
        )
    # The listener's first try (and its client's retries) fail meanwhile.
    time.sleep(RETRY_BUDGET)
    back = faults.restart_server()

    for expected, run_id in runs.items():
        parent = faults.wait_until(
            f"the parent of {run_id} to be finalized after MLflow's return",
            lambda r=run_id: finalized_parent(client, dag_id, r),
            FINALIZE_TIMEOUT,
        )
        print(f"\n[faults] parent {expected} {time.monotonic() - back:.1f} s after MLflow's return")
        assert parent.info.status == expected
        parents, children = split_runs(experiment_runs(client, dag_id, run_id))
        assert len(parents) == 1 and [r.info.run_name for r in children] == ["tracked"]
        assert children[0].info.status == "FINISHED"
