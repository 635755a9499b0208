"""
The connection's request budget (extra ``max_requests_per_second``): one limiter per process and
(tracking URI, rate), shared by every hook of the process on that connection.

The limiter only waits: it spaces the provider's own requests ``1 / rate`` seconds apart and
never fails one. A server that still answers 429 or 503 is handled by MLflow's own retry (which
honours ``Retry-After``), with the connection's retry budget. Child processes (a BashOperator's
script, a virtualenv) have their own MLflow client and are not paced by this process's limiter.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["RequestLimiter", "limiter_for"]


class RequestLimiter:
    """
    Spaces calls of :meth:`wait` at least ``1 / rate`` seconds apart, across threads, in arrival
    order: no burst, so a server counting requests per second never sees more than ``rate``.
    """

    def __init__(self, rate: float) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        self.rate = rate
        self.interval = 1.0 / rate
        self._lock = threading.Lock()
        self._next = 0.0
        #: Seconds spent waiting, all threads together (for logs and the bench).
        self.waited = 0.0

    def wait(self) -> float:
        """Block until this caller's slot; return the seconds waited."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
            delay = slot - now
            self.waited += delay
        if delay > 0:
            time.sleep(delay)
        return delay


_limiters: dict[tuple[str, float], RequestLimiter] = {}
_registry_lock = threading.Lock()


def limiter_for(tracking_uri: str, rate: float) -> RequestLimiter:
    """The process's limiter for ``tracking_uri`` at ``rate`` requests per second."""
    key = (tracking_uri, float(rate))
    with _registry_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiters[key] = RequestLimiter(rate)
        return limiter


def _forget_after_fork() -> None:
    # A forked task process starts with its own limiters (and locks no parent thread may hold).
    global _registry_lock
    _registry_lock = threading.Lock()
    _limiters.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
