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
