"""Shared test set-up: an isolated AIRFLOW_HOME, a migrated Airflow DB, and MLflow stores.

Airflow reads AIRFLOW_HOME when it is first imported, so ``configure_airflow_home()`` runs
from the conftest files before anything imports airflow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

_HOME: Path | None = None


def configure_airflow_home() -> Path:
    global _HOME
    if _HOME is None:
        _HOME = Path(os.environ.get("AMLF_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="amlf-airflow-"))
        os.environ["AIRFLOW_HOME"] = str(_HOME)
        os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
        os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).parent / "dags")
        os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    return _HOME


def migrate_airflow_db() -> None:
    home = configure_airflow_home()
    marker = home / ".migrated"
    if not marker.exists():
        airflow = Path(sys.executable).with_name("airflow")
        subprocess.run(
            [str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy()
        )
        marker.touch()


def migrated_mlflow_db(folder: Path) -> Path:
    """A SQLite MLflow store migrated once; callers copy it (as MLflow's own tests do)."""
    path = folder / "template.db"
    if not path.exists():
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        SqlAlchemyStore(f"sqlite:///{path}", (folder / "unused-artifacts").as_uri()).engine.dispose()
    return path


def mlflow_conn_json(tracking_uri: str, **extra: object) -> str:
    return json.dumps({"conn_type": "mlflow", "extra": {"tracking_uri": tracking_uri, **extra}})


def copy_store(template: Path, dest: Path) -> str:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, dest / "mlflow.db")
    return f"sqlite:///{dest / 'mlflow.db'}"


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    """Call ``probe`` until it returns something truthy; raise ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last: {value!r})")
        time.sleep(interval)


class RecordingTI:
    """The task instance an operator's ``execute`` sees in a unit test: it records XCom pushes."""

    dag_id, run_id, task_id, map_index, try_number = "d", "manual__1", "t", -1, 1

    def __init__(self):
        self.xcom = {}

    def xcom_push(self, key, value):
        self.xcom[key] = value


def operator_context() -> dict:
    """A minimal stand-in for Airflow's context: a recording task instance and outlet events."""
    return {"ti": RecordingTI(), "logical_date": None, "outlet_events": defaultdict(SimpleNamespace)}
