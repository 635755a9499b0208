from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import copy_store, migrated_mlflow_db, mlflow_conn_json


@dataclass
class Store:
    tracking_uri: str
    artifact_root: Path

    @property
    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    return migrated_mlflow_db(tmp_path_factory.mktemp("mlflow-template"))


@pytest.fixture
def store(tmp_path, mlflow_template, monkeypatch) -> Store:
    """A fresh SQLite MLflow store behind ``mlflow_default``."""
    uri = copy_store(mlflow_template, tmp_path / "mlflow")
    artifacts = tmp_path / "mlflow" / "artifacts"
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_conn_json(uri, artifact_root=str(artifacts)))
    return Store(uri, artifacts)
