"""
Apache Airflow provider for MLflow.

Public names are imported on first use, so that ``import airflow_mlflow`` in a DAG file stays
cheap for the scheduler, which parses DAG files continuously.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "MLflowHook": "airflow_mlflow.hooks.mlflow",
    "MLflowConnectionConfig": "airflow_mlflow.hooks.config",
    "MLflowLogOperator": "airflow_mlflow.operators.tracking",
    "MLflowBaseOperator": "airflow_mlflow.operators.base",
    "MLflowRunLink": "airflow_mlflow.links.mlflow",
    "MLflowModelVersionLink": "airflow_mlflow.links.mlflow",
    "MLflowRegisterModelOperator": "airflow_mlflow.operators.registry",
    "MLflowPromoteModelOperator": "airflow_mlflow.operators.registry",
    "MLflowRollbackModelOperator": "airflow_mlflow.operators.registry",
    "MLflowApprovalOperator": "airflow_mlflow.operators.approval",
    "MLflowEvaluateOperator": "airflow_mlflow.operators.evaluation",
    "evaluate_model_versions": "airflow_mlflow.evaluation",
    "MLflowProjectOperator": "airflow_mlflow.operators.projects",
    "MLflowBatchPredictOperator": "airflow_mlflow.operators.predict",
    "MLflowMetricThresholdSensor": "airflow_mlflow.sensors.metric_threshold",
    "MLflowMetricThresholdTrigger": "airflow_mlflow.triggers.metric_threshold",
    "model_asset": "airflow_mlflow.assets",
    "event_payload": "airflow_mlflow.registry_events",
    "mlflow_task": "airflow_mlflow.decorators.mlflow",
    "enable_tracking": "airflow_mlflow.tracking",
    "disable_tracking": "airflow_mlflow.tracking",
    "track_in_pod": "airflow_mlflow.containers",
    "track_in_container": "airflow_mlflow.containers",
    "MLflowProviderError": "airflow_mlflow.exceptions",
    "MLflowInputError": "airflow_mlflow.exceptions",
    "MLflowConnectionConfigError": "airflow_mlflow.exceptions",
    "MLflowAuthError": "airflow_mlflow.exceptions",
    "MLflowResourceNotFoundError": "airflow_mlflow.exceptions",
    "MLflowConflictError": "airflow_mlflow.exceptions",
    "MLflowProjectRunError": "airflow_mlflow.exceptions",
    "MLflowServingCheckOperator": "airflow_mlflow.operators.serving",
    "MLflowServingCheckError": "airflow_mlflow.exceptions",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'airflow_mlflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
