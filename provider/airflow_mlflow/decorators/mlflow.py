"""``@task.mlflow``: a TaskFlow task that runs inside its task instance's MLflow run."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk.bases.decorator import DecoratedOperator, task_decorator_factory

from airflow_mlflow.operators.base import (
    DEFAULT_CONN_ID,
    TrackedRunMixin,
    check_tracking_failure,
    make_hook,
)

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.bases.decorator import TaskDecorator

    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.operators.base import TrackedRun


class _MLflowDecoratedOperator(TrackedRunMixin, DecoratedOperator, PythonOperator):
    """
    Runs the decorated function with its task instance's MLflow run active, so plain
    ``mlflow.log_param``, ``mlflow.log_metric``, ``mlflow.log_artifact``,
    ``mlflow.<flavor>.log_model`` and autologging land in that run.

    :param mlflow_conn_id: the ``mlflow`` connection (templated)
    :param experiment_name: experiment of the run; default the connection's, else the DAG id (templated)
    :param nested: nest the run under one run per DAG run (default True)
    :param tracking_failure: ``"fail"`` (default): an MLflow outage fails the task; ``"warn"``: the
        task log warns once and the function runs without tracking, its own ``mlflow.*`` calls
        going to a scratch store that is deleted afterwards (the attempt is recorded on its run
        when the DAG run ends and MLflow answers again)
    """

    template_fields: Sequence[str] = (
        "templates_dict",
        "op_args",
        "op_kwargs",
        "mlflow_conn_id",
        "experiment_name",
    )
    template_fields_renderers = {"templates_dict": "json", "op_args": "py", "op_kwargs": "py"}
    custom_operator_name = "@task.mlflow"
    ui_color = "#d6ecfa"

    def __init__(
        self,
        *,
        python_callable: Callable,
        op_args: Any,
        op_kwargs: Any,
        mlflow_conn_id: str = DEFAULT_CONN_ID,
        experiment_name: str | None = None,
        nested: bool = True,
        tracking_failure: str = "fail",
        **kwargs: Any,
    ) -> None:
        self.mlflow_conn_id = mlflow_conn_id
        self.experiment_name = experiment_name
        self.nested = nested
        self.tracking_failure = check_tracking_failure(tracking_failure)
        super().__init__(
            kwargs_to_upstream={
                "python_callable": python_callable,
                "op_args": op_args,
                "op_kwargs": op_kwargs,
            },
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            **kwargs,
        )

    @cached_property
    def hook(self) -> MLflowHook:
        return make_hook(self.mlflow_conn_id)

    def execute(self, context: Context) -> Any:
        from airflow_mlflow.dependency_warnings import quiet_module_scans

        with quiet_module_scans():
            with self.tracked_run(context) as run:
                if run.tracked:
                    return self._call_in_run(run, context)
            return self._call_untracked(context)  # MLflow unreachable, tracking_failure="warn"

    def _call_in_run(self, run: TrackedRun, context: Context) -> Any:
        import mlflow
        from mlflow.exceptions import MlflowException

        from airflow_mlflow.compat_fluent import activate_run
        from airflow_mlflow.exceptions import translate

        task_run = run.run
        body_error: BaseException | None = None
        ends_ours = returned = False
        result = None
        try:
            with self.hook.user_code_env(), activate_run(task_run.record):
                try:
                    result = super().execute(context)
                    returned = True
                except BaseException as err:
                    body_error = err
                    raise
                finally:
                    # Leaving the block ends the run on top of MLflow's stack: ours, unless the
                    # function ended it itself or left a run of its own open.
                    top = mlflow.active_run()
                    ends_ours = top is not None and top.info.run_id == task_run.run_id
        except BaseException as err:
            if ends_ours and err is body_error:  # MLflow ended the run FAILED on the way out
                run.ended_as = "FAILED"
            if body_error is None and isinstance(err, Exception) and self.tolerate_outage(err):
                # MLflow failed around the function, not in it: before it ran (run it untracked),
                # or after it returned (its work is done).
                return result if returned else self._call_untracked(context)
            if isinstance(err, MlflowException):
                # e.g. a retry logging a changed param: MLflow's error code decides if a retry could help.
                translated = translate(err, f"MLflow run {task_run.run_id} of task {self.task_id!r}")
                if err is body_error:
                    run.user_error = translated
                raise translated from err
            if err is body_error:
                run.user_error = err
            raise
        if ends_ours:
            run.ended_as = "FINISHED"
        return result

    def _call_untracked(self, context: Context) -> Any:
        """The function without MLflow: its own ``mlflow.*`` calls land in a discarded scratch run."""
        with _scratch_run():
            return super().execute(context)


@contextlib.contextmanager
def _scratch_run() -> Iterator[None]:
    """
    An active run in a throwaway file store, deleted on exit, as the fluent API's target: user code
    logging to MLflow neither fails nor waits on the unreachable server, and nothing is left in a
    local ``./mlruns`` or ``mlflow.db``.
    """
    import tempfile

    import mlflow

    from airflow_mlflow.compat_fluent import use_tracking_uri
    from airflow_mlflow.hooks.base import scoped_environment

    with tempfile.TemporaryDirectory(prefix="airflow-mlflow-untracked-") as tmp:
        uri = f"file://{tmp}"
        env = {
            "MLFLOW_TRACKING_URI": uri,
            "MLFLOW_REGISTRY_URI": uri,
            "MLFLOW_ALLOW_FILE_STORE": "true",
            "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
        }
        with scoped_environment(env), use_tracking_uri(uri):
            experiment_id = mlflow.MlflowClient(uri).create_experiment("untracked")
            with mlflow.start_run(experiment_id=experiment_id):
                yield


def mlflow_task(
    python_callable: Callable | None = None,
    multiple_outputs: bool | None = None,
    **kwargs: Any,
) -> TaskDecorator:
    """
    Wrap a function into a task that runs inside its own MLflow run (``@task.mlflow``).

    Each task instance gets a run, nested under one run for its DAG run, tagged with its Airflow
    identity; a retry reuses it. Inside the function the run is active: use ``mlflow.*`` freely.

    :param python_callable: the function to decorate
    :param multiple_outputs: unroll a returned dict into several XComs
    :param mlflow_conn_id: the ``mlflow`` connection
    :param experiment_name: experiment of the run (default: the connection's, else the DAG id)
    :param nested: nest the run under the DAG run's run (default True)
    :param tracking_failure: ``"fail"`` (default) or ``"warn"``: go on without tracking when MLflow
        is unreachable
    """
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=multiple_outputs,
        decorated_operator_class=_MLflowDecoratedOperator,
        **kwargs,
    )
