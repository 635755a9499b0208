"""
The promotion gate: does a candidate model version beat its thresholds and the baseline?

Thresholds carry MLflow's ``MetricThreshold`` fields and semantics:

* ``threshold``: candidate >= threshold (<= when ``greater_is_better`` is False);
* ``min_absolute_change``: candidate >= baseline + change (<= baseline - change);
* ``min_relative_change``: candidate >= baseline + change * |baseline| (<=, minus); with a zero
  baseline, candidate must beat it by 1e-10.

Bounds are inclusive, within float rounding. Without a baseline (the first model) only
``threshold`` applies. A metric the candidate has not
logged yet makes the verdict ``waiting``; every other outcome is final.

A poll reads as little as decides: the candidate's metrics first, and the baseline only when it
can change the outcome (every metric is logged, or a logged one is held against the baseline).
So a gate waiting for its candidate's metrics costs one request per poll once its candidate
version is pinned (``version=``: resolved on the first poll, then kept).

Names: a :class:`GateSpec` is what the gate decides on (written once; the sensor builds it, the
trigger carries it as JSON); :func:`decide` is the pure decision; :meth:`Gate.poll` reads MLflow
once and decides.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

from airflow_mlflow.evaluation import check_source, gate_metrics, incomparable
from airflow_mlflow.exceptions import MLflowInputError
from airflow_mlflow.tags import (
    GATE_BASELINE_VERSION,
    GATE_DAG_RUN,
    GATE_EVALUATED_AT,
    GATE_STATUS,
    gate_metric,
)
from airflow_mlflow.timestamps import iso_utc
from airflow_mlflow.validation import validate_metric_key, validate_registry_tags

if TYPE_CHECKING:
    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.hooks.registry import VersionRecord

PASSED, REJECTED, WAITING = "passed", "rejected", "waiting"
_ZERO_BASELINE_MARGIN = 1e-10
BASELINE_STAGES = {"staging": "Staging", "production": "Production", "archived": "Archived"}


class Threshold(BaseModel):
    """One metric's ``MetricThreshold`` fields, strictly typed: numbers are numbers, finite."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    threshold: float | None = None
    greater_is_better: StrictBool = True
    min_absolute_change: float | None = Field(default=None, gt=0)
    min_relative_change: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _sets_a_bound(self) -> Threshold:
        if self.threshold is None and self.min_absolute_change is None and self.min_relative_change is None:
            raise ValueError("sets none of threshold, min_absolute_change, min_relative_change")
        return self

    @classmethod
    def parse(cls, metric: str, spec: Any) -> Threshold:
        """Read one entry of ``thresholds``; errors name the metric, the field and the value."""
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            spec = {"threshold": spec}
        if not isinstance(spec, Mapping):
            raise MLflowInputError(
                f"thresholds[{metric!r}] must be a mapping of MetricThreshold fields, got {spec!r}"
            )
        try:
            return cls.model_validate(dict(spec))
        except ValidationError as err:
            raise MLflowInputError(_threshold_error(metric, err)) from None

    def to_json(self) -> dict[str, Any]:
        """The fields given (defaults left out): JSON for a trigger's kwargs."""
        return self.model_dump(exclude_defaults=True)


#: Which of several errors in one entry is reported: unknown fields, then types, then ranges.
_ERROR_RANK = {"extra_forbidden": 0, "bool_type": 1, "float_type": 2, "finite_number": 2}


