"""
Deprecated: the gate's trigger lives in :mod:`airflow_mlflow.triggers.metric_threshold`.

Kept because a trigger's class path is stored with a deferred task: a gate that deferred before an
upgrade resumes through this path, with the keyword arguments of its time (the gate's fields
one by one rather than ``gate=``). Both forms are accepted here.
"""

from __future__ import annotations

import warnings
from typing import Any

from airflow_mlflow.triggers.metric_threshold import MLflowMetricThresholdTrigger as _Trigger

__all__ = ["MLflowMetricThresholdTrigger"]

#: The gate fields a trigger serialized before the gate spec took them as one ``gate`` mapping.
_LEGACY_FIELDS = ("model_name", "thresholds", "version", "alias", "stage", "baseline")


class MLflowMetricThresholdTrigger(_Trigger):
    """Deprecated alias of :class:`airflow_mlflow.triggers.metric_threshold.MLflowMetricThresholdTrigger`."""

    def __init__(self, *, gate: Any = None, **kwargs: Any) -> None:
        warnings.warn(
            "airflow_mlflow.triggers.registry is deprecated; use airflow_mlflow.triggers.metric_threshold",
            DeprecationWarning,
            stacklevel=2,
        )
        legacy = {key: kwargs.pop(key) for key in _LEGACY_FIELDS if key in kwargs}
        super().__init__(gate=gate if gate is not None else legacy, **kwargs)
