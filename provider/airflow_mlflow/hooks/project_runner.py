"""
Runs one MLflow Project into an existing run, in a process of its own.

Started by :meth:`~airflow_mlflow.hooks.projects.ProjectVerbs.start_project` as
``python -m airflow_mlflow.hooks.project_runner``, with the connection's URIs and credentials in
its environment only (never on its command line), the run to write into in ``MLFLOW_RUN_ID``, and
the project on stdin as JSON: ``uri``, ``entry_point``, ``parameters``, ``version``,
``env_manager``, ``run_id``, ``experiment_id``, ``storage_dir``, ``result_path``.

It does what ``mlflow run`` does for a run it creates, applied to that run: fetch the project
(a git URI is cloned), check the entry point and its parameters, log the parameters and the
project's source tags, then ``mlflow.projects.run(..., run_id=...)`` runs the entry point, whose
MLflow calls land in the same run. What happened is written to ``result_path`` as JSON
(``status``: ``finished``, ``failed`` (the entry point), ``invalid`` (the project, entry point or
parameters), ``fetch_failed`` or ``error``, with ``message``). It imports neither Airflow nor the
rest of the provider: it runs where only MLflow (skinny) and the project's needs are installed.

MLflow internals it relies on go through :mod:`airflow_mlflow.compat_projects` (fetching apart
from validating: a network error while cloning may be retried, an unknown entry point may not);
the entry point's ``compute_parameters`` gives the values ``mlflow run`` logs.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from typing import Any

#: Error codes of MLflow meaning the request itself was wrong (a retry sends it again unchanged).
_PERMANENT_CODES = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "RESOURCE_DOES_NOT_EXIST", "PERMISSION_DENIED"}


def _source_tags(uri: str, entry_point: str, version: str | None, work_dir: str) -> dict[str, str]:
    """MLflow's own tags of a project run (as ``mlflow run`` sets them), for this project."""
    from airflow_mlflow import compat_projects as compat

    # A token in an https git URI's userinfo stays out of the run.
    return compat.project_source_tags(re.sub(r"://[^/@]*@", "://", uri), entry_point, version, work_dir)


def run_project(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the project ``spec`` describes; what happened, as the result file holds it."""
    import mlflow.projects
    from mlflow.entities import Param, RunTag
    from mlflow.exceptions import ExecutionException, MlflowException
    from mlflow.projects import utils

    from airflow_mlflow import compat_projects as compat

    uri, entry_point, run_id = spec["uri"], spec["entry_point"], spec["run_id"]
    parameters = {str(k): v for k, v in (spec.get("parameters") or {}).items()}
    try:
        work_dir = compat.fetch_project(uri, spec.get("version"))
    except Exception as err:  # a clone that failed (network, git), or a bad "#subdirectory"
        return {"status": "fetch_failed", "message": f"fetching project {uri!r}: {err}"}
    try:
        if not compat.has_mlproject(work_dir):
            raise ExecutionException(f"no MLproject file in {work_dir}")
        project = utils.load_project(work_dir)
        entry = project.get_entry_point(entry_point)
        final, extra = entry.compute_parameters(parameters, storage_dir=None)
    except ExecutionException as err:
        return {
            "status": "invalid",
            "message": f"project {uri!r}, entry point {entry_point!r}: {err.message}",
        }
    logged = {**final, **extra}
    tags = _source_tags(uri, entry_point, spec.get("version"), work_dir)
    client = mlflow.MlflowClient()
    try:
        client.log_batch(
            run_id,
            params=[Param(k, str(v)) for k, v in logged.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        mlflow.projects.run(
            work_dir,
            entry_point=entry_point,
            parameters=parameters,
            experiment_id=spec["experiment_id"],
            run_id=run_id,
            env_manager=spec.get("env_manager") or "local",
            storage_dir=spec.get("storage_dir"),
            backend="local",
            synchronous=True,
        )
    except ExecutionException as err:  # the entry point exited non-zero, or its environment failed
        return {"status": "failed", "message": err.message, "parameters": logged, "tags": tags}
    except MlflowException as err:
        status = "invalid" if err.error_code in _PERMANENT_CODES else "error"
        return {"status": status, "message": err.message, "error_code": err.error_code}
    return {"status": "finished", "parameters": logged, "tags": tags}


def main() -> int:
    spec = json.loads(sys.stdin.read())
    try:
        result = run_project(spec)
    except Exception as err:  # reported to the task, which fails (and may retry)
        traceback.print_exc()
        result = {"status": "error", "message": f"{type(err).__name__}: {err}"}
    with open(spec["result_path"], "w", encoding="utf-8") as out:
        json.dump(result, out)
    return 0 if result["status"] == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
