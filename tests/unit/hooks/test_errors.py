"""Which translated MLflow errors Airflow retries: permanent ones fail the task at once."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2

from airflow_mlflow.exceptions import (
    MLflowAuthError,
    MLflowConflictError,
    MLflowEndpointNotFoundError,
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
    # Every other code translate() knows:
    ("ENDPOINT_NOT_FOUND", MLflowEndpointNotFoundError, False),
    ("CUSTOMER_UNAUTHORIZED", MLflowAuthError, False),
    ("ALREADY_EXISTS", MLflowConflictError, False),
    ("RESOURCE_CONFLICT", MLflowConflictError, False),
    ("BAD_REQUEST", MLflowInputError, False),
    ("MALFORMED_REQUEST", MLflowInputError, False),
    ("INVALID_STATE", MLflowInputError, False),
    ("FEATURE_DISABLED", MLflowInputError, False),
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


def test_an_endpoint_not_found_is_a_not_found_error_of_its_own():
    """Callers reading "not found" as "not there yet" let an unknown endpoint (a wrong URL) fail."""
    err = translate(mlflow_error("ENDPOINT_NOT_FOUND"), "model 'm' alias 'a'", alias_lookup=True)
    assert type(err) is MLflowEndpointNotFoundError and isinstance(err, MLflowResourceNotFoundError)


@pytest.mark.parametrize(
    ("alias_lookup", "cls"), [(True, MLflowResourceNotFoundError), (False, MLflowInputError)]
)
def test_invalid_parameter_value_is_not_found_only_in_an_alias_lookup(alias_lookup, cls):
    """MLflow answers a missing alias with INVALID_PARAMETER_VALUE; elsewhere it is bad input."""
    err = translate(mlflow_error("INVALID_PARAMETER_VALUE"), "model 'm' alias 'a'", alias_lookup=alias_lookup)
    assert type(err) is cls


def test_the_message_names_the_resource_and_hides_every_secret():
    err = MlflowException(
        "denied for alice:hunter2 with token tok-123", error_code=databricks_pb2.UNAUTHENTICATED
    )
    translated = translate(err, "run 1f2e", ("hunter2", "alice:hunter2", "tok-123"))
    assert str(translated) == "run 1f2e: denied for *** with token ***"


def _hook_with_password(password: str):
    from airflow.sdk import Connection

    from airflow_mlflow.hooks.mlflow import MLflowHook

    conn = Connection(conn_id="c", conn_type="mlflow", host="h", login="u", password=password)
    return MLflowHook.from_connection(conn, "c")


def test_call_chains_the_translated_error_to_mlflows():
    hook = _hook_with_password("hunter2")
    original = mlflow_error("RESOURCE_DOES_NOT_EXIST")
    with pytest.raises(MLflowResourceNotFoundError, match="^run r: boom$") as caught:
        with hook._call("run r"):
            raise original
    assert caught.value.__cause__ is original


def test_call_chains_a_redacted_copy_when_mlflows_message_holds_a_secret():
    hook = _hook_with_password("hunter2")
    with pytest.raises(MLflowResourceNotFoundError, match=r"^run r: no run for \*\*\*$") as caught:
        with hook._call("run r"):
            raise MlflowException("no run for hunter2", error_code=databricks_pb2.RESOURCE_DOES_NOT_EXIST)
    cause = caught.value.__cause__
    assert isinstance(cause, MlflowException) and cause.message == "no run for ***"
    assert cause.error_code == "RESOURCE_DOES_NOT_EXIST" and cause.__traceback__ is not None
    assert cause.__suppress_context__
