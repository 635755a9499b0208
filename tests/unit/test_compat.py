"""
The seam on library internals (``airflow_mlflow.compat``): each seam against the installed MLflow
and Airflow, so an upgrade that moves one fails the test named after it; and a scan of the package
that fails when an MLflow or Airflow internal is used anywhere else (the seams: ``compat.py`` for
MLflow, with ``compat_fluent.py`` for the fluent API's active run; ``compat_airflow.py`` for Airflow).

"An MLflow internal" means: an import of an ``mlflow`` module outside
``compat.MLFLOW_PUBLIC_MODULES``, an attribute path under ``mlflow.`` through such a module, a
private ``_name`` imported from MLflow or read through ``mlflow.``, a module path of such a module
spelled as a string (an import list), a private ``_name`` attribute that the provider does not
define itself (MLflow objects' private state), and a class that subclasses one of MLflow's.

"An Airflow internal" means: a private module (``airflow.sdk._shared``) or a private ``_name``
imported from Airflow or read through ``airflow.`` (see :func:`airflow_internals`).
"""

from __future__ import annotations

import ast
import contextlib
import http.server
import importlib
import importlib.util
import inspect
import json
import re
import threading
from pathlib import Path

import pytest

from airflow_mlflow import compat, compat_fluent
from airflow_mlflow.hooks.config import HttpBudget
from tests.unit.hooks.test_http_budget import Listener

PACKAGE = Path(__file__).resolve().parents[2] / "provider" / "airflow_mlflow"
COMPAT = PACKAGE / "compat.py"
#: The seam modules: MLflow's (compat.py; compat_fluent.py for the fluent API's active run), Airflow's
#: (compat_airflow.py, re-exported by compat), and preload.py, which only imports modules by name,
#: internal ones of MLflow's and Airflow's among them (tests/unit/test_preload.py fails when one of
#: them is gone or a task needs another).
SEAMS = (
    COMPAT,
    PACKAGE / "compat_airflow.py",
    PACKAGE / "compat_fluent.py",
    PACKAGE / "compat_projects.py",
    PACKAGE / "preload.py",
)
NO_RETRIES = HttpBudget(max_retries=1, backoff_factor=0.0, timeout=5.0)


def creds(uri: str):
    return compat.host_creds(
        uri, username="alice", password="pw", token=None, insecure_tls=False, ca_bundle=None
    )


# == the scan ====================================================================================


def _is_mlflow_module(dotted: str) -> bool:
    try:
        return importlib.util.find_spec(dotted) is not None
    except (ImportError, ValueError):
        return False


