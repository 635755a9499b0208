"""
Checks run before anything is written to MLflow, so bad input leaves nothing half-written.

A key is valid exactly when MLflow's own rule accepts it (``compat.mlflow_key_problem``, the seam
to ``mlflow.utils.validation``); the length limits are MLflow's. Two more refusals keep a write
from failing half-way in the store: values with a NUL character (PostgreSQL's text columns cannot
hold one) or with text that is not valid Unicode, and steps outside a 64-bit integer. Two choices
are stricter than MLflow on purpose: a value over its length limit is refused (MLflow would
silently truncate it), and a metric must be finite (NaN and infinities break comparisons and
gates).

Artifact destinations are checked with MLflow's artifact-server check, and names its HTTP client
would store under another name (``#``, ``?``, ``%``) are refused.

This module is imported when DAGs are parsed: the two seams of :mod:`airflow_mlflow.compat` it
calls (which import mlflow) are imported when first called. :func:`check_literals` is the
parse-time subset that needs no mlflow. Messages name the field, the key and the value.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from typing import Any

# MLflow's limits (mlflow.utils.validation: MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH,
# MAX_ENTITY_KEY_LENGTH), copied so parse-time checks need no mlflow; a unit test keeps them equal.
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_KEY_LENGTH = 250
#: Tags of registered models and model versions (MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH).
MAX_REGISTRY_TAG_VALUE_LENGTH = 100_000
#: Steps are 64-bit integers in MLflow's stores.
MIN_STEP, MAX_STEP = -(2**63), 2**63 - 1
#: Stage names MLflow's (deprecated, still working) stage API knows.
STAGES = ("None", "Staging", "Production", "Archived")
#: Where a promotion moves the champion unless told otherwise, and where the UI looks for it
#: while no recorded change names a target. Here rather than in :mod:`airflow_mlflow.champion`
#: (which re-exports them) because the registry operators need them when a DAG file is parsed,
#: and the promotion model is only needed when a task runs.
DEFAULT_ALIAS, DEFAULT_STAGE = "champion", "Production"
_LIMITS = {
    "param": MAX_PARAM_VALUE_LENGTH,
    "tag": MAX_TAG_VALUE_LENGTH,
    "model tag": MAX_REGISTRY_TAG_VALUE_LENGTH,
}
_FIELDS = {"param": "params", "metric": "metrics", "tag": "tags", "model tag": "tags"}


def _invalid(message: str) -> Exception:
    """The :class:`~airflow_mlflow.exceptions.MLflowInputError` to raise, imported only when one is."""
    from airflow_mlflow.exceptions import MLflowInputError

    return MLflowInputError(message)


def is_templated(value: Any) -> bool:
    """
    Whether Airflow renders ``value`` before ``execute``: a string with Jinja markup, or an
    object it resolves (an XComArg). Such values are checked at run time, after rendering.
    """
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    return not isinstance(value, os.PathLike) and callable(getattr(value, "resolve", None))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else f"{text[:100]}… ({len(text)} characters)"


def mlflow_key_problem(key: str) -> str | None:
    """
    :func:`airflow_mlflow.compat.mlflow_key_problem`, the seam imported when first called (at run
    time: parsing a DAG file runs only :func:`check_literals`, which does not use it).
    """
    from airflow_mlflow import compat

    return compat.mlflow_key_problem(key)


def _check_key(kind: str, key: Any, *, mlflow_rule: bool = True) -> str:
    if not isinstance(key, str):
        raise _invalid(
            f"{_FIELDS[kind]}: {kind} key {_short(key)} must be a string, got {type(key).__name__}"
        )
    if not key:
        raise _invalid(f"{_FIELDS[kind]}: {kind} key '' must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise _invalid(
            f"{_FIELDS[kind]}: {kind} key {key[:40]!r}… is {len(key)} characters; "
            f"MLflow allows {MAX_KEY_LENGTH}"
        )
    if mlflow_rule and (problem := mlflow_key_problem(key)):
        raise _invalid(f"{_FIELDS[kind]}: {kind} key {key!r} is invalid: {problem}")
    return key


def _text(kind: str, key: str, value: Any) -> str:
    text = str(value)
    limit, name = _LIMITS[kind], f"{_FIELDS[kind]}: {kind} {key!r}"
    if len(text) > limit:
        raise _invalid(f"{name} value is {len(text)} characters; MLflow allows {limit}")
    if "\x00" in text:
        raise _invalid(
            f"{name} value {_short(text)} contains a NUL character, which MLflow's stores cannot hold"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(f"{name} value {_short(text)} is not valid Unicode text") from None
    return text


def _number(key: str, value: Any) -> float:
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)  # numbers, numpy scalars, and numeric strings from templates
    except (TypeError, ValueError):
        raise _invalid(
            f"metrics: metric {key!r} must be a number, got {type(value).__name__} {_short(value)}"
        ) from None
    except OverflowError:  # an int beyond a double's range
        raise _invalid(f"metrics: metric {key!r} must be finite, got {_short(value)}") from None
    if not math.isfinite(number):
        raise _invalid(f"metrics: metric {key!r} must be finite, got {number!r}")
    return number


def _mapping(kind: str, values: Any) -> Mapping[str, Any]:
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise _invalid(
            f"{_FIELDS[kind]} must be a mapping of name to value, "
            f"got {type(values).__name__} {_short(values)}"
        )
    return values


def _strings(kind: str, values: Any) -> dict[str, str]:
    return {_check_key(kind, key): _text(kind, key, value) for key, value in _mapping(kind, values).items()}


def validate_params(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Params as MLflow stores them (strings), or an error naming the first bad one."""
    return _strings("param", params)


