"""What a user reads in a ``@task.mlflow`` task's log: no warning flood from the libraries it uses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dags.noise import sklearn_log_model

pytestmark = pytest.mark.usefixtures("airflow_db")
ROOT = Path(__file__).resolve().parents[3]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def test_logging_a_sklearn_model_does_not_flood_the_task_log(store):
    # skops (MLflow's safe format for scikit-learn) touched every deprecated alias of Airflow's
    # modules: about 1,450 FutureWarnings per log_model, each a line of the task log.
    dag_run = sklearn_log_model.test()
    assert dag_run.state == "success"
    ti = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "train")
    assert ti.xcom_pull(task_ids="train") == 0


#: A deprecation warning as the task log prints it (structlog's ``category=`` field, or Python's own
#: format before logging is configured).
DEPRECATION = re.compile(r"\b(\w*Deprecat\w*Warning|FutureWarning)\b")


@pytest.mark.timeout(900)
def test_airflow_dags_test_of_the_example_prints_no_deprecation_warning(tmp_path):
    # Was 1,160 of 1,278 lines (skops' module scan), then Airflow's own on our .airflowignore
    # (pathspec's GitWildMatchPattern) and starlette's on Airflow's in-process execution API.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__"))}
    env.update(
        AIRFLOW_HOME=str(tmp_path / "home"),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags_examples"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        PYTHONPATH=str(ROOT),
    )
    for args in (["db", "migrate"], ["dags", "test", "tracked_training"]):
        done = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert "DagRun Finished: dag_id=tracked_training" in log and "state=success" in log, log[-3000:]
    assert [line for line in log.splitlines() if DEPRECATION.search(line)] == []
