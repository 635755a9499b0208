"""DAGs of plain operators tracked by the task-process listener (issue 12): ``enable_tracking``,
``disable_tracking`` and ``[mlflow] track_all_tasks``."""

from __future__ import annotations

import shlex
import sys
import sysconfig
import tempfile
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import BaseOperator, dag, task

from airflow_mlflow import disable_tracking, enable_tracking

START = pendulum.datetime(2026, 1, 1, tz="UTC")


#: An MLflow script that knows nothing of Airflow; the BashOperator renders ``params.rows`` into it.
ROWS_SCRIPT = 'import mlflow; mlflow.log_metric("rows", {{ params.rows }})'

#: ``@task.virtualenv`` reuses one venv per machine (creating it costs ~8 s: ensurepip).
VENV_CACHE = str(Path(tempfile.gettempdir()) / "amlf-test-venvs")
#: A venv made from a venv's interpreter (``python -m venv --system-site-packages``) sees the
#: *base* interpreter's site-packages, not this one's: point it at ours so ``import mlflow`` works
#: offline, with nothing to install.
VENV_ENV = {"PYTHONPATH": sysconfig.get_path("purelib")}


def python_c(script: str) -> str:
    """The shell command running ``script`` with this interpreter."""
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}"


def _prepare(rows: int) -> int:
    return rows


def mixed_dag(
    dag_id: str,
    *,
    opt_in: bool = True,
    skip_report: bool = False,
    fail_bash: bool = False,
    flaky: bool = False,
):
    """
    A PythonOperator; a BashOperator running an unmodified MLflow script (``ROWS_SCRIPT``) with a
    secret in ``env``; a @task.virtualenv calling ``mlflow.log_metric`` with no set-up; a mapped
    @task (x2); a @task; a @task.mlflow; with ``flaky``, a BashOperator whose first try fails.
    """

    @dag(dag_id=dag_id, schedule=None, start_date=START, catchup=False)
    def _dag():
        prepare = PythonOperator(task_id="prepare", python_callable=_prepare, op_kwargs={"rows": 42})
        bash = BashOperator(
            task_id="bash",
            bash_command="exit 3" if fail_bash else python_c(ROWS_SCRIPT),
            env={"API_PASSWORD": "hunter2"},
            append_env=True,
            params={"rows": 7},
        )

        @task.virtualenv(system_site_packages=True, venv_cache_path=VENV_CACHE, env_vars=VENV_ENV)
        def in_venv() -> None:
            import mlflow

            mlflow.log_metric("venv_score", 0.5)

        @task
        def fold(i: int) -> int:
            return i * 2

        @task
        def report() -> str:
            return "ok"

        @task.mlflow
        def train() -> float:
            import mlflow

            mlflow.log_metric("score", 0.9)
            return 0.9

        folds = fold.expand(i=[1, 2])
        rep = report()
        prepare >> bash >> in_venv() >> folds >> rep >> train()
        if skip_report:
            disable_tracking(rep)
        if flaky:
            BashOperator(
                task_id="flaky", bash_command="test {{ ti.try_number }} -gt 1", retries=1, retry_delay=0
            )

    built = _dag()
    return enable_tracking(built) if opt_in else built


mixed = mixed_dag("any_task_mixed")
partly = mixed_dag("any_task_partly", skip_report=True)
plain = mixed_dag("any_task_plain", opt_in=False)
#: Not opted in, one task opted out, one retried: with ``track_all_tasks`` every task but
#: ``report`` is tracked (one DAG run for all of it: it costs minutes on a basic-auth server).
all_but_report = mixed_dag("any_task_all_but_report", opt_in=False, skip_report=True, flaky=True)
failing = mixed_dag("any_task_failing", fail_bash=True)


@dag(dag_id="any_task_secrets", schedule=None, start_date=START, catchup=False)
def _secrets():
    BashOperator(
        task_id="uses_secrets",
        bash_command="test -n '{{ conn.secret_db.password }}' && test -n '{{ var.value.api_password }}'",
    )
    BashOperator(task_id="plain", bash_command="echo fine")


secrets = enable_tracking(_secrets())


@dag(dag_id="any_task_script", schedule=None, start_date=START, catchup=False)
def _script():
    """An unmodified MLflow script run by a BashOperator: it knows nothing of Airflow."""
    script = "import mlflow; mlflow.log_metric('m', 1.5); mlflow.log_param('p', 'x')"
    BashOperator(task_id="train", bash_command=python_c(script))


script = enable_tracking(_script())


@dag(dag_id="any_task_retry", schedule=None, start_date=START, catchup=False)
def _retry():
    BashOperator(task_id="flaky", bash_command="test {{ ti.try_number }} -gt 1", retries=1, retry_delay=0)


retry = enable_tracking(_retry())


def _external_train() -> None:
    import mlflow

    mlflow.log_metric("ext", 2.5)


@dag(dag_id="any_task_external", schedule=None, start_date=START, catchup=False)
def _external():
    from airflow.providers.standard.operators.python import ExternalPythonOperator

    ExternalPythonOperator(task_id="train", python=sys.executable, python_callable=_external_train)


external = enable_tracking(_external())


class _Deferring(BaseOperator):
    """Defers once on a short timer, then finishes: two processes, one try number."""

    def execute(self, context):
        from datetime import timedelta

        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=1)), method_name="done")

    def done(self, context, event=None):
        return "resumed"


@dag(dag_id="any_task_deferred", schedule=None, start_date=START, catchup=False)
def _deferred():
    _Deferring(task_id="wait")


deferred = enable_tracking(_deferred())
