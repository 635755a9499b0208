"""DAG parsing stays cheap: no public module imports mlflow, sklearn, pandas or numpy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ["mlflow", "sklearn", "pandas", "numpy"]
#: Worker start-up modules that import MLflow on purpose, before a worker forks its task
#: processes; Airflow's pre-fork settings name them, never a DAG file.
PREFORK = ["airflow_mlflow.preload"]

PROBE = """
import importlib, json, pkgutil, runpy, sys
import airflow_mlflow
names = [m.name for m in pkgutil.walk_packages(airflow_mlflow.__path__, "airflow_mlflow.")]
names = [name for name in names if name not in %r]
for name in names:
    importlib.import_module(name)
from airflow_mlflow import MLflowHook, MLflowLogOperator, mlflow_task, MLflowRunLink
for path in sys.argv[1:]:
    runpy.run_path(path)
print(json.dumps({"modules": names, "heavy": sorted({m.split(".")[0] for m in sys.modules} & set(%r))}))
"""


def example_dag_files() -> list[str]:
    return sorted(str(p) for p in (ROOT / "dags_examples").glob("*.py") if p.name != "demo.py")


def test_public_modules_and_example_dags_import_no_heavy_library():
    files = example_dag_files() + [str(ROOT / "tests" / "dags" / "tracked.py")]
    out = subprocess.run(
        [sys.executable, "-c", PROBE % (PREFORK, HEAVY), *files],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "airflow_mlflow.hooks.mlflow" in result["modules"]
    assert "airflow_mlflow.decorators.mlflow" in result["modules"]
    assert result["heavy"] == []


def test_unknown_top_level_name_is_an_attribute_error():
    import airflow_mlflow

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = airflow_mlflow.Nope


LAYERS_PROBE = """
import json, runpy, sys
import airflow.sdk
from airflow.sdk import task
task.mlflow  # resolves the decorator through the provider info, as a DAG file does
from airflow_mlflow import (
    MLflowLogOperator, MLflowMetricThresholdSensor, MLflowPromoteModelOperator,
    MLflowRegisterModelOperator, MLflowRollbackModelOperator, model_asset,
)
for path in sys.argv[1:]:
    runpy.run_path(path)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("airflow_mlflow."))))
"""
#: Needed only when a task runs, a trigger polls or the listener acts; never to parse a DAG file.
EXECUTE_TIME_MODULES = {
    "airflow_mlflow.hooks.mlflow",
    "airflow_mlflow.hooks.base",
    "airflow_mlflow.hooks.tracking",
    "airflow_mlflow.hooks.artifacts",
    "airflow_mlflow.hooks.registry",
    "airflow_mlflow.hooks.records",
    "airflow_mlflow.hooks.search",
    "airflow_mlflow.hooks.config",
    "airflow_mlflow.hooks.resolution",
    "airflow_mlflow.runs",
    "airflow_mlflow.attempts",
    "airflow_mlflow.gate",
    "airflow_mlflow.triggers.metric_threshold",
    "airflow_mlflow.triggers.registry",
    "airflow_mlflow.plugins.task_tracking",
    # The promotion model and the helpers only a running task needs: validation imports the compat
    # seams and the typed error when first used, not when a DAG file is parsed. (The tag vocabulary
    # is imported at parse time only by a DAG that passes tags, to refuse the provider's namespace.)
    "airflow_mlflow.champion",
    "airflow_mlflow.compat",
    "airflow_mlflow.compat_airflow",
    "airflow_mlflow.exceptions",
    "airflow_mlflow.timestamps",
    "airflow_mlflow.dependency_warnings",
}


def test_dag_files_using_the_operators_do_not_import_the_hook_layer():
    dag_files = ("tracked.py", "registry.py", "any_task.py")
    files = example_dag_files() + [str(ROOT / "tests" / "dags" / n) for n in dag_files]
    out = subprocess.run(
        [sys.executable, "-c", LAYERS_PROBE, *files], capture_output=True, text=True, check=True, cwd=ROOT
    )
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "airflow_mlflow.operators.registry" in loaded
    assert loaded & EXECUTE_TIME_MODULES == set()


def test_operators_spell_the_hooks_default_connection():
    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.operators.base import DEFAULT_CONN_ID

    assert DEFAULT_CONN_ID == MLflowHook.default_conn_name
