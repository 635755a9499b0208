"""
The provider's tag vocabulary: every ``airflow.*`` key it writes to MLflow, once, with its meaning.

Readers and writers import these names; no other module spells an ``airflow.`` tag key (a test
enforces it). The values are a stored format: runs written by an earlier version of the provider
must stay readable, so a key here is renamed only with a migration.
"""

from __future__ import annotations

from collections.abc import Mapping

#: The provider's namespace: its own keys only. Users' tags may not start with it (they would
#: overwrite a run's or a version's lineage, role or gate verdict).
NAMESPACE = "airflow."


def is_provider_tag(key: str) -> bool:
    return key.startswith(NAMESPACE)


# -- runs: one parent per DAG run, one child per task instance (map index) ------------------------

#: What a run stands for: :data:`ROLE_DAG_RUN` or :data:`ROLE_TASK`.
ROLE = "airflow.role"
ROLE_DAG_RUN = "dag_run"
ROLE_TASK = "task"
#: Digest of (dag_id, run_id): finds a DAG run's parent and children in one search.
DAG_RUN_KEY = "airflow.dag_run_key"
#: Digest of (dag_id, run_id, task_id, map_index): finds a task instance's child run.
TI_KEY = "airflow.ti_key"
DAG_ID = "airflow.dag_id"
RUN_ID = "airflow.run_id"
TASK_ID = "airflow.task_id"
#: The task's map index, ``-1`` when it is not mapped.
MAP_INDEX = "airflow.map_index"
#: The latest try that wrote to the run.
TRY_NUMBER = "airflow.try_number"
#: Where the latest try that opened the run ran: Airflow's hostname of the task process
#: (``[core] hostname_callable``, as Airflow records it on the task instance) and its pid.
HOSTNAME = "airflow.hostname"
PID = "airflow.pid"
#: ISO 8601, on parent runs of DAG runs that have a logical date.
LOGICAL_DATE = "airflow.logical_date"
#: Link back to the DAG run (parent) or the task instance (child) in Airflow's UI.
URL = "airflow.url"
#: Per-try record on a child run: ``airflow.try.<n>.<field>``, one of :data:`TRY_FIELDS`.
#: A task the listener tracks (any operator): its operator class, and its ``custom_operator_name``.
OPERATOR = "airflow.operator"
OPERATOR_NAME = "airflow.operator_name"
#: Params of a listener-tracked task: its rendered template fields, ``airflow.field.<name>``.
FIELD_PARAM_PREFIX = "airflow.field."
#: Metric of a listener-tracked task: how long the attempt ran (seconds).
DURATION_METRIC = "airflow.duration_s"
#: Tag of a listener-tracked task: JSON list of the URIs of its outlet assets (its inlets are the
#: run's dataset inputs, their input context :data:`INLET_CONTEXT`).
OUTLETS = "airflow.outlets"
#: Value of MLflow's ``mlflow.data.context`` input tag on a dataset input that is an inlet asset.
INLET_CONTEXT = "airflow.inlet"

TRY_PREFIX = "airflow.try."
TRY_FIELDS = ("state", "start", "end", "error", "note")


def try_tag(number: int, field: str) -> str:
    """``airflow.try.<number>.<field>``: state, start (epoch ms), end (epoch ms), error or note."""
    return f"{TRY_PREFIX}{number}.{field}"


def parse_try_tag(key: str) -> tuple[int, str] | None:
    """``(number, field)`` of an ``airflow.try.<n>.<field>`` key, None for any other key."""
    if not key.startswith(TRY_PREFIX):
        return None
    number, _, field = key[len(TRY_PREFIX) :].partition(".")
    return (int(number), field) if number.isdigit() and field in TRY_FIELDS else None


def try_numbers(tags: Mapping[str, str]) -> list[int]:
    """The tries recorded on a child run, in order."""
    return sorted({parsed[0] for parsed in map(parse_try_tag, tags) if parsed})


# -- experiments ---------------------------------------------------------------------------------

#: ``airflow.parent.<dag run key>`` = parent run id, while that DAG run is open: later tasks find
#: experiment and parent in one request; finalizing the DAG run removes it.
PARENT_HINT_PREFIX = "airflow.parent."


def parent_hint(dag_run_key: str) -> str:
    return f"{PARENT_HINT_PREFIX}{dag_run_key}"


#: On a write-once claim run (hidden experiment): who holds the claim.
CLAIM_OWNER = "airflow.claim.owner"

# -- model versions ------------------------------------------------------------------------------

