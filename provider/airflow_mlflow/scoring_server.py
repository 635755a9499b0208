"""
MLflow's scoring server as a child process of a task: ``mlflow models serve`` on a free loopback
port, in a process group of its own that :meth:`ScoringServer.stop` always ends, its output in a
file whose last lines a failure quotes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

#: Lines of the server's log quoted in a failure.
LOG_TAIL_LINES = 30
#: Seconds between a SIGTERM to the server's process group and a SIGKILL.
STOP_GRACE_S = 5.0


def free_port() -> int:
    """A loopback port nobody listens on now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def group_alive(pgid: int) -> bool:
    """Whether any live process (zombies aside) is in process group ``pgid``."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


class ScoringServer:
    """
    ``mlflow models serve`` for one model on a free loopback port, in a process group of its own
    whose output goes to ``log_path``; :meth:`stop` ends the whole group (the CLI and the uvicorn
    it starts), SIGTERM first, SIGKILL after :data:`STOP_GRACE_S`.
    """

    def __init__(
        self, model_uri: str, env: Mapping[str, str], log_path: Path, port: int | None = None
    ) -> None:
        self.model_uri = model_uri
        self.port = port or free_port()
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{self.port}"
        # The child's environment: this process's, the connection's URIs and credentials (never
        # on the command line), and this interpreter's scripts first on PATH, since the CLI
        # starts ``uvicorn`` by name.
        bindir = str(Path(sys.executable).parent)
        self._env = {**os.environ, **env, "PATH": os.pathsep.join([bindir, os.environ.get("PATH", "")])}
        self._proc: subprocess.Popen | None = None
        self.pid: int | None = None

    def start(self) -> ScoringServer:
        command = [
            sys.executable, "-m", "mlflow", "models", "serve",
            "-m", self.model_uri, "--env-manager", "local",
            "-h", "127.0.0.1", "-p", str(self.port), "-w", "1",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                command,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stop() reaches uvicorn too
            )
        self.pid = self._proc.pid
        return self

    def exited(self) -> bool:
        return self._proc is not None and self._proc.poll() is not None

    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def alive(self) -> bool:
        return self.pid is not None and group_alive(self.pid)

    def stop(self) -> None:
        """End the server's process group; safe to call more than once."""
        if self._proc is None or self.pid is None:
            return
        for sig, grace in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, STOP_GRACE_S)):
            if not self.alive():
                break
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self.alive():
                self._proc.poll()  # reap the CLI, so that it does not linger as a zombie
                time.sleep(0.05)
        try:
            self._proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, secrets: tuple[str, ...] = (), lines: int = LOG_TAIL_LINES) -> str:
        """The server log's last ``lines`` lines, with the connection's secrets replaced by ``***``."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        tail = "\n".join(text.splitlines()[-lines:])
        for secret in sorted(filter(None, secrets), key=len, reverse=True):
            tail = tail.replace(secret, "***")
        return tail
