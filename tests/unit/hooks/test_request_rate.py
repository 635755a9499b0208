"""The connection's request budget (extra ``max_requests_per_second``) paces the hook's own requests,
and a 429 with ``Retry-After`` is retried by MLflow's own retry (the only retry layer)."""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from airflow_mlflow.exceptions import MLflowConnectionConfigError
from airflow_mlflow.hooks.mlflow import MLflowHook
from airflow_mlflow.hooks.throttle import RequestLimiter, limiter_for


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers any request with an empty page of experiments; the first ``throttle`` ones with a 429."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server = self.server
        with server.lock:
            server.arrivals.append(time.monotonic())
            throttled = len(server.arrivals) <= server.throttle
        if throttled:
            body = b'{"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"}'
            self.send_response(429)
            self.send_header("Retry-After", "1")
        else:
            body = json.dumps({"experiments": []}).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.arrivals, httpd.throttle, httpd.lock = [], 0, threading.Lock()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def use_conn(monkeypatch, port: int, **extra) -> MLflowHook:
    conn = {"conn_type": "mlflow", "host": "127.0.0.1", "port": port, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_RATE", json.dumps(conn))
    return MLflowHook(mlflow_conn_id="mlflow_rate")


def burst(hooks: list[MLflowHook], calls: int) -> None:
    """Each hook lists experiments ``calls`` times, all hooks at once, one thread each."""
    errors: list[BaseException] = []

    def work(hook: MLflowHook) -> None:
        try:
            for _ in range(calls):
                assert hook.list_experiments() == []
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(hook,)) for hook in hooks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors


def gaps(times: list[float]) -> list[float]:
    ordered = sorted(times)
    return [b - a for a, b in zip(ordered, ordered[1:], strict=False)]


def test_the_extra_is_parsed(monkeypatch):
    assert use_conn(monkeypatch, 5000, max_requests_per_second="2.5").config.max_requests_per_second == 2.5
    assert use_conn(monkeypatch, 5000).config.max_requests_per_second is None
    assert "max_requests_per_second=3" in repr(use_conn(monkeypatch, 5000, max_requests_per_second=3).config)


@pytest.mark.parametrize("value", [0, -1, "fast", True, 1e9])
def test_a_bad_rate_names_the_field_and_the_value(monkeypatch, value):
    message = rf"'max_requests_per_second' must be a number from 0.001 to 100000, got {value!r}"
    with pytest.raises(MLflowConnectionConfigError, match=message.replace("+", r"\+")):
        _ = use_conn(monkeypatch, 5000, max_requests_per_second=value).config


def test_the_limiter_spaces_callers_across_threads():
    limiter = RequestLimiter(20)
    released: list[float] = []
    lock = threading.Lock()

    def caller() -> None:
        for _ in range(3):
            limiter.wait()
            with lock:
                released.append(time.monotonic())

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(released) == 12
    # Slots are exact; the observed times carry the scheduler's noise.
    assert max(released) - min(released) >= 11 * 0.05 - 0.02
    assert min(gaps(released)) >= 0.025
    assert limiter.waited > 0.5


def test_one_limiter_per_uri_and_rate():
    assert limiter_for("http://a:1", 2) is limiter_for("http://a:1", 2.0)
    assert limiter_for("http://a:1", 2) is not limiter_for("http://a:1", 3)
    assert limiter_for("http://a:1", 2) is not limiter_for("http://b:1", 2)
    with pytest.raises(ValueError, match="positive"):
        RequestLimiter(0)


def test_hooks_of_one_connection_share_the_rate(monkeypatch, server):
    """Three hooks in three threads, 4 calls each: the server sees them 1/rate apart (no burst)."""
    rate = 10
    hooks = [use_conn(monkeypatch, server.server_port, max_requests_per_second=rate) for _ in range(3)]
    started = time.monotonic()
    burst(hooks, 4)
    assert len(server.arrivals) == 12
    assert max(server.arrivals) - min(server.arrivals) >= 11 / rate - 0.05
    assert min(gaps(server.arrivals)) >= 0.5 / rate  # never two at once
    assert time.monotonic() - started >= 11 / rate - 0.05


def test_without_the_extra_requests_go_at_once(monkeypatch, server):
    """The same burst unpaced arrives faster than 10/s: the test above can fail."""
    hooks = [use_conn(monkeypatch, server.server_port) for _ in range(3)]
    burst(hooks, 4)
    assert len(server.arrivals) == 12
    assert max(server.arrivals) - min(server.arrivals) < 11 / 10 - 0.05


def test_a_429_with_retry_after_is_retried_by_mlflow_and_succeeds(monkeypatch, server):
    """MLflow's retry honours ``Retry-After`` (no backoff here): one retry, a second later."""
    server.throttle = 1
    hook = use_conn(monkeypatch, server.server_port, http_max_retries=2, http_backoff_factor=0)
    assert hook.list_experiments() == []
    assert len(server.arrivals) == 2
    assert gaps(server.arrivals)[0] >= 0.95


def test_429s_beyond_the_budget_fail_the_call(monkeypatch, server):
    """The connection's ``http_max_retries`` bounds MLflow's retry on 429 too."""
    from airflow_mlflow.exceptions import MLflowProviderError

    server.throttle = 10
    hook = use_conn(monkeypatch, server.server_port, http_max_retries=1, http_backoff_factor=0)
    with pytest.raises(MLflowProviderError):
        hook.list_experiments()
    assert len(server.arrivals) == 2


def test_the_child_environment_carries_no_rate(monkeypatch, server):
    """A child process cannot share this process's limiter: nothing about it is exported."""
    hook = use_conn(monkeypatch, server.server_port, max_requests_per_second=2)
    env = hook.child_env("r", "1", "e")
    assert not [key for key, value in env.items() if "RATE" in key or "REQUESTS_PER" in key]