def _threshold_error(metric: str, err: ValidationError) -> str:
    """The message for one entry's first error, naming the metric, the field and the value."""
    errors = err.errors()
    where = f"thresholds[{metric!r}]"
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
    if unknown:
        return f"{where} has unknown field(s) {unknown}; allowed: {sorted(Threshold.model_fields)}"
    first = min(errors, key=lambda e: _ERROR_RANK.get(e["type"], 3))
    kind, value = first["type"], first["input"]
    if not first["loc"]:  # the model's own check
        return f"{where} {first['ctx']['error']}"
    name = f"{where}.{first['loc'][0]}"
    if kind == "bool_type":
        return f"{name} must be true or false, got {value!r}"
    if kind == "finite_number":
        return f"{name} must be finite, got {value!r}"
    if kind == "greater_than":
        return f"{name} must be positive, got {float(value)!r}"
    if kind in ("greater_than_equal", "less_than_equal"):
        return f"{name} must be between 0 and 1, got {float(value)!r}"
    return f"{name} must be a number, got {value!r}"


def parse_thresholds(thresholds: Any) -> dict[str, Threshold]:
    if not isinstance(thresholds, Mapping) or not thresholds:
        raise MLflowInputError(
            f"thresholds must be a non-empty mapping of metric name to fields, got {thresholds!r}"
        )
    for metric in thresholds:
        # A name MLflow cannot store would never be logged (the gate would wait for ever), and
        # the verdict's tag airflow.gate.metric.<name> must be a tag MLflow accepts.
        try:
            validate_metric_key(metric)
            validate_registry_tags({gate_metric(metric): ""})
        except MLflowInputError as err:
            raise MLflowInputError(f"thresholds: metric {metric!r} cannot be gated on: {err}") from None
    return {str(metric): Threshold.parse(str(metric), spec) for metric, spec in thresholds.items()}


