"""
A person's sign-off on a model version: the request they read, and the record of their answer.

:class:`~airflow_mlflow.operators.approval.MLflowApprovalOperator` asks; this module renders the
request (candidate against champion, metric by metric, with the gate's verdict) and writes the
decision onto the version (:data:`~airflow_mlflow.tags.APPROVAL_TAGS`).
:func:`~airflow_mlflow.champion.promote` refuses a rejected version and copies an approval into
the history entry of the promotion it allowed (:func:`approval_of`). Imported when a task runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from airflow_mlflow.evaluation import evaluated_metrics, gated_on_evaluation, recorded_evaluation
from airflow_mlflow.tags import (
    APPROVAL_AT,
    APPROVAL_BY,
    APPROVAL_COMMENT,
    APPROVAL_DAG_RUN,
    APPROVAL_STATUS,
    GATE_BASELINE_VERSION,
    GATE_DAG_RUN,
    GATE_METRIC_PREFIX,
    GATE_STATUS,
)
from airflow_mlflow.timestamps import iso_utc

if TYPE_CHECKING:
    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.hooks.registry import VersionRecord

APPROVED, REJECTED = "approved", "rejected"
#: Who decided when nobody answered before ``response_timeout``.
TIMEOUT = "timeout"
#: A comment is kept whole on the version (MLflow's tag limit) and shortened in the history.
COMMENT_MAX_CHARS = 4000
HISTORY_COMMENT_CHARS = 200
#: One gate line (:meth:`airflow_mlflow.gate.MetricCheck.line`).
_GATE_LINE = re.compile(
    r"^(?P<metric>.+?): candidate (?P<candidate>\S+), required (?P<required>.+), "
    r"baseline (?P<baseline>\S+) -> (?P<verdict>\w+)$"
)


def record_decision(
    hook: MLflowHook,
    model: str,
    version: str,
    *,
    approved: bool,
    user: Mapping[str, Any] | None,
    at: datetime | str | None,
    comment: str | None,
    dag_run: str,
) -> dict[str, str]:
    """Write a decision onto the version; ``user`` None means nobody answered in time."""
    by = TIMEOUT if not user else str(user.get("name") or user.get("id") or "unknown")
    when = at.isoformat() if isinstance(at, datetime) else (at or iso_utc())
    tags = {
        APPROVAL_STATUS: APPROVED if approved else REJECTED,
        APPROVAL_BY: by,
        APPROVAL_AT: when,
        APPROVAL_COMMENT: (comment or "").strip()[:COMMENT_MAX_CHARS],
        APPROVAL_DAG_RUN: dag_run,
    }
    hook.set_version_tags(model, version, tags)
    return tags


def approval_of(version_tags: Mapping[str, str]) -> dict[str, str] | None:
    """The decision recorded on a version, for a history entry (comment shortened); None if none."""
    status = version_tags.get(APPROVAL_STATUS)
    if not status:
        return None
    comment = version_tags.get(APPROVAL_COMMENT) or ""
    if len(comment) > HISTORY_COMMENT_CHARS:
        comment = comment[: HISTORY_COMMENT_CHARS - 1] + "…"
    return {
        "status": status,
        "by": version_tags.get(APPROVAL_BY) or "",
        "at": version_tags.get(APPROVAL_AT) or "",
        "comment": comment,
    }


def rejected_by_person(version_tags: Mapping[str, str]) -> bool:
    return version_tags.get(APPROVAL_STATUS) == REJECTED


def _cell(text: Any) -> str:
    """Text safe inside a Markdown table cell (names come from users)."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("`", "'")


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


def _links(hook: MLflowHook, version: VersionRecord) -> str:
    """Markdown links to a version: the plugin's model page, MLflow's UI (version and run)."""
    from airflow.sdk.configuration import conf

    base = conf.get("api", "base_url", fallback="").rstrip("/")
    links = []
    if base:
        query = urlencode({"name": version.name, "version": version.version})
        links.append(f"[model page]({base}/mlflow/model?{query})")
    url = hook.model_version_url(version.name, version.version)
    if url:
        links.append(f"[MLflow version]({url})")
        ui = hook.config.mlflow_ui_url
        if version.run_id and ui:
            links.append(f"[MLflow run]({ui}/#/runs/{quote(version.run_id, safe='')})")
    elif version.run_id:
        links.append(f"run `{_cell(version.run_id)}`")
    return " · ".join(links) or "no link (MLflow has no UI here)"


def render_request(hook: MLflowHook, model: str, version: str, alias: str | None, stage: str | None) -> str:
    """The Markdown a reviewer reads: the candidate against the champion, metric by metric."""
    candidate = hook.get_model_version(model, version)
    champion = (
        hook.get_version_by_alias(model, alias) if alias else hook.get_version_by_stage(model, stage or "")
    )
    target = " and ".join(f"`{_cell(t)}`" for t in (f"@{alias}" if alias else None, stage) if t)
    mine = hook.version_metrics(candidate)
    theirs = hook.version_metrics(champion) if champion else {}
    gate = {}
    for key, line in candidate.tags.items():
        if key.startswith(GATE_METRIC_PREFIX) and (match := _GATE_LINE.match(line)):
            gate[match["metric"]] = match
    shared = recorded_evaluation(candidate) if gated_on_evaluation(candidate.tags, mine) else None
    if shared:
        # The gate compared both versions evaluated on shared data: the table shows those numbers
        # (each run's own metrics are on other data, and would contradict the verdict).
        mine, theirs = evaluated_metrics(candidate), evaluated_metrics(champion) if champion else {}
    status = candidate.tags.get(GATE_STATUS)
    lines = [f"### {_cell(model)}: version {_cell(version)} → {target}?", ""]
    if status:
        baseline = candidate.tags.get(GATE_BASELINE_VERSION, "none")
        against = "no champion" if baseline == "none" else f"version {_cell(baseline)}"
        run = candidate.tags.get(GATE_DAG_RUN, "")
        lines.append(
            f"The gate **{_cell(status)}** version {_cell(version)} against {against} ({_cell(run)})."
        )
    else:
        lines.append(f"Version {_cell(version)} was not gated.")
    champ = f"champion v{_cell(champion.version)}" if champion else "no champion"
    if shared:
        dataset = shared.get("dataset") or {}
        lines += [
            "",
            f"Metrics of both versions evaluated on dataset `{_cell(dataset.get('name'))}` "
            f"(digest {_cell(dataset.get('digest'))}).",
        ]
    lines += [
        "",
        f"| metric | candidate v{_cell(version)} | {champ} | required | verdict |",
        "|---|---|---|---|---|",
    ]
    for metric in sorted(set(mine) | set(theirs), key=lambda m: (m not in gate, m)):
        check = gate.get(metric)
        required = _cell(check["required"]) if check else "not gated"
        verdict = f"**{_cell(check['verdict'])}**" if check else ""
        values = f"{_number(mine.get(metric))} | {_number(theirs.get(metric))}"
        lines.append(f"| {_cell(metric)} | {values} | {required} | {verdict} |")
    lines += ["", f"Candidate: {_links(hook, candidate)}"]
    if champion:
        lines.append(f"Champion: {_links(hook, champion)}")
    lines += [
        "",
        f"**Approve** promotes version {_cell(version)}; **Reject** keeps "
        f"{'version ' + _cell(champion.version) if champion else 'no champion'} and skips the promotion. "
        "No answer in time counts as a rejection.",
    ]
    return "\n".join(lines)
