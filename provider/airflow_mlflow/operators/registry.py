"""Operators for the model registry: register, promote, roll back."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlflow.assets import model_asset
from airflow_mlflow.exceptions import MLflowConflictError, MLflowInputError
from airflow_mlflow.links.mlflow import MLflowModelVersionLink, push_version_link
from airflow_mlflow.operators.base import DEFAULT_CONN_ID, MLflowBaseOperator
from airflow_mlflow.validation import normalize_stage

if TYPE_CHECKING:
    from airflow.sdk import Asset, Context

    from airflow_mlflow.hooks.registry import VersionRecord

HISTORY_LIMIT = 40  # champion changes kept in the model's history tag
#: Prefix of the (deleted, hence hidden) experiments that serialise champion changes.
CLAIM_PREFIX = ".airflow-mlflow/champion-changes"


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


class _RegistryOperator(MLflowBaseOperator):
    operator_extra_links = (MLflowModelVersionLink(),)

    def _asset(self) -> Asset:
        raise NotImplementedError

    def _with_own_outlet(self, kwargs: dict[str, Any], name: str) -> dict[str, Any]:
        """Add this operator's model asset to ``outlets`` when the model name is known at parse time."""
        self.mlflow_conn_id = kwargs.get("mlflow_conn_id", DEFAULT_CONN_ID)
        if not _is_template(name) and not any(_is_template(v) for v in self._asset_args()):
            kwargs["outlets"] = [*(kwargs.get("outlets") or []), self._asset()]
        return kwargs

    def _asset_args(self) -> tuple[Any, ...]:
        return ()

    def _lineage(self, context: Context) -> dict[str, str]:
        from airflow_mlflow.runs import TaskRunContext

        ctx = TaskRunContext.from_context(context)
        return {"dag_id": ctx.dag_id, "run_id": ctx.run_id, "task_id": ctx.task_id, "url": ctx.task_url}

    def _record(self, context: Context, name: str, version: str, extra: dict[str, Any]) -> None:
        """Push the link payload and the asset event extra."""
        push_version_link(context, self.hook, name, version)
        asset = self._asset()
        if asset in (self.outlets or []):
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
        self.tags = tags or {}
        self.description = description
        self.stage = normalize_stage(stage) if stage else None
        self.alias = alias
        self.await_ready_timeout = await_ready_timeout
        super().__init__(**self._with_own_outlet(kwargs, name))

    def _asset(self) -> Asset:
        return model_asset(self.name, mlflow_conn_id=self.mlflow_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        push_version_link(context, self.hook, self.name, None)
        lineage = {f"airflow.{k}": v for k, v in self._lineage(context).items()}
        previous = self.hook.list_versions(self.name)
        same_task = ("airflow.dag_id", "airflow.run_id", "airflow.task_id")
        earlier = [v for v in previous if all(v.tags.get(k) == lineage[k] for k in same_task)]
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
    """Shared by promotion and rollback: where the champion lives and how it moves."""

    name: str
    alias: str | None
    stage: str | None
    archive_existing: bool

    def _asset_args(self) -> tuple[Any, ...]:
        return (self.alias, self.stage)

    def _asset(self) -> Asset:
        return model_asset(
            self.name,
            alias=self.alias,
            stage=None if self.alias else self.stage,
            mlflow_conn_id=self.mlflow_conn_id,
        )

    def _check_target(self) -> None:
        if not self.alias and not self.stage:
            raise MLflowInputError("give an alias, a stage, or both, to promote into")

    def _champion(self) -> VersionRecord | None:
        if self.alias:
            return self.hook.get_version_by_alias(self.name, self.alias)
        return self.hook.get_version_by_stage(self.name, self.stage)

    def _move(self, version: str) -> None:
        """Point the alias and/or the stage at ``version``."""
        if self.alias:
            self.hook.set_alias(self.name, self.alias, version)
        if self.stage:
            self.hook.transition_stage(self.name, version, self.stage, archive_existing=self.archive_existing)

    def _settle(self) -> VersionRecord | None:
        """
        Leave exactly one version in the stage: the champion. MLflow archives the others in
        separate statements, and people move stages by hand; this repairs either.
        """
        champion = self._champion()
        if not (champion and self.stage and self.archive_existing):
            return champion
        for other in self.hook.list_versions(self.name):
            if other.current_stage == self.stage and other.version != champion.version:
                self.hook.transition_stage(self.name, other.version, "Archived")
        if self.hook.get_model_version(self.name, champion.version).current_stage != self.stage:
            self.hook.transition_stage(self.name, champion.version, self.stage)
        return champion

    def _history(self) -> list[dict[str, Any]]:
        from airflow_mlflow.tags import CHAMPION_HISTORY

        raw = self.hook.get_model_tags(self.name).get(CHAMPION_HISTORY)
        try:
            history = json.loads(raw) if raw else []
        except ValueError:
            history = []
        return history if isinstance(history, list) else []

    def _begin(self) -> tuple[list[dict[str, Any]], int]:
        """
        The history and the number of the next champion change. Read before the champion: a
        change is recorded in the history only after it moved the champion, so whoever sees the
        same number also sees the same champion.
        """
        history = self._history()
        seq = int(history[-1].get("seq", len(history) - 1)) + 1 if history else 0
        return history, seq

    def _claim(self, seq: int, context: Context) -> str:
        """
        Compare-and-set: only one task may make champion change number ``seq``. A retry of the
        same task instance finds its own claim and goes on.
        """
        lineage = self._lineage(context)
        owner = f"{lineage['dag_id']}/{lineage['run_id']}/{lineage['task_id']}"
        holder = self.hook.claim_name(f"{CLAIM_PREFIX}/{self.name}/{seq}", owner)
        if holder != owner:
            raise MLflowConflictError(
                f"model {self.name!r}: {holder} changed the champion concurrently (change #{seq}); "
                "this task did not overwrite it. Re-run the gate against the new champion."
            )
        return f"{lineage['dag_id']}/{lineage['run_id']}"

    def _append_history(self, history: list[dict[str, Any]], entry: dict[str, Any]) -> None:
        from airflow_mlflow.hooks.registry import dumps
        from airflow_mlflow.tags import CHAMPION_HISTORY

        history = [*history, entry][-HISTORY_LIMIT:]
        while len(dumps(history)) > 7900 and len(history) > 1:  # MLflow tag values stop at 8000
            history.pop(0)
        self.hook.set_model_tags(self.name, {CHAMPION_HISTORY: dumps(history)})


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
        stage: str | None = "Production",
        alias: str | None = "champion",
        archive_existing: bool = True,
        **kwargs: Any,
    ) -> None:
        self.model_name = self.name = model_name
        self.version = version
        self.stage = normalize_stage(stage) if stage else None
        self.alias = alias
        self.archive_existing = archive_existing
        self._check_target()
        super().__init__(**self._with_own_outlet(kwargs, model_name))

    def execute(self, context: Context) -> dict[str, Any]:
        self.name = self.model_name
        version = str(self.version)
        push_version_link(context, self.hook, self.name, version)
        candidate = self.hook.get_model_version(self.name, version)
        gate = candidate.tags.get("airflow.gate.status")
        if gate == "rejected":
            raise MLflowConflictError(
                f"model {self.name!r} version {version} was rejected by the gate "
                f"({candidate.tags.get('airflow.gate.dag_run')}); it will not be promoted"
            )
        history, seq = self._begin()
        current = self._champion()
        previous = current.version if current else None
        if previous == version:
            self.log.info("%s version %s is already the champion; nothing to do", self.name, version)
            return {"name": self.name, "version": version, "previous_version": None, "promoted": False}
        expected = candidate.tags.get("airflow.gate.baseline_version")
        if expected is not None and (previous or "none") != expected:
            raise MLflowConflictError(
                f"model {self.name!r}: the gate compared version {version} against "
                f"{'version ' + expected if expected != 'none' else 'no champion'}, but the champion is now "
                f"{'version ' + previous if previous else 'unset'}; re-run the gate before promoting"
            )

        dag_run = self._claim(seq, context)
        self._move(version)
        self._settle()
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.hook.set_version_tags(
            self.name,
            version,
            {
                "airflow.promotion.previous_version": previous or "none",
                "airflow.promotion.at": at,
                "airflow.promotion.dag_run": dag_run,
                "airflow.promotion.gate": gate or "not gated",
            },
        )
        entry = {"seq": seq, "action": "promote", "version": version, "previous": previous, "at": at}
        self._append_history(history, {**entry, "dag_run": dag_run, "gate": gate})
        result = {"name": self.name, "version": version, "previous_version": previous, "promoted": True}
        self._record(context, self.name, version, {**result, "run_id": candidate.run_id})
        self.log.info("Promoted %s version %s (previous champion: %s)", self.name, version, previous)
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
        alias: str | None = "champion",
        stage: str | None = "Production",
        **kwargs: Any,
    ) -> None:
        self.model_name = self.name = model_name
        self.alias = alias
        self.stage = normalize_stage(stage) if stage else None
        self.archive_existing = True
        self._check_target()
        super().__init__(**self._with_own_outlet(kwargs, model_name))

    def execute(self, context: Context) -> dict[str, Any]:
        self.name = self.model_name
        push_version_link(context, self.hook, self.name, None)
        history, seq = self._begin()
        current = self._champion()
        if current is None:
            raise MLflowConflictError(f"model {self.name!r} has no champion to roll back")
        promoted = [
            e for e in history if e.get("action") == "promote" and e.get("version") == current.version
        ]
        target = promoted[-1].get("previous") if promoted else None
        if not target:
            raise MLflowConflictError(
                f"model {self.name!r}: no earlier champion is recorded for version {current.version}; "
                "nothing to roll back to"
            )
        dag_run = self._claim(seq, context)
        self._move(target)
        self._settle()
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.hook.set_version_tags(
            self.name, current.version, {"airflow.rollback.at": at, "airflow.rollback.dag_run": dag_run}
        )
        self.hook.set_version_tags(self.name, target, {"airflow.rollback.restored_at": at})
        entry = {"seq": seq, "action": "rollback", "version": target, "previous": current.version, "at": at}
        self._append_history(history, {**entry, "dag_run": dag_run})
        restored = self.hook.get_model_version(self.name, target)
        result = {"name": self.name, "version": target, "previous_version": current.version}
        self._record(context, self.name, target, {**result, "run_id": restored.run_id})
        self.log.info("Rolled %s back from version %s to %s", self.name, current.version, target)
        return result
