"""One MLflow outage on the real stack, longer than the MLflow client's retry budget (a few
seconds, set by the connections' ``http_*`` extras, see conftest.py): the server is SIGKILLed while
two mapped tasks log curves and while two DAG runs wait to end, the DAG runs end during the
outage, and the server comes back on the same port and database.

What must hold (issue 10): the DAG runs that ended during the outage have a FINISHED or FAILED
parent within a minute of MLflow's return, and their ``airflow.parent.*`` hint is gone; the
curve tasks fail clearly and retry until they succeed; MLflow ends up with one parent per DAG
run and one child per task instance; every step of every attempt is there exactly once (the
attempt rule: a point belongs to attempt n when try.n.start <= timestamp < try.(n+1).start);
nothing stays RUNNING.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.faults.conftest import (
    FINALIZE_TIMEOUT,
    REFUSED_BUDGET,
    experiment_runs,
    finalized_parent,
    raw_task_log,
    split_runs,
    steps_by_attempt,
)

STEPS = 20
#: The logger of the provider's DAG-run listener, as it appears in the scheduler's log lines.
LISTENER = "[airflow_mlflow.plugins.listener]"
CURVE = "faults_curve"
END = "faults_end"


@pytest.fixture(scope="module")
def outage(fault_stack, tmp_path_factory):
    """The choreography both tests read: what ran, when the server died and when it was back."""
    faults = fault_stack
    faults.ensure_up()
    faults.wait_quiet()
    stack, client = faults.stack, faults.client
    release = Path(tmp_path_factory.mktemp("outage")) / "release"
    # Two DAG runs that track, then hold until `release` exists: they end while MLflow is down.
    ends = {
        "FINISHED": stack.trigger(END, conf={"release": str(release), "fail": False}),
        "FAILED": stack.trigger(END, conf={"release": str(release), "fail": True}),
    }

    def holding(run_id: str) -> bool:
        states = {t["task_id"]: t["state"] for t in stack.task_instances(END, run_id)}
        return states == {"tracked": "success", "hold": "running"}

    for run_id in ends.values():
        faults.wait_until(f"{run_id} to hold after tracking", lambda r=run_id: holding(r), 180, 0.5)

    curve = stack.trigger(CURVE, conf={"steps": STEPS, "step_seconds": 0.4})

    def curves_under_way() -> dict[str, int] | None:
        _, children = split_runs(experiment_runs(client, CURVE, curve))
        counts = {r.info.run_name: len(client.get_metric_history(r.info.run_id, "loss")) for r in children}
        return counts if len(counts) == 2 and min(counts.values()) >= 3 else None

    before_kill = faults.wait_until("both curves to log 3 steps", curves_under_way, 180, 0.3)
    faults.kill_server()
    killed = time.monotonic()
    release.touch()
    for expected, run_id in ends.items():
        state = stack.wait(END, run_id, timeout=60)
        assert state == ("success" if expected == "FINISHED" else "failed"), stack.describe_failure(
            END, run_id
        )

    # The outage outlasts the client's retry budget: the listener's finalization of each DAG run
    # has given up once (its warning is in the scheduler's log) before MLflow comes back. With
    # MLflow's default budget (minutes) the first try would simply have waited the outage out.
    def listener_gave_up() -> bool:
        lines = [line for line in stack.log_text("scheduler").splitlines() if LISTENER in line]
        return all(any(run_id in line and "warning" in line for line in lines) for run_id in ends.values())

    faults.wait_until(
        "the listener to warn that it could not finalize yet", listener_gave_up, 30 + REFUSED_BUDGET
    )
    back = faults.restart_server()
    print(f"\n[faults] MLflow down for {back - killed:.1f} s")
    return SimpleNamespace(faults=faults, ends=ends, curve=curve, before_kill=before_kill, back=back)


@pytest.mark.timeout(300)
def test_dag_runs_that_ended_during_the_outage_are_finalized_within_a_minute(outage):
    faults, client = outage.faults, outage.faults.client
    for expected, run_id in outage.ends.items():
        remaining = outage.back + FINALIZE_TIMEOUT - time.monotonic()
        parent = faults.wait_until(
            f"the parent of {run_id} to be finalized after MLflow's return",
            lambda r=run_id: finalized_parent(client, END, r),
            max(remaining, 1),
        )
        print(f"\n[faults] parent {expected} {time.monotonic() - outage.back:.1f} s after MLflow's return")
        assert parent.info.status == expected
        parents, children = split_runs(experiment_runs(client, END, run_id))
        assert len(parents) == 1 and [r.info.run_name for r in children] == ["tracked"]
        assert children[0].info.status == "FINISHED"


@pytest.mark.timeout(300)
def test_tasks_killed_mid_curve_fail_clearly_retry_and_log_each_step_once_per_attempt(outage):
    faults, client = outage.faults, outage.faults.client
    stack, run_id = faults.stack, outage.curve
    state = stack.wait(CURVE, run_id, timeout=240)
    assert state == "success", stack.describe_failure(CURVE, run_id) + faults.dump()
    tis = {t["map_index"]: t for t in stack.task_instances(CURVE, run_id)}
    assert sorted(tis) == [0, 1]
    for ti in tis.values():
        assert ti["try_number"] >= 2, f"the outage did not fail curve[{ti['map_index']}]: {ti}"
        # Failed clearly: the first attempt's error names the server it could not reach.
        log = raw_task_log(stack, CURVE, run_id, "curve", 1, ti["map_index"])
        assert f"{faults.info.host}:{faults.info.port}" in log, log[-3000:]

    parent = faults.wait_until(
        "the parent to be finalized", lambda: finalized_parent(client, CURVE, run_id), FINALIZE_TIMEOUT
    )
    parents, children = split_runs(experiment_runs(client, CURVE, run_id))
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
        assert len(steps.get(1, [])) >= outage.before_kill[name], (name, outage.before_kill, steps)
