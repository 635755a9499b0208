"""Base operator: the connection, a cached hook, and the tracked-run lifecycle."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowTaskTerminated, AirflowTaskTimeout

from airflow_mlflow.links.mlflow import RUN_XCOM_KEY, MLflowRunLink

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.runs import TaskRun, TaskRunContext

#: ``MLflowHook.default_conn_name``, spelled out so that a DAG file importing the operators does
#: not import the hook layer (the scheduler parses DAG files continuously; the hook is only
#: needed when a task runs).
DEFAULT_CONN_ID = "mlflow_default"
#: What a tracking task does when MLflow is unreachable: fail (default), or warn and go on.
TRACKING_FAILURE_MODES = ("fail", "warn")


def check_tracking_failure(value: Any) -> str:
    """``tracking_failure`` checked when the DAG is parsed."""
    if value not in TRACKING_FAILURE_MODES:
        from airflow_mlflow.exceptions import MLflowInputError

        raise MLflowInputError(f"tracking_failure must be 'fail' or 'warn', got {value!r}")
    return value


def is_outage(err: BaseException) -> bool:
    """
    True when ``err`` says MLflow could not be reached or failed on its side (connection errors,
    timeouts, 5xx after the client's retries), not that the request was wrong: invalid input,
    conflicts, refused credentials, missing resources and a connection this process cannot read
    are the DAG's to fix, and fail the task even with ``tracking_failure="warn"``.
    """
    from airflow_mlflow.exceptions import (
        MLflowAuthError,
        MLflowConflictError,
        MLflowConnectionLookupError,
        MLflowInputError,
        MLflowProviderError,
        MLflowResourceNotFoundError,
    )

    user_faults = (
        MLflowInputError,
        MLflowConflictError,
        MLflowAuthError,
        MLflowResourceNotFoundError,
        MLflowConnectionLookupError,  # the connection, not MLflow: never hidden behind "warn"
    )
    if isinstance(err, MLflowProviderError):
        return not isinstance(err, user_faults)
    if type(err).__name__ == "MlflowException":  # MLflow's own, from user code's fluent calls
        from airflow_mlflow.exceptions import translate

        return is_outage(translate(err, "MLflow"))
    return isinstance(err, (ConnectionError, TimeoutError)) or type(err).__module__.startswith("requests.")


def make_hook(mlflow_conn_id: str) -> MLflowHook:
    """The task's hook, imported at execute time rather than at DAG-parse time."""
    from airflow_mlflow.hooks.mlflow import MLflowHook

    return MLflowHook(mlflow_conn_id=mlflow_conn_id)


class MLflowBaseOperator(BaseOperator):
    """
    Base class of the provider's operators.

    :param mlflow_conn_id: the ``mlflow`` connection (default ``mlflow_default``; when that is not
        defined, the embedded store under ``$AIRFLOW_HOME/mlflow``) (templated)
    """

    template_fields: Sequence[str] = ("mlflow_conn_id",)
    ui_color = "#d6ecfa"

    def __init__(self, *, mlflow_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def hook(self) -> MLflowHook:
        return make_hook(self.mlflow_conn_id)


class TrackedRunMixin:
    """
    Runs a task body inside the task instance's MLflow run.

    The run is opened (or reopened on a retry), recorded in XCom for the "MLflow Run" link, and
    ended FINISHED, FAILED, or KILLED (timeout, external kill) with the attempt recorded as tags.

    With ``tracking_failure="warn"`` an MLflow outage (see :func:`is_outage`) does not fail the
    task: the task log warns once, the body runs without tracking (``untracked``), and the end of
    the DAG run records the attempt on its run once MLflow answers again.
    """

    operator_extra_links = (MLflowRunLink(),)
    hook: MLflowHook
    experiment_name: str | None
    nested: bool
    _task_run: TaskRun | None = None
    _run_ctx: TaskRunContext | None = None
    #: Set by a body that logged ``attempt_tags(ctx, "success")`` in its own batch (one request fewer).
    _success_logged: bool = False
    #: Set by a body that ended the run itself (``@task.mlflow``: MLflow's fluent API on leaving
    #: the run): the status it left, which closing does not set again.
    _ended_as: str | None = None
    tracking_failure: str = "fail"
    _outage_warned: bool = False
    #: Set by a body whose user code raised: that error is the task's, never tolerated as an outage.
    _user_error: BaseException | None = None

    def run_tracked(
        self,
        context: Context,
        body: Callable[[TaskRun], Any],
        run_id: str | None = None,
        *,
        untracked: Callable[[], Any] | None = None,
    ) -> Any:
        """
        Run ``body`` in the task's run; ``untracked`` is what the task does instead when MLflow is
        down and ``tracking_failure="warn"``.
        """
        from airflow_mlflow.runs import TaskRunContext, open_task_run

        self._run_ctx = ctx = TaskRunContext.from_context(context)
        self._success_logged = False
        self._ended_as = None
        self._outage_warned = False
        self._user_error = None
        try:
            task_run = open_task_run(
                self.hook, ctx, experiment_name=self.experiment_name, nested=self.nested, run_id=run_id
            )
        except Exception as err:
            if untracked is None or not self.tolerate_outage(err):
                raise
            return self._run_untracked(context, untracked)
        self._task_run = task_run
        context["ti"].xcom_push(key=RUN_XCOM_KEY, value=task_run.to_json())
        self.log.info(
            "MLflow run %s (experiment %s) %s",
            task_run.run_id,
            task_run.experiment_id,
            task_run.run_url or "",
        )
        try:
            result = body(task_run)
        except (AirflowTaskTimeout, AirflowTaskTerminated) as err:
            self._close_quietly("killed", err)
            raise
        except Exception as err:
            if untracked is not None and err is not self._user_error and self.tolerate_outage(err):
                self._task_run = None  # left as is; the end of the DAG run records the attempt
                return self._run_untracked(context, untracked)
            self._close_quietly("failed", err)
            raise
        except BaseException as err:
            self._close_quietly("failed", err)
            raise
        try:
            self._close("success")
        except Exception as err:
            if not self.tolerate_outage(err):
                raise
        return result

    def _run_untracked(self, context: Context, untracked: Callable[[], Any]) -> Any:
        # The "MLflow Run" link then leads to the task's MLflow tab, which shows the run once recorded.
        context["ti"].xcom_push(key=RUN_XCOM_KEY, value={"run_id": None, "tracking": "unavailable"})
        return untracked()

    def tolerate_outage(self, err: BaseException) -> bool:
        """
        With ``tracking_failure="warn"``, True for an MLflow outage, after one warning in the task
        log (one per attempt, however many calls fail).
        """
        if self.tracking_failure != "warn" or not is_outage(err):
            return False
        if not self._outage_warned:
            self._outage_warned = True
            self.log.warning(
                "MLflow is unreachable (%s). tracking_failure='warn': this attempt goes on without "
                "tracking; its outcome is recorded on its MLflow run when the DAG run ends and MLflow "
                "answers again",
                f"{type(err).__name__}: {err}"[:300],
            )
        return True

    def _close(self, outcome: str, error: BaseException | None = None) -> None:
        task_run, self._task_run = self._task_run, None
        if task_run is not None and self._run_ctx is not None:
            from airflow_mlflow.runs import close_task_run

            logged = outcome == "success" and self._success_logged
            close_task_run(
                self.hook,
                task_run,
                self._run_ctx,
                outcome,
                error,
                state_logged=logged,
                ended_as=self._ended_as,
            )

    def _close_quietly(self, outcome: str, error: BaseException | None = None) -> None:
        """Close on a failure path without hiding the task's own error behind MLflow's."""
        try:
            self._close(outcome, error)
        except Exception:
            self.log.warning("Could not mark the MLflow run %s", outcome, exc_info=True)

    def on_kill(self) -> None:
        self._close_quietly("killed")
