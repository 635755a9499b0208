"""The promotion model (``airflow_mlflow.champion``): history, claims, and who is champion."""

from __future__ import annotations

import json

import pytest

from airflow_mlflow.champion import (
    DEFAULT_ALIAS,
    HISTORY_LIMIT,
    HISTORY_MAX_CHARS,
    Change,
    claim_name,
    history_tag,
    is_champion,
    next_seq,
    read_history,
)
from airflow_mlflow.hooks.registry import VersionRecord
from airflow_mlflow.hooks.tracking import HIDDEN_EXPERIMENT_PREFIX
from airflow_mlflow.operators.registry import MLflowPromoteModelOperator, MLflowRollbackModelOperator
from airflow_mlflow.tags import CHAMPION_HISTORY
from tests.support import operator_context


def version(number: str, *, aliases: tuple[str, ...] = (), stage: str | None = "None") -> VersionRecord:
    return VersionRecord("m", number, None, "file:///x", "READY", stage, aliases=aliases)


def change(seq: int, number: str, previous: str | None = None, **target: str | None) -> Change:
    return Change(seq, "promote", number, previous, "2026-11-30T12:00:00Z", "d/r", "passed", **target)


# ------------------------------------------------------------------------------ history


def test_an_entry_written_before_targets_were_recorded_reads_with_none():
    old = {"seq": 3, "action": "rollback", "version": "1", "previous": "2", "at": "t", "dag_run": "d/r"}
    (read,) = read_history({CHAMPION_HISTORY: json.dumps([old])})
    assert read == Change(3, "rollback", "1", "2", "t", "d/r", None, None, None)
    assert read.to_json() == old  # written back unchanged


def test_unreadable_history_and_entries_are_skipped():
    assert read_history({}) == []
    assert read_history({CHAMPION_HISTORY: "{not json"}) == []
    assert read_history({CHAMPION_HISTORY: '{"seq": 1}'}) == []
    good = {"seq": 0, "action": "promote", "version": 2, "previous": None, "at": "t"}
    garbage = [1, "x", None, {"action": "dance", "version": "1"}, {"action": "promote"}, {**good, "seq": "x"}]
    history = read_history({CHAMPION_HISTORY: json.dumps([*garbage, good])})
    assert [(c.seq, c.version) for c in history] == [(0, "2")]


def test_a_missing_seq_counts_from_the_entry_position():
    entries = [{"action": "promote", "version": v, "previous": None, "at": "t"} for v in "123"]
    history = read_history({CHAMPION_HISTORY: json.dumps(entries)})
    assert [c.seq for c in history] == [0, 1, 2]
    assert next_seq(history) == 3 and next_seq([]) == 0


def test_the_history_tag_keeps_the_newest_entries_that_fit():
    history = [change(n, str(n)) for n in range(HISTORY_LIMIT + 5)]
    stored = json.loads(history_tag(history, change(99, "99", alias="prod", stage=None))[CHAMPION_HISTORY])
    assert len(stored) == HISTORY_LIMIT
    assert stored[-1] == {**change(99, "99").to_json(), "alias": "prod"}
    assert stored[0]["seq"] == 6
    fat = [change(n, str(n)) for n in range(30)]
    fat = [Change(c.seq, c.action, c.version, c.previous, "x" * 400, c.dag_run) for c in fat]
    stored = history_tag(fat, change(30, "30"))[CHAMPION_HISTORY]
    assert len(stored) <= HISTORY_MAX_CHARS
    assert json.loads(stored)[-1]["seq"] == 30 and json.loads(stored)[0]["seq"] > 0


def test_the_claim_is_named_under_the_hidden_experiment_prefix():
    assert claim_name("churn", 4) == f"{HIDDEN_EXPERIMENT_PREFIX}champion-changes/churn/4"


# ------------------------------------------------------------------------------ who is champion


def test_without_a_recorded_target_the_champion_alias_then_production_decides():
    assert is_champion(version("2"), [], {DEFAULT_ALIAS: "2"})
    assert not is_champion(version("2", stage="Production"), [], {DEFAULT_ALIAS: "1"})
    assert is_champion(version("2", stage="Production"), [], {})  # no alias set: the stage
    assert is_champion(version("2", aliases=("champion",)), [])  # the version's own aliases
    assert not is_champion(version("2", aliases=("challenger",)), [])


def test_the_latest_recorded_target_decides():
    history = [
        change(0, "1", alias="champion", stage="Production"),
        change(1, "2", "1", alias="prod", stage=None),
    ]
    assert is_champion(version("2"), history, {"prod": "2", "champion": "1"})
    assert not is_champion(version("1", stage="Production"), history, {"prod": "2", "champion": "1"})
    staged = [*history, change(2, "3", "2", alias=None, stage="Staging")]
    assert is_champion(version("3", stage="Staging"), staged, {"prod": "2"})
    assert not is_champion(version("2"), staged, {"prod": "2"})


# ------------------------------------------------------------------------------ through the operators


@pytest.fixture
def model(store):
    client = store.client
    client.create_registered_model("m")
    for n in (1, 2):
        client.create_model_version("m", f"file:///tmp/{n}")
    return client


def _champions(client, history):
    from airflow_mlflow.hooks.mlflow import MLflowHook

    hook = MLflowHook()
    aliases = hook.get_model("m").aliases
    return [v.version for v in hook.list_versions("m") if is_champion(v, history, aliases)]


def test_a_dag_promoting_to_another_alias_is_shown_with_that_champion(model):
    """The UI's old rule (alias ``champion``, else ``Production``) disagreed with such a DAG."""
    ctx = operator_context()
    MLflowPromoteModelOperator(task_id="p", model_name="m", version=1, alias="prod", stage=None).execute(ctx)
    model.set_registered_model_alias("m", "champion", "2")  # someone else's alias, not this DAG's
    history = read_history(model.get_registered_model("m").tags)
    assert [(c.version, c.alias, c.stage, c.dag_run) for c in history] == [("1", "prod", None, "d/manual__1")]
    assert _champions(model, history) == ["1"]
    # ... and a rollback to another target records it too.
    MLflowPromoteModelOperator(task_id="p", model_name="m", version=2, alias="prod", stage=None).execute(ctx)
    MLflowRollbackModelOperator(task_id="rb", model_name="m", alias="prod", stage=None).execute(ctx)
    history = read_history(model.get_registered_model("m").tags)
    assert [(c.seq, c.action, c.version, c.alias) for c in history] == [
        (0, "promote", "1", "prod"),
        (1, "promote", "2", "prod"),
        (2, "rollback", "1", "prod"),
    ]
    assert _champions(model, history) == ["1"]
