"""The run model: parents, children, retries and the end-of-DAG-run merge, on a real store."""

from __future__ import annotations

import os

import pytest

from airflow_mlflow.hooks.mlflow import MLflowHook
from airflow_mlflow.runs import (
    PARENT,
    TaskRunContext,
    close_task_run,
    finalize_dag_run,
    open_task_run,
)
from airflow_mlflow.tags import DAG_RUN_KEY, HOSTNAME, PID, ROLE
from tests.assertions import points_by_attempt


@pytest.fixture
def hook(store) -> MLflowHook:
    return MLflowHook()


def ctx(task_id: str, map_index: int = -1, try_number: int = 1, run_id: str = "manual__1") -> TaskRunContext:
    return TaskRunContext(
        dag_id="d", run_id=run_id, task_id=task_id, map_index=map_index, try_number=try_number
    )


def active(store, experiment="d"):
    exp = store.client.get_experiment_by_name(experiment).experiment_id
    return store.client.search_runs([exp])


def test_tasks_share_one_parent_and_retry_reuses_the_child(hook, store):
    a = open_task_run(hook, ctx("a"))
    b = open_task_run(hook, ctx("b"))
    assert a.parent_run_id == b.parent_run_id and a.run_id != b.run_id
    close_task_run(hook, a, ctx("a"), "failed", RuntimeError("boom"))
    again = open_task_run(hook, ctx("a", try_number=2))
    assert again.run_id == a.run_id
    run = store.client.get_run(a.run_id)
    assert run.info.status == "RUNNING"
    assert run.data.tags["airflow.try_number"] == "2"
    assert run.data.tags["airflow.try.1.state"] == "failed"
    assert run.data.tags["airflow.try.2.state"] == "running"
    assert len(active(store)) == 3


def test_a_task_run_names_the_host_and_process_it_ran_in(hook, store, monkeypatch):
    """``airflow.hostname`` is Airflow's hostname for the task ([core] hostname_callable), as on
    the task instance; ``airflow.pid`` the task process. A retry elsewhere moves both."""
    monkeypatch.setenv("AIRFLOW__CORE__HOSTNAME_CALLABLE", "tests.e2e._hostname.from_env")
    monkeypatch.setenv("AMLF_TEST_HOSTNAME", "worker-a")
    first = open_task_run(hook, ctx("a"))
    tags = store.client.get_run(first.run_id).data.tags
    assert (tags[HOSTNAME], tags[PID]) == ("worker-a", str(os.getpid()))
    monkeypatch.setenv("AMLF_TEST_HOSTNAME", "worker-b")
    open_task_run(hook, ctx("a", try_number=2))
    assert store.client.get_run(first.run_id).data.tags[HOSTNAME] == "worker-b"


def test_map_indexes_get_their_own_runs(hook, store):
    runs = {open_task_run(hook, ctx("m", map_index=i)).run_id for i in range(3)}
    assert len(runs) == 3
    names = sorted(r.info.run_name for r in active(store) if r.data.tags[ROLE] == "task")
    assert names == ["m[0]", "m[1]", "m[2]"]


def test_standalone_run_has_no_parent(hook, store):
    run = open_task_run(hook, ctx("solo"), nested=False, experiment_name="elsewhere")
    assert run.parent_run_id is None
    (only,) = active(store, "elsewhere")
    assert PARENT not in only.data.tags


def test_given_run_id_is_used_and_left_alone(hook, store):
    exp = hook.get_or_create_experiment("shared")
    target = hook.create_run(exp, "external", {}, start_time=1)
    run = open_task_run(hook, ctx("t"), run_id=target.run_id)
    close_task_run(hook, run, ctx("t"), "success")
    assert run.run_id == target.run_id and not run.owned
    assert store.client.get_run(target.run_id).info.status == "RUNNING"


def test_finalize_merges_racing_parents_and_kills_leftovers(hook, store):
    """Two tasks that each saw only their own parent candidate converge when the DAG run ends."""
    c = ctx("x")
    exp = hook.get_or_create_experiment("d")
    older = hook.create_run(exp, c.run_id, c.parent_tags(), start_time=1000)
    newer = hook.create_run(exp, c.run_id, c.parent_tags(), start_time=2000)
    # A child adopted the newer candidate and its task process died (left RUNNING).
    orphan_ctx = ctx("orphan")
    orphan = hook.create_run(exp, "orphan", {**orphan_ctx.task_tags(), PARENT: newer.run_id}, start_time=3000)

    result = finalize_dag_run(hook, "d", "d", c.run_id, succeeded=True)

    assert result["parent"] == older.run_id and result["merged"] == [newer.run_id]
    assert result["killed"] == [orphan.run_id]
    runs = {r.info.run_id: r for r in active(store)}
    assert set(runs) == {older.run_id, orphan.run_id}
    assert runs[older.run_id].info.status == "FINISHED"
    assert runs[orphan.run_id].data.tags[PARENT] == older.run_id
    assert runs[orphan.run_id].info.status == "KILLED"


def test_finalize_reopened_dag_run(hook, store):
    """A cleared DAG run that runs again reopens its parent, and ends it again."""
    first = open_task_run(hook, ctx("a"))
    close_task_run(hook, first, ctx("a"), "success")
    finalize_dag_run(hook, "d", "d", "manual__1", succeeded=False)
    assert store.client.get_run(first.parent_run_id).info.status == "FAILED"
    second = open_task_run(hook, ctx("a", try_number=2))
    assert second.parent_run_id == first.parent_run_id
    assert store.client.get_run(first.parent_run_id).info.status == "RUNNING"
    close_task_run(hook, second, ctx("a", try_number=2), "success")
    finalize_dag_run(hook, "d", "d", "manual__1", succeeded=True)
    assert store.client.get_run(first.parent_run_id).info.status == "FINISHED"


