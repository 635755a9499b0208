"""``dags_examples/script_training.py`` (``retrain_from_script``) through ``airflow dags test`` in a
fresh AIRFLOW_HOME with no ``mlflow_default``: the unmodified script in a ``BashOperator`` logs its
metrics and model into the task's child run on the embedded store, and the model is registered,
gated and promoted from there. The same checks run on a server (tests/integration) and under the
real scheduler (tests/e2e)."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests import script_pipeline as pipeline

DAY = "2026-11-01"
DEPRECATION = re.compile(r"\b(\w*Deprecat\w*Warning|FutureWarning)\b")


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> SimpleNamespace:
    home = tmp_path_factory.mktemp("script-training") / "home"
    env = pipeline.dags_test_env(home)
    pipeline.airflow_cli(env, "db", "migrate")
    run_id, output = pipeline.dags_test(env, DAY)
    uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    from mlflow import MlflowClient

    return SimpleNamespace(home=home, run_id=run_id, output=output, client=MlflowClient(uri), uri=uri)


@pytest.mark.timeout(900)
def test_the_scripts_run_model_and_promotion_on_the_embedded_store(embedded):
    trained = pipeline.assert_training(embedded.client, embedded.uri, embedded.run_id, "20261101")
    assert pipeline.assert_registry(embedded.client, [trained]) == ["passed"]
    assert str(embedded.home / "mlflow" / "artifacts") in trained.run.info.artifact_uri
    # The script's own output, in the task log; and the gate's verdict.
    assert re.search(r"accuracy=0\.\d{4}, f1=0\.\d{4}, roc_auc=0\.\d{4}", embedded.output)
    assert f"Gate for model '{pipeline.MODEL}' version 1 against baseline none: PASSED" in embedded.output


def test_the_run_prints_no_deprecation_warning(embedded):
    assert [line for line in embedded.output.splitlines() if DEPRECATION.search(line)] == []


def test_the_registry_tasks_log_no_error(embedded):
    errors = [line for line in embedded.output.splitlines() if "[error" in line]
    assert errors == []


def test_the_dag_processor_skips_the_script():
    """The script sits in the DAGs folder but is never imported as a DAG file (safe mode: it does
    not mention the scheduler), and the folder parses without errors."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.file import list_py_file_paths

    script = pipeline.EXAMPLES / pipeline.SCRIPT
    assert script.is_file()
    assert str(script) not in list_py_file_paths(str(pipeline.EXAMPLES), safe_mode=True)
    bag = DagBag(dag_folder=str(pipeline.EXAMPLES), safe_mode=True)
    assert bag.import_errors == {}
    assert Path(bag.dags[pipeline.DAG_ID].fileloc).name == "script_training.py"
    assert not [d for d in bag.dags.values() if Path(d.fileloc).parent.name == "scripts"]
