"""Fixtures of the operator tests."""

from __future__ import annotations

import json
import socket

import pytest


@pytest.fixture
def mlflow_down(monkeypatch) -> str:
    """Connection ``mlflow_down``: a port nobody listens on, and a client that does not retry."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = {"conn_type": "mlflow", "host": "127.0.0.1", "port": port, "schema": "http"}
    conn["extra"] = {"http_max_retries": 0, "http_timeout": 5}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DOWN", json.dumps(conn))
    return "mlflow_down"
