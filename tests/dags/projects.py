"""A DAG running the shipped MLflow Project (``dags_examples/projects/iris_classifier``) as a task."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from airflow_mlflow.operators.projects import MLflowProjectOperator

#: Relative: the operator takes it from this file's folder.
PROJECT = "../../dags_examples/projects/iris_classifier"


@dag(
    dag_id="project_example",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"C": 0.5},
)
def project_example():
    MLflowProjectOperator(
        task_id="train",
        uri=PROJECT,
        parameters={"C": "{{ params.C }}", "max_iter": 300},
    )


project = project_example()
