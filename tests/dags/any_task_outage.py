"""A tracked plain task while MLflow is down: it must run, and soon (issue 12)."""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import dag

from airflow_mlflow import enable_tracking


@dag(
    dag_id="any_task_outage", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False
)
def _outage():
    # Writes when the command started, so a test can tell the listener's requests from later ones.
    BashOperator(task_id="mark", bash_command='date +%s.%N > "$OUTAGE_MARK"')


outage = enable_tracking(_outage())
