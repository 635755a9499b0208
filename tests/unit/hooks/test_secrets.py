"""A password in the connection, or inside ``tracking_uri``, never shows: not in the config's repr,
not in the hook's errors nor their tracebacks, not in log records, not in ``os.environ``."""

from __future__ import annotations

import json
import logging
import os
import socket
import traceback

import pytest

from airflow_mlflow.exceptions import MLflowProviderError
from airflow_mlflow.hooks.config import MLflowConnectionConfig
from airflow_mlflow.hooks.mlflow import MLflowHook

PASSWORD = "S3cret-Pa55word-xyz"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


CONNS = {
    "uri": lambda port: {
        "conn_type": "mlflow",
        "extra": {
            "tracking_uri": f"http://admin:{PASSWORD}@127.0.0.1:{port}",
            "registry_uri": f"http://admin:{PASSWORD}@127.0.0.1:{port}/",
            "http_max_retries": 0,
        },
    },
    "login": lambda port: {
        "conn_type": "mlflow",
        "host": "127.0.0.1",
        "port": port,
        "login": "admin",
        "password": PASSWORD,
        "extra": {"http_max_retries": 0},
    },
    "token": lambda port: {
        "conn_type": "mlflow",
        "host": "127.0.0.1",
        "port": port,
        "extra": {"token": PASSWORD, "http_max_retries": 0},
    },
}


@pytest.mark.parametrize("where", sorted(CONNS))
def test_a_failing_call_shows_no_secret(monkeypatch, caplog, where):
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_SECRET", json.dumps(CONNS[where](closed_port())))
    caplog.set_level(logging.DEBUG)
    before = dict(os.environ)
    hook = MLflowHook(mlflow_conn_id="mlflow_secret")
    assert PASSWORD not in repr(hook.config)
    calls = [
        lambda: hook.find_experiment("x"),  # tracking store
        lambda: hook.get_model("m"),  # registry store
        lambda: hook.list_artifacts("0" * 32),
    ]
    for call in calls:
        with pytest.raises(MLflowProviderError) as err:
            call()
        assert "Connection refused" in str(err.value) or "Max retries" in str(err.value)
        assert PASSWORD not in str(err.value)
        shown = "".join(traceback.format_exception(err.value))  # what a task log's traceback prints
        assert PASSWORD not in shown
    ok, message = hook.test_connection()
    assert not ok and PASSWORD not in message
    logged = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert not [line for line in logged if PASSWORD in line]
    assert dict(os.environ) == before


def test_userinfo_becomes_basic_auth_and_leaves_the_uri():
    from airflow.sdk import Connection

    conn = Connection(
        conn_id="c",
        conn_type="mlflow",
        extra=json.dumps({"tracking_uri": "https://ad%40min:p%3Ass@mlflow.example.com:5000/base"}),
    )
    cfg = MLflowConnectionConfig.from_connection(conn)
    assert cfg.tracking_uri == "https://mlflow.example.com:5000/base"
    assert (cfg.username, cfg.password) == ("ad@min", "p:ss")
    assert set(cfg.secrets) >= {"p:ss"}


def test_sql_uri_keeps_its_userinfo_but_repr_and_secrets_hide_it():
    from airflow.sdk import Connection

    uri = f"postgresql://ml:{PASSWORD}@db.example.com/mlflow"
    conn = Connection(conn_id="c", conn_type="mlflow", extra=json.dumps({"tracking_uri": uri}))
    cfg = MLflowConnectionConfig.from_connection(conn)
    assert cfg.tracking_uri == uri  # SQLAlchemy needs it
    assert PASSWORD not in repr(cfg)
    assert PASSWORD in cfg.secrets


def test_credentials_in_the_uri_and_in_login_contradict():
    from airflow.sdk import Connection

    from airflow_mlflow.exceptions import MLflowConnectionConfigError

    conn = Connection(
        conn_id="c",
        conn_type="mlflow",
        login="bob",
        password="pw",
        extra=json.dumps({"tracking_uri": f"http://admin:{PASSWORD}@h:5000"}),
    )
    with pytest.raises(MLflowConnectionConfigError) as err:
        MLflowConnectionConfig.from_connection(conn)
    assert "'c'" in str(err.value) and PASSWORD not in str(err.value)
