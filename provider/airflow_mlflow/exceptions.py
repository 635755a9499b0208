"""Typed errors raised by the provider.

Every MLflow failure is translated here, from MLflow's machine-readable ``error_code``,
never by parsing message strings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from mlflow.exceptions import MlflowException


class MLflowProviderError(AirflowException):
    """
    Base class of every error this provider raises.

    Raised as is, it is a failure a retry may fix (a server error, a network error, a timeout): the
    task is retried as configured. The subclasses below are permanent and fail the task without retry.
    """


class MLflowInputError(MLflowProviderError, AirflowFailException):
    """A value given to the provider is invalid; a retry cannot fix it."""


class MLflowConnectionConfigError(MLflowInputError):
    """The ``mlflow`` connection is misconfigured."""


class MLflowConnectionLookupError(MLflowProviderError):
    """
    The connection may exist but this process could not read it (access denied, a secrets
    backend or the metadata DB failed). Never answered with the embedded default.
    """


class MLflowAuthError(MLflowProviderError, AirflowFailException):
    """The tracking server refused the credentials."""


class MLflowResourceNotFoundError(MLflowProviderError, AirflowFailException):
    """An experiment, run, model or version does not exist; a retry cannot create it."""


class MLflowEndpointNotFoundError(MLflowResourceNotFoundError):
    """
    The server has no such API (an older MLflow, or no MLflow server at that URL): unlike a missing
    resource, never read as "not there yet".
    """


class MLflowConflictError(MLflowProviderError, AirflowFailException):
    """A write conflicts with what MLflow already holds (for example a changed param)."""


class MLflowProjectRunError(MLflowProviderError):
    """
    An MLflow Project's entry point failed (exited non-zero, or its environment could not be
    built), or its git repository could not be fetched. Retried as configured: a training
    script's failure is often its data's or its machine's, which a later try may not meet; set
    ``retries=0`` on a task whose failures are always deterministic. A project, entry point or
    parameters that are wrong raise :class:`MLflowInputError` instead (never retried).
    """


class MLflowServingCheckError(MLflowProviderError, AirflowFailException):
    """
    A model version did not pass its serving check (the scoring server did not start, answered
    with an error, returned the wrong shape or predictions, or was too slow); the message names
    what failed and quotes the server's last log lines.
    """


def translate(
    err: MlflowException, resource: str, secrets: tuple[str, ...] = (), *, alias_lookup: bool = False
) -> MLflowProviderError:
    """
    Turn an ``MlflowException`` into the matching provider error.

    :param err: the exception MLflow raised
    :param resource: what was being accessed, e.g. ``"run 1f2e…"``; it opens the message
    :param secrets: strings the message must not contain (the connection's password, token…)
    :param alias_lookup: ``err`` answers a lookup of a model version by alias, where MLflow says
        ``INVALID_PARAMETER_VALUE`` (not ``RESOURCE_DOES_NOT_EXIST``) for an alias that is not set:
        translated as :class:`MLflowResourceNotFoundError` then
    """
    code = getattr(err, "error_code", "") or ""
    message = f"{resource}: {err.message if hasattr(err, 'message') else err}"
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        message = message.replace(secret, "***")
    if code == "ENDPOINT_NOT_FOUND":
        return MLflowEndpointNotFoundError(message)
    if code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}:
        return MLflowResourceNotFoundError(message)
    if alias_lookup and code == "INVALID_PARAMETER_VALUE":
        return MLflowResourceNotFoundError(message)
    if code in {"UNAUTHENTICATED", "PERMISSION_DENIED", "CUSTOMER_UNAUTHORIZED"}:
        return MLflowAuthError(message)
    if code in {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS", "RESOURCE_CONFLICT"}:
        return MLflowConflictError(message)
    if code in {
        "INVALID_PARAMETER_VALUE",
        "BAD_REQUEST",
        "MALFORMED_REQUEST",
        "INVALID_STATE",
        "FEATURE_DISABLED",
    }:
        return MLflowInputError(message)
    return MLflowProviderError(message)
