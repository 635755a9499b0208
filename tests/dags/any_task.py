"""DAGs of plain operators tracked by the task-process listener (issue 12): ``enable_tracking``,
``disable_tracking`` and ``[mlflow] track_all_tasks``."""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import dag, task

from airflow_mlflow import disable_tracking, enable_tracking

START = pendulum.datetime(2026, 1, 1, tz="UTC")


def _prepare(rows: int) -> int:
    return rows


def mixed_dag(dag_id: str, *, opt_in: bool = True, skip_report: bool = False, fail_bash: bool = False):
    """A PythonOperator, a BashOperator holding a secret in ``env``, a mapped @task (x2), a @task.mlflow."""

    @dag(dag_id=dag_id, schedule=None, start_date=START, catchup=False)
    def _dag():
        prepare = PythonOperator(task_id="prepare", python_callable=_prepare, op_kwargs={"rows": 42})
        bash = BashOperator(
            task_id="bash",
            bash_command="exit 3" if fail_bash else "echo rows={{ params.rows }}",
            env={"API_PASSWORD": "hunter2"},
            append_env=True,
            params={"rows": 7},
        )

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
        prepare >> bash >> folds >> rep >> train()
        if skip_report:
            disable_tracking(rep)

    built = _dag()
    return enable_tracking(built) if opt_in else built


mixed = mixed_dag("any_task_mixed")
partly = mixed_dag("any_task_partly", skip_report=True)
plain = mixed_dag("any_task_plain", opt_in=False)
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
    import shlex
    import sys

    script = "import mlflow; mlflow.log_metric('m', 1.5); mlflow.log_param('p', 'x')"
    BashOperator(task_id="train", bash_command=f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}")


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
    import sys

    from airflow.providers.standard.operators.python import ExternalPythonOperator

    ExternalPythonOperator(task_id="train", python=sys.executable, python_callable=_external_train)


external = enable_tracking(_external())
