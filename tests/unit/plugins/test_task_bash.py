"""A tracked ``@task.bash``: its command's process writes into the task's run (issue 12)."""

from __future__ import annotations

import os

import pytest

from airflow_mlflow.plugins import listener
from tests.assertions import runs_of_dag_run
from tests.dags import task_bash

pytestmark = pytest.mark.usefixtures("airflow_db")


def test_a_task_bash_command_logs_into_the_tasks_run_and_no_field_shows_the_environment(store):
    from airflow.models.renderedtifields import RenderedTaskInstanceFields

    listener.reset()
    before = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    dag_run = task_bash.dag_bash.test()
    listener.drain()
    assert dag_run.state == "success"
    runs = runs_of_dag_run(store.client, "task_bash_script", dag_run.run_id)
    (child,) = [r for r in runs if r.data.tags.get("airflow.role") == "task"]
    (parent,) = [r for r in runs if r.data.tags.get("airflow.role") == "dag_run"]
    assert child.info.status == "FINISHED"
    assert child.data.metrics["rows"] == 12 and child.data.params["source"] == "bash-decorator"
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    (ti,) = dag_run.get_task_instances()
    rendered = RenderedTaskInstanceFields.get_templated_fields(ti)
    assert "MLFLOW_" not in str(rendered) and rendered["env"] == {"ROWS": "12"}
    assert {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")} == before
