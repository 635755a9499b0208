"""One promotion task for the racing-promotions test: promotes when ``go`` appears."""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace


class _TI:
    map_index, try_number = -1, 1

    def __init__(self, dag_id: str) -> None:
        self.dag_id, self.run_id, self.task_id = dag_id, "manual__race", "promote"

    def xcom_push(self, key, value) -> None:
        pass


def main(model: str, version: str, go: str) -> None:
    from airflow_mlflow.exceptions import MLflowConflictError
    from airflow_mlflow.operators.registry import MLflowPromoteModelOperator

    op = MLflowPromoteModelOperator(task_id="promote", model_name=model, version=version)
    _ = op.hook.client
    context = {
        "ti": _TI(f"promote_v{version}"),
        "logical_date": None,
        "outlet_events": defaultdict(SimpleNamespace),
    }
    print("ready", flush=True)
    while not Path(go).exists():
        time.sleep(0.001)
    try:
        result = op.execute(context)
        print(json.dumps({"version": version, "ok": True, "result": result}), flush=True)
    except MLflowConflictError as err:
        print(json.dumps({"version": version, "ok": False, "error": str(err)}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
