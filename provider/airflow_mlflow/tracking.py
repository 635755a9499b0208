"""
Which tasks get an MLflow run without being written for MLflow: opt-in switches.

Follows the OpenLineage provider's ``enable_lineage``/``disable_lineage`` convention: a const
DAG/task param, which survives serialization (the scheduler's DAG-run listener sees it), is
inherited by tasks added to the DAG later, and cannot be flipped by a trigger's conf. Unlike
OpenLineage, :func:`disable_tracking` also wins over ``[mlflow] track_all_tasks = True``.

Import-cheap: a DAG file calls these, so neither MLflow nor the hook layer is imported here.
"""

from __future__ import annotations

import weakref
from typing import Any, TypeVar

#: The param carrying a DAG's or task's choice.
TRACKING_PARAM = "_airflow_mlflow_track"

T = TypeVar("T")


def enable_tracking(obj: T) -> T:
    """
    Track ``obj`` (a DAG: all its tasks but those given their own choice; an operator, mapped
    operator or ``XComArg``: that task): each task instance gets a child run under its DAG run's
    parent run, as ``@task.mlflow`` would.
    Returns ``obj``, so that it can wrap a task call or a DAG.
    """
    _set(obj, True)
    return obj


def disable_tracking(obj: T) -> T:
    """Never track ``obj`` (a DAG, operator, mapped operator or ``XComArg``), even with track_all_tasks."""
    _set(obj, False)
    return obj


#: Tasks given their own choice: a DAG-wide call made afterwards leaves them alone (so that
#: ``disable_tracking(task)`` inside a ``@dag`` function survives ``enable_tracking(dag)``).
_chosen: weakref.WeakSet[Any] = weakref.WeakSet()


def _set(obj: Any, value: bool) -> None:
    from airflow.sdk import Param

    target = getattr(obj, "operator", None) if _is_xcom_arg(obj) else obj
    if target is None or getattr(target, "params", None) is None:
        raise TypeError(f"cannot enable or disable MLflow tracking on {obj!r}")
    target.params[TRACKING_PARAM] = Param(value, const=value)
    tasks = getattr(target, "task_dict", None)
    if tasks is None:  # a task
        _chosen.add(target)
        if value and not provider_task(target):
            _add_link(target)
        return
    for task in tasks.values():
        if task not in _chosen:
            task.params[TRACKING_PARAM] = Param(value, const=value)
            if value and not provider_task(task):  # the provider's own tasks have their links
                _add_link(task)


def _is_xcom_arg(obj: Any) -> bool:
    return type(obj).__name__.endswith("XComArg")


def _add_link(task: Any) -> None:
    """The "MLflow Run" extra link, when the operator's links are a plain class attribute."""
    import inspect

    from airflow_mlflow.links.mlflow import MLflowRunLink

    try:
        static = inspect.getattr_static(type(task), "operator_extra_links")
    except AttributeError:
        return
    if isinstance(static, property):
        return
    links = tuple(getattr(task, "operator_extra_links", ()) or ())
    if not any(isinstance(link, MLflowRunLink) for link in links):
        try:
            task.operator_extra_links = (*links, MLflowRunLink())
        except Exception:  # a mapped operator or an operator that refuses it: the MLflow tab remains
            return


def provider_task(task: Any) -> bool:
    """True for the provider's own tasks: they open their runs themselves (or are registry tasks)."""
    module = getattr(task, "_task_module", None) or type(task).__module__
    return str(module).startswith("airflow_mlflow.")


def _param_value(task: Any) -> bool | None:
    params = getattr(task, "params", None)
    if params is None:
        partial = getattr(task, "partial_kwargs", None) or {}
        params = partial.get("params")
    if params is None or TRACKING_PARAM not in params:
        return None
    value = params[TRACKING_PARAM]  # ParamsDict resolves the Param to its value
    value = getattr(value, "value", value)
    return value if isinstance(value, bool) else None


def track_all_tasks() -> bool:
    """``[mlflow] track_all_tasks`` (default False)."""
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # pragma: no cover - scheduler-only installs
        from airflow.configuration import conf
    return conf.getboolean("mlflow", "track_all_tasks", fallback=False)


def is_tracked(task: Any) -> bool:
    """
    Whether the listener opens a run for ``task``: never for the provider's own tasks; else the
    task's (or its DAG's) choice, else ``[mlflow] track_all_tasks``.
    """
    if provider_task(task):
        return False
    chosen = _param_value(task)
    if chosen is not None:
        return chosen
    return track_all_tasks()


def listener_target() -> tuple[str, str | None]:
    """``(mlflow_conn_id, experiment_name)`` of listener-tracked tasks: ``[mlflow] conn_id``."""
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # pragma: no cover
        from airflow.configuration import conf
    return (conf.get("mlflow", "conn_id", fallback="mlflow_default") or "mlflow_default", None)
