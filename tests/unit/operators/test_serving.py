"""``MLflowServingCheckOperator`` against MLflow's real scoring server (``mlflow models serve``).

One tiny sklearn model, logged with a signature and an input example and registered in a SQLite
store, is shared by the module (each server start costs seconds). After every check the server's
process group must be gone: no process alive, nobody listening on its port.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from airflow_mlflow import tags
from airflow_mlflow.exceptions import MLflowInputError, MLflowServingCheckError
from airflow_mlflow.operators.serving import MLflowServingCheckOperator
from airflow_mlflow.scoring_server import ScoringServer, free_port, group_alive
from airflow_mlflow.serving import wait_for_ping
from tests.support import copy_store, mlflow_conn_json, operator_context, wait_for

MODEL = "tiny"


@pytest.fixture(scope="module")
def model(tmp_path_factory, mlflow_template):
    """Model ``tiny`` version 1: a logistic regression on columns a, b; its example's predictions."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path_factory.mktemp("serving")
    uri = copy_store(mlflow_template, folder / "mlflow")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            "AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_conn_json(uri, artifact_root=str(folder / "artifacts"))
        )
        client = mlflow.MlflowClient(uri)
        experiment = client.create_experiment("models", artifact_location=(folder / "artifacts").as_uri())
        x = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
        fitted = LogisticRegression().fit(x, [0, 0, 1, 1])
        mlflow.set_tracking_uri(uri)
        try:
            with mlflow.start_run(experiment_id=experiment):
                mlflow.sklearn.log_model(
                    fitted,
                    name="model",
                    input_example=x,
                    signature=infer_signature(x, fitted.predict(x)),
                    registered_model_name=MODEL,
                )
        finally:
            mlflow.set_tracking_uri(None)
        yield client, [int(p) for p in fitted.predict(x)]


def check(**kwargs) -> MLflowServingCheckOperator:
    return MLflowServingCheckOperator(
        task_id="serve", model_name=MODEL, version=1, experiment_name="e", **kwargs
    )


def assert_gone(server: ScoringServer) -> None:
    assert server.pid is not None and not group_alive(server.pid), (
        "the server's process group outlived the task"
    )
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", server.port))


def version_tags(client) -> dict[str, str]:
    return dict(client.get_model_version(MODEL, "1").tags)