def validate_tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    """Tags as strings, or an error naming the first bad one."""
    return _strings("tag", tags)


def refuse_provider_tags(field: str, tags: Any) -> None:
    """
    A user's tags (an operator's ``tags=``) may not use the provider's ``airflow.`` namespace:
    they would overwrite the lineage, role or verdict the provider records. Templated values wait.
    """
    if is_templated(tags) or not isinstance(tags, Mapping):
        return
    from airflow_mlflow.tags import NAMESPACE, is_provider_tag  # only when there are tags to check

    for key in tags:
        if isinstance(key, str) and is_provider_tag(key):
            raise _invalid(
                f"{field}: tag key {key!r} is in the {NAMESPACE}* namespace, which airflow-mlflow "
                "writes itself; choose another key"
            )


def validate_registry_tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    """Tags of a registered model or a model version (MLflow allows longer values there)."""
    return _strings("model tag", tags)


def validate_metric_key(key: Any) -> str:
    """``key`` when MLflow accepts it as a metric name, else an error naming it."""
    return _check_key("metric", key)


def validate_metric_value(key: str, value: Any) -> float:
    """``value`` of metric ``key`` as a finite float, else an error naming both."""
    return _number(key, value)


def validate_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """Metrics as finite floats, or an error naming the first bad one."""
    return {
        validate_metric_key(key): validate_metric_value(key, value)
        for key, value in _mapping("metric", metrics).items()
    }


def validate_step(step: Any, what: str = "step") -> int:
    """A metric step: an integer (or integral float) that MLflow's stores can hold (64 bits)."""
    if isinstance(step, float) and step.is_integer():
        step = int(step)
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise _invalid(f"{what} must be an integer, got {type(step).__name__} {_short(step)}")
    if not MIN_STEP <= step <= MAX_STEP:
        raise _invalid(f"{what} {step} is outside MLflow's 64-bit range")
    return int(step)


#: MLflow's HTTP artifact client puts the path in the URL unquoted: from ``#`` or ``?`` on the
#: name is cut off, and ``%41`` is decoded (``bad#1.png`` is stored as ``bad``, silently).
_URL_MANGLED = frozenset("#?%")


