"""
Evaluating a candidate and the champion on the same data, and what that leaves on each version.

MLflow 3's ``mlflow.models.evaluate`` has no ``baseline_model`` any more: :func:`evaluate_versions`
evaluates the candidate and the baseline (the champion) itself, one after the other, on one
dataset, in the active run (their metrics and plots named ``candidate_…`` and ``champion_…``),
then records each result on its version as one tag (:data:`~airflow_mlflow.tags.EVALUATION`,
JSON: metrics, dataset name and digest, run, DAG run, time). Nothing is recorded unless both
evaluations succeeded.

The promotion gate reads those records with ``source="evaluation"`` (:func:`evaluated_metrics`,
:func:`incomparable`): it compares a candidate with a champion only when both were evaluated on
data with the same digest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from airflow_mlflow.tags import EVALUATION, GATE_METRIC_PREFIX

if TYPE_CHECKING:
    import pandas as pd

    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.hooks.records import VersionRecord

#: ``model_type`` values MLflow's default evaluator knows for tabular models.
MODEL_TYPES = ("classifier", "regressor")
#: Tag values hold at most 8000 characters; the record keeps a margin for its other fields.
_MAX_RECORD = 7900
_SOURCE_CHARS = 300
_DEFAULT_CONFIG = {"log_model_explainability": False}  # SHAP: optional, slow, often absent


#: Where the gate reads a version's metrics: its source run, or its recorded evaluation.
GATE_SOURCES = ("run", "evaluation")


def _refuse(message: str) -> NoReturn:
    """Raise the input error (imported here: a DAG file that only builds operators never needs it)."""
    from airflow_mlflow.exceptions import MLflowInputError

    raise MLflowInputError(message)


def check_source(source: Any) -> str:
    if source not in GATE_SOURCES:
        _refuse(f"source must be one of {', '.join(GATE_SOURCES)}, got {source!r}")
    return source


def gate_metrics(hook: MLflowHook, version: VersionRecord, source: str) -> dict[str, float]:
    """
    A version's metrics as the gate reads them: with ``source="run"`` the latest metrics of the run
    that produced it (completed by its logged model's); with ``"evaluation"`` its recorded
    evaluation (on the version's tags: no request).
    """
    return evaluated_metrics(version) if source == "evaluation" else hook.version_metrics(version)


def recorded_evaluation(version: VersionRecord) -> dict[str, Any] | None:
    """The version's latest evaluation record, or None (none, or not this provider's format)."""
    return _record_in(version.tags or {})


def _record_in(version_tags: Mapping[str, str]) -> dict[str, Any] | None:
    raw = version_tags.get(EVALUATION)
    if not raw:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
        return None
    return record


def evaluated_metrics(version: VersionRecord) -> dict[str, float]:
    """The metrics of the version's latest evaluation (empty when it has none)."""
    return _metrics_of(recorded_evaluation(version))


def _metrics_of(record: Mapping[str, Any] | None) -> dict[str, float]:
    metrics = (record or {}).get("metrics", {})
    return {str(k): float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def gated_on_evaluation(version_tags: Mapping[str, str], run_metrics: Mapping[str, float]) -> bool:
    """
    Whether the version's gate compared evaluations (``source="evaluation"``): a metric it gated on
    is in the version's evaluation and not among its run's metrics. Pages and the approval request
    then show the evaluated numbers, which the verdict is about.
    """
    evaluated = _metrics_of(_record_in(version_tags))
    gated = [k.removeprefix(GATE_METRIC_PREFIX) for k in version_tags if k.startswith(GATE_METRIC_PREFIX)]
    return any(m in evaluated and m not in run_metrics for m in gated)


def _dataset_of(record: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    dataset = (record or {}).get("dataset") or {}
    return dataset.get("name"), dataset.get("digest")


def incomparable(candidate: VersionRecord, baseline: VersionRecord) -> str | None:
    """
    Why the two versions' evaluations cannot be compared (not both evaluated, or on data with
    different digests), or None when they can.
    """
    mine, theirs = recorded_evaluation(candidate), recorded_evaluation(baseline)
    if mine is None:
        return None  # the gate waits for the candidate's evaluation
    if theirs is None:
        return (
            f"baseline version {baseline.version} has no evaluation recorded ({EVALUATION}): "
            f"evaluate it with the candidate in one MLflowEvaluateOperator"
        )
    (name, digest), (base_name, base_digest) = _dataset_of(mine), _dataset_of(theirs)
    if digest != base_digest:
        return (
            f"not comparable: candidate version {candidate.version} was evaluated on dataset "
            f"{name!r} (digest {digest}), baseline version {baseline.version} on {base_name!r} "
            f"(digest {base_digest}); evaluate both in one MLflowEvaluateOperator"
        )
    return None


def load_frame(hook: MLflowHook, data: Any) -> tuple[pd.DataFrame, str | None]:
    """
    The evaluation data as a DataFrame, and where it came from: a path or URI (``.csv``,
    ``.parquet``; ``runs:/``, ``models:/`` and ``mlflow-artifacts:/`` URIs are downloaded first), a
    DataFrame, or a callable returning one.
    """
    import pandas as pd

    from airflow_mlflow.hooks.evaluation import MLFLOW_URI_SCHEMES

    source = None
    if callable(data) and not isinstance(data, pd.DataFrame):
        data = data()
    elif isinstance(data, (str, Path)):
        source = str(data)
        local = hook.download_file(source) if source.startswith(MLFLOW_URI_SCHEMES) else source
        suffix = Path(local.split("?", 1)[0]).suffix.lower()
        readers = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".pq": pd.read_parquet}
        if suffix not in readers:
            _refuse(f"data: {source!r} is neither .csv nor .parquet")
        try:
            data = readers[suffix](local)
        except FileNotFoundError:
            data = None  # refused below, outside the handler: the error needs no pandas traceback
        if data is None:
            _refuse(f"data: {source!r} does not exist")
    if not isinstance(data, pd.DataFrame):
        _refuse(
            f"data must be a path or URI, a pandas DataFrame or a callable returning one, got "
            f"{type(data).__name__}"
        )
    if data.empty:
        _refuse(f"data: {source or 'the DataFrame'} has no rows")
    return data, source


def check_inputs(model_type: Any, targets: Any, evaluator_config: Any) -> None:
    """What is wrong with the evaluation's settings, before anything is read or written."""
    if model_type not in MODEL_TYPES:
        _refuse(f"model_type must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
    if not isinstance(targets, str) or not targets:
        _refuse(f"targets must name the label column, got {targets!r}")
    if evaluator_config is not None and not isinstance(evaluator_config, Mapping):
        _refuse(f"evaluator_config must be a mapping, got {evaluator_config!r}")
    if "metric_prefix" in (evaluator_config or {}):
        _refuse("evaluator_config: metric_prefix is set by the operator (candidate_ / <baseline>_)")


def _role(baseline: str) -> str:
    """Prefix of the baseline's metrics and artifacts in the run: ``champion_``, ``production_``."""
    name = baseline.lower()
    return name if re.fullmatch(r"[a-z][a-z0-9_]*", name) and name != "candidate" else "baseline"


def evaluate_versions(
    hook: MLflowHook,
    *,
    model_name: str,
    version: str,
    data: Any,
    targets: str,
    model_type: str = "classifier",
    baseline: str | None = "champion",
    evaluator_config: Mapping[str, Any] | None = None,
    extra_metrics: Sequence[Any] | None = None,
    dataset_name: str | None = None,
    dag_run: str = "",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """
    Evaluate version ``version`` of ``model_name`` and the version behind ``baseline`` (an alias or a
    stage; skipped when there is none, or it is the candidate) on ``data``, in the active MLflow run,
    then record each result on its version. Returns small JSON: the run, the dataset, and each
    version's metrics.
    """
    from airflow_mlflow.gate import resolve_baseline
    from airflow_mlflow.timestamps import iso_utc

    check_inputs(model_type, targets, evaluator_config)
    run_id = hook.active_run_id()
    if run_id is None:
        _refuse("evaluation needs an active MLflow run: use it inside @task.mlflow")
    version = str(version)
    candidate = hook.get_model_version(model_name, version)
    base = resolve_baseline(hook, model_name, baseline)
    if base is not None and base.version == candidate.version:
        base = None  # the candidate is the champion already: nothing to compare with
    frame, source = load_frame(hook, data)
    if targets not in frame.columns:
        shown = ", ".join(map(str, list(frame.columns)[:20]))
        _refuse(f"targets: column {targets!r} is not in the evaluation data (columns: {shown})")
    if source is not None:  # recorded on the run and the versions: no credentials, no signed query
        from airflow_mlflow.hooks.config import redact_uri

        source = redact_uri(source).split("?", 1)[0]
    name = dataset_name or (Path(source).stem if source else "evaluation_data")
    dataset = hook.evaluation_dataset(frame, name=name, targets=targets, source=source)
    config = {**_DEFAULT_CONFIG, **dict(evaluator_config or {})}
    evaluated = [("candidate", candidate)] + ([(_role(baseline), base)] if base is not None else [])
    outputs = {}
    for role, record in evaluated:
        uri = f"models:/{model_name}/{record.version}"
        outputs[role] = out = hook.evaluate_model(
            uri,
            dataset,
            model_type=model_type,
            metric_prefix=f"{role}_",
            evaluator_config=config,
            extra_metrics=extra_metrics,
        )
        if log:
            log(f"{role} {uri} on {name!r} (digest {dataset.digest}): {dict(out.metrics)}")
            if out.dropped:
                log(f"{role}: metrics without a finite value left out: {', '.join(out.dropped)}")
    described = {"name": name, "digest": dataset.digest, "source": (source or "")[:_SOURCE_CHARS]}
    common = {"dataset": described, "run_id": run_id, "model_type": model_type, "dag_run": dag_run}
    common["at"] = iso_utc()
    tags = {}
    for role, record in evaluated:
        value = json.dumps(
            {**common, "role": role, "metrics": dict(outputs[role].metrics)}, separators=(",", ":")
        )
        if len(value) > _MAX_RECORD:
            _refuse(
                f"the evaluation of version {record.version} has too many metrics to record "
                f"({len(outputs[role].metrics)}, {len(value)} characters as JSON, at most {_MAX_RECORD})"
            )
        tags[record.version] = value
    # Both evaluations succeeded and both records fit: only now is anything recorded on a version.
    for record in (r for _, r in evaluated):
        hook.set_version_tags(model_name, record.version, {EVALUATION: tags[record.version]})
    summary = {"run_id": run_id, "dataset": {"name": name, "digest": dataset.digest}, "baseline": None}
    summary["candidate"] = {"version": candidate.version, "metrics": dict(outputs["candidate"].metrics)}
    if base is not None:
        role = evaluated[1][0]
        summary["baseline"] = {"version": base.version, "role": role, "metrics": dict(outputs[role].metrics)}
    return summary


def evaluate_model_versions(
    model_name: str,
    version: str | int,
    data: Any,
    *,
    targets: str,
    model_type: str = "classifier",
    baseline: str | None = "champion",
    evaluator_config: Mapping[str, Any] | None = None,
    extra_metrics: Sequence[Any] | None = None,
    dataset_name: str | None = None,
    mlflow_conn_id: str = "mlflow_default",
) -> dict[str, Any]:
    """
    ``MLflowEvaluateOperator`` for ``@task.mlflow`` functions: evaluates the candidate and the
    baseline on ``data`` (a path or URI, a DataFrame, or a callable returning one) into the task's
    run, and records each result on its version. Call it inside a ``@task.mlflow`` function (it
    evaluates into the active run) with that task's ``mlflow_conn_id``.

    :return: ``{"run_id", "dataset": {"name", "digest"}, "candidate": {"version", "metrics"},
        "baseline": {"version", "role", "metrics"} or None}``
    """
    from airflow_mlflow.operators.base import make_hook

    dag_run = ""
    try:
        from airflow.sdk import get_current_context

        ti = get_current_context()["ti"]
        dag_run = f"{ti.dag_id}/{ti.run_id}"
    except Exception:  # outside a task (a test, a notebook): no DAG run to name
        pass
    return evaluate_versions(
        make_hook(mlflow_conn_id),
        model_name=model_name,
        version=str(version),
        data=data,
        targets=targets,
        model_type=model_type,
        baseline=baseline,
        evaluator_config=evaluator_config,
        extra_metrics=extra_metrics,
        dataset_name=dataset_name,
        dag_run=dag_run,
    )