def test_the_stored_example_serves_and_the_verdict_is_recorded(model):
    client, predictions = model
    ctx = operator_context()
    op = check(expected=predictions, max_p95_ms=5000, requests=5)
    result = op.execute(ctx)
    assert_gone(op.server)
    assert result["status"] == "passed" and result["rows"] == 4 and result["requests"] == 5
    assert 0 < result["p50_ms"] <= result["p95_ms"] < 5000
    version = version_tags(client)
    assert version[tags.SERVING_STATUS] == "passed" and version[tags.SERVING_FAILURE] == ""
    assert float(version[tags.SERVING_P95_MS]) == result["p95_ms"]
    assert version[tags.SERVING_DAG_RUN] == "d/manual__1"
    run = client.get_run(ctx["ti"].xcom["mlflow_run"]["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["serving_p95_ms"] == result["p95_ms"]
    assert run.data.params["serving.input_format"] == "dataframe_split"


def test_a_wrong_input_schema_fails_with_the_servers_answer(model):
    client, _ = model
    ctx = operator_context()
    op = check(rows=[{"a": 1.0, "zz": 2.0}], input_format="dataframe_records", requests=2)
    with pytest.raises(MLflowServingCheckError) as err:
        op.execute(ctx)
    assert_gone(op.server)
    message = str(err.value)
    assert "failed (status): POST /invocations answered HTTP 400" in message
    assert "Model is missing inputs ['b']" in message
    assert "Last lines of the scoring server's log" in message and "400 Bad Request" in message
    version = version_tags(client)
    assert version[tags.SERVING_STATUS] == "failed" and version[tags.SERVING_FAILURE].startswith("status:")
    assert client.get_run(ctx["ti"].xcom["mlflow_run"]["run_id"]).info.status == "FAILED"


def test_a_latency_bound_it_cannot_meet_fails_with_the_latencies(model):
    client, _ = model
    op = check(max_p95_ms="0.001", requests="3", input_format="inputs")  # rendered templates are text
    with pytest.raises(
        MLflowServingCheckError, match=r"failed \(latency\): p95 latency [\d.]+ ms over 3 requests"
    ):
        op.execute(operator_context())
    assert_gone(op.server)
    version = version_tags(client)
    assert version[tags.SERVING_STATUS] == "failed" and float(version[tags.SERVING_P95_MS]) > 0.001


def test_a_server_not_up_in_time_fails_with_its_log_and_is_stopped(model):
    op = check(startup_timeout=0.3)
    with pytest.raises(
        MLflowServingCheckError, match=r"failed \(startup\): .*did not answer /ping within 0.3 s"
    ):
        op.execute(operator_context())
    assert_gone(op.server)


def test_killing_the_task_stops_the_server(model):
    op = check(startup_timeout=120)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            op.execute(operator_context())
        except BaseException as err:
            failed.append(err)

    worker = threading.Thread(target=run)
    worker.start()
    wait_for("the server process", lambda: op.server is not None and op.server.pid, timeout=60, interval=0.05)
    op.on_kill()  # what Airflow calls on SIGTERM to the task
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert_gone(op.server)
    assert "failed (startup): the scoring server exited with status" in str(failed[0])


def test_bad_settings_fail_before_anything_starts(model):
    with pytest.raises(MLflowInputError, match="input_format must be one of"):
        check(input_format="csv").execute(operator_context())
    with pytest.raises(MLflowInputError, match="max_p95_ms must be a number >= 0, got 'fast'"):
        check(max_p95_ms="fast").execute(operator_context())
    with pytest.raises(MLflowInputError, match=r"rows must be a list \(or its JSON\), got 'a,b'"):
        check(rows="a,b").execute(operator_context())
    with pytest.raises(MLflowInputError, match="rows must be a list of records or"):
        check(rows='{"a": 1}').execute(operator_context())


@pytest.fixture
def running_server(model, tmp_path):
    """A scoring server the test starts itself, as a deployment would run one."""
    from airflow_mlflow.hooks.mlflow import MLflowHook

    port = free_port()
    env = {
        **os.environ,
        **MLflowHook().serving_env(),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{MODEL}/1"]
        + ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=(tmp_path / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_ping(f"http://127.0.0.1:{port}", 120)
        yield f"http://127.0.0.1:{port}/"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_an_existing_endpoint_is_checked_without_starting_a_server(model, running_server):
    client, predictions = model
    op = check(endpoint_url=running_server, expected=predictions, input_format="instances", requests=3)
    result = op.execute(operator_context())
    assert op.server is None and result["status"] == "passed" and result["endpoint"] == running_server
    wrong = [1 - p for p in predictions]
    with pytest.raises(
        MLflowServingCheckError, match=r"failed \(expected\): prediction 0 is \d, expected \d"
    ):
        check(endpoint_url=running_server, expected=wrong, requests=1).execute(operator_context())
    assert version_tags(client)[tags.SERVING_STATUS] == "failed"


LONG = {"type": "long", "required": True}
TENSOR = {"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 2]}}


@pytest.mark.parametrize(
    ("answer", "outputs", "failure"),
    [
        ({"predictions": [0, 1]}, [LONG], None),
        ({"predictions": [0, 1.5]}, [LONG], "prediction 1 is 1.5, the signature says long"),
        ({"predictions": [True]}, [LONG], "prediction 0 is True, the signature says long"),
        ({"predictions": [{"p": 0.1, "label": "x"}]}, [{**LONG, "name": "label"}], "(label) is 'x'"),
        (
            {"predictions": [{"p": 0.1}]},
            [{**LONG, "name": "label"}],
            "lacks the signature's outputs ['label']",
        ),
        ({"predictions": {"label": [1, 2]}}, [{**LONG, "name": "label"}], None),
        ({"predictions": [[0.1, 0.9], [1, 0]]}, [TENSOR], None),
        ({"predictions": [[0.1, 0.9, 0.0]]}, [TENSOR], "the signature's shape is [2]"),
        ({"predictions": [["a", "b"]]}, [TENSOR], "the signature says float64"),
        ([3, 4], None, None),
    ],
)
def test_answers_are_judged_against_the_signatures_outputs(answer, outputs, failure):
    from airflow_mlflow.serving import ServingFailure, check_against_outputs, prediction_rows, predictions_of

    rows = prediction_rows(predictions_of(answer))
    if failure is None:
        check_against_outputs(rows, outputs)
    else:
        with pytest.raises(ServingFailure, match=re.escape(failure)):
            check_against_outputs(rows, outputs)


def test_expected_predictions_bodies_and_percentiles():
    from airflow_mlflow.serving import ServingFailure, check_expected, percentile, request_body

    check_expected([0.1000001, {"a": [1, 2]}], [0.1, {"a": [1, 2]}], 1e-6)
    with pytest.raises(ServingFailure, match=r"prediction 0 is 0.2, expected 0.1 \(tolerance 0.01\)"):
        check_expected([0.2], [0.1], 0.01)
    with pytest.raises(ServingFailure, match="2 predictions, 1 expected"):
        check_expected([1, 2], [1], 0.0)
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0
    assert percentile([float(n) for n in range(1, 21)], 0.95) == 19.0
    columns, data = ["a", "b"], [[1, 2], [3, 4]]
    assert request_body(columns, data, "dataframe_records") == {
        "dataframe_records": [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    }
    assert request_body(columns, data, "inputs") == {"inputs": {"a": [1, 3], "b": [2, 4]}}


def test_the_connections_secrets_never_reach_the_error_or_the_tags(model, running_server, monkeypatch):
    client, _ = model
    conn = json.loads(os.environ["AIRFLOW_CONN_MLFLOW_DEFAULT"])
    conn["extra"]["token"] = "s3cr3t-token-xyz"
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_SECRET", json.dumps(conn))
    # The server's 400 answer echoes the rows, and so their column named like the secret.
    op = check(endpoint_url=running_server, rows=[{"a": 1.0, "s3cr3t-token-xyz": 2.0}], requests=1)
    op.mlflow_conn_id = "mlflow_secret"
    with pytest.raises(MLflowServingCheckError) as err:
        op.execute(operator_context())
    assert "HTTP 400" in str(err.value) and "***" in str(err.value)
    assert "s3cr3t" not in str(err.value)
    failure = version_tags(client)[tags.SERVING_FAILURE]
    assert failure.startswith("status: POST /invocations answered HTTP 400") and "s3cr3t" not in failure
