"""
A counting reverse proxy: put it in front of an ``mlflow server`` and it tells how many HTTP
requests reached the server, and on which endpoints. ``ThrottlingProxy`` also answers 429 above
a rate, as hosted MLflow does.

Each request is forwarded unchanged over a keep-alive connection per proxy thread; the response
is read whole and sent back. Paths are normalised for the breakdown: artifact uploads and
downloads (``/api/2.0/mlflow-artifacts/artifacts/<experiment>/<run>/...``) count as one endpoint.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

ARTIFACTS_PREFIX = "/api/2.0/mlflow-artifacts/artifacts/"
# Hop-by-hop headers (RFC 9110 7.6.1) are the proxy's own business, not forwarded.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
}


def endpoint(method: str, path: str) -> str:
    """``"POST /api/2.0/mlflow/runs/log-batch"``: the method and path without query or artifact name."""
    path = path.split("?", 1)[0]
    if path.startswith(ARTIFACTS_PREFIX):
        path = ARTIFACTS_PREFIX + "…"
    return f"{method} {path}"


class CountingProxy:
    """
    ``with CountingProxy("http://127.0.0.1:5000") as proxy:`` then point clients at ``proxy.url``.

    ``proxy.counts()`` is a Counter of endpoint to requests so far; ``proxy.times`` the monotonic
    arrival time of every request (for rates); ``proxy.reset()`` starts a new count.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port or 80
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.times: list[float] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="counting-proxy", daemon=True)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self._counts[endpoint(method, path)] += 1
            self.times.append(time.monotonic())

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self.times.clear()

    #: Seconds a 429 asks the client to wait (``ThrottlingProxy``).
    retry_after = 1

    def admit(self) -> bool:
        """Whether to forward the request now (always, here)."""
        return True

    def peak_rate(self) -> int:
        """The most requests forwarded within any one second so far."""
        return peak_per_second(self.times)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self
        local = threading.local()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as MLflow's client expects

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: the counts are the output

            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";", 1)[0], 16)
                        chunk = self.rfile.read(size)
                        self.rfile.readline()  # the CRLF after each chunk
                        if size == 0:
                            break
                        chunks.append(chunk)
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            def _forward(self) -> None:
                body = self._body()
                if not proxy.admit():
                    self.send_response(429, "Too Many Requests")
                    self.send_header("Retry-After", str(proxy.retry_after))
                    self.send_header("Content-Type", "application/json")
                    data = b'{"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "rate limit"}'
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                proxy.record(self.command, self.path)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if body is not None:
                    headers["Content-Length"] = str(len(body))
                for attempt in (1, 2):
                    conn = getattr(local, "conn", None)
                    if conn is None:
                        conn = local.conn = http.client.HTTPConnection(
                            proxy.upstream_host, proxy.upstream_port, timeout=300
                        )
                    try:
                        conn.request(self.command, self.path, body=body, headers=headers)
                        resp = conn.getresponse()
                        data = resp.read()
                        break
                    except (http.client.HTTPException, OSError):
                        conn.close()
                        local.conn = None
                        if attempt == 2:  # the server really is gone: tell the client
                            self.send_error(502)
                            return
                self.send_response(resp.status, resp.reason)
                for key, value in resp.getheaders():
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

        return Handler


def peak_per_second(times: list[float]) -> int:
    """The most of ``times`` (seconds, sorted or not) within any window of one second."""
    ordered, best, start = sorted(times), 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


class ThrottlingProxy(CountingProxy):
    """
    A :class:`CountingProxy` that answers ``429 Too Many Requests`` with ``Retry-After: 1``, as a
    hosted MLflow does, to a request arriving when ``rate`` requests were already forwarded within
    the last second (a sliding window). ``proxy.throttled`` counts those answers, ``proxy.refused``
    holds their arrival times.
    """

    def __init__(self, upstream: str, rate: int) -> None:
        super().__init__(upstream)
        self.rate = rate
        self.refused: list[float] = []
        self._window: list[float] = []
        self._gate = threading.Lock()

    @property
    def throttled(self) -> int:
        return len(self.refused)

    def admit(self) -> bool:
        with self._gate:
            now = time.monotonic()
            self._window = [t for t in self._window if now - t < 1.0]
            if len(self._window) >= self.rate:
                self.refused.append(now)
                return False
            self._window.append(now)
            return True

    def reset(self) -> None:
        super().reset()
        with self._gate:
            self.refused.clear()
            self._window.clear()
