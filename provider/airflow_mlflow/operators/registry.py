"""Operators for the model registry: register, promote, roll back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlflow.assets import model_asset
from airflow_mlflow.links.mlflow import MLflowModelVersionLink, push_version_link
from airflow_mlflow.operators.base import DEFAULT_CONN_ID, MLflowBaseOperator
from airflow_mlflow.validation import (
    DEFAULT_ALIAS,
    DEFAULT_STAGE,
    check_target,
    normalize_stage,
    refuse_provider_tags,
)

# The promotion model (airflow_mlflow.champion) is imported when a task runs, not when a DAG file
# is parsed: building its dataclasses was a large part of what the provider added to a parse.
if TYPE_CHECKING:
    from airflow.sdk import Asset, Context

    from airflow_mlflow.champion import Actor, Target


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


class _RegistryOperator(MLflowBaseOperator):
    operator_extra_links = (MLflowModelVersionLink(),)

    def _asset(self) -> Asset:
        raise NotImplementedError

    def _with_own_outlet(self, kwargs: dict[str, Any], name: str) -> dict[str, Any]:
        """
        Add this operator's model asset to ``outlets`` when the model name is known at parse time,
        unless ``outlets`` has it already: the DAG's own definition wins (with its ``watch=``:
        Airflow takes an asset's watchers from every DAG file that mentions it, and a mention
        without the watcher would detach it).
        """
        self.mlflow_conn_id = kwargs.get("mlflow_conn_id", DEFAULT_CONN_ID)
        if not _is_template(name) and not any(_is_template(v) for v in self._asset_args()):
            outlets = list(kwargs.get("outlets") or [])
            if self._own_outlet(outlets) is None:
                outlets.append(self._asset())
            kwargs["outlets"] = outlets
        return kwargs

    def _own_outlet(self, outlets: Sequence[Any]) -> Asset | None:
        """The outlet that is this operator's model asset (by URI), if any."""
        uri = self._asset().uri
        return next((o for o in outlets if getattr(o, "uri", None) == uri), None)

    def _asset_args(self) -> tuple[Any, ...]:
        return ()

    def _actor(self, context: Context) -> Actor:
        """The task instance at work: it registers versions and claims champion changes."""
        from airflow_mlflow.champion import Actor
        from airflow_mlflow.runs import TaskRunContext

        ctx = TaskRunContext.from_context(context)
        return Actor(ctx.dag_id, ctx.run_id, ctx.task_id, ctx.task_url)

    def _record(self, context: Context, name: str, version: str, extra: dict[str, Any]) -> None:
        """Push the link payload and the asset event extra."""
        push_version_link(context, self.hook, name, version)
        asset = self._own_outlet(self.outlets or [])
        if asset is not None:
            context["outlet_events"][asset].extra = extra


