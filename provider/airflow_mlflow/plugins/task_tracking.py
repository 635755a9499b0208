"""
A child run for a task of any operator class, opted in (:mod:`airflow_mlflow.tracking`).

Called by the task-process hooks of :mod:`airflow_mlflow.plugins.listener`, in the task's own
process, right after Airflow rendered the task's template fields and before ``execute``; then
after the terminal state is known. The run is the one ``@task.mlflow`` would open (same tags,
parent, retries: :func:`airflow_mlflow.runs.open_task_run`), plus what Airflow knows about the
task: its operator class (tags), its rendered template fields (params), the attempt's
duration (metric), and its assets (:mod:`~airflow_mlflow.plugins.task_assets`: inlets as dataset
inputs, outlets as a tag, the run on the outlets' asset events). A field Airflow masks, even in
part, is never logged.

A deferred or rescheduled task leaves its run open (Airflow has no hook for it) and finds it
again, by its task-instance key, when it resumes with the same try number.

One task instance runs per task process, so the open attempt is kept at module level.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from airflow_mlflow import compat
from airflow_mlflow.links.mlflow import push_run_payload
from airflow_mlflow.plugins import task_assets
from airflow_mlflow.tags import DURATION_METRIC, FIELD_PARAM_PREFIX, OPERATOR, OPERATOR_NAME
from airflow_mlflow.validation import MAX_KEY_LENGTH, MAX_PARAM_VALUE_LENGTH

if TYPE_CHECKING:
    from airflow_mlflow.hooks.config import HttpBudget
    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.operators.base import TrackedRun
    from airflow_mlflow.runs import TaskRun

log = logging.getLogger(__name__)

TRUNCATED = "...(truncated)"

#: The attempt this process tracks, and the hook it uses: ``(ti_key, hook, tracked)``.
_current: tuple[str, MLflowHook, TrackedRun] | None = None


def start(ti: Any) -> None:
    """Open (or reopen) the task instance's run and log what Airflow knows of the task."""
    global _current
    from airflow_mlflow.operators.base import TrackedRun, make_hook
    from airflow_mlflow.runs import TaskRunContext, open_task_run, resolve_experiment_name
    from airflow_mlflow.tracking import listener_target

    _current = None
    task = ti.task
    context = ti.get_template_context()
    ctx = TaskRunContext.from_context(context)
    conn_id, experiment_name = listener_target()
    connection = make_hook(conn_id)
    hook = connection.with_fallback_budget(_quick_budget())
    _set_attr(task, "_run_recorded", False)
    tracked = TrackedRun(ctx)
    # A deferred task resuming, or a sensor's later poke, keeps its run (same try number).
    resumes = compat.resumes_attempt(ti)
    tracked.run = open_task_run(hook, ctx, experiment_name=experiment_name, find_existing=resumes)
    _current = (ctx.ti_key, hook, tracked)
    push_run_payload(task, ti, tracked.run.to_json())
    _set_attr(task, "_run_recorded", True)
    known = tracked.run.params or {}
    params = {k: v for k, v in rendered_params(task).items() if known.get(k, v) == v}
    tags = {**operator_tags(task), **task_assets.outlet_tags(task)}
    hook.log_batch(tracked.run.run_id, params=params, tags=tags, known_params=known)
    log.info(
        "MLflow run %s (experiment %s) %s",
        tracked.run.run_id,
        tracked.run.experiment_id,
        tracked.run.run_url or "",
    )
    # The child process gets the connection's own budget: that is the user's work.
    experiment = resolve_experiment_name(hook, experiment_name, ctx.dag_id)
    exported = export_env(task, connection, tracked.run, experiment)
    if exported:
        log.info("MLflow: the task's child process writes into this run (%s)", ", ".join(sorted(exported)))
    task_assets.record(task, context, hook, tracked.run)


def _quick_budget() -> HttpBudget:
    """
    The retry budget of the listener's own requests when the connection sets none: the task does
    not need MLflow, so an outage delays it by a few seconds, not the half minute the provider's
    operators wait (it then runs untracked, and the end of its DAG run records its attempt).
    """
    from airflow_mlflow.hooks.config import HttpBudget

    return HttpBudget(max_retries=1, backoff_factor=1.0, timeout=5.0)


