"""``@task.bash`` tracked by the listener: the decorator renders its command again at execute time
(and sends the rendered fields again), so the MLflow environment must reach the command's process
without becoming part of any field."""

from __future__ import annotations

import shlex
import sys

import pendulum
from airflow.sdk import dag, task

from airflow_mlflow import enable_tracking

SCRIPT = "import mlflow; mlflow.log_metric('rows', {rows}); mlflow.log_param('source', 'bash-decorator')"


@dag(
    dag_id="task_bash_script",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
)
def _task_bash():
    @task.bash(env={"ROWS": "12"}, append_env=True)
    def train(rows: int) -> str:
        return (
            f'{shlex.quote(sys.executable)} -c {shlex.quote(SCRIPT.format(rows=rows))} && test "$ROWS" = 12'
        )

    train(rows=12)


dag_bash = enable_tracking(_task_bash())
