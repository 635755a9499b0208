"""Tasks of any operator (issue 12) through the real scheduler: the mixed DAG of
``tests/dags/any_task.py`` (PythonOperator, a BashOperator running an unmodified MLflow script,
``@task.virtualenv``, a mapped ``@task``, ``@task``, ``@task.mlflow``), opted in with
``enable_tracking``. Each task runs in its own task process started by the LocalExecutor; the
script and the venv callable in processes of their own. On the mlflow-server stack only: the
same DAG runs on the embedded store through ``dag.test()`` in the unit tier."""

from __future__ import annotations

import pytest
from mlflow.entities import ViewType

from tests.assertions import assert_one_tree, runs_of_dag_run
from tests.e2e._airflow import wait_for
from tests.e2e.test_tracking_e2e import FINALIZE_TIMEOUT, parent_status

DAG_ID = "any_task_mixed"
TASKS = ["bash", "fold[0]", "fold[1]", "in_venv", "prepare", "report", "train"]
#: The secret the BashOperator holds in its templated ``env``.
TEMPLATED_SECRET = "hunter2"


@pytest.mark.stack_modes("server")
def test_the_mixed_dag_through_the_scheduler(airflow_stack):
    run_id = airflow_stack.trigger(DAG_ID)
    state = airflow_stack.wait(DAG_ID, run_id, timeout=360)
    assert state == "success", airflow_stack.describe_failure(DAG_ID, run_id)
    tis = airflow_stack.task_instances(DAG_ID, run_id)
    names = sorted(t["task_id"] + (f"[{t['map_index']}]" if t["map_index"] >= 0 else "") for t in tis)
    assert names == TASKS and {t["state"] for t in tis} == {"success"}

    client = airflow_stack.mlflow_client()
    wait_for(
        "the scheduler's listener to finish the parent run",
        lambda: parent_status(client, DAG_ID, run_id),
        FINALIZE_TIMEOUT,
    )
    runs = runs_of_dag_run(client, DAG_ID, run_id)
    parents = [r for r in runs if r.data.tags.get("airflow.role") == "dag_run"]
    children = {r.info.run_name: r for r in runs if r.data.tags.get("airflow.role") == "task"}
    assert_one_tree(parents, children, TASKS)
    assert children["bash"].data.metrics["rows"] == 7  # the unmodified script's metric
    assert children["in_venv"].data.metrics["venv_score"] == 0.5  # the venv callable's
    assert children["train"].data.metrics["score"] == 0.9
    # Nothing left RUNNING in the experiment, and no stray run besides the kept ones.
    experiment = client.get_experiment_by_name(DAG_ID)
    everything = client.search_runs(
        [experiment.experiment_id], f"tags.`airflow.run_id` = '{run_id}'", ViewType.ALL
    )
    assert not [r.info.run_name for r in everything if r.info.status == "RUNNING"]

    # The task logs, as the workers wrote them: the run is named, the secret is not.
    folder = airflow_stack.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}"
    logs = {path.relative_to(folder): path.read_text(errors="replace") for path in folder.rglob("*.log")}
    assert len(logs) == len(TASKS), sorted(map(str, logs))
    bash_log = next(text for path, text in logs.items() if path.parts[0] == "task_id=bash")
    assert children["bash"].info.run_id in bash_log and "MLFLOW_RUN_ID" in bash_log
    assert not [str(path) for path, text in logs.items() if TEMPLATED_SECRET in text]
    params = [v for r in everything for v in (*r.data.params.values(), *r.data.tags.values())]
    assert not [v for v in params if TEMPLATED_SECRET in v]
