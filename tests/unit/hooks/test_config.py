"""Parsing the ``mlflow`` connection: every error names the field and the value."""

from __future__ import annotations

import json

import pytest
from airflow.sdk import Connection

from airflow_mlflow.exceptions import MLflowConnectionConfigError
from airflow_mlflow.hooks.config import MLflowConnectionConfig
from airflow_mlflow.hooks.mlflow import MLflowHook


def conn(**fields) -> Connection:
    extra = fields.pop("extra", None)
    return Connection(conn_id="c", conn_type="mlflow", extra=json.dumps(extra) if extra else None, **fields)


def test_host_port_schema_make_the_tracking_uri():
    cfg = MLflowConnectionConfig.from_connection(conn(host="mlflow.internal", port=5000, schema="https"))
    assert cfg.tracking_uri == "https://mlflow.internal:5000"
    assert cfg.is_http and cfg.mlflow_ui_url == "https://mlflow.internal:5000"
    assert MLflowConnectionConfig.from_connection(conn(host="h")).tracking_uri == "http://h"


def test_tracking_uri_extra_overrides_host():
    cfg = MLflowConnectionConfig.from_connection(
        conn(
            host="ignored",
            extra={
                "tracking_uri": "sqlite:////tmp/x.db",
                "ui_url": "http://ui:5000/",
                "experiment_name": "exp",
            },
        )
    )
    assert cfg.tracking_uri == "sqlite:////tmp/x.db" and not cfg.is_http
    assert cfg.mlflow_ui_url == "http://ui:5000" and cfg.experiment_name == "exp"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "set host"),
        ({"host": "h", "schema": "ftp"}, "schema must be 'http' or 'https', got 'ftp'"),
        (
            {"extra": {"tracking_uri": "gopher://x"}},
            "tracking_uri 'gopher://x' has unsupported scheme 'gopher'",
        ),
        (
            {"host": "h", "login": "u", "password": "p", "extra": {"token": "t"}},
            "either login/password or the token",
        ),
        ({"host": "h", "password": "p"}, "password is set but login is empty"),
        (
            {"host": "h", "extra": {"insecure_tls": "maybe"}},
            "'insecure_tls' must be true or false, got 'maybe'",
        ),
        ({"host": "h", "extra": {"insecure_tls": True, "ca_bundle": "/ca.pem"}}, "contradict"),
        ({"host": "h", "extra": {"ui_url": "ftp://x"}}, "ui_url 'ftp://x' must be an http(s) URL"),
    ],
)
def test_invalid_connections_are_refused_naming_the_field(fields, message):
    with pytest.raises(MLflowConnectionConfigError, match="Connection 'c'") as err:
        MLflowConnectionConfig.from_connection(conn(**fields))
    assert message in str(err.value)


def test_links_and_messages_drop_userinfo():
    cfg = MLflowConnectionConfig.from_connection(
        conn(extra={"tracking_uri": "https://u:pw@mlflow.example.com/"})
    )
    assert cfg.mlflow_ui_url == "https://mlflow.example.com"


def test_secrets_stay_out_of_repr():
    cfg = MLflowConnectionConfig.from_connection(conn(host="h", login="alice", password="s3cret-pw"))
    token_cfg = MLflowConnectionConfig.from_connection(conn(host="h", extra={"token": "tok-123"}))
    assert "s3cret-pw" not in repr(cfg) and "tok-123" not in repr(token_cfg)
    assert "alice" in repr(cfg)
    hook_cfg = MLflowConnectionConfig.from_connection(conn(host="h", extra={"webhook_secret": "wh-456"}))
    assert hook_cfg.webhook_secret == "wh-456" and "wh-456" not in repr(hook_cfg)
    assert "wh-456" in hook_cfg.secrets  # masked in logs, stripped from messages


@pytest.mark.usefixtures("airflow_db")  # the metadata DB is asked too: it must be readable
def test_embedded_default_when_mlflow_default_is_undefined(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    cfg = MLflowHook().config
    assert cfg.embedded
    assert cfg.tracking_uri == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    assert cfg.artifact_root == f"{tmp_path}/mlflow/artifacts"


def test_other_undefined_connections_are_an_error(monkeypatch):
    from airflow.sdk.exceptions import AirflowNotFoundException

    with pytest.raises(AirflowNotFoundException, match="mlflow_prod"):
        _ = MLflowHook(mlflow_conn_id="mlflow_prod").config