def test_finalize_of_unknown_experiment_is_a_no_op(hook):
    assert finalize_dag_run(hook, "never-used", "d", "r", succeeded=True) == {
        "experiment": "never-used",
        "parent": None,
    }


def test_dag_run_key_separates_runs(hook):
    assert ctx("a").dag_run_key != ctx("a", run_id="manual__2").dag_run_key
    assert ctx("a").task_tags()[DAG_RUN_KEY] == ctx("b").task_tags()[DAG_RUN_KEY]


def test_the_parent_hint_spares_later_tasks_the_search(hook, store, monkeypatch):
    first = open_task_run(hook, ctx("a"))
    exp = store.client.get_experiment_by_name("d")
    assert exp.tags[f"airflow.parent.{ctx('a').dag_run_key}"] == first.parent_run_id

    searches = []
    real = hook.find_runs
    monkeypatch.setattr(hook, "find_runs", lambda *a, **k: searches.append(a) or real(*a, **k))
    second = open_task_run(hook, ctx("b"))
    assert second.parent_run_id == first.parent_run_id and searches == []

    finalize_dag_run(hook, "d", "d", "manual__1", succeeded=True)
    assert f"airflow.parent.{ctx('a').dag_run_key}" not in store.client.get_experiment_by_name("d").tags


def test_a_killed_attempt_is_closed_by_the_retry_and_each_curve_stays_apart(hook, store):
    """Try 1 logs 15 steps and dies without closing its run; try 2 logs a 60-step curve."""
    first = open_task_run(hook, ctx("fit"))
    hook.log_metric_history(first.run_id, "loss", [1.0] * 15)
    # (killed: nothing closes the run)
    second = open_task_run(hook, ctx("fit", try_number=2))
    hook.log_metric_history(second.run_id, "loss", [0.5] * 60)
    close_task_run(hook, second, ctx("fit", try_number=2), "success")

    assert second.run_id == first.run_id
    tags = store.client.get_run(first.run_id).data.tags
    assert tags["airflow.try.1.state"] == "failed"
    assert tags["airflow.try.1.error"].startswith("not recorded")
    assert tags["airflow.try.2.state"] == "success"
    assert (
        int(tags["airflow.try.1.start"]) <= int(tags["airflow.try.2.start"]) <= int(tags["airflow.try.2.end"])
    )
    grouped = points_by_attempt(store.client, first.run_id, "loss")
    assert {n: len(steps) for n, steps in grouped.items()} == {1: 15, 2: 60}
    assert grouped[2] == list(range(60))


def test_attempts_that_never_reached_mlflow_are_recorded_by_the_next(hook, store):
    """Tries 1 and 2 failed while MLflow was down: try 3 creates the run and records them."""
    run = open_task_run(hook, ctx("late", try_number=3))
    tags = store.client.get_run(run.run_id).data.tags
    assert [tags[f"airflow.try.{n}.state"] for n in (1, 2, 3)] == ["failed", "failed", "running"]
    assert tags["airflow.try.2.error"].startswith("not recorded")
    assert "airflow.try.3.error" not in tags


def test_finalize_records_attempts_from_airflow_task_states(hook, store):
    """The end of the DAG run closes what the tasks could not: each attempt as Airflow saw it."""
    ok = open_task_run(hook, ctx("ok"))  # succeeded, but MLflow was down when it ended
    died = open_task_run(hook, ctx("died", try_number=2))  # try 1 never reached MLflow; try 2 killed
    states = {("ok", -1): ("success", 1), ("died", -1): ("failed", 2), ("gone", -1): ("success", 1)}

    result = finalize_dag_run(hook, "d", "d", "manual__1", False, states, tasks={"ok", "died", "gone"})

    runs = {r.info.run_name: r for r in active(store)}
    assert runs["ok"].info.status == "FINISHED" and runs["ok"].info.run_id == ok.run_id
    assert runs["ok"].data.tags["airflow.try.1.state"] == "success"
    assert "recorded later" in runs["ok"].data.tags["airflow.try.1.note"]
    assert runs["died"].info.status == "KILLED" and runs["died"].info.run_id == died.run_id
    assert runs["died"].data.tags["airflow.try.1.state"] == "failed"
    assert runs["died"].data.tags["airflow.try.2.state"] == "killed"
    assert runs["died"].data.tags["airflow.try.2.error"].startswith("not recorded")
    # "gone" succeeded while MLflow was down all along (tracking_failure="warn"): its run is made now.
    gone = runs["gone"]
    assert gone.info.status == "FINISHED" and gone.data.tags["airflow.try.1.state"] == "success"
    assert gone.data.tags[PARENT] == ok.parent_run_id == result["parent"]
    assert not [r for r in active(store) if r.info.status == "RUNNING"]


def test_a_metric_point_belongs_to_the_last_attempt_started_before_it():
    from airflow_mlflow.attempts import attempt_of
    from airflow_mlflow.tags import try_tag

    tags = {try_tag(1, "start"): "100", try_tag(2, "start"): "200", try_tag(2, "end"): "300", "x": "1"}
    assert [attempt_of(t, tags) for t in (99, 100, 199, 200, 10_000)] == [None, 1, 1, 2, 2]
    assert attempt_of(150, {try_tag(1, "start"): "not-a-time"}) is None
