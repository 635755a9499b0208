"""What a finished run of ``tests/dags/tracked.py`` must leave in MLflow, on any store."""

from __future__ import annotations

import json
from collections import Counter

import pytest


def runs_of_dag_run(client, experiment: str, run_id: str):
    """Active runs (parent and children) of one DAG run."""
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment} was not created"
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`airflow.run_id` = '{run_id}'")


def assert_tracked_dag(client, dag_run, experiment: str = "tracked_example") -> dict:
    """One parent, five children, tags and statuses as the run model promises; returns runs by name."""
    runs = runs_of_dag_run(client, experiment, dag_run.run_id)
    parents = [r for r in runs if r.data.tags.get("airflow.role") == "dag_run"]
    children = [r for r in runs if r.data.tags.get("airflow.role") == "task"]
    assert len(parents) == 1 and len(children) == 5, [
        (r.info.run_name, r.data.tags.get("airflow.role")) for r in runs
    ]
    parent = parents[0]
    assert parent.info.run_name == dag_run.run_id
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["airflow.dag_id"] == dag_run.dag_id

    by_name = {r.info.run_name: r for r in children}
    assert sorted(by_name) == ["flaky", "report", "train[0]", "train[1]", "train[2]"]
    assert Counter((r.data.tags["airflow.task_id"], r.data.tags["airflow.map_index"]) for r in children) == {
        ("train", "0"): 1,
        ("train", "1"): 1,
        ("train", "2"): 1,
        ("flaky", "-1"): 1,
        ("report", "-1"): 1,
    }
    for run in children:
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["airflow.dag_id"] == dag_run.dag_id
        assert tags["airflow.logical_date"]
        assert f"/dags/{dag_run.dag_id}/runs/" in tags["airflow.url"]
        assert tags["airflow.url"] in tags["mlflow.note.content"]

    assert by_name["train[2]"].data.params == {"fold": "2"}
    assert by_name["train[2]"].data.metrics == {"score": pytest.approx(0.7)}
    assert by_name["train[1]"].data.tags["airflow.url"].endswith("/tasks/train/mapped/1")

    flaky = by_name["flaky"].data
    assert flaky.tags["airflow.try_number"] == "2"
    assert flaky.tags["airflow.try.1.state"] == "failed"
    assert "transient failure on the first try" in flaky.tags["airflow.try.1.error"]
    assert flaky.tags["airflow.try.2.state"] == "success"
    assert flaky.params == {"lr": "0.1"} and flaky.metrics == {"recovered": 1.0}

    report = by_name["report"]
    assert report.data.params == {"folds": "3", "model": "ridge"}
    assert report.data.metrics == {"best": pytest.approx(0.7)}
    assert report.data.tags["stage"] == "report"
    assert [a.path for a in client.list_artifacts(report.info.run_id)] == ["report.txt"]
    return by_name


