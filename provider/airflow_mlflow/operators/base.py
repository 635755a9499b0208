"""Base operator: the connection, a cached hook, and the tracked-run lifecycle."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowTaskTerminated, AirflowTaskTimeout

from airflow_mlflow.links.mlflow import MLflowRunLink, push_run_payload

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
#: What a tracking task returns, and records for its link, when it went on without MLflow.
UNTRACKED = {"run_id": None, "tracking": "unavailable"}


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


class TrackedRun:
    """
    One attempt's MLflow run, as the task's body sees it, and how the attempt ended.

    ``run`` is None when the body must work untracked (MLflow unreachable, ``tracking_failure=
    "warn"``). The body notes on it what it already did to the run, so that closing does not do it
    again, and which error was its own.

    A plain class rather than a dataclass: this module is imported whenever a DAG file using the
    operators is parsed, and generating a dataclass's methods cost that parse more than anything
    else this module defines. Equality is identity, as with ``@dataclass(eq=False)``.
    """

    ctx: TaskRunContext
    run: TaskRun | None
    #: How the attempt ended (``success``, ``failed``, ``killed``), once closed.
    outcome: str | None
    #: The body logged :meth:`success_tags` in its own batch (one request fewer).
    success_logged: bool
    #: The status the body left the run in (``@task.mlflow``: MLflow's fluent API ends the run on
    #: leaving it), which closing does not set again.
    ended_as: str | None
    #: An error of user code: the task's own, never tolerated as an outage.
    user_error: BaseException | None

    def __init__(
        self,
        ctx: TaskRunContext,
        run: TaskRun | None = None,
        outcome: str | None = None,
        success_logged: bool = False,
        ended_as: str | None = None,
        user_error: BaseException | None = None,
    ) -> None:
        self.ctx = ctx
        self.run = run
        self.outcome = outcome
        self.success_logged = success_logged
        self.ended_as = ended_as
        self.user_error = user_error

    def __repr__(self) -> str:
        fields = ("ctx", "run", "outcome", "success_logged", "ended_as", "user_error")
        return f"TrackedRun({', '.join(f'{name}={getattr(self, name)!r}' for name in fields)})"

    @property
    def tracked(self) -> bool:
        return self.run is not None

    def success_tags(self) -> dict[str, str]:
        """
        The attempt's success, to ride in the body's last batch; empty for a run the task does not
        own. Set :attr:`success_logged` once the batch is written (a later failure overwrites it).
        """
        from airflow_mlflow.attempts import attempt_tags

        return attempt_tags(self.ctx, "success") if self.run is not None and self.run.owned else {}

    def close(
        self,
        hook: MLflowHook,
        outcome: str,
        error: BaseException | None = None,
        metrics: Mapping[str, float] | None = None,
    ) -> None:
        """
        End the attempt, once: record it on the run (with ``metrics``, in the same request) and
        end the run with the matching status.
        """
        if self.run is None or self.outcome is not None:
            return
        self.outcome = outcome
        from airflow_mlflow.runs import close_task_run

        close_task_run(
            hook,
            self.run,
            self.ctx,
            outcome,
            error,
            state_logged=outcome == "success" and self.success_logged,
            ended_as=self.ended_as,
            metrics=metrics,
        )


class TrackedRunMixin:
    """
    Runs a task body inside the task instance's MLflow run: ``with self.tracked_run(context) as run``.

    The run is opened (or reopened on a retry), recorded in XCom for the "MLflow Run" link, and
    ended FINISHED, FAILED, or KILLED (timeout, external kill) with the attempt recorded as tags.

    With ``tracking_failure="warn"`` an MLflow outage (see :func:`is_outage`) does not fail the
    task: the task log warns once, the body runs without tracking, and the end of the DAG run
    records the attempt on its run once MLflow answers again.
    """

    operator_extra_links = (MLflowRunLink(),)
    hook: MLflowHook
    experiment_name: str | None
    nested: bool
    tracking_failure: str = "fail"
    #: The attempt running now (``on_kill`` closes it).
    _tracked: TrackedRun | None = None
    #: Whether this attempt recorded the link's payload (Airflow computes links when the task stops).
    _run_recorded: bool = False
    _outage_warned: bool = False

    @contextlib.contextmanager
    def tracked_run(self, context: Context, run_id: str | None = None) -> Iterator[TrackedRun]:
        """
        The attempt's run (with ``run_id``: that run, as is), closed with the attempt's outcome
        when the block ends: success when it ends normally (``return`` included), KILLED on a
        timeout or external kill, else FAILED, the block's error re-raised.

        When MLflow is down and ``tracking_failure="warn"``, the yielded run is untracked
        (``run.tracked`` False), and an outage raised in the block ends the block: in both cases
        the code after the ``with`` statement does the task's work untracked.
        """
        from airflow_mlflow.runs import TaskRunContext, open_task_run

        self._outage_warned = False
        self._run_recorded = False
        self._tracked = tracked = TrackedRun(TaskRunContext.from_context(context))
        try:
            tracked.run = open_task_run(
                self.hook,
                tracked.ctx,
                experiment_name=self.experiment_name,
                nested=self.nested,
                run_id=run_id,
            )
        except Exception as err:
            if not self.tolerate_outage(err):
                raise
        if tracked.run is None:  # yielded outside the except clause: the block's errors are its own
            self._record_untracked(context)
            yield tracked
            return
        self._record(context, tracked.run.to_json())
        self.log.info(
            "MLflow run %s (experiment %s) %s",
            tracked.run.run_id,
            tracked.run.experiment_id,
            tracked.run.run_url or "",
        )
        try:
            yield tracked
        except (AirflowTaskTimeout, AirflowTaskTerminated) as err:
            self._close_quietly(tracked, "killed", err)
            raise
        except Exception as err:
            if err is not tracked.user_error and self.tolerate_outage(err):
                tracked.run = None  # left as is; the end of the DAG run records the attempt
                self._record_untracked(context)
                return
            self._close_quietly(tracked, "failed", err)
            raise
        except BaseException as err:
            self._close_quietly(tracked, "failed", err)
            raise
        try:
            tracked.close(self.hook, "success")
        except Exception as err:
            if not self.tolerate_outage(err):
                raise

    def _record(self, context: Context, payload: dict[str, Any]) -> None:
        push_run_payload(self, context["ti"], payload)
        self._run_recorded = True

    def _record_untracked(self, context: Context) -> None:
        # The "MLflow Run" link then leads to the task's MLflow tab, which shows the run once recorded.
        self._record(context, dict(UNTRACKED))

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

    def _close_quietly(self, tracked: TrackedRun, outcome: str, error: BaseException | None = None) -> None:
        """Close on a failure path without hiding the task's own error behind MLflow's."""
        try:
            tracked.close(self.hook, outcome, error)
        except Exception:
            self.log.warning("Could not mark the MLflow run %s", outcome, exc_info=True)

    def on_kill(self) -> None:
        """The task is being killed (SIGTERM): its run ends KILLED, the attempt recorded as killed."""
        if self._tracked is not None:
            self._close_quietly(self._tracked, "killed")
