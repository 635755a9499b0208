"""The model lifecycle and racing promotions against a real ``mlflow server`` on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from airflow_mlflow.plugins import listener
from tests.assertions import check_lifecycle, xcom_value
from tests.dags import registry as dags
from tests.integration._workers import conn_json, start_together

WORKER = Path(__file__).with_name("_promote_worker.py")


@pytest.mark.usefixtures("airflow_db")
def test_lifecycle_against_a_real_server(mlflow_server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", conn_json(mlflow_server.url))

    def run(dag, **conf):
        dag_run = dag.test(run_conf=conf or None)
        listener.drain()
        return dag_run

    check_lifecycle(run, MlflowClient(mlflow_server.url))
    # The gate's and the promotion's "MLflow Model Version" links open the server's UI.
    best = run(dags.gate_lifecycle, accuracy=0.95)
    url = f"{mlflow_server.url}/#/models/gate_model/versions/4"
    assert xcom_value(best, "gate", "_link_MLflowModelVersionLink") == url
    assert xcom_value(best, "promote", "_link_MLflowModelVersionLink") == url


@pytest.mark.parametrize("attempt", range(3))
@pytest.mark.filterwarnings("ignore:.*transition_model_version_stage:FutureWarning")  # the setup's own stage
def test_racing_promotions_leave_one_champion_and_one_production(mlflow_server, tmp_path, attempt):
    client = MlflowClient(mlflow_server.url)
    model = f"race_model_{attempt}"
    exp = client.create_experiment(f"race_{attempt}")
    client.create_registered_model(model)
    for _ in range(3):
        run = client.create_run(exp)
        client.create_model_version(model, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.transition_model_version_stage(model, "1", "Production")
    client.set_registered_model_alias(model, "champion", "1")
    for version in ("2", "3"):  # both passed a gate against champion v1
        client.set_model_version_tag(model, version, "airflow.gate.status", "passed")
        client.set_model_version_tag(model, version, "airflow.gate.baseline_version", "1")

    results = start_together(WORKER, [[model, "2"], [model, "3"]], mlflow_server.url, tmp_path / "go")

    winners = [r for r in results if r["ok"]]
    losers = [r for r in results if not r["ok"]]
    assert len(winners) == 1 and len(losers) == 1, results
    # The loser either lost the claim, or came after the winner moved and failed compare-and-set.
    error = losers[0]["error"]
    assert "changed the champion concurrently" in error or "but the champion is now version" in error, error
    champion = str(client.get_model_version_by_alias(model, "champion").version)
    stages = {str(v.version): v.current_stage for v in client.search_model_versions(f"name = '{model}'")}
    assert champion == winners[0]["version"]
    assert [v for v, stage in stages.items() if stage == "Production"] == [champion]
    assert stages["1"] == "Archived"
    history = json.loads(client.get_registered_model(model).tags["airflow.champion_history"])
    assert [(e["seq"], e["version"], e["previous"]) for e in history] == [(0, champion, "1")]


def test_a_new_alias_set_by_several_processes_at_once_is_set(mlflow_server, monkeypatch):
    """
    MLflow's SQL store inserts an alias it does not find: of several concurrent first settings one
    insert wins and the others fail on the table's key (about one round in three here without the
    hook's retry). Threads stand in for processes: each request is its own server transaction.
    """
    import threading

    from airflow_mlflow.hooks.mlflow import MLflowHook

    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", conn_json(mlflow_server.url))
    client = MlflowClient(mlflow_server.url)
    model = "alias_race_model"
    exp = client.create_experiment("alias_race")
    client.create_registered_model(model)
    for _ in range(2):
        run = client.create_run(exp)
        client.create_model_version(model, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    errors: list[str] = []

    def set_alias(alias: str, version: str, start: threading.Barrier) -> None:
        hook = MLflowHook()
        start.wait()
        try:
            hook.set_alias(model, alias, version)
        except Exception as err:  # noqa: BLE001 - collected for the assertion
            errors.append(f"{type(err).__name__}: {err}")

    for round_ in range(20):
        start = threading.Barrier(4)
        threads = [
            threading.Thread(target=set_alias, args=(f"a{round_}", str(1 + i % 2), start)) for i in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    aliases = client.get_registered_model(model).aliases
    assert sorted(aliases) == sorted(f"a{r}" for r in range(20))
    assert set(aliases.values()) <= {"1", "2"}
