"""Deprecated: the gate's sensor lives in :mod:`airflow_mlflow.sensors.metric_threshold`."""

from __future__ import annotations

import warnings

from airflow_mlflow.sensors.metric_threshold import MLflowMetricThresholdSensor

__all__ = ["MLflowMetricThresholdSensor"]

warnings.warn(
    "airflow_mlflow.sensors.registry is deprecated; use airflow_mlflow.sensors.metric_threshold",
    DeprecationWarning,
    stacklevel=2,
)
