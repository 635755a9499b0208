"""The "MLflow Run" link, computed by Airflow in the task's process when the task stops."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from airflow_mlflow.plugins import listener
from tests.assertions import xcom_value
from tests.dags import tracked, validation

pytestmark = pytest.mark.usefixtures("airflow_db")


def test_a_task_that_failed_before_it_had_a_run_logs_only_its_own_error(store, capsys):
    # Input refused before the run is opened: no run, no payload for the link to read.
    dag_run = validation.bad_key_log.test()
    listener.drain()
    assert dag_run.state == "failed"
    log = capsys.readouterr().out  # the task log, under dag.test()
    assert "MLflowInputError: params: param key 'a//b' is invalid" in log
    assert "XCom not found" not in log  # was logged at [error] right after the real error
    assert "Failed to push an xcom for task operator extra link" not in log
    assert xcom_value(dag_run, "log", "_link_MLflowRunLink") == ""


def test_a_task_that_failed_in_its_run_still_links_to_it(store, capsys):
    dag_run = tracked.failing.test()
    listener.drain()
    assert dag_run.state == "failed"
    assert "XCom not found" not in capsys.readouterr().out
    assert xcom_value(dag_run, "boom", "mlflow_run")["run_id"]
    assert xcom_value(dag_run, "boom", "_link_MLflowRunLink") == (
        f"dags/failing_example/runs/{quote(dag_run.run_id, safe='')}/tasks/boom/plugin/mlflow-task"
    )


def test_the_task_computes_its_link_without_reading_its_payload_back(store, monkeypatch):
    from airflow.sdk.execution_time.xcom import XCom

    reads = []
    real = XCom.get_value.__func__

    def counting(cls, *, ti_key, key, **kwargs):
        reads.append(key)
        return real(cls, ti_key=ti_key, key=key, **kwargs)

    monkeypatch.setattr(XCom, "get_value", classmethod(counting))
    dag_run = tracked.failing.test()
    listener.drain()
    payload = xcom_value(dag_run, "boom", "mlflow_run")
    assert payload["run_id"]
    assert xcom_value(dag_run, "boom", "_link_MLflowRunLink").endswith("/tasks/boom/plugin/mlflow-task")
    assert "mlflow_run" not in reads  # the payload the task pushed, kept in its process


def test_the_kept_payload_is_only_for_its_own_task_instance():
    from airflow.sdk.types import TaskInstanceKey

    from airflow_mlflow.links.mlflow import MLflowRunLink, push_run_payload

    class TI:
        dag_id, run_id, task_id, map_index = "d", "r", "t", 0
        pushed: list = []

        def xcom_push(self, key, value):
            self.pushed.append((key, value))

    class Task:
        pass

    task = Task()
    push_run_payload(task, TI(), {"run_url": "http://mlflow/run"})
    assert TI.pushed == [("mlflow_run", {"run_url": "http://mlflow/run"})]
    link = MLflowRunLink()
    assert link.get_link(task, ti_key=TaskInstanceKey("d", "t", "r", map_index=0)) == "http://mlflow/run"
    read = []
    import airflow_mlflow.links.mlflow as links

    original = links._payload
    try:
        links._payload = lambda ti_key, key: read.append(ti_key.map_index) or {}
        assert link.get_link(task, ti_key=TaskInstanceKey("d", "t", "r", map_index=1)) == ""
    finally:
        links._payload = original
    assert read == [1]  # another mapped instance: read from XCom, not this one's payload
