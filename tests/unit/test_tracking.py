"""Opt-in switches of task tracking (issue 12): a const param, read from the DAG file to the scheduler."""

from __future__ import annotations

import pendulum
import pytest
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, task

from airflow_mlflow import MLflowLogOperator, disable_tracking, enable_tracking
from airflow_mlflow.links.mlflow import MLflowRunLink
from airflow_mlflow.tracking import TRACKING_PARAM, is_tracked

START = pendulum.datetime(2026, 1, 1, tz="UTC")


def _dag(dag_id: str = "t") -> DAG:
    return DAG(dag_id, schedule=None, start_date=START)


def test_a_dag_opts_in_all_its_tasks_but_those_given_their_own_choice():
    with _dag() as dag:
        a = BashOperator(task_id="a", bash_command="true")
        b = disable_tracking(BashOperator(task_id="b", bash_command="true"))
    assert enable_tracking(dag) is dag
    assert is_tracked(a) and not is_tracked(b)
    with dag:
        later = BashOperator(task_id="later", bash_command="true")
    assert is_tracked(later)  # inherits the DAG's param
    assert any(isinstance(link, MLflowRunLink) for link in a.operator_extra_links)


def test_an_xcom_arg_and_a_mapped_task_are_opted_in_through_their_operator():
    with _dag():

        @task
        def plain() -> int:
            return 1

        @task
        def fold(i: int) -> int:
            return i

        arg = enable_tracking(plain())
        mapped = enable_tracking(fold.expand(i=[1, 2]))
    assert is_tracked(arg.operator) and is_tracked(mapped.operator)


def test_track_all_tasks_tracks_what_is_not_disabled(monkeypatch):
    with _dag():
        a = BashOperator(task_id="a", bash_command="true")
        b = disable_tracking(BashOperator(task_id="b", bash_command="true"))
    assert not is_tracked(a)
    monkeypatch.setenv("AIRFLOW__MLFLOW__TRACK_ALL_TASKS", "True")
    assert is_tracked(a) and not is_tracked(b)


def test_the_providers_own_tasks_are_never_tracked_by_the_listener(monkeypatch):
    monkeypatch.setenv("AIRFLOW__MLFLOW__TRACK_ALL_TASKS", "True")
    with _dag():
        log = enable_tracking(MLflowLogOperator(task_id="log", metrics={"m": 1}))

        @task.mlflow
        def train() -> None:
            return None

        trained = enable_tracking(train())
    assert not is_tracked(log) and not is_tracked(trained.operator)


def test_only_tasks_the_listener_tracks_get_the_run_link():
    from airflow_mlflow import MLflowRegisterModelOperator
    from airflow_mlflow.links.mlflow import MLflowRunLink

    with _dag("links") as dag:
        bash = BashOperator(task_id="bash", bash_command="true")
        register = MLflowRegisterModelOperator(task_id="register", model_uri="runs:/r/model", name="m")
        single = MLflowRegisterModelOperator(task_id="single", model_uri="runs:/r/model", name="m")
    enable_tracking(single)
    enable_tracking(dag)

    def run_links(op):
        return [link for link in op.operator_extra_links if isinstance(link, MLflowRunLink)]

    assert len(run_links(bash)) == 1
    # The registry operators push no run: a run link would log "XCom not found" on every page view.
    assert run_links(register) == [] and run_links(single) == []


def test_the_choice_survives_serialization_and_a_trigger_conf_cannot_flip_it():
    from airflow.serialization.serialized_objects import DagSerialization

    with _dag("serialized") as dag:
        BashOperator(task_id="on", bash_command="true")
        disable_tracking(BashOperator(task_id="off", bash_command="true"))
    enable_tracking(dag)
    loaded = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert is_tracked(loaded.task_dict["on"]) and not is_tracked(loaded.task_dict["off"])
    # A trigger's conf goes through the params' validation: the const refuses another value.
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        dag.params[TRACKING_PARAM] = False
