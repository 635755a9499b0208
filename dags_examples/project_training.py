"""
Training as an MLflow Project: the ``iris_classifier`` project (``projects/iris_classifier``) as a task.

``train`` is an ``MLflowProjectOperator``: it runs the project's ``main`` entry point with
``mlflow.projects.run`` in a process of its own, as the task's MLflow run (a child of this DAG
run's run). The DAG's params reach the entry point as project parameters (templated), logged on the
run; the entry point logs ``accuracy``, ``f1_macro`` and the model into the same run, and its
output streams into the task log. A relative ``uri`` is taken from this file's folder; a git URI
(``https://github.com/org/repo#subdirectory``, ``version=`` a commit or branch) works the same.
Then the model it logged is registered as a version of ``iris_from_project``.

The same project runs by hand: ``mlflow run dags_examples/projects/iris_classifier -P C=0.5
--env-manager local``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag

from airflow_mlflow import MLflowProjectOperator, MLflowRegisterModelOperator


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    tags=["mlflow", "example", "projects"],
    doc_md=__doc__,
    params={
        "C": Param(1.0, type="number", exclusiveMinimum=0, description="inverse regularisation strength"),
        "max_iter": Param(200, type="integer", minimum=10),
    },
)
def project_training():
    train = MLflowProjectOperator(
        task_id="train",
        uri="projects/iris_classifier",
        entry_point="main",
        parameters={"C": "{{ params.C }}", "max_iter": "{{ params.max_iter }}"},
        env_manager="local",  # the worker's interpreter and packages (scikit-learn: the [examples] extra)
    )
    register = MLflowRegisterModelOperator(
        task_id="register",
        model_uri="runs:/{{ ti.xcom_pull(task_ids='train')['run_id'] }}/model",
        name="iris_from_project",
    )
    train >> register


project_training()
