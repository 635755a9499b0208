"""The connection's retry budget (``http_max_retries``, ``http_backoff_factor``, ``http_timeout``)
bounds the hook's own MLflow client; MLflow's defaults (7 retries, 4+ minutes) no longer apply."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest

from airflow_mlflow.exceptions import MLflowConnectionConfigError, MLflowProviderError
from airflow_mlflow.hooks.mlflow import MLflowHook

#: The documented default of ``http_max_retries`` (README, Connection).
DEFAULT_HTTP_MAX_RETRIES = 4
_MLFLOW_BUDGET_VARS = (
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
)


class Listener:
    """A loopback TCP port that counts connections and closes them at once (or holds them open)."""

    def __init__(self, answer: bool = False) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        #: ``time.time()`` of each connection accepted.
        self.accepted_at: list[float] = []
        self.held: list[socket.socket] = []
        self.hold = answer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self.accepted_at.append(time.time())
            if self.hold:
                self.held.append(conn)  # never answers: the client's read timeout ends it
            else:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def default_budget(monkeypatch):
    """What a deployment gets: none of MLflow's budget variables set (the test suite sets them)."""
    for name in _MLFLOW_BUDGET_VARS:
        monkeypatch.delenv(name, raising=False)


def use_conn(monkeypatch, port: int, **extra) -> MLflowHook:
    conn = {"conn_type": "mlflow", "host": "127.0.0.1", "port": port, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_PROBE", json.dumps(conn))
    return MLflowHook(mlflow_conn_id="mlflow_probe")


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("default_budget")
def test_default_budget_gives_up_after_its_retries(monkeypatch, listener):
    hook = use_conn(monkeypatch, listener.port)
    before = dict(os.environ)
    with pytest.raises(MLflowProviderError, match="experiment 'x'"):
        hook.find_experiment("x")
    assert listener.accepted == 1 + DEFAULT_HTTP_MAX_RETRIES
    assert dict(os.environ) == before  # the budget is the client's, not the process's


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("default_budget")
def test_closed_port_fails_within_the_default_budget(monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(MLflowProviderError, match="Connection refused|Max retries exceeded"):
        use_conn(monkeypatch, port).find_experiment("x")


@pytest.mark.usefixtures("default_budget")
def test_extras_set_the_budget(monkeypatch, listener):
    hook = use_conn(monkeypatch, listener.port, http_max_retries=1, http_backoff_factor=0)
    with pytest.raises(MLflowProviderError):
        hook.find_experiment("x")
    assert listener.accepted == 2
    listener.accepted = 0
    with pytest.raises(MLflowProviderError):  # the registry's client too
        hook.get_model("m")
    assert listener.accepted == 2


@pytest.mark.usefixtures("default_budget")
def test_http_timeout_bounds_a_server_that_never_answers(monkeypatch):
    server = Listener(answer=True)
    try:
        hook = use_conn(monkeypatch, server.port, http_max_retries=0, http_timeout=1)
        with pytest.raises(MLflowProviderError, match=r"timeout=1\.0"):
            hook.find_experiment("x")
        assert server.accepted == 1
    finally:
        server.close()


def test_other_mlflow_users_keep_mlflow_defaults(monkeypatch, listener):
    """The budget is scoped to hook calls: MLflow code outside them reads the environment."""
    from mlflow.utils import rest_utils

    hook = use_conn(monkeypatch, listener.port, http_max_retries=1)
    with pytest.raises(MLflowProviderError):
        hook.find_experiment("x")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    assert rest_utils.MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"http_max_retries": "many"}, "'http_max_retries' must be an integer from 0 to 10, got 'many'"),
        ({"http_max_retries": 11}, "'http_max_retries' must be an integer from 0 to 10, got 11"),
        ({"http_backoff_factor": -1}, "'http_backoff_factor' must be a number from 0 to 120, got -1"),
        ({"http_timeout": 0}, "'http_timeout' must be a number from 0.1 to 3600, got 0"),
    ],
)
def test_bad_budget_extras_name_the_field(monkeypatch, extra, message):
    with pytest.raises(MLflowConnectionConfigError, match=message.replace("(", r"\(")):
        _ = use_conn(monkeypatch, 5000, **extra).config


@pytest.mark.usefixtures("default_budget")
def test_a_fallback_budget_replaces_the_default_but_not_the_connections_own(monkeypatch, listener):
    from airflow_mlflow.hooks.config import HttpBudget

    short = HttpBudget(max_retries=1, backoff_factor=0, timeout=2)
    hook = use_conn(monkeypatch, listener.port).with_fallback_budget(short)
    with pytest.raises(MLflowProviderError):
        hook.find_experiment("x")
    assert listener.accepted == 2  # not 1 + DEFAULT_HTTP_MAX_RETRIES
    listener.accepted = 0
    hook = use_conn(monkeypatch, listener.port, http_max_retries=2, http_backoff_factor=0)
    with pytest.raises(MLflowProviderError):
        hook.with_fallback_budget(short).find_experiment("x")
    assert listener.accepted == 3
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    assert (
        use_conn(monkeypatch, listener.port).with_fallback_budget(short).config.http_budget.max_retries == 0
    )
