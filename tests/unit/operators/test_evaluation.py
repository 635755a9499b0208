"""``MLflowEvaluateOperator`` and the gate's ``source="evaluation"``, on a real SQLite store.

Two versions of model ``cancer`` (see ``tests/evaluation_data.py``) are trained, logged and
registered once per module; each test gets its own copy of that store. Version 1 (champion) had a
noisy day; version 2 (candidate) a day whose labels were swapped: its own day's accuracy beats the
champion's, the shared holdout says otherwise.
"""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_mlflow import tags
from airflow_mlflow.exceptions import MLflowInputError, MLflowResourceNotFoundError
from airflow_mlflow.operators.evaluation import MLflowEvaluateOperator
from airflow_mlflow.sensors.metric_threshold import MLflowMetricThresholdSensor
from airflow_mlflow.triggers.metric_threshold import MLflowMetricThresholdTrigger
from tests.evaluation_data import MODEL, frames, log_day_models
from tests.support import migrated_mlflow_db, mlflow_conn_json, operator_context

GATE = {"accuracy": {"threshold": 0.5, "min_absolute_change": 0.005}}
EVAL_GATE = {"accuracy_score": {"threshold": 0.5, "min_absolute_change": 0.005}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The store with both versions, as a file each test copies; the own-day accuracies."""
    folder = tmp_path_factory.mktemp("evaluation")
    db = migrated_mlflow_db(folder)
    own = log_day_models(f"sqlite:///{db}", (folder / "artifacts").as_uri())
    return db, own


@pytest.fixture
def client(trained, tmp_path, monkeypatch):
    import mlflow

    db = tmp_path / "mlflow.db"
    shutil.copy(trained[0], db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_conn_json(uri, artifact_root=str(tmp_path / "art"))
    )
    return mlflow.MlflowClient(uri)


@pytest.fixture
def holdout_csv(tmp_path):
    path = tmp_path / "holdout.csv"
    frames()[1].to_csv(path, index=False)
    return str(path)


def evaluate(data, version="2", **kwargs) -> dict:
    kwargs = {"targets": "target", **kwargs}
    op = MLflowEvaluateOperator(task_id="evaluate", model_name=MODEL, version=version, data=data, **kwargs)
    return op.execute(operator_context())


def gate(source: str, **kwargs) -> MLflowMetricThresholdSensor:
    thresholds = EVAL_GATE if source == "evaluation" else GATE
    return MLflowMetricThresholdSensor(
        task_id="gate", model_name=MODEL, version="2", thresholds=thresholds, source=source, **kwargs
    )


def first_event(trigger):
    return asyncio.run(asyncio.wait_for(trigger.run().__anext__(), timeout=30))


def record(client, version: str) -> dict | None:
    raw = client.get_model_version(MODEL, version).tags.get(tags.EVALUATION)
    return json.loads(raw) if raw else None


def artifact_names(client, run_id: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id)}


def test_better_on_its_own_day_but_worse_on_shared_data_is_rejected(client, trained, holdout_csv):
    own = trained[1]
    assert own["2"] > own["1"] + 0.005  # on their own days, the candidate looks better
    assert gate("run").poke(operator_context())  # and the run-metric gate would promote it

    result = evaluate(holdout_csv)

    candidate, champion = result["candidate"], result["baseline"]
    assert candidate["version"] == "2" and champion["version"] == "1" and champion["role"] == "champion"
    assert champion["metrics"]["accuracy_score"] > 0.85 > 0.2 > candidate["metrics"]["accuracy_score"]
    assert result["dataset"]["name"] == "holdout"
    # Each version carries its result, on the same dataset, from the same run.
    mine, theirs = record(client, "2"), record(client, "1")
    assert mine["metrics"] == candidate["metrics"] and theirs["metrics"] == champion["metrics"]
    assert mine["dataset"] == theirs["dataset"] and mine["dataset"]["digest"] == result["dataset"]["digest"]
    assert mine["dataset"]["source"] == holdout_csv and mine["run_id"] == theirs["run_id"] == result["run_id"]
    assert mine["dag_run"] == "d/manual__1" and mine["model_type"] == "classifier"
    # The task's run: both evaluations' metrics and plots apart, the dataset as its input, FINISHED.
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == result["parent_run_id"]
    assert run.data.metrics["candidate_accuracy_score"] == candidate["metrics"]["accuracy_score"]
    assert run.data.metrics["champion_accuracy_score"] == champion["metrics"]["accuracy_score"]
    names = artifact_names(client, result["run_id"])
    assert {
        "candidate_confusion_matrix.png",
        "champion_confusion_matrix.png",
        "candidate_roc_curve_plot.png",
    } <= names
    assert [i.dataset.digest for i in run.inputs.dataset_inputs] == [result["dataset"]["digest"]]

    # A deferred gate decides the same in the triggerer: the source travels in the trigger's kwargs.
    trigger = MLflowMetricThresholdTrigger(gate=gate("evaluation").gate_spec.to_json(), poll_interval=0.1)
    kwargs = trigger.serialize()[1]
    assert kwargs["gate"]["source"] == "evaluation"
    assert first_event(MLflowMetricThresholdTrigger(**kwargs)).payload["verdict"]["status"] == "rejected"
    with pytest.raises(AirflowFailException) as rejected:
        gate("evaluation").poke(operator_context())
    report = str(rejected.value)
    assert "version 2 against baseline 1: REJECTED" in report and "accuracy_score: candidate 0.0" in report
    assert client.get_model_version(MODEL, "2").tags[tags.GATE_STATUS] == "rejected"


def test_the_champion_judged_on_other_data_is_not_compared(client):
    _, holdout = frames()
    evaluate(lambda: holdout, version="1", baseline=None)  # the champion alone, on the whole holdout
    first_half = holdout.iloc[: len(holdout) // 2]
    only = evaluate(first_half, version="2", baseline=None, dataset_name="half")  # the candidate alone
    assert only["baseline"] is None and only["dataset"]["name"] == "half"
    with pytest.raises(
        AirflowFailException, match=r"not comparable: candidate version 2 was evaluated on dataset 'half'"
    ):
        gate("evaluation").poke(operator_context())
    # An absolute threshold needs no baseline: the candidate's own numbers decide.
    absolute = MLflowMetricThresholdSensor(
        task_id="g", model_name=MODEL, version="2", thresholds={"example_count": 50}, source="evaluation"
    )
    assert absolute.poke(operator_context())


def test_a_champion_never_evaluated_is_not_compared(client, holdout_csv):
    evaluate(holdout_csv, baseline=None)
    with pytest.raises(AirflowFailException, match="baseline version 1 has no evaluation recorded"):
        gate("evaluation").poke(operator_context())


def test_the_gate_waits_for_the_candidates_evaluation(client):
    assert gate("evaluation").poke(operator_context()) is False


def test_the_first_model_is_evaluated_alone(client, holdout_csv):
    """With no champion only the candidate is evaluated; data over HTTP, its query never recorded."""
    import functools
    import http.server
    import threading
    from pathlib import Path

    client.delete_registered_model_alias(MODEL, "champion")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=Path(holdout_csv).parent)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/holdout.csv"
    try:
        result = evaluate(f"{url}?signature=s3cret")
    finally:
        server.shutdown()
        server.server_close()
    assert result["dataset"]["name"] == "holdout"
    assert record(client, "2")["dataset"]["source"] == url  # a query may carry a signature
    assert result["baseline"] is None and record(client, "1") is None
    assert not any(name.startswith("champion_") for name in artifact_names(client, result["run_id"]))


def test_a_failed_champion_evaluation_records_nothing_on_either_version(client, holdout_csv, tmp_path):
    # The champion's files are gone: the candidate evaluates, the champion cannot be loaded.
    lost = client.create_model_version(MODEL, (tmp_path / "deleted-model").as_uri())
    client.set_registered_model_alias(MODEL, "champion", lost.version)
    with pytest.raises(MLflowResourceNotFoundError, match=f"evaluating 'models:/cancer/{lost.version}'"):
        evaluate(holdout_csv)
    assert record(client, "2") is None and record(client, lost.version) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"targets": "label"},
            r"targets: column 'label' is not in the evaluation data \(columns: mean radius",
        ),
        ({"version": "9"}, r"model 'cancer' version 9"),
        ({"data": "/nowhere/holdout.csv"}, r"data: '/nowhere/holdout.csv' does not exist"),
        ({"data": "/tmp/holdout.json"}, r"data: '/tmp/holdout.json' is neither .csv nor .parquet"),
        ({"data": 42}, "data must be a path or URI, a pandas DataFrame or a callable returning one, got int"),
    ],
)
def test_bad_inputs_name_the_field_and_write_nothing(client, holdout_csv, kwargs, message):
    kwargs = {"data": holdout_csv, **kwargs}
    with pytest.raises((MLflowInputError, MLflowResourceNotFoundError), match=message):
        evaluate(**kwargs)
    assert record(client, "1") is None and record(client, "2") is None


def test_settings_are_checked_when_the_dag_is_parsed():
    with pytest.raises(
        MLflowInputError, match="model_type must be one of classifier, regressor, got 'clasifier'"
    ):
        MLflowEvaluateOperator(
            task_id="e", model_name="m", version=1, data="x.csv", targets="y", model_type="clasifier"
        )
    with pytest.raises(MLflowInputError, match="metric_prefix is set by the operator"):
        MLflowEvaluateOperator(
            task_id="e",
            model_name="m",
            version=1,
            data="x.csv",
            targets="y",
            evaluator_config={"metric_prefix": "a"},
        )
    with pytest.raises(MLflowInputError, match="source must be one of run, evaluation, got 'eval'"):
        MLflowMetricThresholdSensor(task_id="g", model_name="m", thresholds={"a": 1}, source="eval")


def test_the_task_helper_evaluates_into_the_active_run(client, holdout_csv):
    """``evaluate_model_versions`` in a ``@task.mlflow`` function: the task's run is the active run."""
    import mlflow

    from airflow_mlflow import evaluate_model_versions
    from airflow_mlflow.hooks.mlflow import MLflowHook

    with pytest.raises(MLflowInputError, match="needs an active MLflow run"):
        evaluate_model_versions(MODEL, 2, holdout_csv, targets="target")
    with MLflowHook().user_code_env(), mlflow.start_run() as run:
        result = evaluate_model_versions(MODEL, 2, holdout_csv, targets="target")
    assert result["run_id"] == run.info.run_id and result["baseline"]["version"] == "1"
    assert record(client, "2")["run_id"] == record(client, "1")["run_id"] == run.info.run_id


@pytest.mark.usefixtures("airflow_db")
def test_in_a_dag_between_register_and_gate(client):
    """Templated version from XCom, data from a callable, the task's run nested in the DAG run's."""
    from airflow_mlflow.plugins import listener
    from tests.assertions import states, xcom_value
    from tests.dags.evaluation import evaluate_gate

    dag_run = evaluate_gate.test()
    listener.drain()
    assert states(dag_run) == {
        "pick": "success",
        "evaluate": "success",
        "gate": "skipped",
        "promote": "skipped",
    }
    result = xcom_value(dag_run, "evaluate", "return_value")
    assert result["candidate"]["version"] == "2" and result["baseline"]["version"] == "1"
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["airflow.task_id"] == "evaluate"
    assert client.get_run(result["parent_run_id"]).data.tags["airflow.run_id"] == dag_run.run_id
    assert record(client, "2")["dag_run"] == f"evaluate_gate/{dag_run.run_id}"
    assert client.get_model_version(MODEL, "2").tags[tags.GATE_STATUS] == "rejected"
