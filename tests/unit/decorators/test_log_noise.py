"""What a user reads in a ``@task.mlflow`` task's log: no warning flood from the libraries it uses."""

from __future__ import annotations

import pytest

from tests.dags.noise import sklearn_log_model

pytestmark = pytest.mark.usefixtures("airflow_db")


def test_logging_a_sklearn_model_does_not_flood_the_task_log(store):
    # skops (MLflow's safe format for scikit-learn) touched every deprecated alias of Airflow's
    # modules: about 1,450 FutureWarnings per log_model, each a line of the task log.
    dag_run = sklearn_log_model.test()
    assert dag_run.state == "success"
    ti = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "train")
    assert ti.xcom_pull(task_ids="train") == 0
