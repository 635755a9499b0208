"""Plain, JSON-friendly views of MLflow's entities: what the hook's verbs return."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion, RegisteredModel


@dataclass(frozen=True)
class RunRecord:
    """A plain view of an MLflow run: what the provider needs, JSON-friendly."""

    run_id: str
    experiment_id: str
    status: str
    start_time: int
    artifact_uri: str
    tags: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    end_time: int | None = None
    run_name: str = ""

    @classmethod
    def from_run(cls, run: Run) -> RunRecord:
        return cls(
            run_id=run.info.run_id,
            experiment_id=run.info.experiment_id,
            status=run.info.status,
            start_time=run.info.start_time or 0,
            artifact_uri=run.info.artifact_uri,
            tags=dict(run.data.tags),
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            end_time=run.info.end_time or None,
            run_name=run.info.run_name or "",
        )


@dataclass(frozen=True)
class ArtifactEntry:
    """One entry of a run's artifact folder."""

    path: str
    is_dir: bool
    size: int | None = None


@dataclass(frozen=True)
class ExperimentRecord:
    """A plain view of an experiment: its id, tags and name."""

    experiment_id: str
    tags: Mapping[str, str] = field(default_factory=dict)
    name: str = ""


@dataclass(frozen=True)
class LoggedModelRecord:
    """An MLflow 3 logged model of a run: what the UI shows of it, JSON-friendly."""

    model_id: str
    name: str
    experiment_id: str
    status: str
    created: int
    #: Flavors from its ``MLmodel`` file (``python_function`` last); empty when it has none yet.
    flavors: tuple[str, ...] = ()
    #: Latest value of each metric logged to the model.
    metrics: Mapping[str, float] = field(default_factory=dict)
    #: Its page in MLflow's UI, when a UI is known for the connection.
    url: str | None = None

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_id}"


@dataclass(frozen=True)
class VersionRecord:
    """A plain view of a model version."""

    name: str
    version: str
    run_id: str | None
    source: str
    status: str
    current_stage: str | None
    aliases: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    model_id: str | None = None
    created: int = 0  # ms since the epoch
    #: Who created the version, when MLflow says (None when the store does not record users).
    user_id: str | None = None
    updated: int = 0  # ms since the epoch: the last change of the version (a stage move included)

    @classmethod
    def from_version(cls, mv: ModelVersion) -> VersionRecord:
        return cls(
            name=mv.name,
            version=str(mv.version),
            run_id=mv.run_id or None,
            source=mv.source,
            status=str(mv.status),
            current_stage=mv.current_stage,
            aliases=tuple(mv.aliases or ()),
            tags=dict(mv.tags or {}),
            model_id=getattr(mv, "model_id", None) or _logged_model_id(mv.source),
            created=int(mv.creation_timestamp or 0),
            user_id=getattr(mv, "user_id", None) or None,
            updated=int(getattr(mv, "last_updated_timestamp", None) or 0),
        )


@dataclass(frozen=True)
class ModelRecord:
    """
    A plain view of a registered model: its tags, which version each alias points at and, per
    stage, the newest version in it (``latest``; the largest of them is the newest version overall;
    empty on registries without stages, such as Unity Catalog).
    """

    name: str
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    updated: int = 0  # ms since the epoch
    latest: Mapping[str, str] = field(default_factory=dict)
    created: int = 0  # ms since the epoch: a model deleted and registered again is another model

    @classmethod
    def from_model(cls, rm: RegisteredModel) -> ModelRecord:
        return cls(
            name=rm.name,
            description=rm.description or "",
            tags=dict(rm.tags or {}),
            aliases={alias: str(version) for alias, version in (rm.aliases or {}).items()},
            updated=int(rm.last_updated_timestamp or 0),
            latest={str(mv.current_stage): str(mv.version) for mv in rm.latest_versions or ()},
            created=int(getattr(rm, "creation_timestamp", None) or 0),
        )


def _logged_model_id(source: str | None) -> str | None:
    """``m-…`` from a ``models:/m-…`` source (not every store fills ``model_id`` in)."""
    if source and source.startswith("models:/m-") and "/" not in source.removeprefix("models:/"):
        return source.removeprefix("models:/")
    return None
