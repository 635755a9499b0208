"""``MLflowProjectOperator``: an MLflow Project's entry point as a task, in the task's own run."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from airflow_mlflow.operators.base import MLflowBaseOperator, TrackedRunMixin
from airflow_mlflow.validation import check_literals, is_templated, serializable_literals

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlflow.hooks.projects import ProjectProcess

#: ``mlflow.projects.run``'s environment managers. ``local``: the worker's own interpreter and
#: packages. A project with a ``docker_env`` runs in Docker whatever this says.
ENV_MANAGERS = ("local", "virtualenv", "uv", "conda")
#: Output lines of a failed project quoted in the task's error (all of them are in the task log).
ERROR_TAIL_LINES = 15
_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")  # git@github.com:org/repo.git


def _invalid(message: str) -> Exception:
    from airflow_mlflow.exceptions import MLflowInputError

    return MLflowInputError(message)


def is_remote_uri(uri: str) -> bool:
    """A URI MLflow fetches (git over https/ssh, ``git@host:repo``, a zip URL), not a local folder."""
    scheme = urlsplit(uri).scheme
    return (len(scheme) > 1 and scheme != "file") or bool(_SCP_LIKE.match(uri))


def local_project(uri: str, base: Path) -> str:
    """
    The absolute form of a local project ``uri`` (a folder, ``file://``, with an optional
    ``#subdirectory``), a relative folder taken from ``base``; refused unless the folder holds an
    ``MLproject`` file.
    """
    path, _, subdirectory = uri.partition("#")
    if path.startswith("file://"):
        path = unquote(urlsplit(path).path)
    folder = Path(path).expanduser()
    if not folder.is_absolute():
        folder = base / folder
    if not folder.is_dir():
        raise _invalid(f"uri {uri!r}: {folder} is not a folder (a relative uri is taken from {base})")
    project = folder / subdirectory if subdirectory else folder
    if not project.is_dir() or not any(p.name.lower() == "mlproject" for p in project.iterdir()):
        raise _invalid(f"uri {uri!r}: no MLproject file in {project}")
    return str(folder) + (f"#{subdirectory}" if subdirectory else "")


class MLflowProjectOperator(TrackedRunMixin, MLflowBaseOperator):
    """
    Run an entry point of an MLflow Project (``mlflow.projects.run``) as the task's MLflow run.

    The task's run (a child of its DAG run's run, reopened on a retry) is the project's run: the
    parameters are logged on it as ``mlflow run`` logs them (defaults included), with MLflow's
    project source tags, and the entry point's ``mlflow.start_run()`` / ``mlflow.log_*`` calls land
    in it. The project runs in a process group of its own, started by the task with the
    connection's URIs and credentials in that process's environment only; its output (MLflow's
    and the entry point's) streams into the task log.

    The run's outcome is the task's: an entry point that exits non-zero fails the task with
    :class:`~airflow_mlflow.exceptions.MLflowProjectRunError`, retried as configured (its last
    output lines are in the error); a missing ``MLproject``, an unknown entry point or a missing
    required parameter fail it with :class:`~airflow_mlflow.exceptions.MLflowInputError`, never
    retried. A killed or timed-out task stops the whole process group (SIGTERM, then SIGKILL after
    ``stop_grace_period``) and its run ends KILLED.

    :param uri: the project: a local folder (relative: from the DAG file's folder), ``file://``,
        or a git URI the worker can fetch (``https://github.com/org/repo``, ``git@host:org/repo``),
        each with an optional ``#subdirectory`` (templated)
    :param entry_point: the entry point to run (default ``main``) (templated)
    :param parameters: entry point parameters; values are logged as the run's params (templated)
    :param version: git commit or branch of a git project (templated)
    :param env_manager: ``local`` (default: the worker's interpreter; ``python`` in the entry point
        is that interpreter), ``virtualenv``, ``uv`` or ``conda``
    :param experiment_name: experiment of the task's run; default: the connection's
        ``experiment_name`` extra, else the DAG id (templated)
    :param nested: nest the task's run under one run per DAG run (default True)
    :param stop_grace_period: seconds between SIGTERM and SIGKILL when the task is stopped
    :param mlflow_conn_id: the ``mlflow`` connection (templated)
    :return: the run (``run_id``, ``experiment_id``, ``parent_run_id``, ``run_url``) and
        ``project``: ``uri``, ``entry_point``, ``version``, ``parameters`` (as logged), ``git_commit``
    """

    template_fields: Sequence[str] = (
        "mlflow_conn_id",
        "uri",
        "entry_point",
        "parameters",
        "version",
        "experiment_name",
    )
    template_fields_renderers = {"parameters": "json"}
    ui_color = "#d6ecfa"

    def __init__(
        self,
        *,
        uri: str,
        entry_point: str = "main",
        parameters: Mapping[str, Any] | None = None,
        version: str | None = None,
        env_manager: str = "local",
        experiment_name: str | None = None,
        nested: bool = True,
        stop_grace_period: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if env_manager not in ENV_MANAGERS:
            raise _invalid(f"env_manager must be one of {ENV_MANAGERS}, got {env_manager!r}")
        check_literals(params=parameters)
        self.uri = uri
        self.entry_point = entry_point
        self.parameters = serializable_literals(parameters or {})
        self.version = version
        self.env_manager = env_manager
        self.experiment_name = experiment_name
        self.nested = nested
        self.stop_grace_period = stop_grace_period
        #: The project running now (``on_kill`` stops it), and whether the task is being killed.
        self._project: ProjectProcess | None = None
        self._stopped = False

    def _project_uri(self) -> str:
        if not isinstance(self.uri, str) or not self.uri.strip():
            raise _invalid(f"uri must be a non-empty string, got {self.uri!r}")
        uri = self.uri.strip()
        if is_remote_uri(uri):
            return uri
        fileloc = getattr(self.dag, "fileloc", None) if self.has_dag() else None
        return local_project(uri, Path(fileloc).parent if fileloc else Path.cwd())

    def _parameters(self) -> dict[str, str]:
        from airflow_mlflow.validation import validate_params

        if is_templated(self.parameters) or not isinstance(self.parameters, Mapping):
            raise _invalid(f"parameters must be a mapping, got {self.parameters!r}")
        for key, value in self.parameters.items():
            if not isinstance(value, (str, int, float, bool)):
                raise _invalid(f"parameters: {key!r} must be a string or a number, got {value!r}")
        return validate_params(self.parameters)

    def execute(self, context: Context) -> dict[str, Any]:
        uri = self._project_uri()
        if not isinstance(self.entry_point, str) or not self.entry_point.strip():
            raise _invalid(f"entry_point must be a non-empty string, got {self.entry_point!r}")
        parameters = self._parameters()
        self._stopped = False
        with self.tracked_run(context) as run:
            task_run = run.run
            project = self.hook.start_project(
                uri,
                self.entry_point,
                parameters,
                run_id=task_run.run_id,
                experiment_id=task_run.experiment_id,
                experiment_name=self._experiment_name(context),
                version=self.version or None,
                env_manager=self.env_manager,
            )
            self._project = project
            tail: deque[str] = deque(maxlen=ERROR_TAIL_LINES)
            self.log.info("MLflow project %s, entry point %r: output follows", uri, self.entry_point)
            try:
                for line in project.lines():
                    self.log.info("[project] %s", line)
                    tail.append(line[:500])
                outcome = project.wait()
            finally:
                self._project = None
                project.close(self.stop_grace_period)  # a timeout ends up here too
            self._check(outcome, uri, tail)
            tags = outcome.get("tags") or {}
            return {
                **task_run.to_json(),
                "project": {
                    "uri": self.uri,
                    "entry_point": self.entry_point,
                    "version": self.version or None,
                    "parameters": outcome.get("parameters") or {},
                    "git_commit": tags.get("mlflow.source.git.commit"),
                },
            }

    def _experiment_name(self, context: Context) -> str:
        from airflow_mlflow.runs import resolve_experiment_name

        return resolve_experiment_name(self.hook, self.experiment_name, context["ti"].dag_id)

    def _check(self, outcome: dict[str, Any], uri: str, tail: deque[str]) -> None:
        """Raise the task's error for a project that did not finish."""
        from airflow.sdk.exceptions import AirflowTaskTerminated

        from airflow_mlflow.exceptions import MLflowProjectRunError, MLflowProviderError

        status = outcome["status"]
        if status == "finished":
            return
        what = f"MLflow project {uri!r}, entry point {self.entry_point!r}"
        message = outcome.get("message") or ""
        if self._stopped:
            raise AirflowTaskTerminated(f"{what}: stopped, the task was killed")
        if status == "invalid":
            raise _invalid(message or what)
        output = "\n".join(tail)
        detail = f"{what} failed: {message}" + (f"\nLast lines of its output:\n{output}" if output else "")
        if status in ("failed", "fetch_failed", "killed"):
            raise MLflowProjectRunError(detail)
        raise MLflowProviderError(detail)

    def on_kill(self) -> None:
        """Stop the project's whole process group, then end the run KILLED."""
        project = self._project
        if project is not None:
            self._stopped = True
            project.stop(self.stop_grace_period)
        super().on_kill()