def finish(ti: Any, outcome: str, error: Any = None) -> None:
    """End the attempt this process opened: its duration, then FINISHED, FAILED or KILLED."""
    global _current
    from airflow_mlflow.runs import TaskRunContext

    if _current is None:
        return
    ti_key, hook, tracked = _current
    ctx = TaskRunContext.from_context(ti.get_template_context())
    if ctx.ti_key != ti_key:
        return
    _current = None
    if outcome == "failed" and _killed(error):
        outcome = "killed"
    duration = _duration_s(ti)
    metrics = {DURATION_METRIC: duration} if duration is not None else None
    tracked.close(hook, outcome, error if isinstance(error, BaseException) else None, metrics=metrics)


def export_env(task: Any, hook: MLflowHook, run: TaskRun, experiment_name: str) -> list[str]:
    """
    Give the process the task starts (``BashOperator``/``@task.bash``, ``PythonVirtualenvOperator``
    /``@task.virtualenv``, ``ExternalPythonOperator``/``@task.external_python``) the MLflow
    environment of ``run``, so that unmodified code calling ``mlflow.start_run()`` writes into it.
    Returns the names set. Keys the user set (``env``, ``env_vars``) win.

    Only the copy Airflow prepared for this attempt changes, and nothing enters ``os.environ`` of
    this process. A BashOperator's ``get_env`` is wrapped rather than its ``env`` set: ``env`` is a
    template field (``@task.bash`` renders it again and re-sends it); ``env_vars`` is not one.
    A ``KubernetesPodOperator``'s pod or a ``DockerOperator``'s container: see
    :mod:`airflow_mlflow.containers`.
    """
    from airflow_mlflow.containers import export

    exported = export(task, hook, run, experiment_name)
    if exported is not None:
        return exported
    try:
        from airflow.providers.standard.operators.bash import BashOperator
    except ImportError:  # pragma: no cover - the standard provider is not installed
        return []
    if isinstance(task, BashOperator):
        extra = hook.child_env(run.run_id, run.experiment_id, experiment_name)
        original = task.get_env

        def get_env(context: Any) -> dict[str, str]:
            mine = set(getattr(task, "env", None) or ())
            return {**original(context), **{k: v for k, v in extra.items() if k not in mine}}

        task.get_env = get_env
        return list(extra)
    if compat.is_virtualenv_operator(task):
        extra = hook.child_env(run.run_id, run.experiment_id, experiment_name)
        task.env_vars = {**extra, **(task.env_vars or {})}  # a new dict: the copy is shallow
        return list(extra)
    return []


def operator_tags(task: Any) -> dict[str, str]:
    tags = {OPERATOR: f"{type(task).__module__}.{type(task).__qualname__}"}
    name = getattr(task, "custom_operator_name", None) or getattr(task, "task_type", None)
    if name:
        tags[OPERATOR_NAME] = str(name)
    return tags


def rendered_params(task: Any) -> dict[str, str]:
    """
    The task's rendered template fields as params, in the JSON form Airflow's UI shows them
    (``[core] max_templated_field_length`` applies). A field Airflow would mask, by its name or
    because a registered secret appears in it, is left out: logging ``***`` would say nothing.
    """
    params: dict[str, str] = {}
    for field in getattr(task, "template_fields", ()) or ():
        if compat.hides_field(field):
            continue
        try:
            value = compat.serialize_template_field(getattr(task, field), field)
        except Exception:
            continue
        if value is None or value in ("", [], {}):
            continue
        if compat.redact(value, field) != value:
            continue
        key = f"{FIELD_PARAM_PREFIX}{field}"
        if len(key) > MAX_KEY_LENGTH:
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        if len(text) > MAX_PARAM_VALUE_LENGTH:
            text = text[: MAX_PARAM_VALUE_LENGTH - len(TRUNCATED)] + TRUNCATED
        params[key] = text
    return params


def _duration_s(ti: Any) -> float | None:
    start, end = getattr(ti, "start_date", None), getattr(ti, "end_date", None)
    if start is None:
        return None
    if end is None:
        from datetime import UTC, datetime

        end = datetime.now(UTC)
    return max((end - start).total_seconds(), 0.0)


def _killed(error: Any) -> bool:
    from airflow.sdk.exceptions import AirflowTaskTerminated, AirflowTaskTimeout

    return isinstance(error, (AirflowTaskTimeout, AirflowTaskTerminated))


def _set_attr(task: Any, name: str, value: Any) -> None:
    try:
        setattr(task, name, value)
    except Exception:  # an operator that refuses new attributes: the link then reads the XCom
        pass
