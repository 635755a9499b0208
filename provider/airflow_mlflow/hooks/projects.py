"""
Project verbs of ``MLflowHook``: run an MLflow Project into a run, in a process the task owns.

The project runs in a child process (:mod:`airflow_mlflow.hooks.project_runner`) that leads a
process group of its own: the task reads its output line by line, learns its outcome from a
result file, and stops the whole group (the runner, the entry point's shell, whatever that
started) when the task is killed or times out. The connection's URIs and credentials are in that
child's environment only: never in the task process's ``os.environ``, never on a command line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from airflow_mlflow.hooks.base import MLflowHookBase
from airflow_mlflow.hooks.config import redact

#: ``mlflow.projects.run``'s environment managers (``docker_env`` projects use Docker whatever this says).
ENV_MANAGERS = ("local", "virtualenv", "uv", "conda")


class ProjectProcess:
    """
    A project running in its own process group: its output, its outcome, a way to stop it.

    :param proc: the runner process, leader of its process group
    :param workspace: the temporary folder of this run (result file, clones, downloads), removed
        by :meth:`close`
    :param secrets: strings to blank out of every output line
    """

    def __init__(
        self, proc: subprocess.Popen, workspace: tempfile.TemporaryDirectory, secrets: tuple[str, ...]
    ):
        self.proc = proc
        self.workspace = workspace
        self.secrets = secrets

    @property
    def result_path(self) -> Path:
        return Path(self.workspace.name) / "result.json"

    def lines(self) -> Iterator[str]:
        """The project's output (the runner's, MLflow's and the entry point's), line by line."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            yield redact(line.rstrip("\r\n"), self.secrets)

    def wait(self) -> dict[str, Any]:
        """
        The outcome once the runner has exited: the result file's ``status`` (``finished``,
        ``failed``, ``invalid``, ``fetch_failed``, ``error``) and ``message``, or ``killed`` when
        the runner ended without writing it (a signal); ``returncode`` always.
        """
        returncode = self.proc.wait()
        try:
            result = json.loads(self.result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            result = {"status": "killed", "message": f"the project's process ended with status {returncode}"}
        result["returncode"] = returncode
        if "message" in result:
            result["message"] = redact(str(result["message"]), self.secrets)
        return result

    def stop(self, grace: float = 10.0) -> None:
        """
        Stop every process of the group: SIGTERM, then SIGKILL after ``grace`` seconds. Also after
        the runner exited: an entry point may leave processes of its own behind.
        """
        if not self._signal(signal.SIGTERM):
            return
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        self._signal(signal.SIGKILL)
        self.proc.wait()

    def _signal(self, sig: int) -> bool:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):  # the whole group is gone already
            return False
        return True

    def close(self, grace: float = 10.0) -> None:
        """Stop what is left of the group (see :meth:`stop`) and remove the temporary folder."""
        self.stop(grace)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.workspace.cleanup()


class ProjectVerbs(MLflowHookBase):
    """Run MLflow Projects (verbs of ``MLflowHook``)."""

    def start_project(
        self,
        uri: str,
        entry_point: str,
        parameters: Mapping[str, Any],
        *,
        run_id: str,
        experiment_id: str,
        experiment_name: str,
        version: str | None = None,
        env_manager: str = "local",
    ) -> ProjectProcess:
        """
        Start the project at ``uri`` (a local folder, a git URI, ``...#subdirectory``) so that it
        runs in ``run_id`` (an existing run: the task's), and return its process.

        The child gets this process's environment plus the connection's MLflow variables
        (:meth:`child_env`), the interpreter's folder first on ``PATH`` (so that an entry point's
        ``python`` is this worker's, which ``env_manager="local"`` means), unbuffered Python
        output, and ``TMPDIR`` in the run's temporary folder (MLflow clones git projects there).
        """
        workspace = tempfile.TemporaryDirectory(prefix="mlflow-project-")
        spec = {
            "uri": uri,
            "entry_point": entry_point,
            "parameters": dict(parameters),
            "version": version,
            "env_manager": env_manager,
            "run_id": run_id,
            "experiment_id": experiment_id,
            "storage_dir": str(Path(workspace.name) / "storage"),
            "result_path": str(Path(workspace.name) / "result.json"),
        }
        env = {
            **os.environ,
            **self.child_env(run_id, experiment_id, experiment_name),
            "PATH": os.pathsep.join(filter(None, (str(Path(sys.executable).parent), os.environ.get("PATH")))),
            "PYTHONUNBUFFERED": "1",
            "TMPDIR": workspace.name,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow_mlflow.hooks.project_runner"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workspace.name,
            start_new_session=True,  # a process group of its own: stopped as a whole
            text=True,
            errors="replace",
            bufsize=1,
        )
        assert proc.stdin is not None
        try:
            with proc.stdin:
                proc.stdin.write(json.dumps(spec))
        except BrokenPipeError:  # the runner died at once: its output and status say why
            pass
        return ProjectProcess(proc, workspace, self.config.secrets)
