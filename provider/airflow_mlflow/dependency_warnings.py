"""
Warnings that dependencies raise at each other, which a user of the provider can do nothing about
and which would bury their task log: silenced precisely, by category and by the module that raises
them (and, for a process-wide filter, by message), never more. Each entry says whose it is.

Our own code raises none: the test suite turns a deprecation warning raised from
``airflow_mlflow`` into an error.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

#: Process-wide: (message regex, category, module regex). Installed where the provider's plugin is
#: loaded, before Airflow reaches the code that raises them.
PROCESS_WIDE = (
    # starlette >= 1 asks for httpx2 when its TestClient is imported with httpx; Airflow's in-process
    # execution API (``airflow dags test``, ``dag.test()``) imports FastAPI's TestClient through svcs.
    # A UserWarning (StarletteDeprecationWarning), so Python shows it by default.
    (r"Using `httpx` with `starlette\.testclient` is deprecated", UserWarning, r"fastapi\.testclient"),
)


def silence_process_wide() -> None:
    """Install the :data:`PROCESS_WIDE` filters (idempotent: ``filterwarnings`` dedups them)."""
    for message, category, module in PROCESS_WIDE:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


@contextlib.contextmanager
def quiet_module_scans() -> Iterator[None]:
    """
    skops, MLflow's default (safe) format for scikit-learn models, finds a function that has no
    ``__module__`` by ``getattr`` on every loaded module. Each deprecated alias in Airflow's modules
    answers with a FutureWarning (Airflow's ``DeprecatedImportWarning``): 1,160 lines in the task
    log per ``log_model``. Only FutureWarnings raised from skops are silenced, and only while the
    task's function runs.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"skops\.")
        yield


@contextlib.contextmanager
def quiet_stage_deprecation() -> Iterator[None]:
    """
    MLflow deprecated registry stages (2.9) but keeps them working, and the provider moves a stage
    only when a DAG asks for one (``stage=``). MLflow's FutureWarning names its own
    ``transition_model_version_stage``, which the user never calls: silenced around that call only.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*transition_model_version_stage`` is deprecated", category=FutureWarning
        )
        yield


class _DropGuessedModelType:
    """A logging filter: MLflow's guess that integer labels are "model type None" (see below)."""

    def filter(self, record) -> bool:
        return "the model type looks like None" not in record.getMessage()


@contextlib.contextmanager
def quiet_label_type_guess() -> Iterator[None]:
    """
    MLflow's classifier evaluator guesses the model type from the label column, and integer labels
    (0/1, as most tables hold them) are neither "categorical" nor "continuous" to it: each
    evaluation logs that the model type "looks like None" although ``model_type="classifier"`` was
    given. Only that message is dropped, and only while the provider evaluates; a float label
    column still gets MLflow's warning that it looks like a regressor.
    """
    import logging

    logger = logging.getLogger("mlflow.models.evaluation.evaluators.classifier")
    dropped = _DropGuessedModelType()
    logger.addFilter(dropped)
    try:
        yield
    finally:
        logger.removeFilter(dropped)
