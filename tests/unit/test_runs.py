"""The run model: parents, children, retries and the end-of-DAG-run merge, on a real store."""

from __future__ import annotations

import pytest

from airflow_mlflow.hooks.mlflow import MLflowHook
from airflow_mlflow.runs import (
    DAG_RUN_KEY,
    PARENT,
    ROLE,
    TaskRunContext,
    close_task_run,
    finalize_dag_run,
    open_task_run,
)


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
