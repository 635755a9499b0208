"""Provider metadata, read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations


def get_provider_info() -> dict:
    return {
        "package-name": "airflow-mlflow",
        "name": "MLflow",
        "description": "Track Airflow tasks in MLflow, register models and gate their promotion.",
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": "MLflow",
                "external-doc-url": "https://mlflow.org/docs/latest/",
                "tags": ["software"],
            }
        ],
        "hooks": [{"integration-name": "MLflow", "python-modules": ["airflow_mlflow.hooks.mlflow"]}],
        "operators": [
            {
                "integration-name": "MLflow",
                "python-modules": [
                    "airflow_mlflow.operators.tracking",
                    "airflow_mlflow.operators.registry",
                    "airflow_mlflow.operators.approval",
                    "airflow_mlflow.operators.evaluation",
                    "airflow_mlflow.operators.projects",
                    "airflow_mlflow.operators.predict",
                    "airflow_mlflow.operators.serving",
                ],
            }
        ],
        "sensors": [
            {"integration-name": "MLflow", "python-modules": ["airflow_mlflow.sensors.metric_threshold"]}
        ],
        "triggers": [
            {
                "integration-name": "MLflow",
                "python-modules": [
                    "airflow_mlflow.triggers.metric_threshold",
                    "airflow_mlflow.triggers.registry_events",
                ],
            }
        ],
        "asset-uris": [{"schemes": ["mlflow-model"], "handler": "airflow_mlflow.assets.sanitize_uri"}],
        "connection-types": [
            {
                "connection-type": "mlflow",
                "hook-class-name": "airflow_mlflow.hooks.mlflow.MLflowHook",
                "hook-name": "MLflow",
                "conn-fields": {
                    "tracking_uri": {
                        "label": "Tracking URI",
                        "description": "Any MLflow URI (sqlite:///…, postgresql+psycopg2://…, databricks); "
                        "overrides Host",
                        "schema": {"type": ["string", "null"]},
                    },
                    "registry_uri": {"label": "Registry URI", "schema": {"type": ["string", "null"]}},
                    "ui_url": {
                        "label": "MLflow UI URL",
                        "description": "Where MLflow's UI is, for links (default: the server URL)",
                        "schema": {"type": ["string", "null"]},
                    },
                    "experiment_name": {
                        "label": "Default experiment",
                        "description": "Used when a task sets none (default: the DAG id)",
                        "schema": {"type": ["string", "null"]},
                    },
                    "token": {
                        "label": "Bearer token",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "webhook_secret": {
                        "label": "Webhook secret",
                        "description": "What MLflow signs its registry webhooks with (the receiver at "
                        "/mlflow/webhooks/<conn_id> refuses anything else)",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "insecure_tls": {
                        "label": "Skip TLS verification",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                    "ca_bundle": {"label": "CA bundle path", "schema": {"type": ["string", "null"]}},
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["extra"],
                    "relabeling": {"host": "MLflow server host", "login": "Username", "schema": "Scheme"},
                    "placeholders": {
                        "host": "mlflow.example.com",
                        "port": "5000",
                        "schema": "http or https",
                        "login": "basic-auth user (optional)",
                    },
                },
            }
        ],
        "extra-links": [
            "airflow_mlflow.links.mlflow.MLflowRunLink",
            "airflow_mlflow.links.mlflow.MLflowModelVersionLink",
        ],
        "task-decorators": [{"class-name": "airflow_mlflow.decorators.mlflow.mlflow_task", "name": "mlflow"}],
        "plugins": [{"name": "airflow_mlflow", "plugin-class": "airflow_mlflow.plugins.mlflow.MLflowPlugin"}],
        "config": {
            "mlflow": {
                "description": "The MLflow views of the Airflow UI (provider airflow-mlflow).",
                "options": {
                    "conn_id": {
                        "description": "The MLflow connection the UI's MLflow views read from "
                        "(no such connection: the embedded store under $AIRFLOW_HOME/mlflow).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "mlflow_default",
                        "default": "mlflow_default",
                    },
                    "track_all_tasks": {
                        "description": "Give every task of every DAG a child run under its DAG run's "
                        "parent run, whatever its operator, unless disable_tracking() excludes it "
                        "(default: only tasks opted in with airflow_mlflow.enable_tracking()).",
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": "True",
                        "default": "False",
                    },
                },
            }
        },
    }
