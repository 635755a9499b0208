"""Registry verbs of ``MLflowHook``: register, look up, tag, alias and stage model versions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from airflow_mlflow.dependency_warnings import quiet_stage_deprecation
from airflow_mlflow.exceptions import (
    MLflowEndpointNotFoundError,
    MLflowInputError,
    MLflowResourceNotFoundError,
)
from airflow_mlflow.hooks.base import MLflowHookBase
from airflow_mlflow.hooks.records import ModelRecord, VersionRecord
from airflow_mlflow.hooks.search import all_pages, filter_literal, name_filter
from airflow_mlflow.validation import normalize_stage, validate_registry_tags

#: Tries of a new alias whose insert another process won (see ``RegistryVerbs.set_alias``).
ALIAS_INSERT_ATTEMPTS = 3
#: How MLflow's SQL store reports that insert losing, per database: the alias table's key.
_ALIAS_KEY_CLASHES = ("registered_model_alias_pk", "UNIQUE constraint failed: registered_model_aliases")


def _lost_alias_insert_race(err: Exception) -> bool:
    return any(clash in str(err) for clash in _ALIAS_KEY_CLASHES)


class RegistryVerbs(MLflowHookBase):
    """Register, look up, tag, alias and stage model versions (verbs of ``MLflowHook``)."""

    def register_model_version(
        self,
        model_uri: str,
        name: str,
        *,
        tags: Mapping[str, Any] | None = None,
        description: str | None = None,
        timeout: int = 300,
    ) -> VersionRecord:
        """
        Register ``model_uri`` (``runs:/…``, ``models:/m-…``, ``models:/<name>/<version>``) as a new
        version of ``name`` and wait until it is READY. MLflow's own ``register_model`` resolves
        the URI; it runs with this connection's URIs and credentials scoped to the call.
        """
        import mlflow

        if not model_uri or not isinstance(model_uri, str):
            raise MLflowInputError(f"model_uri must be a non-empty string, got {model_uri!r}")
        if not name or not isinstance(name, str):
            raise MLflowInputError(f"name must be a non-empty string, got {name!r}")
        clean_tags = validate_registry_tags(tags)
        with self._call(f"registering {model_uri!r} as model {name!r}"), self.user_code_env():
            mv = mlflow.register_model(model_uri, name, await_registration_for=timeout, tags=clean_tags)
        version = str(mv.version)
        with self._call(f"model {name!r} version {version}"):
            if description:
                self.client.update_model_version(name, version, description=description)
            mv = self.client.get_model_version(name, version)
        if str(mv.status) != "READY":
            raise MLflowInputError(
                f"model {name!r} version {version} is {mv.status} after {timeout}s: {mv.status_message}"
            )
        return VersionRecord.from_version(mv)

    def get_model_version(self, name: str, version: str | int) -> VersionRecord:
        with self._call(f"model {name!r} version {version}"):
            return VersionRecord.from_version(self.client.get_model_version(name, str(version)))

    def get_version_by_alias(self, name: str, alias: str) -> VersionRecord | None:
        """The version behind ``alias``, or None when the alias is not set."""
        try:
            with self._call(f"model {name!r} alias {alias!r}", alias_lookup=True):
                mv = self.client.get_model_version_by_alias(name, alias)
        except MLflowEndpointNotFoundError:
            raise
        except MLflowResourceNotFoundError:
            # A missing alias or a missing model: both mean "nothing there yet" to a gate.
            return None
        return VersionRecord.from_version(mv)

    def get_version_by_stage(self, name: str, stage: str) -> VersionRecord | None:
        """The newest version in ``stage``, or None."""
        return next((v for v in self.list_versions(name) if v.current_stage == normalize_stage(stage)), None)

    def list_versions(self, name: str) -> list[VersionRecord]:
        """Every version of ``name``, newest first (empty when the model does not exist)."""
        with self._call(f"versions of model {name!r}"):
            found = self.client.search_model_versions(name_filter(name), max_results=10000)
        return sorted(
            (VersionRecord.from_version(v) for v in found if v.name == name), key=lambda v: -int(v.version)
        )

    def set_version_tags(self, name: str, version: str, tags: Mapping[str, Any]) -> None:
        with self._call(f"model {name!r} version {version}"):
            for key, value in validate_registry_tags(tags).items():
                self.client.set_model_version_tag(name, version, key, value)

    def list_models(self) -> list[ModelRecord]:
        """Every registered model (all pages), by name."""
        with self._call("registered models"):
            found = all_pages(
                lambda token: self.client.search_registered_models(max_results=1000, page_token=token)
            )
        return sorted((ModelRecord.from_model(m) for m in found), key=lambda m: m.name)

    def get_model(self, name: str) -> ModelRecord:
        """One registered model, with its aliases (searches leave them out)."""
        with self._call(f"model {name!r}"):
            return ModelRecord.from_model(self.client.get_registered_model(name))

    def get_model_tags(self, name: str) -> dict[str, str]:
        with self._call(f"model {name!r}"):
            return dict(self.client.get_registered_model(name).tags or {})

    def set_model_tags(self, name: str, tags: Mapping[str, Any]) -> None:
        with self._call(f"model {name!r}"):
            for key, value in validate_registry_tags(tags).items():
                self.client.set_registered_model_tag(name, key, value)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """
        Point ``alias`` at ``version``. MLflow's SQL store inserts an alias it does not find, so two
        processes setting a new alias at once make one of them fail on the table's key (seen with
        ten overlapping DAG runs on PostgreSQL); setting an alias is idempotent, and the alias
        exists then, so that one is tried again.
        """
        from mlflow.exceptions import MlflowException

        with self._call(f"model {name!r} alias {alias!r}"):
            for attempt in range(1, ALIAS_INSERT_ATTEMPTS + 1):
                try:
                    self.client.set_registered_model_alias(name, alias, version)
                    return
                except MlflowException as err:
                    if attempt == ALIAS_INSERT_ATTEMPTS or not _lost_alias_insert_race(err):
                        raise

    def transition_stage(self, name: str, version: str, stage: str, archive_existing: bool = False) -> None:
        with self._call(f"model {name!r} version {version}"), quiet_stage_deprecation():
            self.client.transition_model_version_stage(
                name, version, normalize_stage(stage), archive_existing_versions=archive_existing
            )

    def version_metrics(self, version: VersionRecord) -> dict[str, float]:
        """
        Latest metrics of the version's source run, completed by its MLflow 3 logged model's
        metrics for names the run does not have.
        """
        return self.version_source(version)[0]

    def version_source(self, version: VersionRecord) -> tuple[dict[str, float], dict[str, str]]:
        """The version's metrics (see :meth:`version_metrics`) and its source run's tags."""
        metrics: dict[str, float] = {}
        tags: dict[str, str] = {}
        with self._call(f"metrics of model {version.name!r} version {version.version}"):
            if version.model_id:
                for metric in self.client.get_logged_model(version.model_id).metrics or ():
                    metrics[metric.key] = metric.value
            if version.run_id:
                run = self.client.get_run(version.run_id)
                metrics.update(run.data.metrics)
                tags.update(run.data.tags)
        return metrics, tags

    def versions_with_tags(self, tags: Mapping[str, str]) -> list[VersionRecord]:
        """Versions of any model whose tags equal ``tags``, newest first (aliases not included)."""
        clauses = " and ".join(f"tags.`{k}` = {filter_literal(v)}" for k, v in tags.items())
        with self._call(f"versions tagged {dict(tags)}"):
            found = self.client.search_model_versions(clauses, max_results=10000)
        return sorted((VersionRecord.from_version(v) for v in found), key=lambda v: (v.name, -int(v.version)))

    def versions_of_runs(self, run_ids: list[str]) -> list[VersionRecord]:
        """Versions registered from any of these runs, newest first (aliases not included)."""
        found = []
        with self._call(f"versions of runs {', '.join(run_ids[:3])}{' …' if len(run_ids) > 3 else ''}"):
            for start in range(0, len(run_ids), 50):
                ids = ", ".join(f"'{r}'" for r in run_ids[start : start + 50] if r.isalnum())
                if ids:
                    found.extend(self.client.search_model_versions(f"run_id IN ({ids})", max_results=10000))
        return sorted((VersionRecord.from_version(v) for v in found), key=lambda v: (v.name, -int(v.version)))

    def model_version_url(self, name: str, version: str) -> str | None:
        """The version's page in MLflow's UI, when a UI is known."""
        base = self.config.mlflow_ui_url
        return f"{base}/#/models/{quote(name, safe='')}/versions/{version}" if base else None


def dumps(value: Any) -> str:
    """Compact JSON for tag values."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