def _attribute_path(node: ast.AST) -> list[str] | None:
    """``["mlflow", "tracking", "fluent"]`` for ``mlflow.tracking.fluent``; None if not rooted at a name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def _listed_strings(tree: ast.AST) -> list[tuple[str, int]]:
    """Strings that name modules: items of a tuple, list or set literal, arguments of ``import_module``."""
    found = []
    for node in ast.walk(tree):
        items: list[ast.AST] = []
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = list(node.elts)
        elif isinstance(node, ast.Call) and (_attribute_path(node.func) or [""])[-1] == "import_module":
            items = list(node.args)
        found += [
            (i.value, i.lineno) for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)
        ]
    return found


def _provider_names(files: list[Path]) -> set[str]:
    """Every name the provider defines itself (functions, classes, variables, attributes, arguments)."""
    names: set[str] = set()
    for file in files:
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
    return names


def mlflow_internals(source: str, own_names: set[str]) -> list[str]:
    """Every use of an MLflow internal in ``source`` (see the module docstring), as ``line: what``."""
    found = []
    mlflow_names: set[str] = set()  # names bound to something imported from mlflow
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "mlflow":
                    mlflow_names.add((alias.asname or alias.name).split(".")[0])
                    if not compat.is_public_mlflow_module(alias.name):
                        found.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mlflow":
            module = node.module or ""
            for alias in node.names:
                mlflow_names.add(alias.asname or alias.name)
                if alias.name.startswith("_"):
                    found.append(f"{node.lineno}: from {module} import {alias.name}")
            if not compat.is_public_mlflow_module(module) and not all(
                compat.is_public_mlflow_module(f"{module}.{alias.name}") for alias in node.names
            ):
                found.append(f"{node.lineno}: from {module} import ...")
    for value, lineno in _listed_strings(tree):
        if re.fullmatch(r"mlflow(\.\w+)+", value) and _is_mlflow_module(value):
            if not compat.is_public_mlflow_module(value):
                found.append(f"{lineno}: module path {value!r}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            path = _attribute_path(node)
            if path and path[0] == "mlflow" and "mlflow" in mlflow_names:
                for depth in range(2, len(path) + 1):
                    dotted = ".".join(path[:depth])
                    if path[depth - 1].startswith("_"):
                        found.append(f"{node.lineno}: {dotted}")
                        break
                    if _is_mlflow_module(dotted) and not compat.is_public_mlflow_module(dotted):
                        found.append(f"{node.lineno}: {dotted}")
                        break
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if node.attr not in own_names:
                found.append(f"{node.lineno}: private attribute .{node.attr}")
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                path = _attribute_path(base)
                if path and (path[0] in mlflow_names):
                    found.append(f"{node.lineno}: class {node.name} subclasses {'.'.join(path)}")
    return sorted(set(found), key=lambda line: int(line.split(":")[0]))


def airflow_internals(source: str) -> list[str]:
    """
    Every use of an Airflow internal in ``source``: a private module (a ``_segment`` of an
    ``airflow.`` module path, as ``airflow.sdk._shared``) or a private ``_name`` imported from
    Airflow or read through ``airflow.``, as ``line: what``. (Private attributes of Airflow objects
    are the MLflow scan's "private attribute" rule.)
    """

    def private(dotted: str) -> bool:
        return any(part.startswith("_") and not part.startswith("__") for part in dotted.split("."))

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                f"{node.lineno}: import {a.name}"
                for a in node.names
                if a.name.split(".")[0] == "airflow" and private(a.name)
            ]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "airflow":
            found += [
                f"{node.lineno}: from {node.module} import {a.name}"
                for a in node.names
                if private(f"{node.module}.{a.name}")
            ]
        elif isinstance(node, ast.Attribute):
            path = _attribute_path(node)
            if path and path[0] == "airflow" and private(".".join(path)):
                first = next(n for n, part in enumerate(path) if private(part))
                found.append(f"{node.lineno}: {'.'.join(path[: first + 1])}")
    return sorted(set(found), key=lambda line: int(line.split(":")[0]))


def _scan(source: str, own_names: set[str]) -> list[str]:
    return mlflow_internals(source, own_names) + airflow_internals(source)


def test_mlflow_and_airflow_internals_are_used_only_in_the_seam_modules():
    files = [f for f in sorted(PACKAGE.rglob("*.py")) if f not in SEAMS]
    own = _provider_names(files)
    offenders = {
        str(file.relative_to(PACKAGE)): hits for file in files if (hits := _scan(file.read_text(), own))
    }
    assert offenders == {}, "use airflow_mlflow.compat for these (or add a seam there, with a test here)"


@pytest.mark.parametrize(
    ("source", "hit"),
    [
        ("from mlflow.utils.rest_utils import http_request", "from mlflow.utils.rest_utils import ..."),
        ("from mlflow.tracking._tracking_service.utils import x", "from mlflow.tracking._tracking_service"),
        ("from mlflow import _private", "from mlflow import _private"),
        ("import mlflow.store.db.utils", "import mlflow.store.db.utils"),
        ("import mlflow\nmlflow.tracking.fluent.active_run()", "mlflow.tracking"),
        ("import mlflow\nmlflow._x()", "mlflow._x"),
        ("client._tracking_client.store", "private attribute ._tracking_client"),
        ("MODULES = ('mlflow.utils.rest_utils',)", "module path 'mlflow.utils.rest_utils'"),
        ("HOST = 'mlflow.example.com'", None),
        ("DB = root / 'mlflow.db'", None),
        ("importlib.import_module('mlflow.store.db.utils')", "module path 'mlflow.store.db.utils'"),
        ("from mlflow import MlflowClient\nclass C(MlflowClient): pass", "class C subclasses MlflowClient"),
        ("from airflow.sdk._shared.secrets_masker import redact", "from airflow.sdk._shared.secrets_masker"),
        ("from airflow.sdk.execution_time.task_runner import _f", "import _f"),
        ("import airflow.sdk._shared.secrets_masker", "import airflow.sdk._shared.secrets_masker"),
        ("import airflow\nairflow.sdk._shared.x()", "airflow.sdk._shared"),
        ("import airflow\nairflow.models._private", "airflow.models._private"),
    ],
)
def test_the_scan_finds_each_kind_of_internal(source, hit):
    found = _scan(source, set())
    assert any(hit in line for line in found) if hit else found == [], found


@pytest.mark.parametrize(
    "source",
    [
        "import mlflow\nmlflow.register_model('runs:/1/m', 'm')\nmlflow.MlflowClient()",
        "from mlflow.entities import Metric\nfrom mlflow.entities.model_registry import ModelVersion",
        "from mlflow.exceptions import MlflowException\nfrom mlflow.protos import databricks_pb2",
        "self._call('x')\nsuper()._own()",
        "'mlflow.entities'",
        "from airflow.sdk import Asset\nfrom airflow.sdk.exceptions import AirflowFailException",
        "import airflow.sdk\nairflow.sdk.Asset",
    ],
)
def test_the_scan_passes_public_use(source):
    assert _scan(source, {"_call", "_own"}) == []


def test_public_module_rule():
    assert compat.is_public_mlflow_module("mlflow")
    assert compat.is_public_mlflow_module("mlflow.entities.model_registry")
    assert compat.is_public_mlflow_module("mlflow.protos.databricks_pb2")
    assert not compat.is_public_mlflow_module("mlflow.protos.service_pb2")
    assert not compat.is_public_mlflow_module("mlflow.utils")
    assert not compat.is_public_mlflow_module("mlflow.entitiesx")


# == MLflow's seams ==============================================================================


@pytest.mark.parametrize("module", compat.MLFLOW_PRELOAD)
def test_preloaded_modules_exist(module):
    importlib.import_module(module)


def test_use_tracking_uri_scopes_the_fluent_uri(tmp_path):
    import mlflow

    before = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path}/x.db"
    with compat_fluent.use_tracking_uri(uri):
        assert mlflow.get_tracking_uri() == uri
    assert mlflow.get_tracking_uri() == before


def test_use_tracking_uri_leaves_tracing_alone_when_the_environment_has_the_uri(tmp_path, monkeypatch):
    import mlflow
    from mlflow.tracking._tracking_service import utils

    uri = f"sqlite:///{tmp_path}/x.db"
    resets = []
    monkeypatch.setattr(utils, "reset", lambda: resets.append(1))  # what set_tracking_uri calls
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with compat_fluent.use_tracking_uri(uri):  # what a task process has (the hook set the variable)
        assert mlflow.get_tracking_uri() == uri
    assert resets == []
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/other.db")  # set in this process: overridden
    try:
        with compat_fluent.use_tracking_uri(uri):
            assert mlflow.get_tracking_uri() == uri
        assert mlflow.get_tracking_uri().endswith("other.db")
    finally:
        mlflow.set_tracking_uri(None)
    assert resets


def test_host_creds_carry_every_field():
    got = compat.host_creds(
        "https://h", username="u", password="p", token="t", insecure_tls=False, ca_bundle="/ca.pem"
    )
    assert (got.host, got.username, got.password, got.token) == ("https://h", "u", "p", "t")
    assert (got.ignore_tls_verification, got.server_cert_path) == (False, "/ca.pem")
    insecure = compat.host_creds(
        "https://h", username=None, password=None, token=None, insecure_tls=True, ca_bundle=None
    )
    assert (insecure.ignore_tls_verification, insecure.server_cert_path) == (True, None)


class _Server(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        body = json.dumps({"files": [{"path": "a"}]}).encode() if "list" in self.path else b"x" * 1000
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    httpd.seen = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_rest_get_and_rest_get_bytes(server):
    uri = f"http://127.0.0.1:{server.server_port}"
    assert compat.rest_get(creds(uri), "/api/2.0/mlflow/artifacts/list", {"run_id": "r"}, NO_RETRIES) == {
        "files": [{"path": "a"}]
    }
    data = compat.rest_get_bytes(creds(uri), "/get-artifact", {"path": "p"}, NO_RETRIES, max_bytes=100)
    assert 100 < len(data) <= 100 + 64 * 1024 and set(data) == {ord("x")}
    assert [path.split("?")[0] for path, _ in server.seen] == [
        "/api/2.0/mlflow/artifacts/list",
        "/get-artifact",
    ]
    assert all(auth and auth.startswith("Basic ") for _, auth in server.seen)


def test_budget_seam_answers_with_the_running_calls_budget(monkeypatch):
    """``http_request`` called with no budget reads MLflow's settings: in a scope, the scope's."""
    from mlflow.utils import rest_utils

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    listener = Listener()
    try:
        with compat.budget_scope(NO_RETRIES):
            assert rest_utils.MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 1
            assert rest_utils.MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 5.0
            with pytest.raises(Exception, match="Max retries exceeded|Connection"):
                rest_utils.http_request(creds(f"http://127.0.0.1:{listener.port}"), "/x", "GET")
        assert listener.accepted == 2
        assert rest_utils.MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 3  # MLflow's own, outside a scope
    finally:
        listener.close()


def test_pace_seam_waits_before_each_request_in_its_scope(server):
    """Every request ``http_request`` sends in a ``pace_scope`` calls the pace first; none outside."""
    from mlflow.utils import rest_utils

    uri, paced = f"http://127.0.0.1:{server.server_port}", []
    with compat.pace_scope(lambda: paced.append(len(server.seen))):
        compat.rest_get(creds(uri), "/api/2.0/mlflow/artifacts/list", {}, NO_RETRIES)
        rest_utils.http_request(creds(uri), "/get-artifact", "GET", max_retries=0)
        with compat.pace_scope(None):  # an inner call without a rate keeps the outer pace
            rest_utils.http_request(creds(uri), "/get-artifact", "GET", max_retries=0)
    assert paced == [0, 1, 2]  # each pace ran before its request reached the server
    compat.rest_get(creds(uri), "/api/2.0/mlflow/artifacts/list", {}, NO_RETRIES)
    assert paced == [0, 1, 2] and len(server.seen) == 4
    for name in ("_get_http_response_with_retries", "_retry_databricks_sdk_call_with_exponential_backoff"):
        assert hasattr(getattr(rest_utils, name), "airflow_mlflow_paced"), name


def test_pace_seam_paces_each_attempt_of_the_databricks_sdk_loop():
    """On the Databricks SDK path MLflow retries in its own loop: each attempt waits for the pace."""
    from databricks.sdk.errors import TooManyRequests
    from mlflow.utils import rest_utils

    attempts, paced = [], []

    def call() -> str:
        attempts.append(len(paced))
        if len(attempts) == 1:
            raise TooManyRequests("slow down")
        return "ok"

    with compat.pace_scope(lambda: paced.append(1)):
        result = rest_utils._retry_databricks_sdk_call_with_exponential_backoff(
            call_func=call,
            retry_codes=[429],
            retry_timeout_seconds=30,
            backoff_factor=0,
            backoff_jitter=0,
            max_retries=2,
        )
    assert result == "ok" and attempts == [1, 2]


def test_bound_client_paces_its_stores(server):
    """The bound client's tracking and registry requests wait for its pace, outside any hook call."""
    uri, paced = f"http://127.0.0.1:{server.server_port}", []
    client = compat.bound_client(uri, None, creds, lambda: NO_RETRIES, lambda: paced.append(1))
    for call in (client.search_experiments, lambda: client.get_registered_model("m")):
        with pytest.raises(Exception):  # noqa: B017, PT011 (the stub server answers GETs only)
            call()
    assert len(paced) == 2


@pytest.mark.parametrize("verb", ["search_experiments", "get_registered_model"])
def test_bound_client_stores_carry_credentials_and_budget(verb):
    """Tracking and registry requests, outside any hook call, use the bound credentials and budget."""
    from mlflow import MlflowClient

    listener = Listener()
    try:
        uri = f"http://127.0.0.1:{listener.port}"
        client = compat.bound_client(uri, None, creds, lambda: NO_RETRIES)
        assert isinstance(client, MlflowClient)
        assert compat.tracking_store(client).get_host_creds().username == "alice"
        args = ("m",) if verb == "get_registered_model" else ()
        with pytest.raises(Exception, match="Max retries exceeded|Connection"):
            getattr(client, verb)(*args)
        assert listener.accepted == 2
        assert "_registry_client_lazy" not in vars(client)
    finally:
        listener.close()


def test_bound_client_registry_is_bound_to_its_own_uri():
    client = compat.bound_client("http://127.0.0.1:1", "https://registry:2", creds, lambda: NO_RETRIES)
    registry = client._get_registry_client()
    assert registry.store.get_host_creds().host == "https://registry:2"
    assert registry.store.get_host_creds().password == "pw"


def test_mlflow_shapes_the_bound_client_relies_on():
    """The constructors and hooks ``bound_client`` overrides, as MLflow defines them."""
    from mlflow import MlflowClient
    from mlflow.store.model_registry.rest_store import RestStore as RegistryRestStore
    from mlflow.store.tracking.rest_store import RestStore as TrackingRestStore
    from mlflow.tracking._model_registry.client import ModelRegistryClient
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    assert list(inspect.signature(TrackingServiceClient.__init__).parameters) == ["self", "tracking_uri"]
    assert list(inspect.signature(ModelRegistryClient.__init__).parameters) == [
        "self",
        "registry_uri",
        "tracking_uri",
    ]
    for store_type in (TrackingRestStore, RegistryRestStore):
        bound = creds("http://h")
        assert store_type(lambda bound=bound: bound).get_host_creds() is bound
        assert callable(store_type._call_endpoint)
    assert isinstance(TrackingServiceClient.store, property) and isinstance(
        ModelRegistryClient.store, property
    )
    assert "_registry_client_lazy" in inspect.getsource(MlflowClient._get_registry_client)
    assert "self._tracking_client = " in inspect.getsource(MlflowClient.__init__)


def test_update_run_info_sets_status_and_end_time(store):
    from mlflow import MlflowClient

    client = MlflowClient(store.tracking_uri)
    run = client.create_run(client.create_experiment("compat"))
    compat.update_run_info(client, run.info.run_id, "FAILED", 1234)
    info = client.get_run(run.info.run_id).info
    assert (info.status, info.end_time) == ("FAILED", 1234)
    compat.update_run_info(client, run.info.run_id, "RUNNING", None)
    assert client.get_run(run.info.run_id).info.status == "RUNNING"


@pytest.mark.parametrize("fails", [False, True])
def test_activate_run_is_start_run_without_its_requests(store, monkeypatch, fails):
    import mlflow
    from mlflow import MlflowClient
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from airflow_mlflow.compat_fluent import activate_run
    from airflow_mlflow.hooks.records import RunRecord

    client = MlflowClient(store.tracking_uri)
    created = client.create_run(client.create_experiment("fluent"), tags={"t": "1"}, run_name="ti")
    record = RunRecord.from_run(created)
    calls = []
    for verb in ("get_run", "update_run_info"):
        real = getattr(SqlAlchemyStore, verb)
        monkeypatch.setattr(
            SqlAlchemyStore,
            verb,
            lambda self, *a, _v=verb, _r=real, **k: calls.append(_v) or _r(self, *a, **k),
        )
    mlflow.set_tracking_uri(store.tracking_uri)
    try:
        with pytest.raises(RuntimeError) if fails else contextlib.nullcontext():
            with activate_run(record) as active:
                assert mlflow.active_run() is active
                assert (active.info.run_id, active.info.status, active.info.run_name) == (
                    created.info.run_id,
                    "RUNNING",
                    "ti",
                )
                assert active.data.tags["t"] == "1"
                assert calls == []  # start_run(run_id=...) reads, updates and reads again
                mlflow.log_metric("m", 1.0)  # the fluent API writes into it
                with pytest.raises(Exception, match="already active"):
                    activate_run(record)  # as start_run refuses a second run
                if fails:
                    raise RuntimeError("the task failed")
    finally:
        mlflow.set_tracking_uri(None)
    assert mlflow.active_run() is None
    run = client.get_run(created.info.run_id)
    assert run.info.status == ("FAILED" if fails else "FINISHED")
    assert run.data.metrics == {"m": 1.0}
    assert calls.count("update_run_info") == 1  # the end only


def test_artifact_repository_uploads_without_the_run(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    root = tmp_path / "artifacts"
    repo = compat.artifact_repository(root.as_uri(), "sqlite:///unused.db")
    repo.log_artifact(str(tmp_path / "f.txt"), "sub")
    assert (root / "sub" / "f.txt").read_text() == "x"


def test_migrate_sql_store_creates_a_usable_store(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/new.db"
    compat.migrate_sql_store(uri, (tmp_path / "artifacts").as_uri())
    assert [e.name for e in MlflowClient(uri).search_experiments()] == ["Default"]


@pytest.mark.parametrize(
    ("key", "ok"),
    [("loss", True), ("a/b-c_d.e f", True), ("bad key!", False), ("../x", False), ("a//b", False)],
)
def test_mlflow_key_problem(key, ok):
    """See tests/unit/test_validation.py for the agreement with MLflow's private validators."""
    problem = compat.mlflow_key_problem(key)
    assert (problem is None) is ok
    assert problem is None or isinstance(problem, str) and problem


@pytest.mark.parametrize(
    ("path", "safe"), [("a/b.png", True), ("../a", False), ("/abs", False), ("a/../../b", False)]
)
def test_artifact_path_is_safe(path, safe):
    assert compat.artifact_path_is_safe(path) is safe


# == Airflow's seams =============================================================================


def test_not_in_a_task_context_here():
    assert compat.in_task_context() is False


def test_task_sdk_secrets_backends_and_the_execution_api_backend():
    from airflow.sdk.execution_time.secrets import ExecutionAPISecretsBackend

    backends = compat.task_sdk_secrets_backends()
    assert backends and all(callable(getattr(b, "get_connection", None)) for b in backends)
    assert compat.is_execution_api_backend(ExecutionAPISecretsBackend())
    assert not compat.is_execution_api_backend(object())


class _Comms:
    def __init__(self, answer):
        self.answer, self.sent = answer, []

    def send(self, msg):
        self.sent.append(msg)
        return self.answer


@pytest.mark.parametrize("case", ["found", "not found", "error"])
def test_ask_execution_api(monkeypatch, case):
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import ConnectionResult, ErrorResponse, GetConnection

    answer = {
        "found": ConnectionResult(
            conn_id="c",
            conn_type="mlflow",
            host="h",
            schema="",
            login=None,
            password=None,
            port=5000,
            extra=None,
        ),
        "not found": ErrorResponse(error=ErrorType.CONNECTION_NOT_FOUND),
        "error": ErrorResponse(error=ErrorType.GENERIC_ERROR, detail={"why": "down"}),
    }[case]
    comms = _Comms(answer)
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)
    assert compat.in_task_context() is True
    conn, error = compat.ask_execution_api("c")
    assert comms.sent == [GetConnection(conn_id="c")]
    if case == "found":
        assert (conn.conn_id, conn.conn_type, conn.host, conn.port, error) == ("c", "mlflow", "h", 5000, None)
    elif case == "not found":
        assert (conn, error) == (None, None)
    else:
        assert conn is None and error.startswith(f"{ErrorType.GENERIC_ERROR.value}: ") and "down" in error


def test_call_secrets_backend_passes_the_conn_id():
    calls = []

    def get_connection(conn_id, **kwargs):
        calls.append((conn_id, kwargs))
        return "conn"

    assert compat.call_secrets_backend(get_connection, team_name=None, conn_id="c") == "conn"
    assert calls[0][0] == "c"


def test_task_hostname_is_the_one_airflow_records(monkeypatch):
    """[core] hostname_callable, as the Task SDK's runner calls it for the task instance."""
    from airflow.sdk.api.client import get_hostname

    assert compat.task_hostname() == get_hostname()
    monkeypatch.setenv("AIRFLOW__CORE__HOSTNAME_CALLABLE", "tests.e2e._hostname.from_env")
    monkeypatch.setenv("AMLF_TEST_HOSTNAME", "worker-7")
    assert compat.task_hostname() == "worker-7"


def test_resumes_attempt_reads_what_the_execution_api_sent_at_start():
    from types import SimpleNamespace

    from airflow.sdk.api.datamodels._generated import TIRunContext
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    assert "_ti_context_from_server" in RuntimeTaskInstance.__private_attributes__
    assert {"next_method", "task_reschedule_count"} <= set(TIRunContext.model_fields)

    def ti(**context):
        fields = {"next_method": None, "task_reschedule_count": 0, **context}
        return SimpleNamespace(_ti_context_from_server=SimpleNamespace(**fields))

    assert compat.resumes_attempt(ti()) is False  # a fresh attempt
    assert compat.resumes_attempt(ti(next_method="execute_complete")) is True  # deferred, resuming
    assert compat.resumes_attempt(ti(task_reschedule_count=2)) is True  # a sensor's later poke
    assert compat.resumes_attempt(SimpleNamespace()) is True  # nothing said: may resume


def test_compat_re_exports_every_airflow_seam():
    from airflow_mlflow import compat_airflow

    seams = [
        n
        for n, f in vars(compat_airflow).items()
        if inspect.isfunction(f) and f.__module__ == compat_airflow.__name__
    ]
    assert len(seams) >= 9 and all(getattr(compat, n) is getattr(compat_airflow, n) for n in seams)


@pytest.mark.parametrize(
    ("name", "hidden"), [("password", True), ("api_secret", True), ("bash_command", False)]
)
def test_hides_field(name, hidden):
    assert compat.hides_field(name) is hidden


def test_redact_replaces_a_registered_secret():
    from airflow.sdk.log import mask_secret

    mask_secret("compat-s3cr3t-value")
    assert compat.redact("a compat-s3cr3t-value b", "field") == "a *** b"
    assert compat.redact({"k": "plain"}, "field") == {"k": "plain"}


def test_serialize_template_field_is_json_able_and_stable():
    def fn():
        pass

    value = {"b": (1, 2), "a": fn, 3: {"x"}}
    got = compat.serialize_template_field(value, "op_kwargs")
    assert json.loads(json.dumps(got)) == got == compat.serialize_template_field(value, "op_kwargs")
    assert list(got) == sorted(got) and got["b"] == [1, 2] and "fn" in got["a"]
    assert compat.serialize_template_field("echo hi", "bash_command") == "echo hi"


def test_is_virtualenv_operator():
    import sys

    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.operators.python import (
        ExternalPythonOperator,
        PythonOperator,
        PythonVirtualenvOperator,
    )

    def fn():
        pass

    assert compat.is_virtualenv_operator(
        ExternalPythonOperator(task_id="e", python=sys.executable, python_callable=fn)
    )
    assert compat.is_virtualenv_operator(PythonVirtualenvOperator(task_id="v", python_callable=fn))
    assert not compat.is_virtualenv_operator(PythonOperator(task_id="p", python_callable=fn))
    assert not compat.is_virtualenv_operator(BashOperator(task_id="b", bash_command="true"))


@pytest.mark.parametrize("case", ["by name", "by uri", "unknown", "not a ref", "outside a task"])
def test_resolve_asset_ref(monkeypatch, case):
    from airflow.sdk import Asset, AssetAlias
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import AssetResult, ErrorResponse, GetAssetByName, GetAssetByUri

    found = AssetResult(name="feat", uri="s3://b/feat", group="asset", extra={})
    answer = ErrorResponse(error=ErrorType.ASSET_NOT_FOUND) if case == "unknown" else found
    comms = _Comms(answer)
    if case != "outside a task":
        monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)
    ref = {
        "by name": Asset.ref(name="feat"),
        "by uri": Asset.ref(uri="s3://b/feat"),
        "unknown": Asset.ref(name="feat"),
        "not a ref": AssetAlias("feat"),
        "outside a task": Asset.ref(name="feat"),
    }[case]
    got = compat.resolve_asset_ref(ref)
    if case in ("by name", "by uri"):
        assert isinstance(got, Asset) and (got.name, got.uri) == ("feat", "s3://b/feat")
        sent = GetAssetByName(name="feat") if case == "by name" else GetAssetByUri(uri="s3://b/feat")
        assert comms.sent == [sent]
    else:
        assert got is None and comms.sent == ([GetAssetByName(name="feat")] if case == "unknown" else [])


# -- the webhook receiver's seams (plugins/webhooks.py), against the session's Airflow DB


@pytest.fixture
def webhook_asset(airflow_db):
    """``(asset uri, the watcher's trigger class path)`` of a webhook-watched model asset in the DB."""
    import uuid

    from airflow_mlflow.assets import model_asset
    from tests.unit.plugins.test_webhooks import consumer

    asset = model_asset(f"compat-{uuid.uuid4().hex[:8]}", watch="webhook")
    consumer(asset)
    return asset.uri, asset.watchers[0].trigger.serialize()[0]


def test_metadata_session_commits_on_exit(airflow_db):
    from airflow.models.log import Log
    from sqlalchemy import select

    with compat.metadata_session() as session:
        session.add(Log(event="compat-seam-probe"))
    with compat.metadata_session() as session:
        assert session.scalars(select(Log).where(Log.event == "compat-seam-probe")).first() is not None


def test_watched_asset_needs_a_watcher_of_that_trigger(webhook_asset):
    uri, classpath = webhook_asset
    with compat.metadata_session() as session:
        assert compat.watched_asset(session, uri, classpath).uri == uri
        assert compat.watched_asset(session, uri, "airflow_mlflow.triggers.Other") is None
        assert compat.watched_asset(session, uri + "-none", classpath) is None


def test_register_asset_event_and_extras_since(webhook_asset):
    from datetime import UTC, datetime, timedelta

    uri, classpath = webhook_asset
    before = datetime.now(UTC) - timedelta(seconds=1)
    with compat.metadata_session() as session:
        asset = compat.watched_asset(session, uri, classpath)
        event = compat.register_asset_event(session, asset, {"delivery_id": "d-1"})
        assert event.extra == {"delivery_id": "d-1"}
    with compat.metadata_session() as session:
        assert compat.asset_event_extras_since(session, uri, before) == [{"delivery_id": "d-1"}]
        assert compat.asset_event_extras_since(session, uri, datetime.now(UTC) + timedelta(seconds=5)) == []
        assert compat.asset_event_extras_since(session, "mlflow-model://%", before) == []  # not a pattern


def test_project_seams_fetch_find_and_tag_a_local_project(tmp_path):
    from airflow_mlflow import compat_projects

    project = tmp_path / "proj"
    (project / "sub").mkdir(parents=True)
    (project / "sub" / "mlproject").write_text("name: p\nentry_points:\n  main:\n    command: 'true'\n")
    fetched = compat_projects.fetch_project(f"{project}#sub", None)
    assert fetched == str(project / "sub")  # a local folder is used in place
    assert compat_projects.has_mlproject(fetched) and not compat_projects.has_mlproject(str(project))
    with pytest.raises(Exception, match="only supported for Git"):
        compat_projects.fetch_project(str(project), "v1")  # not a git repository
    tags = compat_projects.project_source_tags("src", "main", None, fetched)
    assert tags == {
        "mlflow.source.name": "src",
        "mlflow.source.type": "PROJECT",
        "mlflow.project.entryPoint": "main",
    }
