"""
Checks run before anything is written to MLflow, so bad input leaves nothing half-written.

The limits are MLflow's own (see ``mlflow.utils.validation``); the messages name the field and value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from airflow_mlflow.exceptions import MLflowInputError

MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_KEY_LENGTH = 250
#: Stage names MLflow's (deprecated, still working) stage API knows.
STAGES = ("None", "Staging", "Production", "Archived")
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-. /:")


def _check_key(kind: str, key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise MLflowInputError(f"{kind} key {key!r} must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise MLflowInputError(
            f"{kind} key {key[:40]!r}… is {len(key)} characters; MLflow allows {MAX_KEY_LENGTH}"
        )
    if not set(key) <= _KEY_CHARS or key.startswith("/") or ".." in key.split("/"):
        raise MLflowInputError(
            f"{kind} key {key!r} is invalid: use letters, digits, '_', '-', '.', ' ', ':' and '/' "
            "(not leading, no '..' segments)"
        )
    return key


def _strings(kind: str, values: Mapping[str, Any] | None, max_length: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (values or {}).items():
        text = str(value)
        if len(text) > max_length:
            raise MLflowInputError(
                f"{kind} {_check_key(kind, key)!r} value is {len(text)} characters; "
                f"MLflow allows {max_length}"
            )
        out[_check_key(kind, key)] = text
    return out


def validate_params(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Params as MLflow stores them (strings), or an error naming the first bad one."""
    return _strings("param", params, MAX_PARAM_VALUE_LENGTH)


def validate_tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    """Tags as strings, or an error naming the first bad one."""
    return _strings("tag", tags, MAX_TAG_VALUE_LENGTH)


def validate_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """Metrics as finite floats, or an error naming the first bad one."""
    out: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        _check_key("metric", key)
        try:
            if isinstance(value, bool):
                raise TypeError
            number = float(value)  # numbers, numpy scalars, and numeric strings from templates
        except (TypeError, ValueError):
            raise MLflowInputError(
                f"metric {key!r} must be a number, got {type(value).__name__} {value!r}"
            ) from None
        if not math.isfinite(number):
            raise MLflowInputError(f"metric {key!r} must be finite, got {number!r}")
        out[key] = number
    return out


def normalize_stage(stage: str) -> str:
    """MLflow's stage spelling for ``stage``, or an error naming it."""
    for known in STAGES:
        if stage.strip().lower() == known.lower():
            return known
    raise MLflowInputError(f"stage {stage!r} is not one of {', '.join(STAGES)}")
