"""
MLflow Projects' internals the provider relies on, in one seam (as :mod:`airflow_mlflow.compat`
is for the rest; ``tests/unit/test_compat.py`` exercises each one against the installed MLflow).

It imports neither Airflow nor the rest of the provider: the project runner
(:mod:`airflow_mlflow.hooks.project_runner`) runs where only MLflow and the project's needs are.
"""

from __future__ import annotations


def fetch_project(uri: str, version: str | None) -> str:
    """
    The local folder of project ``uri`` (a local folder as is; a git URI or zip cloned into a
    temporary one; ``#sub/dir`` honoured), as ``mlflow run`` fetches it. MLflow has no public
    verb for the fetch alone: the provider needs it to tell a failed fetch (retried) from a bad
    project (not retried) before the run starts.
    """
    from mlflow.projects.utils import _fetch_project

    return _fetch_project(uri=uri, version=version)


def has_mlproject(folder: str) -> bool:
    """Whether ``folder`` holds an ``MLproject`` file (any case, as MLflow looks for it)."""
    from mlflow.projects._project_spec import _find_mlproject

    return _find_mlproject(folder) is not None


def project_source_tags(source: str, entry_point: str, version: str | None, folder: str) -> dict[str, str]:
    """MLflow's own tags of a project run (as ``mlflow run`` sets them): source, entry point, git."""
    from mlflow.entities import SourceType
    from mlflow.utils import mlflow_tags
    from mlflow.utils.git_utils import get_git_commit, get_git_repo_url

    tags = {
        mlflow_tags.MLFLOW_SOURCE_NAME: source,
        mlflow_tags.MLFLOW_SOURCE_TYPE: SourceType.to_string(SourceType.PROJECT),
        mlflow_tags.MLFLOW_PROJECT_ENTRY_POINT: entry_point,
    }
    if commit := get_git_commit(folder):
        tags[mlflow_tags.MLFLOW_GIT_COMMIT] = commit
    if repo_url := get_git_repo_url(folder):
        tags[mlflow_tags.MLFLOW_GIT_REPO_URL] = repo_url
    if version:
        tags[mlflow_tags.MLFLOW_GIT_BRANCH] = version
    return tags