@dataclass(frozen=True)
class GateSpec:
    """
    What a gate decides on, written once: the sensor builds it, the trigger carries it across the
    deferral as JSON (:meth:`to_json` / :meth:`from_json`), and :class:`Gate` polls it.

    ``thresholds`` may be given raw (metric -> fields, or a number for ``threshold``); they are
    parsed into :class:`Threshold` on construction, so a spec that exists is a valid one.
    The candidate is ``version``, else the version behind ``alias``, else behind ``stage``
    (default ``Staging``); ``baseline`` is an alias or a stage, or None; ``source``: see :func:`gate_metrics`.
    """

    model_name: str
    thresholds: Mapping[str, Threshold]
    version: str | None = None
    alias: str | None = None
    stage: str | None = None
    baseline: str | None = "champion"
    source: str = "run"

    def __post_init__(self) -> None:
        parsed = self.thresholds
        if not (
            isinstance(parsed, Mapping) and parsed and all(isinstance(t, Threshold) for t in parsed.values())
        ):
            parsed = parse_thresholds(self.thresholds)
        object.__setattr__(self, "thresholds", dict(parsed))
        if self.version is not None:
            object.__setattr__(self, "version", str(self.version))
        object.__setattr__(self, "source", check_source(self.source))

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON; ``source`` only when not the default (a spec's JSON stays as it was)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "source"}
        data["thresholds"] = {metric: t.to_json() for metric, t in self.thresholds.items()}
        return data if self.source == "run" else {**data, "source": self.source}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GateSpec:
        known = {f.name for f in fields(cls)}
        if not isinstance(data, Mapping) or set(data) - known or "model_name" not in data:
            raise MLflowInputError(f"malformed gate spec {data!r}: fields are {sorted(known)}")
        return cls(**data)

    def where(self) -> str:
        """Where the candidate is looked for, when it is not pinned."""
        return f"alias {self.alias!r}" if self.alias else f"stage {self.stage or 'Staging'!r}"


@dataclass(frozen=True)
class MetricCheck:
    metric: str
    candidate: float | None
    baseline: float | None
    required: str
    verdict: str  # passed | rejected | waiting

    def line(self) -> str:
        baseline = "n/a" if self.baseline is None else f"{self.baseline:.6g}"
        candidate = "missing" if self.candidate is None else f"{self.candidate:.6g}"
        return (
            f"{self.metric}: candidate {candidate}, required {self.required}, "
            f"baseline {baseline} -> {self.verdict}"
        )


@dataclass(frozen=True)
class Verdict:
    """The gate's decision for one candidate, JSON-serialisable for trigger events and tags."""

    model_name: str
    candidate_version: str | None
    baseline_version: str | None
    status: str
    checks: tuple[MetricCheck, ...] = field(default_factory=tuple)
    reason: str = ""
    evaluated_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        try:
            checks = tuple(MetricCheck(**c) for c in data["checks"])
            return cls(**{**data, "checks": checks})
        except (KeyError, TypeError) as err:
            raise MLflowInputError(f"malformed gate verdict {data!r}: {err}") from err

    def report(self) -> str:
        head = (
            f"Gate for model {self.model_name!r} version {self.candidate_version} "
            f"against baseline {self.baseline_version or 'none'}: {self.status.upper()}"
        )
        lines = [head, *(f"  {c.line()}" for c in self.checks)]
        if self.reason:
            lines.append(f"  {self.reason}")
        return "\n".join(lines)

    def version_tags(self, dag_run: str) -> dict[str, str]:
        """What the registry keeps on the candidate version, so it shows why."""
        tags = {
            GATE_STATUS: self.status,
            GATE_BASELINE_VERSION: self.baseline_version or "none",
            GATE_DAG_RUN: dag_run,
            GATE_EVALUATED_AT: iso_utc(self.evaluated_at),
        }
        for check in self.checks:
            tags[gate_metric(check.metric)] = check.line()
        return tags


def _required(t: Threshold, baseline: float | None) -> list[tuple[str, float]]:
    """The bounds the candidate must reach, as (description, bound)."""
    op = ">=" if t.greater_is_better else "<="
    sign = 1 if t.greater_is_better else -1
    bounds = []
    if t.threshold is not None:
        bounds.append((f"{op} {t.threshold:.6g}", t.threshold))
    if baseline is not None:
        if t.min_absolute_change is not None:
            bound = baseline + sign * t.min_absolute_change
            bounds.append((f"{op} baseline{'+' if sign > 0 else '-'}{t.min_absolute_change:.6g}", bound))
        if t.min_relative_change is not None:
            margin = t.min_relative_change * abs(baseline) if baseline != 0 else _ZERO_BASELINE_MARGIN
            bound = baseline + sign * margin
            bounds.append(
                (f"{op} baseline{'+' if sign > 0 else '-'}{t.min_relative_change:.6g}*|baseline|", bound)
            )
    return bounds


def _against_baseline(t: Threshold) -> bool:
    return t.min_absolute_change is not None or t.min_relative_change is not None


def _reaches(value: float, bound: float, greater_is_better: bool) -> bool:
    """Bounds are inclusive, within float rounding (0.8 + 0.05 is 0.8500000000000001)."""
    if math.isclose(value, bound, rel_tol=1e-12, abs_tol=1e-12):
        return True
    return value >= bound if greater_is_better else value <= bound


def decide(
    model_name: str,
    candidate: str | None,
    candidate_metrics: Mapping[str, float],
    baseline: str | None,
    baseline_metrics: Mapping[str, float],
    thresholds: Mapping[str, Threshold],
    *,
    baseline_pending: bool = False,
    refusal: str | None = None,
) -> Verdict:
    """
    The gate's decision, metric by metric; pure (no MLflow), so it is the same in a sensor, a
    trigger and a test.

    ``baseline_pending``: the baseline exists but was not read yet (see :class:`Gate`); its
    bounds are named, not applied. ``refusal``: why the baseline cannot be compared (it rejects).
    """
    checks = []
    for metric, t in thresholds.items():
        base = baseline_metrics.get(metric) if baseline else None
        bounds = _required(t, base)
        descriptions = [desc for desc, _ in bounds]
        if baseline_pending and _against_baseline(t):
            descriptions.append("the baseline's bounds (read once every metric is logged)")
        required = " and ".join(descriptions) or "nothing (no baseline yet)"
        value = candidate_metrics.get(metric)
        if value is None:
            verdict = WAITING
        elif all(_reaches(value, bound, t.greater_is_better) for _, bound in bounds):
            verdict = PASSED
        else:
            verdict = REJECTED
        checks.append(MetricCheck(metric, value, base, required, verdict))
    verdicts = {c.verdict for c in checks}
    refused = bool(refusal) and any(map(_against_baseline, thresholds.values()))
    status = REJECTED if refused or REJECTED in verdicts else WAITING if WAITING in verdicts else PASSED
    return Verdict(model_name, candidate, baseline, status, tuple(checks), refusal if refused else "")


def resolve_candidate(
    hook: MLflowHook, model_name: str, version: str | None, alias: str | None, stage: str | None
) -> VersionRecord | None:
    if version:
        return hook.get_model_version(model_name, str(version))
    if alias:
        return hook.get_version_by_alias(model_name, alias)
    return hook.get_version_by_stage(model_name, stage or "Staging")


def resolve_baseline(hook: MLflowHook, model_name: str, baseline: str | None) -> VersionRecord | None:
    """``baseline`` names an alias (``champion``) or a stage (``Production``); None: no baseline."""
    if not baseline:
        return None
    stage = BASELINE_STAGES.get(baseline.lower())
    if stage:
        return hook.get_version_by_stage(model_name, stage)
    return hook.get_version_by_alias(model_name, baseline)


class Gate:
    """
    The gate for one candidate, polled until it decides. Reads MLflow only, through the hook.

    Keeps what cannot change between polls: a candidate given by ``version`` is looked up once.
    A candidate behind an alias or a stage is looked up on every poll, since either may move.
    """

    def __init__(self, hook: MLflowHook, spec: GateSpec) -> None:
        self.hook = hook
        self.spec = spec
        self._pinned: VersionRecord | None = None

    def _candidate(self) -> VersionRecord | None:
        spec = self.spec
        if not spec.version:
            return resolve_candidate(self.hook, spec.model_name, None, spec.alias, spec.stage)
        if self._pinned is None:
            self._pinned = resolve_candidate(self.hook, spec.model_name, spec.version, None, None)
        return self._pinned

    def _baseline_can_decide(self, metrics: Mapping[str, float]) -> bool:
        """
        Whether reading the baseline could change a verdict that is ``waiting`` without it: only
        when a logged metric is held against the baseline (it may already fail that bound).
        """
        return any(metric in metrics and _against_baseline(t) for metric, t in self.spec.thresholds.items())

    def poll(self) -> Verdict:
        """One poll: read the candidate and its metrics, then the baseline if it matters, and decide."""
        spec = self.spec
        candidate = self._candidate()
        if candidate is None:
            return Verdict(
                spec.model_name, None, None, WAITING, reason=f"no version behind {spec.where()} yet"
            )
        metrics = gate_metrics(self.hook, candidate, spec.source)
        if spec.source == "evaluation" and not metrics:
            self._pinned = None  # its evaluation lands on the version's tags: read it again next poll
        early = decide(
            spec.model_name,
            candidate.version,
            metrics,
            None,
            {},
            spec.thresholds,
            baseline_pending=bool(spec.baseline),
        )
        if early.status == WAITING and not self._baseline_can_decide(metrics):
            return early  # the same status as with the baseline, one or two requests fewer
        base = resolve_baseline(self.hook, spec.model_name, spec.baseline)
        if base is not None and base.version == candidate.version:
            base = None  # the candidate is already the baseline: only absolute thresholds mean anything
        refusal = incomparable(candidate, base) if base and spec.source == "evaluation" else None
        base_metrics = gate_metrics(self.hook, base, spec.source) if base and not refusal else {}
        versions = (candidate.version, base and base.version)
        return decide(
            spec.model_name, versions[0], metrics, versions[1], base_metrics, spec.thresholds, refusal=refusal
        )