class MLflowRegisterModelOperator(_RegistryOperator):
    """
    Register a model as a new version of a registered model, and wait until it is READY.

    ``model_uri`` may be ``runs:/<run_id>/<path>``, an MLflow 3 logged model ``models:/m-…``, an
    existing version ``models:/<name>/<version>``, or the URI an upstream task returned (XCom).
    The version is tagged with its Airflow lineage (``airflow.dag_id``, ``airflow.run_id``,
    ``airflow.task_id``, ``airflow.url``) and can go straight into a stage and/or behind an alias.
    A retry of the task reuses the version its earlier try registered.
    An event on ``model_asset(name)`` carries ``{name, version, previous_version, run_id}``.

    :param model_uri: what to register (templated)
    :param name: registered model name, created if needed (templated)
    :param tags: version tags (templated)
    :param description: version description (templated)
    :param stage: stage to put the version in, e.g. ``Staging``
    :param alias: alias to point at the version, e.g. ``challenger`` (templated)
    :param await_ready_timeout: seconds to wait for the version to become READY
    :return: ``{"name", "version", "run_id", "source"}``
    """

    template_fields: Sequence[str] = ("model_uri", "name", "tags", "description", "alias", "mlflow_conn_id")
    template_fields_renderers = {"tags": "json"}

    def __init__(
        self,
        *,
        model_uri: str,
        name: str,
        tags: Mapping[str, Any] | None = None,
        description: str | None = None,
        stage: str | None = None,
        alias: str | None = None,
        await_ready_timeout: int = 300,
        **kwargs: Any,
    ) -> None:
        self.name = name
        self.model_uri = model_uri
        refuse_provider_tags("tags", tags)
        self.tags = tags or {}
        self.description = description
        self.stage = normalize_stage(stage) if stage else None
        self.alias = alias
        self.await_ready_timeout = await_ready_timeout
        super().__init__(**self._with_own_outlet(kwargs, name))

    def _asset(self) -> Asset:
        return model_asset(self.name, mlflow_conn_id=self.mlflow_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        refuse_provider_tags("tags", self.tags)
        push_version_link(context, self.hook, self.name, None)
        actor = self._actor(context)
        lineage = actor.lineage_tags()
        previous = self.hook.list_versions(self.name)
        earlier = [v for v in previous if actor.registered(v)]
        if earlier:  # a retry: the first try registered before it failed
            mv = earlier[0]
            previous = [v for v in previous if v.version != mv.version]
            self.log.info("Version %s was registered by an earlier try of this task; reusing it", mv.version)
        else:
            mv = self.hook.register_model_version(
                self.model_uri,
                self.name,
                tags={**lineage, **self.tags},
                description=self.description,
                timeout=self.await_ready_timeout,
            )
        if self.stage:
            self.hook.transition_stage(self.name, mv.version, self.stage)
        if self.alias:
            self.hook.set_alias(self.name, self.alias, mv.version)
        self.log.info("Registered %s version %s from %s", self.name, mv.version, mv.source)
        result = {"name": mv.name, "version": mv.version, "run_id": mv.run_id, "source": mv.source}
        prior = previous[0].version if previous else None
        self._record(context, mv.name, mv.version, {**result, "previous_version": prior})
        return result


class _ChampionOperator(_RegistryOperator):
    """Shared by promotion and rollback: where the champion lives (see :mod:`airflow_mlflow.champion`)."""

    model_name: str
    alias: str | None
    stage: str | None
    archive_existing: bool

    def _asset_args(self) -> tuple[Any, ...]:
        return (self.alias, self.stage)

    def _asset(self) -> Asset:
        return model_asset(
            self.model_name,
            alias=self.alias,
            stage=None if self.alias else self.stage,
            mlflow_conn_id=self.mlflow_conn_id,
        )

    def _target(self) -> Target:
        from airflow_mlflow.champion import Target

        return Target(self.model_name, self.alias, self.stage, self.archive_existing)


class MLflowPromoteModelOperator(_ChampionOperator):
    """
    Promote a model version: move the alias (default ``champion``) and/or the stage (default
    ``Production``, archiving the previous Production version).

    Compare-and-set: when the version carries a gate verdict, the champion must still be the
    baseline the gate compared against; if it moved since, the task fails naming both versions
    instead of silently overwriting. Each champion change is numbered and claimed once (a
    write-once MLflow name, see ``MLflowHook.claim_name``), so of promotions racing on one model
    exactly one moves the champion and the others fail. A version the gate rejected is refused.

    The promotion is recorded on the version (``airflow.promotion.*`` tags) and in the model's
    ``airflow.champion_history`` tag, which :class:`MLflowRollbackModelOperator` reads. An event on
    ``model_asset(name, alias=…)`` (or ``stage=…`` without an alias) carries
    ``{name, version, previous_version, run_id}``.

    :param model_name: registered model (templated)
    :param version: version to promote, e.g. from the register task's XCom (templated)
    :param stage: stage to move it to, or None for registries with aliases only
    :param alias: alias to move, or None
    :param archive_existing: archive other versions in the stage (default True)
    """

    template_fields: Sequence[str] = ("model_name", "version", "alias", "mlflow_conn_id")

    def __init__(
        self,
        *,
        model_name: str,
        version: str | int,
        stage: str | None = DEFAULT_STAGE,
        alias: str | None = DEFAULT_ALIAS,
        archive_existing: bool = True,
        **kwargs: Any,
    ) -> None:
        self.model_name = model_name
        self.version = version
        self.stage = normalize_stage(stage) if stage else None
        self.alias = alias
        self.archive_existing = archive_existing
        check_target(self.alias, self.stage)
        super().__init__(**self._with_own_outlet(kwargs, model_name))

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlflow.champion import promote

        version = str(self.version)
        push_version_link(context, self.hook, self.model_name, version)
        change, candidate = promote(self.hook, self._target(), version, self._actor(context))
        if change is None:
            self.log.info("%s version %s is already the champion; nothing to do", self.model_name, version)
            return {"name": self.model_name, "version": version, "previous_version": None, "promoted": False}
        result = {
            "name": self.model_name,
            "version": version,
            "previous_version": change.previous,
            "promoted": True,
        }
        self._record(context, self.model_name, version, {**result, "run_id": candidate.run_id})
        self.log.info(
            "Promoted %s version %s (previous champion: %s)", self.model_name, version, change.previous
        )
        return result


class MLflowRollbackModelOperator(_ChampionOperator):
    """
    Restore the previous champion, as recorded by :class:`MLflowPromoteModelOperator`.

    The alias and/or stage go back to the version the current champion replaced; the current one
    is archived (when a stage is managed). The rollback is recorded on both versions and in the
    history, and emits the same asset event as a promotion.

    :param model_name: registered model (templated)
    :param alias: alias to move back (default ``champion``), or None
    :param stage: stage to move back (default ``Production``), or None
    """

    template_fields: Sequence[str] = ("model_name", "alias", "mlflow_conn_id")

    def __init__(
        self,
        *,
        model_name: str,
        alias: str | None = DEFAULT_ALIAS,
        stage: str | None = DEFAULT_STAGE,
        **kwargs: Any,
    ) -> None:
        self.model_name = model_name
        self.alias = alias
        self.stage = normalize_stage(stage) if stage else None
        self.archive_existing = True
        check_target(self.alias, self.stage)
        super().__init__(**self._with_own_outlet(kwargs, model_name))

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlflow.champion import rollback

        push_version_link(context, self.hook, self.model_name, None)
        change, restored = rollback(self.hook, self._target(), self._actor(context))
        result = {"name": self.model_name, "version": change.version, "previous_version": change.previous}
        self._record(context, self.model_name, change.version, {**result, "run_id": restored.run_id})
        self.log.info(
            "Rolled %s back from version %s to %s", self.model_name, change.previous, change.version
        )
        return result
