"""``retrain_from_script`` (``dags_examples/script_training.py``) under the real scheduler.

One DAG run, triggered through the REST API with logical date 2026-11-01 (the date seeds the
script's holdout split). The ``BashOperator`` runs the unmodified training script in a task
process the LocalExecutor started; the script's params, metrics and model land in that task's
child run under the DAG run's parent, the model is registered from there, gated and, as the
first version, promoted. (A rejected second version is the gate's business, tested under the
scheduler by ``test_retrain_e2e.py``; ``make demo`` shows it for this DAG.) On the mlflow-server
stack only: ``airflow dags test`` runs it on the embedded store in the unit tier, and the embedded
store under the scheduler is ``test_retrain_e2e.py``'s; this keeps the e2e tier's time in check.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import script_pipeline as pipeline
from tests.e2e._airflow import ROOT, wait_for

DAYS = {"2026-11-01": "20261101"}
RUN_TIMEOUT = 300


@pytest.mark.stack_modes("server")
def test_the_script_pipeline_under_the_scheduler(airflow_stack):
    stack = airflow_stack
    stack.wait_for_dag(pipeline.DAG_ID)
    fileloc = Path(stack.api("GET", f"/dags/{pipeline.DAG_ID}/details")["fileloc"])
    assert fileloc.resolve() == ROOT / "dags_examples" / "script_training.py"  # the shipped file
    stack.unpause(pipeline.DAG_ID)
    run_ids = {}
    for day in DAYS:
        run_id = stack.trigger(pipeline.DAG_ID, logical_date=f"{day}T00:00:00Z")
        state = stack.wait(pipeline.DAG_ID, run_id, timeout=RUN_TIMEOUT, interval=0.5)
        assert state == "success", stack.describe_failure(pipeline.DAG_ID, run_id)
        run_ids[day] = run_id

    client = stack.mlflow_client()
    for run_id in run_ids.values():
        # The scheduler's listener ends the DAG run's parent run after the DAG run ends, from its
        # own worker thread: on two busy cores that can be a moment after the API says "success".
        wait_for(f"the parent run of {run_id} to end", lambda r=run_id: parent_ended(client, r), 60, 0.5)
    trained = [
        pipeline.assert_training(client, stack.mlflow_tracking_uri, run_ids[day], seed)
        for day, seed in DAYS.items()
    ]
    verdicts = pipeline.assert_registry(client, trained)
    assert verdicts == ["passed"], [t.run.data.metrics["accuracy"] for t in trained]

    for day, verdict in zip(DAYS, verdicts, strict=True):
        run_id = run_ids[day]
        states = {t["task_id"]: t["state"] for t in stack.task_instances(pipeline.DAG_ID, run_id)}
        after_gate = "success" if verdict == "passed" else "skipped"
        assert states == {
            "train": "success",
            "register": "success",
            "gate": after_gate,
            "promote": after_gate,
        }
        log = stack.task_log(pipeline.DAG_ID, run_id, "train")
        assert "the task's child process writes into this run" in log
        assert "train_classifier.py --C 1.0 --max-iter 1000 --seed" in log
        assert "accuracy=0." in log  # the script's own output
    # No scheduled run: the DAG is triggered, never scheduled.
    assert stack.dag_runs(pipeline.DAG_ID, run_type="scheduled") == []


def parent_ended(client, dag_run_id: str) -> bool:
    experiment = client.get_experiment_by_name(pipeline.DAG_ID)
    parents = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`airflow.run_id` = '{dag_run_id}' and tags.`airflow.role` = 'dag_run'",
    )
    return bool(parents) and parents[0].info.status != "RUNNING"
