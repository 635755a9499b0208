"""A process forked while another thread resolves a hook can still resolve its own hooks.

The scheduler's listener threads resolve hooks while the LocalExecutor forks its workers from the
scheduler, and task processes are forked from those workers. ``functools.cached_property`` on
Python 3.11 takes one lock per property for every instance: a child forked while a thread of the
parent was inside ``hook.config`` inherited that lock held by a thread that no longer exists, and
its first ``hook.config`` waited forever (a ``@task.mlflow`` task hung in the fault tier).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from airflow_mlflow.hooks import base
from airflow_mlflow.hooks.config import MLflowConnectionConfig
from airflow_mlflow.hooks.mlflow import MLflowHook

#: How long the child may take to resolve a hook before it counts as hung.
CHILD_SECONDS = 5


def _wait_for(pid: int, seconds: float) -> int | None:
    """The child's wait status, or None if it is still running after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.05)
    return None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is what the LocalExecutor does on Linux")
def test_child_forked_during_resolution_resolves_its_own_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    inside, release = threading.Event(), threading.Event()

    def slow_resolution(conn_id: str, team_name: str | None) -> MLflowConnectionConfig:
        inside.set()
        release.wait(30)
        return MLflowConnectionConfig.embedded_default()

    monkeypatch.setattr(base, "resolve_config", slow_resolution)
    resolver = threading.Thread(target=lambda: MLflowHook(mlflow_conn_id="listener").config, daemon=True)
    resolver.start()
    assert inside.wait(10), "the resolving thread never started"
    pid = os.fork()
    if pid == 0:  # the task process: its own hook, resolved without waiting for anyone
        try:
            signal.alarm(CHILD_SECONDS)
            base.resolve_config = lambda conn_id, team_name: MLflowConnectionConfig.embedded_default()
            config = MLflowHook(mlflow_conn_id="task").config
            os._exit(0 if config.embedded else 3)
        except BaseException:
            os._exit(4)
    try:
        status = _wait_for(pid, CHILD_SECONDS + 10)
    finally:
        release.set()
        resolver.join(10)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert status is not None, "the child never finished"
    assert os.WIFEXITED(status), f"the child hung in hook.config (killed by signal {os.WTERMSIG(status)})"
    assert os.WEXITSTATUS(status) == 0
