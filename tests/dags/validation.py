"""
DAGs of tests/unit/test_validation.py: bad input must fail a task before it writes anything, and
artifacts must land where a user looks for them.

* ``bad_key_log``: 150 good params and one key MLflow refuses (``a//b``).
* ``artifact_folders``: three ``MLflowLogOperator`` tasks whose ``artifacts=`` come from the DAG
  run's conf (``as_list``, ``one_path``, ``as_mapping``), rendered as native objects.
* ``provider_tag_log``: ``tags=`` (conf ``tags``) rendered at run time into the provider's own
  ``airflow.*`` namespace.
* ``artifact_refused``: ``artifacts=`` (conf ``plots``) holds a file MLflow's artifact server
  refuses to store.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from airflow_mlflow import MLflowLogOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")


@dag(dag_id="bad_key_log", schedule=None, start_date=START, catchup=False)
def _bad_key_log():
    MLflowLogOperator(task_id="log", params={**{f"p{i:03}": i for i in range(150)}, "a//b": 1})


@dag(
    dag_id="artifact_folders",
    schedule=None,
    start_date=START,
    catchup=False,
    render_template_as_native_obj=True,
)
def _artifact_folders():
    for name in ("as_list", "one_path", "as_mapping"):
        MLflowLogOperator(task_id=name, artifacts=f"{{{{ dag_run.conf['{name}'] }}}}")


@dag(
    dag_id="artifact_refused",
    schedule=None,
    start_date=START,
    catchup=False,
    render_template_as_native_obj=True,
)
def _artifact_refused():
    MLflowLogOperator(task_id="log", params={"p": 1}, artifacts="{{ dag_run.conf['plots'] }}")


@dag(
    dag_id="provider_tag_log",
    schedule=None,
    start_date=START,
    catchup=False,
    render_template_as_native_obj=True,
)
def _provider_tag_log():
    MLflowLogOperator(task_id="log", params={"p": 1}, tags="{{ dag_run.conf['tags'] }}")


bad_key_log = _bad_key_log()
artifact_folders = _artifact_folders()
artifact_refused = _artifact_refused()
provider_tag_log = _provider_tag_log()
