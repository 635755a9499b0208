"""Artifact verbs of ``MLflowHook``: a run's files (upload, browse, read) and its logged models."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow_mlflow import compat
from airflow_mlflow.exceptions import MLflowInputError, MLflowResourceNotFoundError
from airflow_mlflow.hooks.base import MLflowHookBase
from airflow_mlflow.hooks.records import ArtifactEntry, LoggedModelRecord
from airflow_mlflow.hooks.search import filter_literal
from airflow_mlflow.validation import validate_artifact_folder, validate_artifact_tree


class ArtifactVerbs(MLflowHookBase):
    """A run's artifact files and its MLflow 3 logged models (verbs of ``MLflowHook``)."""

    def log_artifacts(
        self,
        run_id: str,
        local_path: str | os.PathLike,
        artifact_path: str | None = None,
        *,
        artifact_uri: str | None = None,
    ) -> None:
        """
        Upload a file or a directory to the run's artifacts. Given the run's ``artifact_uri``
        (known from creating it), MLflow need not read the run back first.
        """
        path = Path(local_path)
        if not path.exists():
            raise MLflowInputError(f"artifact {str(path)!r} does not exist")
        artifact_path = validate_artifact_folder(artifact_path)
        validate_artifact_tree(path, artifact_path)
        with self._call(f"artifacts of run {run_id}"), self.credentials_env():
            if artifact_uri is None:
                artifact_uri = self.client.get_run(run_id).info.artifact_uri
            repo = compat.artifact_repository(artifact_uri, self.config.tracking_uri)
            if path.is_dir():
                repo.log_artifacts(str(path), artifact_path)
            else:
                repo.log_artifact(str(path), artifact_path)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[str]:
        return [entry.path for entry in self.browse_artifacts(run_id, path)]

    def browse_artifacts(self, run_id: str, path: str | None = None) -> list[ArtifactEntry]:
        """
        One folder of a run's artifacts. Against a server this asks the server itself (with the
        hook's own credentials, never the process environment: the API server shares its process).
        """
        with self._call(f"artifacts of run {run_id}"):
            if self.config.is_http:
                params = {"run_id": run_id, **({"path": path} if path else {})}
                files = self._rest_get("/api/2.0/mlflow/artifacts/list", params).get("files", [])
                return [
                    ArtifactEntry(f["path"], bool(f.get("is_dir")), _int(f.get("file_size"))) for f in files
                ]
            return [
                ArtifactEntry(f.path, f.is_dir, f.file_size) for f in self.client.list_artifacts(run_id, path)
            ]

    def read_artifact(self, run_id: str, path: str, max_bytes: int) -> bytes:
        """
        The content of one artifact file, refused when larger than ``max_bytes``.

        :raises MLflowInputError: the file is too large, or ``path`` is a folder
        """
        folder, _, _ = path.rpartition("/")
        entry = next((e for e in self.browse_artifacts(run_id, folder or None) if e.path == path), None)
        if entry is None or entry.is_dir:
            raise MLflowInputError(f"artifact {path!r} of run {run_id} is not a file")
        if entry.size is not None and entry.size > max_bytes:
            raise MLflowInputError(
                f"artifact {path!r} of run {run_id} is {entry.size} bytes (limit {max_bytes})"
            )
        with self._call(f"artifact {path!r} of run {run_id}"):
            if self.config.is_http:
                data = self._rest_get_bytes("/get-artifact", {"run_id": run_id, "path": path}, max_bytes)
            else:
                import tempfile

                with tempfile.TemporaryDirectory() as tmp:
                    data = Path(self.client.download_artifacts(run_id, path, tmp)).read_bytes()
        if len(data) > max_bytes:  # the listing did not know its size
            raise MLflowInputError(
                f"artifact {path!r} of run {run_id} is over the limit of {max_bytes} bytes"
            )
        return data

    def logged_models_of_run(
        self, experiment_id: str, run_id: str, limit: int = 20
    ) -> list[LoggedModelRecord]:
        """
        The MLflow 3 logged models whose source is this run, oldest first (at most ``limit``),
        each with its flavors read from its ``MLmodel`` file (one request per model).
        """
        with self._call(f"logged models of run {run_id}"):
            found = self.client.search_logged_models(
                [experiment_id],
                filter_string=f"source_run_id = {filter_literal(run_id)}",
                max_results=limit,
                order_by=[{"field_name": "creation_time", "ascending": True}],
            )
        base = self.config.mlflow_ui_url
        records = []
        for model in found:
            url = f"{base}/#/experiments/{model.experiment_id}/models/{model.model_id}" if base else None
            latest: dict[str, tuple[int, int, float]] = {}
            for m in model.metrics or ():
                seen = latest.get(m.key)
                if seen is None or (m.step, m.timestamp) >= seen[:2]:
                    latest[m.key] = (m.step, m.timestamp, m.value)
            records.append(
                LoggedModelRecord(
                    model_id=model.model_id,
                    name=model.name,
                    experiment_id=model.experiment_id,
                    status=str(getattr(model.status, "name", model.status)),
                    created=model.creation_timestamp or 0,
                    flavors=self._logged_model_flavors(model.model_id, model.artifact_location),
                    metrics={key: value for key, (_, _, value) in sorted(latest.items())},
                    url=url,
                )
            )
        return records

    def _logged_model_flavors(self, model_id: str, artifact_location: str) -> tuple[str, ...]:
        """Flavor names of a logged model's ``MLmodel`` file; () when it has none (not uploaded yet)."""
        import yaml

        try:
            with self._call(f"MLmodel of logged model {model_id}"):
                if self.config.is_http:
                    endpoint = f"/ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/files"
                    data = self._rest_get_bytes(endpoint, {"artifact_file_path": "MLmodel"}, 1024 * 1024)
                else:
                    import tempfile

                    from mlflow.artifacts import download_artifacts

                    with tempfile.TemporaryDirectory() as tmp:
                        path = download_artifacts(
                            artifact_uri=f"{artifact_location.rstrip('/')}/MLmodel",
                            dst_path=tmp,
                            tracking_uri=self.config.tracking_uri,
                        )
                        data = Path(path).read_bytes()
        except MLflowResourceNotFoundError:
            return ()
        try:
            flavors = (yaml.safe_load(data) or {}).get("flavors") or {}
        except (yaml.YAMLError, AttributeError):
            return ()
        names = [str(name) for name in flavors if name != "python_function"]
        return tuple(names + (["python_function"] if "python_function" in flavors else []))


def _int(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None
