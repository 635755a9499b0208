"""End-to-end fixtures: a real Airflow deployment (see ``_airflow.py``).

``airflow_stack`` is session scoped and parametrised by where ``mlflow_default`` points:

* ``embedded``: no connection at all, the provider's embedded SQLite store under the stack's
  ``AIRFLOW_HOME/mlflow``;
* ``server``: a real ``mlflow server`` on PostgreSQL (``ServerProcess`` from the integration
  tier), given to every Airflow process as ``AIRFLOW_CONN_MLFLOW_DEFAULT``.

Only one stack runs at a time: pytest groups the tests by parameter and stops one stack before
starting the next. ``AMLF_E2E_MLFLOW=embedded`` (or ``server``) keeps a single variant.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e._airflow import AirflowStack, StackError
from tests.e2e._browser import CHROMIUM, CHROMIUM_ARGS, OUTPUT, Session
from tests.integration._mlflow_servers import ServerProcess, ServerStartError, drop_stale_databases

_MODES = ("embedded", "server")


def _selected_modes() -> list[str]:
    wanted = [m.strip() for m in os.environ.get("AMLF_E2E_MLFLOW", ",".join(_MODES)).split(",") if m.strip()]
    unknown = set(wanted) - set(_MODES)
    if unknown:
        raise pytest.UsageError(f"AMLF_E2E_MLFLOW: unknown mode(s) {sorted(unknown)}; use {_MODES}")
    return wanted


def _start(mode: str, workdir: Path, cleanup: contextlib.ExitStack) -> AirflowStack:
    drop_stale_databases()  # left by SIGKILLed sessions (ours and the integration tier's)
    server: ServerProcess | None = None
    if mode == "server":
        server = ServerProcess(workdir / "mlflow-server")
        cleanup.callback(server.stop)
        server.start()  # boots while Airflow migrates and starts
        assert server.port is not None
        stack = AirflowStack(workdir, mlflow_server_url=f"http://127.0.0.1:{server.port}")
    else:
        stack = AirflowStack(workdir)
    cleanup.callback(stack.stop)
    stack.start()
    if server is not None:
        info = server.wait_healthy()
        if info.url != stack.mlflow_server_url:  # its port was taken meanwhile and it re-picked one
            raise StackError(f"mlflow server moved to {info.url} after Airflow was configured")
    stack.wait_healthy()
    return stack


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stack_modes(*modes): run on these airflow_stack modes only")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """
    A test marked ``stack_modes("server")`` runs on that stack only: its other variants are
    deselected (they would cover nothing another tier does not, for minutes of a DAG run).
    """
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("stack_modes")
        mode = getattr(getattr(item, "callspec", None), "params", {}).get("airflow_stack")
        (drop if marker and mode is not None and mode not in marker.args else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="package", params=_selected_modes())
def airflow_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowStack]:
    """A running Airflow 3 deployment; ``.mlflow_client()`` reads what its tasks tracked."""
    mode = request.param
    workdir = tmp_path_factory.mktemp(f"e2e-{mode}")
    with contextlib.ExitStack() as cleanup:
        try:
            stack = _start(mode, workdir, cleanup)
        except (StackError, ServerStartError, TimeoutError, subprocess.TimeoutExpired) as err:
            failure = f"e2e stack ({mode}) did not start: {err}"
        else:
            failure = None
            print(
                f"\n[e2e] Airflow stack ({mode}) healthy after {stack.startup_seconds:.1f} s at {stack.url}"
            )
            yield stack
            stopping = time.monotonic()
    # The ExitStack has stopped the stack (and the server) here, started or not.
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    print(f"\n[e2e] Airflow stack ({mode}) stopped in {time.monotonic() - stopping:.1f} s")
    leftovers = stack.leftover_pids()
    assert not leftovers, f"processes of the {mode} stack survived teardown: {leftovers}"


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def retrained(airflow_stack: AirflowStack) -> dict[str, str]:
    """Run id of ``retrain_model`` by day, running the days here unless they already ran."""
    from tests.e2e.test_retrain_e2e import DAG_ID, DAYS, run_retraining

    done = {}
    for run in airflow_stack.dag_runs(DAG_ID, state="success"):
        day = (run.get("logical_date") or "")[:10]
        if day in DAYS:
            done[day] = run["dag_run_id"]
    if set(done) != set(DAYS):
        done = run_retraining(airflow_stack)
    return done


@pytest.fixture
def session(airflow_stack, browser, request) -> Iterator:
    made = []
    mode = "server" if airflow_stack.mlflow_server_url else "embedded"

    def start(user: str) -> Session:
        made.append(Session(airflow_stack, browser, user, OUTPUT / mode))
        made[-1].login()
        return made[-1]

    yield start
    for s in made:
        s.close()
