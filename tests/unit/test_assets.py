"""``sanitize_uri``: Airflow's check of ``mlflow-model://`` asset URIs, and ``model_asset``'s URIs pass it."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from airflow_mlflow.assets import model_asset, sanitize_uri


@pytest.mark.parametrize(
    "uri",
    [
        "mlflow-model://mlflow_default/churn",
        "mlflow-model://mlflow_default/churn/alias/champion",
        "mlflow-model://other/churn/stage/Production",
        "mlflow-model://mlflow_default/a%2Fb%20c/alias/x%2Fy",  # quoted name and alias
    ],
)
def test_valid_uris_are_returned_unchanged(uri):
    parts = urlsplit(uri)
    assert sanitize_uri(parts) is parts


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("mlflow-model:///churn", "must name the connection"),
        ("mlflow-model://mlflow_default", "must be mlflow-model://<conn_id>/<model>"),
        ("mlflow-model://mlflow_default/", "must be mlflow-model://<conn_id>/<model>"),
        ("mlflow-model://mlflow_default/churn/alias", "must be mlflow-model://<conn_id>/<model>"),
        ("mlflow-model://mlflow_default/churn/version/3", r"\[/alias/<alias>\|/stage/<stage>\]"),
        ("mlflow-model://mlflow_default/churn/alias/a/extra", "must be mlflow-model://<conn_id>/<model>"),
    ],
)
def test_invalid_uris_are_refused_naming_the_uri(uri, message):
    with pytest.raises(ValueError, match=message) as err:
        sanitize_uri(urlsplit(uri))
    assert repr(urlsplit(uri).geturl()) in str(err.value)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"alias": "champion"}, {"stage": "Production"}, {"alias": "a/b c"}, {"mlflow_conn_id": "x"}],
)
def test_model_asset_uris_pass_the_check(kwargs):
    asset = model_asset("churn model/v2", **kwargs)
    assert sanitize_uri(urlsplit(asset.uri)).geturl() == asset.uri


def test_every_example_dag_mentioning_a_watched_asset_declares_the_same_watchers():
    """
    Airflow takes an asset's watchers from each DAG file that mentions it: a file mentioning the
    champion without ``watch=`` (say, as the promotion's outlet) detaches the watcher at each
    parse, and the watcher stops. The examples declare it alike everywhere.
    """
    from airflow.dag_processing.dagbag import DagBag

    from tests.e2e._airflow import ROOT

    bag = DagBag(dag_folder=str(ROOT / "dags_examples"))
    assert not bag.import_errors, bag.import_errors
    mentions: dict[str, set] = {}
    for dag in bag.dags.values():
        assets = [*_assets_in(getattr(dag.timetable, "asset_condition", None))]
        assets += [o for t in dag.tasks for o in t.outlets if hasattr(o, "uri")]
        for asset in assets:
            key = tuple(sorted(w.trigger.serialize()[1].items()) for w in asset.watchers)
            mentions.setdefault(asset.uri, set()).add((dag.dag_id, str(key)))
    champion = "mlflow-model://mlflow_default/breast_cancer_classifier/alias/champion"
    assert {dag for dag, _ in mentions[champion]} == {"retrain_model", "score_batch"}
    for uri, seen in mentions.items():
        assert len({watchers for _, watchers in seen}) == 1, f"{uri} is watched in some DAGs only: {seen}"
    assert "poll_interval" in next(iter(mentions[champion]))[1]


def _assets_in(condition):
    """The assets of a schedule's condition (``AssetAll`` / ``AssetAny`` nest them in ``objects``)."""
    if hasattr(condition, "uri"):
        yield condition
    for inner in getattr(condition, "objects", None) or ():
        yield from _assets_in(inner)
