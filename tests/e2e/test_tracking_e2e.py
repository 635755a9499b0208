"""Tracked DAGs on a real Airflow deployment, triggered and watched through the REST API.

Task processes are started by the scheduler's LocalExecutor and talk to the API server's
execution API; the parent run is closed by the provider's DAG-run listener inside the scheduler.
"""

from __future__ import annotations

from types import SimpleNamespace

from tests.assertions import assert_tracked_dag, runs_of_dag_run
from tests.e2e._airflow import wait_for

# The listener closes the parent in a background thread of the scheduler, after the DAG run ends.
FINALIZE_TIMEOUT = 60


def parent_status(client, experiment: str, run_id: str) -> str | None:
    """Status of the DAG run's parent MLflow run, once one exists and it is no longer RUNNING."""
    runs = runs_of_dag_run(client, experiment, run_id)
    statuses = [r.info.status for r in runs if r.data.tags.get("airflow.role") == "dag_run"]
    return statuses[0] if len(statuses) == 1 and statuses[0] != "RUNNING" else None


def test_tracked_and_failing_dags_through_the_rest_api(airflow_stack):
    # Both runs at once: they overlap on the scheduler, as they would in a deployment.
    # With a logical date, as the shared assertion expects an airflow.logical_date tag; the
    # failing run has none, Airflow 3's default for a run triggered through the API.
    tracked = SimpleNamespace(
        dag_id="tracked_example", run_id=airflow_stack.trigger("tracked_example", logical_date="now")
    )
    failing = SimpleNamespace(dag_id="failing_example", run_id=airflow_stack.trigger("failing_example"))
    probe = airflow_stack.trigger("preload_probe")

    state = airflow_stack.wait(tracked.dag_id, tracked.run_id, timeout=240)
    assert state == "success", airflow_stack.describe_failure(tracked.dag_id, tracked.run_id)
    assert airflow_stack.wait(failing.dag_id, failing.run_id, timeout=120) == "failed"

    tis = {(t["task_id"], t["map_index"]): t for t in airflow_stack.task_instances(**vars(tracked))}
    assert {k: t["state"] for k, t in tis.items()} == {
        ("write_report", -1): "success",
        ("train", 0): "success",
        ("train", 1): "success",
        ("train", 2): "success",
        ("flaky", -1): "success",
        ("report", -1): "success",
    }
    assert tis[("flaky", -1)]["try_number"] == 2  # the retry ran in a new task process

    # A plain task's process started with MLflow imported, and without airflow_mlflow.preload: with
    # Airflow's default start method the LocalExecutor forks its workers from the scheduler, whose
    # DAG-run listener has imported MLflow (README, Scaling out).
    assert airflow_stack.wait("preload_probe", probe, timeout=120) == "success"
    assert airflow_stack.xcom("preload_probe", probe, "inherited") == ["mlflow"]

    client = airflow_stack.mlflow_client()
    wait_for(
        "the scheduler's listener to finish the tracked parent run",
        lambda: parent_status(client, tracked.dag_id, tracked.run_id),
        FINALIZE_TIMEOUT,
    )
    assert_tracked_dag(client, tracked)  # includes: parent FINISHED
    # ... and it was the provider's listener, inside the scheduler process, that finished it.
    # (Logged just after the parent is closed, so it may trail the status by a moment.)
    finalized = f"MLflow: finalized DAG run {tracked.dag_id}/{tracked.run_id}"
    wait_for("the listener's log line", lambda: finalized in airflow_stack.log_text("scheduler"), 10, 0.2)

    assert (
        wait_for(
            "the scheduler's listener to fail the failing parent run",
            lambda: parent_status(client, failing.dag_id, failing.run_id),
            FINALIZE_TIMEOUT,
        )
        == "FAILED"
    )
    runs = runs_of_dag_run(client, failing.dag_id, failing.run_id)
    assert {r.info.run_name: r.info.status for r in runs} == {
        failing.run_id: "FAILED",
        "ok": "FINISHED",
        "boom": "FAILED",
    }
