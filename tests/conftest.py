"""Settings shared by every test tier.

Tier-specific fixtures live next to the tests: ``tests/unit/conftest.py``,
``tests/integration/conftest.py`` and ``tests/e2e/conftest.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import configure_airflow_home, migrate_airflow_db

# Before anything imports airflow: it reads AIRFLOW_HOME once, at import.
configure_airflow_home()

# The MLflow client retries 7 times with exponential backoff and waits up to 120 s per request.
# In tests that turns a refused connection or a 5xx into minutes of silence, so fail fast.
# setdefault keeps a value a developer exported on purpose; only this test process is affected.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

_TESTS_DIR = Path(__file__).resolve().parent
# First directory below tests/ -> marker name. Markers are registered in pyproject.toml.
_TIER_MARKERS = {
    "unit": pytest.mark.unit,
    "integration": pytest.mark.integration,
    "e2e": pytest.mark.e2e,
    "faults": pytest.mark.faults,
    "lint": pytest.mark.lint,
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier, taken from its directory, so ``-m unit`` etc. select a tier."""
    for item in items:
        try:
            tier = item.path.resolve().relative_to(_TESTS_DIR).parts[0]
        except (ValueError, IndexError):
            continue
        marker = _TIER_MARKERS.get(tier)
        if marker is not None and item.get_closest_marker(tier) is None:
            item.add_marker(marker)


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated Airflow metadata DB (SQLite, once per session) for ``dag.test()``."""
    migrate_airflow_db()


def pytest_unconfigure(config: pytest.Config) -> None:
    """
    Drop DAG-run finalizations still retrying against stores and servers the tests are done with:
    at exit the listener would wait up to a minute for them.
    """
    import sys

    listener = sys.modules.get("airflow_mlflow.plugins.listener")
    if listener is not None and hasattr(listener, "reset"):
        listener.reset()
