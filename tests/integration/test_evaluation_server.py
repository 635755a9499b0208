"""``MLflowEvaluateOperator`` and the evaluation gate against a real ``mlflow server``.

The holdout is an artifact of a run on the server (``runs:/…`` URI, downloaded by the task); the
models load through the server's proxied artifacts; plots go back up the same way.
"""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException
from mlflow import MlflowClient

from airflow_mlflow import tags
from airflow_mlflow.operators.evaluation import MLflowEvaluateOperator
from airflow_mlflow.sensors.metric_threshold import MLflowMetricThresholdSensor
from tests.evaluation_data import frames, log_day_models
from tests.integration._workers import conn_json
from tests.support import operator_context

MODEL = "eval_cancer"


def test_the_shared_holdout_rejects_a_candidate_its_own_day_flattered(mlflow_server, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", conn_json(mlflow_server.url))
    client = MlflowClient(mlflow_server.url)
    own = log_day_models(mlflow_server.url, experiment="eval_training", name=MODEL)
    assert own["2"] > own["1"] + 0.005
    holdout = tmp_path / "holdout.parquet"
    frames()[1].to_parquet(holdout)
    data_run = client.create_run(client.get_experiment_by_name("eval_training").experiment_id)
    client.log_artifact(data_run.info.run_id, str(holdout), "data")
    uri = f"runs:/{data_run.info.run_id}/data/holdout.parquet"

    result = MLflowEvaluateOperator(
        task_id="evaluate", model_name=MODEL, version="2", data=uri, targets="target"
    ).execute(operator_context())

    assert result["dataset"]["name"] == "holdout" and result["baseline"]["version"] == "1"
    assert result["candidate"]["metrics"]["accuracy_score"] < result["baseline"]["metrics"]["accuracy_score"]
    for version in ("1", "2"):
        assert tags.EVALUATION in client.get_model_version(MODEL, version).tags
    names = {a.path for a in client.list_artifacts(result["run_id"])}
    assert {"candidate_confusion_matrix.png", "champion_confusion_matrix.png"} <= names
    sensor = MLflowMetricThresholdSensor(
        task_id="gate",
        model_name=MODEL,
        version="2",
        thresholds={"accuracy_score": {"min_absolute_change": 0.005}},
        source="evaluation",
    )
    with pytest.raises(AirflowFailException, match="against baseline 1: REJECTED"):
        sensor.poke(operator_context())
