"""Model names with quotes, LIKE wildcards and backslashes against a real ``mlflow server`` on
PostgreSQL (whose LIKE treats a backslash as an escape): the same checks as the SQLite unit tests."""

from __future__ import annotations

from mlflow import MlflowClient

from tests.integration.test_tracking import use_server
from tests.unit.hooks import test_registry_names as names


def test_registry_names_on_a_real_server(mlflow_server, monkeypatch):
    use_server(monkeypatch, mlflow_server.url)
    names.fill(MlflowClient(mlflow_server.url))
    names.test_list_versions_finds_exactly_each_name(None)
    names.test_versions_with_tags_takes_a_quote_in_a_value(None)
    names.test_registry_pages_list_and_open_every_name(None)
