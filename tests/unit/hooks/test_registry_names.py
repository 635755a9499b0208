"""Model names and tag values that MLflow stores but a naive search filter cannot carry (quotes,
LIKE wildcards, backslashes): the hook finds exactly their versions, and the UI's registry pages
list them, on a real SQLite store. Models are created with MLflow's own client, as outside Airflow."""

from __future__ import annotations

import pytest

from airflow_mlflow.exceptions import MLflowInputError
from airflow_mlflow.hooks.mlflow import MLflowHook
from airflow_mlflow.plugins import model_views

NAMES = [
    "O'Brien",
    'say "hi"',
    "both ' and \"",
    "it's 100%_done\\",
    "a' OR name LIKE '%",
    "ключ'",
    "both x and y",  # what the LIKE pattern of "both ' and \"" matches too: kept out by the exact filter
    "plain",
]


def everyone(dag_id: str | None) -> bool:
    return True


def fill(client) -> None:
    """Model ``NAMES[i]`` gets ``i + 1`` versions, each tagged ``who=<name>``."""
    exp = client.create_experiment("names")
    run = client.create_run(exp).info.run_id
    for count, name in enumerate(NAMES, start=1):
        client.create_registered_model(name)
        for _ in range(count):
            client.create_model_version(name, f"runs:/{run}/model", run_id=run, tags={"who": name})


@pytest.fixture
def registry(store):
    fill(store.client)
    return store.client


def test_list_versions_finds_exactly_each_name(registry):
    hook = MLflowHook()
    for count, name in enumerate(NAMES, start=1):
        versions = hook.list_versions(name)
        assert [(v.name, v.version) for v in versions] == [(name, str(n)) for n in range(count, 0, -1)], name
    assert hook.list_versions("O_Brien") == []  # a wildcard in the filter never leaks a neighbour


def test_versions_with_tags_takes_a_quote_in_a_value(registry):
    hook = MLflowHook()
    assert {v.name for v in hook.versions_with_tags({"who": "O'Brien"})} == {"O'Brien"}
    assert {v.name for v in hook.versions_with_tags({"who": 'say "hi"'})} == {'say "hi"'}
    with pytest.raises(MLflowInputError, match="both kinds of quote"):
        hook.versions_with_tags({"who": "both ' and \""})


def test_registry_pages_list_and_open_every_name(registry):
    hook = MLflowHook()
    listed = [s.model.name for s in model_views.models_view(hook, everyone)]
    assert [name for name in listed if name in NAMES] == sorted(NAMES)  # a server may hold others
    for count, name in enumerate(NAMES, start=1):
        view = model_views.model_view(hook, name, everyone)
        assert view is not None and len(view.versions) == count, name
