"""Start worker processes so that they act at the same moment, and collect what they print."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def conn_json(url: str) -> str:
    """An ``mlflow`` connection (JSON, for ``AIRFLOW_CONN_*``) to the server at ``url``."""
    host, port = url.removeprefix("http://").split(":")
    return json.dumps({"conn_type": "mlflow", "host": host, "port": int(port)})


def start_together(script: Path, arg_lists: list[list[str]], server_url: str, go: Path) -> list[dict]:
    """
    Run ``script`` once per argument list. Each worker imports everything, prints ``ready`` and
    waits for the file ``go`` (passed as its last argument); the last line it prints is JSON.
    """
    env = {**os.environ, "AIRFLOW_CONN_MLFLOW_DEFAULT": conn_json(server_url), "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), *args, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for args in arg_lists
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results
