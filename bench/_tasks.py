"""
Run a provider task's ``execute`` outside Airflow, with a minimal stand-in for its context (as
the unit tests do): the operator, its hook and MLflow are real; only the scheduler is absent.
This measures exactly what one task instance sends to MLflow, nothing the DAG run adds.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any


class BenchTI:
    """The parts of a task instance the provider reads: its identity and ``xcom_push``."""

    map_index, try_number = -1, 1

    def __init__(self, dag_id: str, run_id: str, task_id: str) -> None:
        self.dag_id, self.run_id, self.task_id = dag_id, run_id, task_id
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def context(dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
    return {
        "ti": BenchTI(dag_id, run_id, task_id),
        "logical_date": None,
        "outlet_events": defaultdict(SimpleNamespace),
        "params": {},
    }


def run_execute(operator: Any, dag_id: str, run_id: str, hook: Any = None) -> Any:
    """
    ``operator.execute`` as task ``operator.task_id`` of DAG run ``run_id``, with a fresh hook
    (each task process builds its own hook and client), or with ``hook`` when given.
    """
    operator.__dict__.pop("hook", None)
    if hook is not None:
        operator.__dict__["hook"] = hook
    return operator.execute(context(dag_id, run_id, operator.task_id))


#: Hook verbs the run model and the operators call; ``count_by_verb`` wraps them.
VERBS = (
    "experiment",
    "get_or_create_experiment",
    "find_experiment",
    "find_runs",
    "get_run",
    "create_run",
    "set_run_status",
    "delete_run",
    "log_batch",
    "log_artifacts",
    "set_experiment_tag",
    "delete_experiment_tag",
)


def count_by_verb(hook: Any, requests: Callable[[], int], tally: Counter[str]) -> Any:
    """
    Wrap ``hook``'s verbs so that ``tally[verb]`` adds the requests made inside each call
    (``requests()`` is a running total, e.g. the counting proxy's). Nested verbs are counted
    once, under the outermost one.
    """
    depth = [0]

    def wrap(name: str, method: Callable) -> Callable:
        def counted(*args: Any, **kwargs: Any) -> Any:
            depth[0] += 1
            before = requests()
            try:
                return method(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    tally[name] += requests() - before

        return counted

    for name in VERBS:
        if hasattr(hook, name):
            setattr(hook, name, wrap(name, getattr(hook, name)))
    return hook
