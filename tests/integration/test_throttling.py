"""
A burst of tracked runs against an MLflow that answers 429 above a rate (hosted MLflow does): the
MLflow client's retry absorbs the 429s, and the connection's ``max_requests_per_second`` avoids
them; either way every run is correct and none fails.
"""

from __future__ import annotations

import os

import pytest

from bench._proxy import ThrottlingProxy
from bench.throttle import burst, conn_json, problems

#: The proxy's rate, and the burst: small enough for ``make test`` (about 3 requests per run).
RATE = 8
RUNS = 10


@pytest.fixture(scope="module")
def experiment_id(mlflow_server) -> str:
    from mlflow import MlflowClient

    return MlflowClient(mlflow_server.url).create_experiment(f"throttling_{os.getpid()}")


def use(monkeypatch, conn_id: str, proxy: ThrottlingProxy, **extra) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", conn_json(proxy.url, **extra))


@pytest.mark.timeout(180)
def test_429s_are_absorbed_by_mlflows_retry(mlflow_server, experiment_id, monkeypatch):
    """No limit: the proxy refuses part of the burst, MLflow retries after ``Retry-After``."""
    with ThrottlingProxy(mlflow_server.url, RATE) as proxy:
        use(monkeypatch, "burst_unlimited", proxy, http_max_retries=10)
        result = burst("burst_unlimited", experiment_id, list(range(RUNS)), "unlimited")
        print(f"unlimited: {proxy.throttled} 429s, {proxy.total()} forwarded, {result['seconds']:.1f} s")
        assert result["errors"] == {}
        assert proxy.throttled > 0, "the burst never exceeded the proxy's rate: the test proves nothing"
        assert proxy.peak_rate() <= RATE
    assert len(result["runs"]) == RUNS
    assert problems(mlflow_server.url, result["runs"]) == []


@pytest.mark.timeout(180)
def test_max_requests_per_second_keeps_the_burst_under_the_rate(mlflow_server, experiment_id, monkeypatch):
    """With the extra under the proxy's rate the same burst gets (almost) no 429 at all."""
    with ThrottlingProxy(mlflow_server.url, RATE) as proxy:
        use(monkeypatch, "burst_limited", proxy, max_requests_per_second=0.7 * RATE, http_max_retries=10)
        result = burst("burst_limited", experiment_id, list(range(RUNS)), "limited")
        print(f"limited: {proxy.throttled} 429s, {proxy.total()} forwarded, {result['seconds']:.1f} s")
        assert result["errors"] == {}
        assert proxy.throttled <= 1, f"{proxy.throttled} requests were refused"
        assert proxy.total() >= 3 * RUNS
        # Spaced: the burst takes at least as long as its requests at the limit.
        assert result["seconds"] >= (proxy.total() - 1) / (0.7 * RATE) - 0.5
    assert len(result["runs"]) == RUNS
    assert problems(mlflow_server.url, result["runs"]) == []
