"""Dependency warnings are silenced precisely; our own package's deprecations fail the suite."""

from __future__ import annotations

import warnings

import pytest

from airflow_mlflow.dependency_warnings import quiet_module_scans, silence_process_wide

STARLETTE = "Using `httpx` with `starlette.testclient` is deprecated; install `httpx2` instead."


def warn_from(module: str, message: str, category: type[Warning]) -> None:
    """``warnings.warn`` as code of ``module`` calls it."""
    code = compile(f"import warnings\nwarnings.warn({message!r}, {category.__name__})\n", module, "exec")
    exec(code, {"__name__": module, category.__name__: category})


def shown(module: str, message: str, category: type[Warning]) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_process_wide()
        with quiet_module_scans():
            warn_from(module, message, category)
    return [str(w.message) for w in caught]


def test_a_deprecation_raised_from_our_package_fails_the_suite():
    # pyproject's filterwarnings: error::DeprecationWarning:airflow_mlflow (and Pending, Future).
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        with pytest.raises(category):
            warn_from("airflow_mlflow.runs", "old API", category)


def test_only_starlettes_httpx_notice_from_fastapis_test_client_is_silenced():
    assert shown("fastapi.testclient", STARLETTE, UserWarning) == []
    assert shown("fastapi.testclient", "something else", UserWarning) == ["something else"]
    assert shown("svcs.fastapi", STARLETTE, UserWarning) == [STARLETTE]


def test_only_future_warnings_from_skops_are_silenced_while_a_model_is_logged():
    assert shown("skops.io._utils", "deprecated alias", FutureWarning) == []
    assert shown("skops.io._utils", "other", UserWarning) == ["other"]
    assert shown("sklearn.base", "deprecated alias", FutureWarning) == ["deprecated alias"]


def test_only_mlflows_stage_deprecation_is_silenced_around_a_stage_move():
    from airflow_mlflow.dependency_warnings import quiet_stage_deprecation

    stage = (
        "``mlflow.tracking.client.MlflowClient.transition_model_version_stage`` is deprecated since 2.9.0. "
        "Model registry stages will be removed in a future major release."
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_stage_deprecation():
            warn_from("airflow_mlflow.hooks.registry", stage, FutureWarning)
            warn_from("airflow_mlflow.hooks.registry", "something else", FutureWarning)
        warn_from("airflow_mlflow.hooks.registry", stage, FutureWarning)  # outside the call: shown
    assert [str(w.message) for w in caught] == ["something else", stage]


def test_only_mlflows_model_type_guess_from_integer_labels_is_dropped_while_evaluating(caplog):
    import logging

    from airflow_mlflow.dependency_warnings import quiet_label_type_guess

    logger = logging.getLogger("mlflow.models.evaluation.evaluators.classifier")
    guess = "According to the evaluation dataset label values, the model type looks like None, but you ..."
    regressor = "According to the evaluation dataset label values, the model type looks like regressor, ..."
    with caplog.at_level(logging.WARNING, logger=logger.name):
        with quiet_label_type_guess():
            logger.warning(guess)
            logger.warning(regressor)
        logger.warning(guess)  # outside the evaluation: shown
    assert [r.getMessage() for r in caplog.records] == [regressor, guess]
