"""The plugin class (``airflow_mlflow.plugins.mlflow``): loaded by every Airflow process."""

from __future__ import annotations

import subprocess
import sys


def test_plugin_module_stays_cheap_and_declares_its_views():
    """Plugins load in every Airflow process: the web app, fastapi and MLflow load on first request."""
    code = (
        "import sys, airflow_mlflow.plugins.mlflow as p;"
        "print(sorted(m for m in ('fastapi', 'mlflow', 'airflow_mlflow.plugins.app') if m in sys.modules));"
        "print(sorted(v['destination'] for v in p.MLflowPlugin.external_views))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[]", "['dag_run', 'nav', 'task_instance']"]
