"""One simulated task instance for the parallel-start test: opens its run when ``go`` appears."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(run_id: str, task_id: str, go: str) -> None:
    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.runs import TaskRunContext, close_task_run, open_task_run

    hook = MLflowHook()
    _ = hook.client  # build the client (and import mlflow) before the start line
    ctx = TaskRunContext(dag_id="race_example", run_id=run_id, task_id=task_id)
    print("ready", flush=True)
    while not Path(go).exists():
        time.sleep(0.001)
    task_run = open_task_run(hook, ctx)
    close_task_run(hook, task_run, ctx, "success")
    print(json.dumps({"task": task_id, "run": task_run.run_id, "parent": task_run.parent_run_id}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
