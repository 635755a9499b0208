"""``with self.tracked_run(context) as run``: the attempt's run and its outcome, driven directly."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowTaskTerminated, AirflowTaskTimeout

from airflow_mlflow import MLflowLogOperator
from airflow_mlflow.links.mlflow import RUN_XCOM_KEY
from airflow_mlflow.tags import try_tag


def context(try_number: int = 1) -> tuple[dict, dict]:
    """A task context as ``tracked_run`` reads it, and the XComs the attempt pushes."""
    pushed: dict = {}
    ti = SimpleNamespace(
        dag_id="d",
        run_id="manual__1",
        task_id="t",
        map_index=-1,
        try_number=try_number,
        xcom_push=lambda key, value: pushed.__setitem__(key, value),
    )
    return {"ti": ti, "logical_date": None}, pushed


def operator(**kwargs) -> MLflowLogOperator:
    return MLflowLogOperator(task_id="t", experiment_name="e", **kwargs)


def the_run(store, run_id: str):
    return store.client.get_run(run_id)


def test_a_block_that_returns_ends_the_run_finished_with_its_outcome(store):
    op = operator()
    ctx, pushed = context()
    with op.tracked_run(ctx) as run:
        assert run.tracked and run.outcome is None
        assert pushed[RUN_XCOM_KEY]["run_id"] == run.run.run_id  # recorded for the link first
    assert run.outcome == "success"
    finished = the_run(store, run.run.run_id)
    assert finished.info.status == "FINISHED"
    assert finished.data.tags[try_tag(1, "state")] == "success"


def test_success_logged_by_the_block_is_not_written_again(store, monkeypatch):
    op = operator()
    ctx, _ = context()
    batches = []
    with op.tracked_run(ctx) as run:
        op.hook.log_batch(run.run.run_id, tags=run.success_tags())
        run.success_logged = True
        monkeypatch.setattr(op.hook, "log_batch", lambda *a, **k: batches.append(k))
    assert batches == []  # closing only ends the run
    assert the_run(store, run.run.run_id).info.status == "FINISHED"


def test_an_error_in_the_block_fails_the_run_and_is_raised(store):
    op = operator()
    ctx, _ = context()
    with pytest.raises(ValueError, match="bad data"), op.tracked_run(ctx) as run:
        raise ValueError("bad data")
    assert run.outcome == "failed"
    failed = the_run(store, run.run.run_id)
    assert failed.info.status == "FAILED"
    assert failed.data.tags[try_tag(1, "error")] == "ValueError: bad data"


@pytest.mark.parametrize("error", [AirflowTaskTimeout("too slow"), AirflowTaskTerminated("SIGTERM")])
def test_a_timeout_or_kill_in_the_block_kills_the_run(store, error):
    op = operator()
    ctx, _ = context()
    with pytest.raises(type(error)), op.tracked_run(ctx) as run:
        raise error
    assert run.outcome == "killed"
    assert the_run(store, run.run.run_id).info.status == "KILLED"


def test_on_kill_ends_the_attempts_run_killed_once(store):
    """Airflow calls ``on_kill`` from the SIGTERM handler, then the task's own error unwinds."""
    op = operator()
    ctx, _ = context()
    with pytest.raises(AirflowTaskTerminated), op.tracked_run(ctx) as run:
        op.on_kill()
        killed = the_run(store, run.run.run_id)
        assert killed.info.status == "KILLED"
        assert killed.data.tags[try_tag(1, "state")] == "killed"
        assert int(killed.data.tags[try_tag(1, "end")]) > 0
        raise AirflowTaskTerminated("SIGTERM")
    assert run.outcome == "killed"
    after = the_run(store, run.run.run_id)
    assert after.info.status == "KILLED"
    assert try_tag(1, "error") not in after.data.tags  # closed once, by on_kill


def test_on_kill_leaves_a_finished_attempt_and_an_operator_that_never_ran_alone(store):
    operator().on_kill()  # never ran: nothing to close, nothing raised
    op = operator()
    ctx, _ = context()
    with op.tracked_run(ctx) as run:
        pass
    op.on_kill()
    assert the_run(store, run.run.run_id).info.status == "FINISHED"


def test_on_kill_while_mlflow_is_down_warns_and_does_not_raise(store, monkeypatch, capsys):
    op = operator()
    ctx, _ = context()
    with op.tracked_run(ctx) as run:
        monkeypatch.setattr(op.hook, "log_batch", _refused)
        op.on_kill()
        monkeypatch.undo()
    assert "Could not mark the MLflow run killed" in capsys.readouterr().out  # the task log
    assert run.outcome == "killed"  # once: the end of the block does not close it again
    assert the_run(store, run.run.run_id).info.status == "RUNNING"  # left for the DAG run's end


def _refused(*args, **kwargs):
    raise ConnectionRefusedError(111, "refused")


def test_warn_yields_an_untracked_run_when_mlflow_is_down(mlflow_down):
    op = operator(mlflow_conn_id=mlflow_down, tracking_failure="warn")
    ctx, pushed = context()
    with op.tracked_run(ctx) as run:
        assert not run.tracked
    assert pushed[RUN_XCOM_KEY] == {"run_id": None, "tracking": "unavailable"}
    assert run.outcome is None


def test_fail_raises_when_mlflow_is_down(mlflow_down):
    from airflow_mlflow.exceptions import MLflowProviderError

    op = operator(mlflow_conn_id=mlflow_down)
    ctx, pushed = context()
    with pytest.raises(MLflowProviderError), op.tracked_run(ctx):
        pytest.fail("the block must not run")
    assert pushed == {} and op._run_recorded is False  # the link then reads no XCom


def test_warn_ends_the_block_on_an_outage_inside_it_and_leaves_the_run_open(store):
    op = operator(tracking_failure="warn")
    ctx, pushed = context()
    with op.tracked_run(ctx) as run:
        run_id = run.run.run_id
        _refused()
    assert not run.tracked and run.outcome is None  # the code after the block goes on untracked
    assert pushed[RUN_XCOM_KEY] == {"run_id": None, "tracking": "unavailable"}
    assert the_run(store, run_id).info.status == "RUNNING"  # recorded when the DAG run ends


def test_warn_never_swallows_the_users_own_error(store):
    op = operator(tracking_failure="warn")
    ctx, _ = context()
    with pytest.raises(ConnectionRefusedError), op.tracked_run(ctx) as run:
        try:
            _refused()
        except ConnectionRefusedError as err:
            run.user_error = err
            raise
    assert the_run(store, run.run.run_id).info.status == "FAILED"
