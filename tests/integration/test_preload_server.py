"""``airflow_mlflow.preload`` against a real ``mlflow server``: a tracked task's requests (request
headers, REST stores, proxied artifacts) import nothing the preload did not."""

from __future__ import annotations

import json
import os
import uuid

from tests.integration._mlflow_servers import MLflowServer
from tests.unit.test_preload import TASK, _run


def test_a_tracked_tasks_requests_import_nothing_the_preload_did_not(mlflow_server: MLflowServer) -> None:
    conn = {"conn_type": "mlflow", "host": mlflow_server.host, "port": mlflow_server.port, "schema": "http"}
    env = {**os.environ, "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(conn)}
    assert _run(TASK, "", f"preload-{uuid.uuid4().hex[:8]}", env=env) == []
    # Its artifact has a name of its own: other tests look for theirs on the same session server.
    assert len(list(mlflow_server.artifacts_dir.rglob("preload-probe.txt"))) >= 1