#: Lineage of a registered version: the task that registered it (keys shared with runs).
VERSION_LINEAGE = (DAG_ID, RUN_ID, TASK_ID, URL)
#: The gate's verdict on a version: ``passed`` or ``rejected``.
GATE_STATUS = "airflow.gate.status"
#: The champion version the candidate was compared with, ``none`` without one.
GATE_BASELINE_VERSION = "airflow.gate.baseline_version"
#: ``<dag_id>/<run_id>`` of the DAG run whose gate judged the version.
GATE_DAG_RUN = "airflow.gate.dag_run"
GATE_EVALUATED_AT = "airflow.gate.evaluated_at"
#: ``airflow.gate.metric.<metric>``: the compared values and the threshold, one line of text.
GATE_METRIC_PREFIX = "airflow.gate.metric."


def gate_metric(metric: str) -> str:
    return f"{GATE_METRIC_PREFIX}{metric}"


#: The latest evaluation of a version (``MLflowEvaluateOperator``), one JSON object written at once
#: (a re-evaluation replaces it whole, never leaves metrics of an earlier dataset behind): its
#: metrics, the dataset (name, digest, source), the run holding its plots and tables, the model
#: type, the DAG run and when. The format belongs to ``airflow_mlflow.evaluation``.
EVALUATION = "airflow.eval.result"


#: On a batch prediction's run (``MLflowBatchPredictOperator``): the alias it resolved (absent when
#: given a version) and the pinned ``models:/<name>/<version>`` URI it loaded. The version itself
#: is the run's ``model_version`` param.
PREDICT_ALIAS = "airflow.predict.alias"
PREDICT_MODEL_URI = "airflow.predict.model_uri"
#: The model's changes whose asset events started the prediction's DAG run, one line
#: (``version 3 (promotion), version 4 (poll)``); absent when none did.
PREDICT_TRIGGERED_BY = "airflow.predict.triggered_by"


#: Set when a version becomes champion.
PROMOTION_PREVIOUS_VERSION = "airflow.promotion.previous_version"
PROMOTION_AT = "airflow.promotion.at"
PROMOTION_DAG_RUN = "airflow.promotion.dag_run"
PROMOTION_GATE = "airflow.promotion.gate"
#: Set on a version just before the provider makes it champion (JSON: ``seq``, ``alias``, ``stage``,
#: ``previous``, ``dag_run``, ``at``): registry watchers tell the provider's own moves (already
#: announced by its operators' asset events) from moves made elsewhere. See ``champion.own_move``.
CHAMPION_MOVE = "airflow.champion.move"
#: A person's decision on a version (``MLflowApprovalOperator``): ``approved`` or ``rejected``; a
#: rejected version is never promoted.
APPROVAL_STATUS = "airflow.approval.status"
#: Who decided (the Airflow user), or ``timeout`` when nobody answered in time.
APPROVAL_BY = "airflow.approval.by"
APPROVAL_AT = "airflow.approval.at"
APPROVAL_COMMENT = "airflow.approval.comment"
#: ``<dag_id>/<run_id>`` of the DAG run that asked.
APPROVAL_DAG_RUN = "airflow.approval.dag_run"
APPROVAL_TAGS = (APPROVAL_STATUS, APPROVAL_BY, APPROVAL_AT, APPROVAL_COMMENT, APPROVAL_DAG_RUN)
#: The serving check (``MLflowServingCheckOperator``): ``passed`` or ``failed``, the latencies it
#: measured over its requests (milliseconds, empty when none was measured), when, which DAG run
#: (``<dag_id>/<run_id>``), and on a failure what failed (one line).
SERVING_STATUS = "airflow.serving.status"
SERVING_P50_MS = "airflow.serving.p50_ms"
SERVING_P95_MS = "airflow.serving.p95_ms"
SERVING_CHECKED_AT = "airflow.serving.checked_at"
SERVING_DAG_RUN = "airflow.serving.dag_run"
SERVING_FAILURE = "airflow.serving.failure"
#: On the champion a rollback replaced.
ROLLBACK_AT = "airflow.rollback.at"
ROLLBACK_DAG_RUN = "airflow.rollback.dag_run"
#: On the version a rollback made champion again.
ROLLBACK_RESTORED_AT = "airflow.rollback.restored_at"

# -- registered models ---------------------------------------------------------------------------

#: JSON list of champion changes (promotions and rollbacks), newest last.
CHAMPION_HISTORY = "airflow.champion_history"
