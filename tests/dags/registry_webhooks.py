"""DAGs scheduled on model assets fed by MLflow's webhooks (issue 14): the receiver's e2e test
creates versions of ``webhooked`` and moves its ``live`` alias in MLflow, which posts to Airflow."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, task

from airflow_mlflow import event_payload, model_asset

MODEL = "webhooked"
START = pendulum.datetime(2026, 1, 1, tz="UTC")


@task
def changes() -> list[dict]:
    """What the triggering events said (the test reads it back from XCom)."""
    events = get_current_context()["triggering_asset_events"]
    return [event_payload(e.extra) for per_asset in events.values() for e in per_asset]


@dag(schedule=[model_asset(MODEL, watch="webhook")], start_date=START, catchup=False, tags=["test"])
def on_new_version():
    changes()


@dag(
    schedule=[model_asset(MODEL, alias="live", watch="webhook")],
    start_date=START,
    catchup=False,
    tags=["test"],
)
def on_live_alias():
    changes()


on_new_version()
on_live_alias()
