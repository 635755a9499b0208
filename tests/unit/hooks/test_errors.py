"""Which translated MLflow errors Airflow retries: permanent ones fail the task at once."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2

from airflow_mlflow.exceptions import (
    MLflowAuthError,
    MLflowConflictError,
    MLflowInputError,
    MLflowProviderError,
    MLflowResourceNotFoundError,
    translate,
)

#: MLflow error code -> provider class, and whether Airflow may retry the task.
CASES = [
    ("RESOURCE_DOES_NOT_EXIST", MLflowResourceNotFoundError, False),
    ("NOT_FOUND", MLflowResourceNotFoundError, False),
    ("UNAUTHENTICATED", MLflowAuthError, False),
    ("PERMISSION_DENIED", MLflowAuthError, False),
    ("RESOURCE_ALREADY_EXISTS", MLflowConflictError, False),
    ("INVALID_PARAMETER_VALUE", MLflowInputError, False),
    ("INTERNAL_ERROR", MLflowProviderError, True),  # a 5xx
    ("TEMPORARILY_UNAVAILABLE", MLflowProviderError, True),
    ("", MLflowProviderError, True),  # a network error: MLflow sets no code
]


def mlflow_error(code: str) -> MlflowException:
    """The exception MLflow raises for ``code`` (none for a network error)."""
    if not code:
        return MlflowException("API request to http://127.0.0.1:1/api failed with exception refused")
    return MlflowException("boom", error_code=getattr(databricks_pb2, code))


@pytest.mark.parametrize(("code", "cls", "retried"), CASES)
def test_each_error_class_is_retried_only_when_a_retry_can_help(code, cls, retried):
    err = translate(mlflow_error(code), "model 'm'")
    assert type(err) is cls
    assert isinstance(err, AirflowFailException) is (not retried)


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize(
    ("dag_id", "tries"), [("retry_not_found", 1), ("retry_auth", 1), ("retry_network", 3)]
)
def test_airflow_retries_only_transient_errors(dag_id, tries):
    """A real task with retries=2: a missing model or a wrong password fails at its first try."""
    from tests.dags import retry_errors

    dag_run = getattr(retry_errors, dag_id).test()
    assert dag_run.state == "failed"
    assert dag_run.get_task_instance("call").try_number == tries
