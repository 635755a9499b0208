"""A secrets backend that fails every lookup, as a Vault that is down would (test_resolution.py)."""

from __future__ import annotations

from airflow.sdk.bases.secrets_backend import BaseSecretsBackend


class BrokenBackend(BaseSecretsBackend):
    def get_conn_value(self, conn_id: str, team_name: str | None = None) -> str | None:
        raise ConnectionError("secrets backend unreachable")

    def get_variable(self, key: str, team_name: str | None = None) -> str | None:
        raise ConnectionError("secrets backend unreachable")
