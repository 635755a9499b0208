"""``airflow_mlflow.preload``: what a worker imports once, before it forks task processes, so a
tracked task imports no more of MLflow; and the Celery settings that point a worker at it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import copy_store, mlflow_conn_json

ROOT = Path(__file__).resolve().parents[2]

# A task process forked from a preloaded worker: airflow.sdk and the preload are there; then the
# provider's hook does what a tracked task does with its run (params, metrics, tags, an artifact).
TASK = """
import json, os, sys, tempfile
import airflow.sdk
import airflow_mlflow.preload as preload
assert preload.MISSING == (), preload.MISSING
before = set(sys.modules)
from airflow_mlflow.hooks.mlflow import MLflowHook
client = MLflowHook().client
experiment = client.create_experiment(sys.argv[2], artifact_location=sys.argv[1] or None)
run = client.create_run(experiment).info.run_id
client.log_param(run, "alpha", 0.5)
client.log_metric(run, "accuracy", 0.9)
client.set_tag(run, "stage", "test")
path = os.path.join(tempfile.mkdtemp(), "preload-probe.txt")
open(path, "w").write("ok")
client.log_artifact(run, path)
client.set_terminated(run)
new = set(sys.modules) - before
print(json.dumps(sorted(m for m in new if m.split(".")[0] in ("mlflow", "airflow_mlflow"))))
"""

# What a scheduler or API server imports when it builds the Celery app from our settings.
SCHEDULER = """
import json, sys
from airflow_mlflow.celery_config import CELERY_CONFIG
print(json.dumps({"imports": list(CELERY_CONFIG["imports"]), "mlflow": "mlflow" in sys.modules,
                  "preload": "airflow_mlflow.preload" in sys.modules}))
"""


def _run(code: str, *args: str, env: dict | None = None) -> object:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_tracked_tasks_mlflow_calls_import_nothing_the_preload_did_not(tmp_path, mlflow_template):
    import os

    uri = copy_store(mlflow_template, tmp_path / "mlflow")
    env = {**os.environ, "AIRFLOW_CONN_MLFLOW_DEFAULT": mlflow_conn_json(uri)}
    assert _run(TASK, (tmp_path / "artifacts").as_uri(), "preload", env=env) == []


def test_the_celery_settings_add_the_preload_without_importing_it():
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

    result = _run(SCHEDULER)
    assert result == {
        "imports": [*DEFAULT_CELERY_CONFIG.get("imports", ()), "airflow_mlflow.preload"],
        "mlflow": False,
        "preload": False,
    }
