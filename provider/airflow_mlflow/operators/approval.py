"""A person signs off before a model version becomes champion: Airflow's human-in-the-loop approval."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param

from airflow_mlflow.links.mlflow import MLflowModelVersionLink, push_version_link
from airflow_mlflow.operators.base import DEFAULT_CONN_ID, make_hook
from airflow_mlflow.validation import DEFAULT_ALIAS, DEFAULT_STAGE, check_target, normalize_stage

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlflow.hooks.mlflow import MLflowHook

#: The form field a reviewer may fill in; it lands in ``airflow.approval.comment``.
COMMENT_PARAM = "comment"
#: Values that switch the step off (``required`` is templated, e.g. from a DAG Param).
_OFF = {"false", "0", "no", "off", "none", ""}


def parse_required(value: Any) -> bool:
    """``required`` as rendered: a bool, or its text (``"False"`` from ``{{ params.x }}``)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _OFF:
        return False
    if text in {"true", "1", "yes", "on"}:
        return True
    from airflow_mlflow.exceptions import MLflowInputError

    raise MLflowInputError(f"required must be true or false, got {value!r}")


class MLflowApprovalOperator(ApprovalOperator):
    """
    Ask a person to approve a model version before it is promoted.

    Builds on Airflow's :class:`~airflow.providers.standard.operators.hitl.ApprovalOperator`: the
    task waits for an answer without holding a worker slot, and the request (Airflow's "Required
    actions" page, and the task's page) shows, in Markdown, the candidate against the champion
    metric by metric with the gate's verdict and thresholds, and links to both versions and runs.

    * **Approve**: downstream tasks (the promotion) run.
    * **Reject**: they are skipped, and the DAG run succeeds. ``MLflowPromoteModelOperator``
      refuses a version a person rejected, as it refuses one the gate rejected.
    * **No answer within** ``response_timeout``: rejected (``defaults``), so nothing is promoted
      unless someone said so.

    The decision, who made it, when, and their comment are written to the version
    (``airflow.approval.*`` tags) and go into the champion history entry of the promotion they
    allowed; the MLflow views of the Airflow UI show them.

    :param model_name: registered model (templated)
    :param version: the candidate version, e.g. from the register task's XCom (templated)
    :param alias: where the champion lives (default ``champion``), to compare against
    :param stage: ... or its stage, when ``alias`` is None
    :param required: templated switch, e.g. ``"{{ params.require_approval }}"``: when it renders
        false the step records nothing and lets the promotion go on without asking
    :param subject: the request's headline (templated); default names model and version
    :param assigned_users: who may answer (``{"id": ..., "name": ...}`` or a list of them)
    :param notifiers: notifiers called when the request is made (e.g. a Slack notifier)
    :param response_timeout: how long to wait for an answer
    """

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "model_name", "version", "required")
    operator_extra_links = (MLflowModelVersionLink(),)
    ui_color = "#d6ecfa"

    def __init__(
        self,
        *,
        model_name: str,
        version: str | int,
        alias: str | None = DEFAULT_ALIAS,
        stage: str | None = DEFAULT_STAGE,
        required: bool | str = True,
        subject: str | None = None,
        response_timeout: timedelta | None = None,
        mlflow_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        params = {COMMENT_PARAM: Param("", type=["string", "null"], description="why (kept on the version)")}
        params.update(kwargs.pop("params", None) or {})
        kwargs.setdefault("defaults", ApprovalOperator.REJECT)
        super().__init__(
            subject=subject or f"Promote {model_name} version {version}?",
            params=params,
            response_timeout=response_timeout,
            **kwargs,
        )
        self.model_name = model_name
        self.version = version
        self.alias = alias
        self.stage = normalize_stage(stage) if stage else None
        check_target(self.alias, self.stage)
        self.required = required
        self.mlflow_conn_id = mlflow_conn_id

    @property
    def serialized_params(self) -> dict[str, dict[str, Any]]:
        """
        The form a reviewer fills in: this step's fields. The DAG's params join ``self.params`` too,
        and Airflow's check of an answer wants every key of the form: a reviewer would have to
        repeat the DAG run's params.
        """
        dag_params = set(self.dag.params) if self.has_dag() else set()
        return {
            k: v for k, v in super().serialized_params.items() if k == COMMENT_PARAM or k not in dag_params
        }

    @property
    def hook(self) -> MLflowHook:
        hook = self.__dict__.get("_hook")
        if hook is None:
            hook = self.__dict__["_hook"] = make_hook(self.mlflow_conn_id)
        return hook

    def execute(self, context: Context) -> Any:
        version = str(self.version)
        push_version_link(context, self.hook, self.model_name, version)
        if not parse_required(self.required):
            self.log.info("Approval not required for %s version %s; not asking", self.model_name, version)
            return {"approved": None, "required": False}
        if self.body is None:
            from airflow_mlflow.approval import render_request

            self.body = render_request(self.hook, self.model_name, version, self.alias, self.stage)
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        from airflow_mlflow.approval import record_decision

        if "error" not in event:  # a timeout without defaults, or a failed trigger: Airflow's to report
            chosen = (event.get("chosen_options") or [None])[0]
            record_decision(
                self.hook,
                self.model_name,
                str(self.version),
                approved=chosen == self.APPROVE,
                user=event.get("responded_by_user"),
                at=event.get("responded_at"),
                comment=(event.get("params_input") or {}).get(COMMENT_PARAM),
                dag_run=f"{context['ti'].dag_id}/{context['ti'].run_id}",
            )
        result = super().execute_complete(context, event)
        return _plain(result)


def _plain(result: Any) -> Any:
    """The XCom value: the answer, with its time as text."""
    if isinstance(result, Mapping):
        return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in result.items()}
    return result
