"""
Attempts: how each try of a task instance is recorded on its run, and recorded late when it was not.

Attempts are bookkept on the task's run: ``airflow.try.<n>.state`` (running, success, failed,
killed), ``airflow.try.<n>.start`` and ``.end`` (epoch ms). A metric point belongs to attempt n
when ``try.n.start <= timestamp < try.(n+1).start``: steps are never offset, so the rule holds for
user code, autologging and subprocesses writing to the run too. An attempt whose end MLflow never
heard of (its process was killed, MLflow was down, or ``tracking_failure="warn"`` let it go on
without MLflow) is recorded later, by the next attempt or by the end of the DAG run, from what
Airflow knows of the task instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from airflow_mlflow.tags import parse_try_tag, try_tag
from airflow_mlflow.timestamps import now_ms

if TYPE_CHECKING:
    from airflow_mlflow.runs import TaskRunContext

MAX_ERROR_CHARS = 1000

#: Task outcomes and the MLflow run status each one leaves.
TASK_STATUS = {"success": "FINISHED", "failed": "FAILED", "killed": "KILLED"}
#: Task-instance states in which an attempt may still be writing to its run.
TI_ACTIVE_STATES = frozenset(
    {"running", "queued", "scheduled", "deferred", "restarting", "up_for_reschedule"}
)
NOT_RECORDED = (
    "not recorded: the attempt ended before MLflow heard of it (MLflow was unreachable, its process "
    "was killed, or its input was refused before anything was written)"
)
RECORDED_LATE = (
    "tracking was unavailable when this attempt ended; its outcome was recorded later from Airflow's "
    "task-instance state"
)


def attempt_of(timestamp: int, tags: Mapping[str, str]) -> int | None:
    """
    The attempt a metric point logged at ``timestamp`` (epoch ms) belongs to: the last attempt n
    with ``try.n.start <= timestamp``; None for a point older than every recorded start.
    """
    starts = sorted(
        (int(value), parsed[0])
        for key, value in tags.items()
        if (parsed := parse_try_tag(key)) and parsed[1] == "start" and value.isdigit()
    )
    found = None
    for start, number in starts:
        if start <= timestamp:
            found = number
    return found


def earlier_attempts(tags: Mapping[str, str], before: int) -> dict[str, str]:
    """
    Tags closing attempts ``1 .. before-1`` that the run still shows as running, or not at all:
    they are over (a later attempt runs), and did not succeed (else there would be no retry).
    """
    fixes: dict[str, str] = {}
    for number in range(1, before):
        if tags.get(try_tag(number, "state")) in (None, "running"):
            fixes[try_tag(number, "state")] = "failed"
            fixes[try_tag(number, "error")] = NOT_RECORDED
    return fixes


def reconcile_attempts(
    tags: Mapping[str, str], ti_state: str, try_number: int, *, left_open: bool = False
) -> dict[str, str]:
    """
    Tags recording every attempt of a task instance that is no longer running, as Airflow knows
    them: earlier attempts not recorded (or still ``running``) failed; the last one ended as the
    task instance did, with a note when MLflow never heard of it: ``success``, else ``killed``
    when its run was ``left_open`` (a failing attempt closes its run itself, unless its process
    died), else ``failed``.
    """
    if ti_state in TI_ACTIVE_STATES or try_number < 1:
        return {}
    fixes = earlier_attempts(tags, try_number)
    if tags.get(try_tag(try_number, "state")) in (None, "running"):
        if ti_state == "success":
            fixes[try_tag(try_number, "state")] = "success"
            fixes[try_tag(try_number, "note")] = RECORDED_LATE
        else:
            fixes[try_tag(try_number, "state")] = "killed" if left_open else "failed"
            fixes[try_tag(try_number, "error")] = NOT_RECORDED
    return fixes


def attempt_tags(ctx: TaskRunContext, outcome: str, error: BaseException | None = None) -> dict[str, str]:
    """How this attempt ended, and when, as tags of the task's run."""
    tags = {try_tag(ctx.try_number, "state"): outcome, try_tag(ctx.try_number, "end"): str(now_ms())}
    if error is not None:
        tags[try_tag(ctx.try_number, "error")] = f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]
    return tags
