"""``MLflowProjectOperator``: an MLflow Project's entry point as the task's own MLflow run."""

from __future__ import annotations

import os
import signal
import threading
import time
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowTaskTerminated, AirflowTaskTimeout

from airflow_mlflow.exceptions import MLflowInputError, MLflowProjectRunError
from airflow_mlflow.operators.projects import MLflowProjectOperator, is_remote_uri
from airflow_mlflow.plugins import listener
from airflow_mlflow.tags import ROLE, ROLE_DAG_RUN, TASK_ID, try_tag
from tests.assertions import xcom_value

MLPROJECT = """
name: scratch
entry_points:
  main:
    parameters:
      greeting: {type: string, default: hello}
    command: "echo {greeting} from the entry point; echo last words >&2; exit 3"
  slow:
    command: "echo started; sleep 60"
"""


def context() -> dict:
    ti = SimpleNamespace(
        dag_id="d", run_id="manual__1", task_id="t", map_index=-1, try_number=1, xcom_push=lambda **_: None
    )
    return {"ti": ti, "logical_date": None}


@pytest.fixture
def scratch(tmp_path):
    folder = tmp_path / "scratch"
    folder.mkdir()
    (folder / "MLproject").write_text(MLPROJECT)
    return folder


def task_run(store, experiment: str):
    exp = store.client.get_experiment_by_name(experiment)
    (run,) = store.client.search_runs([exp.experiment_id], f"tags.`{TASK_ID}` != ''")
    return run


@pytest.mark.usefixtures("airflow_db")
def test_the_shipped_project_runs_as_the_task_child_run_with_templated_parameters(store):
    from tests.dags.projects import project

    dag_run = project.test()
    listener.drain()
    assert dag_run.state == "success"
    exp = store.client.get_experiment_by_name("project_example")
    runs = store.client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get(ROLE) == ROLE_DAG_RUN]
    (train,) = [r for r in runs if r.data.tags.get(TASK_ID) == "train"]
    assert train.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert train.info.status == "FINISHED"
    assert train.data.tags[try_tag(1, "state")] == "success"
    # The templated value reached the project; the default it did not get is logged as mlflow run logs it.
    assert train.data.params == {"C": "0.5", "max_iter": "300"}
    assert train.data.tags["mlflow.source.type"] == "PROJECT"
    assert train.data.tags["mlflow.project.entryPoint"] == "main"
    # The entry point's mlflow.start_run() wrote into the same run.
    assert train.data.metrics["accuracy"] > 0.8
    (model,) = store.client.search_logged_models([exp.experiment_id])
    assert model.source_run_id == train.info.run_id and model.name == "model"
    result = xcom_value(dag_run, "train", "return_value")
    assert result["run_id"] == train.info.run_id
    assert result["project"]["parameters"] == {"C": "0.5", "max_iter": "300"}


class TaskLog:
    """Records what the operator writes to its task log."""

    def __init__(self):
        self.lines: list[str] = []

    def info(self, message, *args):
        self.lines.append(message % args)

    warning = error = debug = info


def test_a_failing_entry_point_fails_the_task_with_its_output(store, scratch):
    op = MLflowProjectOperator(
        task_id="t", uri=str(scratch), parameters={"greeting": "bonjour"}, experiment_name="p"
    )
    op._cached_logger = log = TaskLog()
    with pytest.raises(MLflowProjectRunError) as failed:
        op.execute(context())
    assert "bonjour from the entry point" in str(failed.value)
    assert "last words" in str(failed.value)  # stderr too
    assert not isinstance(failed.value, MLflowInputError)  # retried as configured
    assert "[project] bonjour from the entry point" in log.lines
    run = task_run(store, "p")
    assert run.info.status == "FAILED"
    assert run.data.params == {"greeting": "bonjour"}
    assert "MLflowProjectRunError" in run.data.tags[try_tag(1, "error")]


def test_an_unknown_entry_point_is_refused_naming_it(store, scratch):
    op = MLflowProjectOperator(task_id="t", uri=str(scratch), entry_point="trian", experiment_name="p")
    with pytest.raises(MLflowInputError, match="'trian'"):
        op.execute(context())
    assert task_run(store, "p").info.status == "FAILED"


def test_a_folder_without_mlproject_is_refused_before_any_run(store, tmp_path):
    (tmp_path / "train.py").write_text("print('hi')\n")
    op = MLflowProjectOperator(task_id="t", uri=str(tmp_path), experiment_name="p")
    with pytest.raises(MLflowInputError, match=f"no MLproject file in {tmp_path}"):
        op.execute(context())
    missing = MLflowProjectOperator(task_id="t", uri="projects/nowhere", experiment_name="p")
    with pytest.raises(MLflowInputError, match="'projects/nowhere'"):
        missing.execute(context())
    assert store.client.get_experiment_by_name("p") is None


def test_on_kill_stops_the_project_and_the_run_ends_killed(store, scratch):
    op = MLflowProjectOperator(task_id="t", uri=str(scratch), entry_point="slow", experiment_name="p")
    raised: list[BaseException] = []

    def work():
        try:
            op.execute(context())
        except BaseException as err:
            raised.append(err)

    thread = threading.Thread(target=work)
    thread.start()
    deadline = time.monotonic() + 60
    while op._project is None and time.monotonic() < deadline:
        time.sleep(0.1)
    project = op._project
    assert project is not None
    while (
        time.monotonic() < deadline
        and project.proc.poll() is None
        and not _in_group(project.proc.pid, "sleep")
    ):
        time.sleep(0.1)
    op.on_kill()
    thread.join(30)
    assert not thread.is_alive()
    assert isinstance(raised[0], AirflowTaskTerminated)
    assert not _in_group(project.proc.pid, "sleep")  # the entry point's own process is gone too
    assert task_run(store, "p").info.status == "KILLED"


def test_a_timeout_stops_the_project_and_the_run_ends_killed(store, scratch):
    """Airflow's execution_timeout: SIGALRM raises AirflowTaskTimeout in the task's main thread."""
    op = MLflowProjectOperator(
        task_id="t", uri=str(scratch), entry_point="slow", experiment_name="p", stop_grace_period=5
    )
    started: list[int] = []

    def on_alarm(*_):
        project = op._project
        if project is None or not _in_group(project.proc.pid, "sleep"):
            signal.setitimer(signal.ITIMER_REAL, 0.2)  # not running yet: look again
            return
        started.append(project.proc.pid)
        raise AirflowTaskTimeout("timed out")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(AirflowTaskTimeout):
            op.execute(context())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert started and not _in_group(started[0], "sleep")
    assert task_run(store, "p").info.status == "KILLED"


def _in_group(pgid: int, name: str) -> bool:
    """Whether a live process named ``name`` is in process group ``pgid``."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if comm == name and fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


@pytest.mark.parametrize(
    ("uri", "remote"),
    [
        ("https://github.com/mlflow/mlflow-example", True),
        ("git@github.com:mlflow/mlflow-example.git", True),
        ("file:///srv/projects/x", False),
        ("projects/iris#sub", False),
        ("/abs/path", False),
    ],
)
def test_remote_uris_are_told_from_local_folders(uri, remote):
    assert is_remote_uri(uri) is remote