def _artifact_path_problem(path: str) -> str | None:
    """
    Why ``path`` cannot be stored as itself in a run's artifacts, or None: MLflow's artifact server
    check (:func:`~airflow_mlflow.compat.artifact_path_is_safe`), plus what its HTTP client would
    store under another name.
    """
    if _URL_MANGLED & set(path):
        return "MLflow's HTTP artifact client would store it under another name (no '#', '?' or '%')"
    from airflow_mlflow.compat import artifact_path_is_safe

    if not artifact_path_is_safe(path):
        return "MLflow's artifact server refuses it (absolute, or '..' segments)"
    return None


def artifact_items(artifacts: Any) -> list[tuple[Any, Any]]:
    """
    ``artifacts=`` as (local path, destination folder or None) pairs: one path, a list of paths,
    or a mapping of path to folder.
    """
    if artifacts is None:
        return []
    if isinstance(artifacts, (str, os.PathLike)):
        return [(artifacts, None)]
    if isinstance(artifacts, Mapping):
        return list(artifacts.items())
    if isinstance(artifacts, (list, tuple)):
        return [(a, None) for a in artifacts]
    raise _invalid(
        "artifacts must be a path, a list of paths or a mapping of path to artifact folder, "
        f"got {type(artifacts).__name__} {_short(artifacts)}"
    )


def validate_artifact_folder(folder: Any) -> str | None:
    """
    A destination folder inside a run's artifacts (None: the root), refused when MLflow's
    artifact server would refuse or rename it (absolute, ``..`` segments, ``#``, ``?``, ``%``).
    """
    if folder is None or folder == "":
        return None
    if not isinstance(folder, str):
        raise _invalid(
            f"artifacts: destination folder {_short(folder)} must be a string, got {type(folder).__name__}"
        )
    if problem := _artifact_path_problem(folder):
        raise _invalid(f"artifacts: destination folder {folder!r} is invalid: {problem}")
    return folder.strip("/") or None


def validate_artifact_tree(local: os.PathLike, folder: str | None) -> None:
    """Every file under ``local`` gets a destination MLflow accepts, or an error naming the file."""
    from pathlib import Path

    root = Path(local)
    files = [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else [root]
    for file in files:
        relative = file.relative_to(root).as_posix() if root.is_dir() else file.name
        destination = f"{folder}/{relative}" if folder else relative
        if problem := _artifact_path_problem(destination):
            raise _invalid(f"artifacts: {str(file)!r} would be stored as {destination!r}: {problem}")


def check_literals(**fields: Any) -> None:
    """
    Parse-time checks of ``params=``/``metrics=``/``tags=`` (keyword = field name), without mlflow:
    a mapping, string keys within MLflow's length limit, finite numbers for metrics, values within
    MLflow's length limits. Templated values (see :func:`is_templated`) wait for run time, where
    :func:`validate_params` & co. check everything, MLflow's key rule included.
    """
    kinds = {"params": "param", "metrics": "metric", "tags": "tag"}
    for field, values in fields.items():
        kind = kinds[field]
        if is_templated(values):
            continue
        for key, value in _mapping(kind, values).items():
            _check_key(kind, key, mlflow_rule=False)
            if is_templated(value):
                continue
            if kind == "metric":
                _number(key, value)
            elif isinstance(value, (str, int, float)):
                _text(kind, key, value)


def serializable_literals(values: Any) -> Any:
    """
    ``values`` (params or tags) with non-finite float literals as the strings MLflow stores for
    them anyway (``"nan"``, ``"inf"``): Airflow keeps template fields in the serialized DAG, and
    NaN/Infinity are not JSON that PostgreSQL accepts.
    """
    if not isinstance(values, Mapping) or is_templated(values):
        return values
    return {
        key: str(value) if isinstance(value, float) and not math.isfinite(value) else value
        for key, value in values.items()
    }


def normalize_stage(stage: str) -> str:
    """MLflow's stage spelling for ``stage``, or an error naming it."""
    for known in STAGES:
        if stage.strip().lower() == known.lower():
            return known
    raise _invalid(f"stage {stage!r} is not one of {', '.join(STAGES)}")


def check_target(alias: str | None, stage: str | None) -> None:
    """A promotion target: an alias, a stage, or both (checked when the DAG is parsed)."""
    if not alias and not stage:
        raise _invalid("give an alias, a stage, or both, to promote into")