def xcom_value(dag_run, task_id: str, key: str):
    """An XCom the task pushed, read from the metadata DB (test code, not task code)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(run_id=dag_run.run_id, key=key, task_ids=task_id, dag_ids=dag_run.dag_id)
        row = session.scalars(query).first()
        return None if row is None else XComModel.deserialize_value(row)


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def versions(client, name="gate_model") -> dict[str, object]:
    return {str(v.version): v for v in client.search_model_versions(f"name = '{name}'")}


def champion(client, name="gate_model") -> str:
    return str(client.get_model_version_by_alias(name, "champion").version)


def assert_gate_timed_out(client, dag_run, model: str) -> None:
    """The gate timed out (soft_fail: skipped): no verdict on the version, nothing promoted."""
    from mlflow.exceptions import MlflowException

    assert states(dag_run) == {
        "train": "success",
        "register": "success",
        "gate": "skipped",
        "promote": "skipped",
    }
    (version,) = versions(client, model).values()
    assert version.current_stage == "Staging"
    assert "airflow.gate.status" not in version.tags  # no verdict: it never decided
    with pytest.raises(MlflowException, match="alias champion not found"):
        champion(client, model)


def check_lifecycle(run, client) -> None:
    """v1 promoted; worse v2 rejected, nothing changes; better v3 promoted; rollback restores v1."""
    from tests.dags import registry as dags

    first = run(dags.gate_lifecycle, accuracy=0.8)
    assert states(first) == {
        "train": "success",
        "register": "success",
        "gate": "success",
        "promote": "success",
    }
    v = versions(client)
    assert v["1"].current_stage == "Production" and champion(client) == "1"
    assert v["1"].tags["airflow.gate.status"] == "passed"
    assert v["1"].tags["airflow.gate.baseline_version"] == "none"
    assert v["1"].tags["airflow.dag_id"] == "gate_lifecycle" and v["1"].tags["trained_on"] == "synthetic"
    assert v["1"].description == f"candidate from {first.run_id}"
    assert v["1"].source.startswith("models:/m-")

    worse = run(dags.gate_lifecycle, accuracy=0.7, runs_uri=True)
    assert worse.state == "success"  # a rejection is a normal outcome
    assert states(worse) == {
        "train": "success",
        "register": "success",
        "gate": "skipped",
        "promote": "skipped",
    }
    v = versions(client)
    assert v["2"].current_stage == "Staging" and v["1"].current_stage == "Production"
    assert champion(client) == "1"
    assert client.get_model_version("gate_model", "2").aliases == ["challenger"]
    assert v["2"].tags["airflow.gate.status"] == "rejected"
    assert v["2"].tags["airflow.gate.baseline_version"] == "1"
    line = v["2"].tags["airflow.gate.metric.accuracy"]
    assert line == "accuracy: candidate 0.7, required >= 0.6 and >= baseline+0.01, baseline 0.8 -> rejected"

    better = run(dags.gate_lifecycle, accuracy=0.9)
    assert states(better)["promote"] == "success"
    v = versions(client)
    assert champion(client) == "3"
    assert (v["1"].current_stage, v["2"].current_stage, v["3"].current_stage) == (
        "Archived",
        "Staging",
        "Production",
    )
    assert v["3"].tags["airflow.promotion.previous_version"] == "1"
    assert v["3"].tags["airflow.promotion.gate"] == "passed"
    assert xcom_value(better, "promote", "return_value") == {
        "name": "gate_model",
        "version": "3",
        "previous_version": "1",
        "promoted": True,
    }

    back = run(dags.gate_rollback)
    assert back.state == "success"
    v = versions(client)
    assert champion(client) == "1"
    assert (v["1"].current_stage, v["3"].current_stage) == ("Production", "Archived")
    assert "airflow.rollback.at" in v["3"].tags
    history = client.get_registered_model("gate_model").tags["airflow.champion_history"]
    assert [(e["action"], e["version"], e["previous"]) for e in json.loads(history)] == [
        ("promote", "1", None),
        ("promote", "3", "1"),
        ("rollback", "1", "3"),
    ]


def points_by_attempt(client, run_id: str, key: str) -> dict[int | None, list[int]]:
    """
    A metric's steps grouped by attempt, by the README's rule: a point belongs to attempt n when
    ``airflow.try.<n>.start <= timestamp < airflow.try.<n+1>.start`` (None: before every start).
    """
    tags = client.get_run(run_id).data.tags
    starts = sorted(
        (int(value), int(name.split(".")[2]))
        for name, value in tags.items()
        if name.startswith("airflow.try.") and name.endswith(".start")
    )
    grouped: dict[int | None, list[int]] = {}
    for point in client.get_metric_history(run_id, key):
        attempt = None
        for start, number in starts:
            if start <= point.timestamp:
                attempt = number
        grouped.setdefault(attempt, []).append(point.step)
    return {n: sorted(steps) for n, steps in grouped.items()}


def artifact_text(tracking_uri: str, artifact_uri: str) -> str:
    """The text of one artifact, by URI (``mlflow-artifacts:/`` ones through the server)."""
    from pathlib import Path

    from mlflow.artifacts import download_artifacts

    return Path(download_artifacts(artifact_uri=artifact_uri, tracking_uri=tracking_uri)).read_text()


def assert_logged_sklearn_model(client, tracking_uri: str, experiment_id: str, run_id: str):
    """The run's one MLflow 3 logged model, ``model``: sklearn, with the breast-cancer data's
    signature and an input example. Returns it."""
    import yaml

    (logged,) = client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run_id}'")
    assert logged.name == "model"
    files = {f.path for f in client.list_logged_model_artifacts(logged.model_id)}
    assert {"MLmodel", "input_example.json"} <= files, files
    mlmodel = yaml.safe_load(artifact_text(tracking_uri, f"{logged.artifact_location}/MLmodel"))
    assert "sklearn" in mlmodel["flavors"]
    inputs = json.loads(mlmodel["signature"]["inputs"])
    assert len(inputs) == 30 and inputs[0]["name"] == "mean radius", inputs[:2]
    assert json.loads(mlmodel["signature"]["outputs"])
    assert mlmodel["saved_input_example_info"]["artifact_path"] == "input_example.json"
    return logged


def assert_one_tree(parents, children, task_names) -> None:
    """One FINISHED parent, and a FINISHED child per task instance under it, each one try that succeeded."""
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(children) == sorted(task_names)  # one child per task instance, each mapped index its own
    for name, child in children.items():
        assert child.info.status == "FINISHED", name
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id, name
        assert child.data.tags["airflow.try.1.state"] == "success", name
