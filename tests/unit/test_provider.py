"""Registration with Airflow: provider info, connection form, task decorator, plugin."""

from __future__ import annotations

import json
from pathlib import Path

import airflow
import jsonschema

from airflow_mlflow.get_provider_info import get_provider_info


def test_provider_info_matches_airflows_schema():
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_connection_form_is_declared_the_airflow_3_2_way():
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    assert "airflow-mlflow" in pm.providers
    widgets = {name for name in pm.connection_form_widgets if name.startswith("extra__mlflow__")}
    assert {
        f"extra__mlflow__{f}" for f in ("tracking_uri", "registry_uri", "ui_url", "experiment_name", "token")
    } <= widgets
    assert pm.field_behaviours["mlflow"]["hidden_fields"] == ["extra"]
    from airflow_mlflow.hooks.mlflow import MLflowHook

    # The deprecated WTForms methods stay the BaseHook defaults.
    assert MLflowHook.get_connection_form_widgets() == {} and MLflowHook.get_ui_field_behaviour() == {}


def test_task_mlflow_resolves_to_the_provider_decorator():
    from airflow.sdk import task

    from airflow_mlflow.decorators.mlflow import mlflow_task

    assert task.mlflow is mlflow_task


def test_plugin_registers_the_dag_run_listener():
    from airflow import plugins_manager

    plugins, errors = plugins_manager._get_plugins()
    (ours,) = [p for p in plugins if p.name == "airflow_mlflow"]
    assert [m.__name__ for m in ours.listeners] == ["airflow_mlflow.plugins.listener"]
    assert errors == {}
