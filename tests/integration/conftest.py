"""Integration fixtures: real ``mlflow server`` processes on PostgreSQL.

``mlflow_server`` yields an :class:`MLflowServer`; ``mlflow_auth_server`` yields an
:class:`MLflowAuthServer` (basic-auth app, admin credentials, ``create_user``). Both are session
scoped. When the first one is requested, every server the collected tests need is launched at
once, so their start-up times overlap instead of adding up.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration._mlflow_servers import (
    MLflowAuthServer,
    MLflowServer,
    ServerProcess,
    ServerStartError,
    drop_stale_databases,
)

_FIXTURE_KINDS = {"mlflow_server": False, "mlflow_auth_server": True}  # fixture name -> auth?


class _ServerPool:
    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self._procs: dict[str, ServerProcess] = {}

    def launch(self, name: str) -> ServerProcess:
        if name not in self._procs:
            proc = ServerProcess(self._tmp.mktemp(name), auth=_FIXTURE_KINDS[name])
            self._procs[name] = proc
            proc.start()
        return self._procs[name]

    def get(self, name: str) -> MLflowServer:
        try:
            return self.launch(name).wait_healthy()
        except ServerStartError as err:
            pytest.fail(str(err), pytrace=False)

    def stop_all(self) -> None:
        errors = []
        for proc in self._procs.values():
            try:
                proc.stop()
            except Exception as err:  # keep stopping the others
                errors.append(err)
        self._procs.clear()
        if errors:
            raise errors[0]


@pytest.fixture(scope="session")
def _mlflow_server_pool(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_ServerPool]:
    pool = _ServerPool(tmp_path_factory)
    try:
        drop_stale_databases()
        needed = {name for item in request.session.items for name in item.fixturenames} & set(_FIXTURE_KINDS)
        for name in sorted(needed):
            pool.launch(name)
    except ServerStartError as err:
        pool.stop_all()
        pytest.fail(str(err), pytrace=False)
    yield pool
    pool.stop_all()


@pytest.fixture(scope="session")
def mlflow_server(_mlflow_server_pool: _ServerPool) -> MLflowServer:
    """A real ``mlflow server`` with a fresh PostgreSQL store and proxied local artifacts."""
    return _mlflow_server_pool.get("mlflow_server")


@pytest.fixture(scope="session")
def mlflow_auth_server(_mlflow_server_pool: _ServerPool) -> MLflowAuthServer:
    """Like ``mlflow_server`` but running the basic-auth app; see ``MLflowAuthServer``."""
    server = _mlflow_server_pool.get("mlflow_auth_server")
    assert isinstance(server, MLflowAuthServer)
    return server
