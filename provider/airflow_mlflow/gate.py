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
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlflow.exceptions import MLflowInputError
from airflow_mlflow.validation import validate_metric_key, validate_registry_tags

if TYPE_CHECKING:
    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.hooks.registry import VersionRecord

PASSED, REJECTED, WAITING = "passed", "rejected", "waiting"
_FIELDS = {"threshold", "greater_is_better", "min_absolute_change", "min_relative_change"}
_ZERO_BASELINE_MARGIN = 1e-10
METRIC_TAG_PREFIX = "airflow.gate.metric."
BASELINE_STAGES = {"staging": "Staging", "production": "Production", "archived": "Archived"}


@dataclass(frozen=True)
class Threshold:
    threshold: float | None = None
    greater_is_better: bool = True
    min_absolute_change: float | None = None
    min_relative_change: float | None = None

    @classmethod
    def parse(cls, metric: str, spec: Any) -> Threshold:
        """Read one entry of ``thresholds``; errors name the metric, the field and the value."""
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            spec = {"threshold": spec}
        if not isinstance(spec, Mapping):
            raise MLflowInputError(
                f"thresholds[{metric!r}] must be a mapping of MetricThreshold fields, got {spec!r}"
            )
        unknown = set(spec) - _FIELDS
        if unknown:
            raise MLflowInputError(
                f"thresholds[{metric!r}] has unknown field(s) {sorted(unknown)}; allowed: {sorted(_FIELDS)}"
            )
        gib = spec.get("greater_is_better", True)
        if not isinstance(gib, bool):
            raise MLflowInputError(
                f"thresholds[{metric!r}].greater_is_better must be true or false, got {gib!r}"
            )
        values = {}
        for name in ("threshold", "min_absolute_change", "min_relative_change"):
            value = spec.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise MLflowInputError(f"thresholds[{metric!r}].{name} must be a number, got {value!r}")
            if value is not None and not math.isfinite(value):
                raise MLflowInputError(f"thresholds[{metric!r}].{name} must be finite, got {value!r}")
            values[name] = None if value is None else float(value)
        absolute, relative = values["min_absolute_change"], values["min_relative_change"]
        if absolute is not None and absolute <= 0:
            raise MLflowInputError(
                f"thresholds[{metric!r}].min_absolute_change must be positive, got {absolute!r}"
            )
        if relative is not None and not 0 <= relative <= 1:
            raise MLflowInputError(
                f"thresholds[{metric!r}].min_relative_change must be between 0 and 1, got {relative!r}"
            )
        if all(v is None for v in values.values()):
            raise MLflowInputError(
                f"thresholds[{metric!r}] sets none of threshold, min_absolute_change, min_relative_change"
            )
        return cls(greater_is_better=gib, **values)


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
            validate_registry_tags({f"{METRIC_TAG_PREFIX}{metric}": ""})
        except MLflowInputError as err:
            raise MLflowInputError(f"thresholds: metric {metric!r} cannot be gated on: {err}") from None
    return {str(metric): Threshold.parse(str(metric), spec) for metric, spec in thresholds.items()}


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
            "airflow.gate.status": self.status,
            "airflow.gate.baseline_version": self.baseline_version or "none",
            "airflow.gate.dag_run": dag_run,
            "airflow.gate.evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.evaluated_at)),
        }
        for check in self.checks:
            tags[f"{METRIC_TAG_PREFIX}{check.metric}"] = check.line()
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


def evaluate(
    model_name: str,
    candidate: str | None,
    candidate_metrics: Mapping[str, float],
    baseline: str | None,
    baseline_metrics: Mapping[str, float],
    thresholds: Mapping[str, Threshold],
    *,
    baseline_pending: bool = False,
) -> Verdict:
    """
    Compare metric by metric; pure, so it is the same in a sensor, a trigger and a test.

    ``baseline_pending``: the baseline exists but was not read yet (see :class:`Gate`); its
    bounds are named, not applied.
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
    status = REJECTED if REJECTED in verdicts else WAITING if WAITING in verdicts else PASSED
    return Verdict(model_name, candidate, baseline, status, tuple(checks))


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

    def __init__(
        self,
        hook: MLflowHook,
        *,
        model_name: str,
        thresholds: Mapping[str, Any],
        version: str | None = None,
        alias: str | None = None,
        stage: str | None = None,
        baseline: str | None = "champion",
    ) -> None:
        self.hook = hook
        self.model_name = model_name
        self.thresholds = parse_thresholds(thresholds)
        self.version, self.alias, self.stage, self.baseline = version, alias, stage, baseline
        self._pinned: VersionRecord | None = None

    def _candidate(self) -> VersionRecord | None:
        if not self.version:
            return resolve_candidate(self.hook, self.model_name, None, self.alias, self.stage)
        if self._pinned is None:
            self._pinned = resolve_candidate(self.hook, self.model_name, self.version, None, None)
        return self._pinned

    def _baseline_can_decide(self, metrics: Mapping[str, float]) -> bool:
        """
        Whether reading the baseline could change a verdict that is ``waiting`` without it: only
        when a logged metric is held against the baseline (it may already fail that bound).
        """
        return any(metric in metrics and _against_baseline(t) for metric, t in self.thresholds.items())

    def evaluate(self) -> Verdict:
        """One poll: read the candidate and its metrics, then the baseline if it matters, and decide."""
        candidate = self._candidate()
        if candidate is None:
            where = f"alias {self.alias!r}" if self.alias else f"stage {self.stage or 'Staging'!r}"
            return Verdict(self.model_name, None, None, WAITING, reason=f"no version behind {where} yet")
        metrics = self.hook.version_metrics(candidate)
        early = evaluate(
            self.model_name,
            candidate.version,
            metrics,
            None,
            {},
            self.thresholds,
            baseline_pending=bool(self.baseline),
        )
        if early.status == WAITING and not self._baseline_can_decide(metrics):
            return early  # the same status as with the baseline, one or two requests fewer
        base = resolve_baseline(self.hook, self.model_name, self.baseline)
        if base is not None and base.version == candidate.version:
            base = None  # the candidate is already the baseline: only absolute thresholds mean anything
        base_metrics = self.hook.version_metrics(base) if base else {}
        return evaluate(
            self.model_name, candidate.version, metrics, base and base.version, base_metrics, self.thresholds
        )


def evaluate_gate(hook: MLflowHook, **gate: Any) -> Verdict:
    """One poll of a :class:`Gate` (nothing kept between calls); the keywords are the Gate's."""
    return Gate(hook, **gate).evaluate()
