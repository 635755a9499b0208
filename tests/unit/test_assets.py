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
