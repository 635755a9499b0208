"""``MLflowBatchPredictOperator``: a batch scored with the version an alias names, recorded as such."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk import Asset

from airflow_mlflow import tags
from airflow_mlflow.exceptions import MLflowInputError, MLflowResourceNotFoundError
from airflow_mlflow.operators.predict import MLflowBatchPredictOperator
from tests.support import copy_store, mlflow_conn_json, operator_context

MODEL = "tiny"
SCORES = Asset(uri="file:///data/scores.csv", name="scores")


@pytest.fixture(scope="module")
def registry(tmp_path_factory, mlflow_template):
    """A store with model ``tiny``: versions 1 and 2 of one scaled logistic regression on columns a, b."""
    import mlflow
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folder = tmp_path_factory.mktemp("predict")
    uri = copy_store(mlflow_template, folder / "mlflow")
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("models", artifact_location=(folder / "artifacts").as_uri())
    x = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    # A scaler in front, as most pipelines have: loading it makes skops scan every loaded module.
    fitted = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, [0, 0, 1, 1])
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(experiment_id=experiment):
            # Requirements named: inferring them imports the model again in a subprocess (seconds).
            info = mlflow.sklearn.log_model(fitted, name="model", pip_requirements=["scikit-learn"])
        for _ in range(2):
            mlflow.register_model(info.model_uri, MODEL)
    finally:
        mlflow.set_tracking_uri(None)
    return folder / "mlflow" / "mlflow.db", x, [int(p) for p in fitted.predict(x)]


@pytest.fixture
def store(registry, tmp_path, monkeypatch):
    """A copy of that store per test (alias ``champion`` on version 2) behind ``mlflow_default``."""
    import mlflow

    template, x, predicted = registry
    uri = copy_store(template, tmp_path / "mlflow")
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_conn_json(uri, artifact_root=str(tmp_path / "artifacts"))
    )
    client = mlflow.MlflowClient(uri)
    client.set_registered_model_alias(MODEL, "champion", "2")
    return client, x, predicted


def score(**kwargs) -> MLflowBatchPredictOperator:
    return MLflowBatchPredictOperator(task_id="score", model_name=MODEL, experiment_name="scoring", **kwargs)


def test_the_alias_is_resolved_once_and_the_version_recorded_everywhere(store):
    client, x, predicted = store

    def batch():
        # The alias moves while the task runs: the version resolved at its start still scores.
        client.set_registered_model_alias(MODEL, "champion", "1")
        return x

    ctx = operator_context()
    champion = SimpleNamespace(uri="mlflow-model://mlflow_default/tiny/alias/champion")
    moves = [
        SimpleNamespace(asset=champion, extra={"name": MODEL, "version": "2", "previous_version": "1"}),
        SimpleNamespace(asset=champion, extra={"payload": {"name": MODEL, "version": "2", "via": "poll"}}),
        SimpleNamespace(asset=SCORES, extra={"version": "9"}),  # not a model asset's event
    ]
    ctx["triggering_asset_events"] = {"champion": moves}
    op = score(input=batch, metrics=lambda p: {"positive_rate": p["prediction"].mean()}, outlets=[SCORES])
    result = op.execute(ctx)

    run = client.get_run(result["run_id"])
    assert run.data.params == {"model_name": MODEL, "model_version": "2"}
    assert run.data.tags[tags.PREDICT_ALIAS] == "champion"
    assert run.data.tags[tags.PREDICT_MODEL_URI] == "models:/tiny/2"
    assert run.data.tags[tags.PREDICT_TRIGGERED_BY] == "version 2 (promotion), version 2 (poll)"
    assert run.data.metrics == {"rows_scored": 4.0, "positive_rate": 0.5}
    assert run.info.status == "FINISHED"
    assert (result["model_version"], result["alias"], result["artifact"]) == (
        "2",
        "champion",
        "predictions/predictions.csv",
    )
    assert ctx["outlet_events"][SCORES].extra == {
        "model_name": MODEL,
        "model_version": "2",
        "model_uri": "models:/tiny/2",
        "mlflow_run_id": run.info.run_id,
    }
    assert [f.path for f in client.list_artifacts(run.info.run_id, "predictions")] == [
        "predictions/predictions.csv"
    ]
    csv = client.download_artifacts(run.info.run_id, "predictions/predictions.csv")
    with open(csv) as f:
        lines = f.read().splitlines()
    assert lines == [
        "a,b,prediction",
        *(f"{a},{b},{p}" for (a, b), p in zip(x.values, predicted, strict=True)),
    ]


def test_a_retry_scores_the_version_its_first_try_resolved(store):
    client, x, _ = store
    first = score(input=x).execute(operator_context())
    client.set_registered_model_alias(MODEL, "champion", "1")
    retry = operator_context()
    retry["ti"].try_number = 2
    again = score(input=x).execute(retry)
    assert again["run_id"] == first["run_id"]
    assert again["model_version"] == "2"


def test_a_version_scores_a_file_into_a_parquet_output(store, tmp_path):
    import pandas as pd

    client, x, predicted = store
    source = tmp_path / "batch.csv"
    x.to_csv(source, index=False)
    out = tmp_path / "out" / "scores.parquet"
    result = score(version=1, input=str(source), output_path=str(out), artifact_path=None).execute(
        operator_context()
    )
    assert result["model_version"] == "1" and result["alias"] is None and result["artifact"] is None
    assert list(pd.read_parquet(out)["prediction"]) == predicted
    run = client.get_run(result["run_id"])
    assert run.data.params == {"model_name": MODEL, "model_version": "1"}
    assert tags.PREDICT_ALIAS not in run.data.tags
    assert tags.PREDICT_TRIGGERED_BY not in run.data.tags  # run by hand
    assert client.list_artifacts(run.info.run_id) == []


def test_a_missing_alias_fails_the_task_naming_it(store):
    client, x, _ = store
    with pytest.raises(MLflowResourceNotFoundError, match="model 'tiny' has no alias 'chmapion'"):
        score(alias="chmapion", input=x).execute(operator_context())
    experiment = client.get_experiment_by_name("scoring").experiment_id
    (run,) = client.search_runs([experiment], f"tags.`{tags.TASK_ID}` = 't'")
    assert run.info.status == "FAILED"


def test_arguments_are_checked_when_the_dag_is_parsed():
    with pytest.raises(MLflowInputError, match="not both"):
        score(alias="champion", version=3, input="x.csv")
    with pytest.raises(MLflowInputError, match="go nowhere"):
        score(input="x.csv", artifact_path=None)
    champion = Asset(uri="mlflow-model://mlflow_default/tiny/alias/champion", name="champion")
    with pytest.raises(MLflowInputError, match="is a model asset"):
        score(input="x.csv", outlets=[champion])


LOAD = """
import sys, warnings
warnings.simplefilter("always")
# Modules every task process has loaded, with deprecated aliases (the scan touches each one).
import airflow.utils.timezone, airflow.utils.trigger_rule
import pandas as pd
from airflow_mlflow.hooks.mlflow import MLflowHook

hook, uri = MLflowHook(), sys.argv[2]
if sys.argv[1] == "raw":
    import mlflow.pyfunc

    with hook.user_code_env():
        mlflow.pyfunc.load_model(uri)
else:
    hook.predict(uri, pd.DataFrame({"a": [0.0], "b": [1.0]}))
"""


def test_loading_the_model_does_not_flood_the_task_log(store):
    """skops (MLflow's format for scikit-learn) scans every loaded module the first time a process
    loads a model: each deprecated alias of Airflow's modules is a FutureWarning, a task-log line."""
    import subprocess
    import sys

    def future_warnings(mode: str) -> int:
        args = [sys.executable, "-c", LOAD, mode, f"models:/{MODEL}/2"]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        # Airflow's logging prints warnings on stdout or stderr, depending on its configuration.
        return (done.stdout + done.stderr).count("DeprecatedImportWarning")  # Airflow's, a FutureWarning

    assert future_warnings("raw") > 100  # MLflow's own load, in a fresh process: the flood
    assert future_warnings("hook") == 0
