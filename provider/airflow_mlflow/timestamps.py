"""The two clocks the provider writes: MLflow's epoch milliseconds and ISO 8601 UTC tag values."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Now, in epoch milliseconds (MLflow's run and metric timestamps)."""
    return int(time.time() * 1000)


def iso_utc(seconds: float | None = None) -> str:
    """``2026-11-30T12:00:00Z`` for ``seconds`` since the epoch (default now): registry tag values."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
