"""Static checks of ``docker/compose.yaml``'s Celery profile (no Docker engine needed).

``test_docker.py`` runs its checks on every way the file is brought up, the Celery profile
included (``DEPLOYMENTS``). These checks add what only the Celery deployment has:

* Its workers run what the e2e Celery tier runs natively (``tests/e2e/_celery.py``, read with
  ``ast``): as many workers, ``airflow celery worker``, and the same ``AIRFLOW__CELERY__*`` and
  other settings, except those that only fit several test stacks on one machine.
* Its topology: Redis, workers and Flower start in a profile only, the workers wait for the broker,
  each has its own hostname, and its healthcheck pings its own node and fails under another
  executor (``AIRFLOW_EXECUTOR`` forgotten: no task would ever come).
* Its endpoints: the broker URL names the Redis service and port, results go to the metadata
  database, the API server fetches logs from the workers' log server port.
* The commands that docs give (compose.yaml's header, docker/README.md) are the deployments
  checked: the Celery profile with ``AIRFLOW_EXECUTOR=CeleryExecutor``.

As in ``test_docker.py``, every check has a negative control: a broken copy it must notice.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.lint.test_docker import (
    CHECKS,
    DEPLOYMENTS,
    HARNESS_LOCAL_ONLY,
    Deployment,
    Mutation,
    _functions,
    _m,
    _strings,
    as_argv,
    broken_copy,
    depends_on,
    option,
)

CELERY_HARNESS = "tests/e2e/_celery.py"
WORKER = ("airflow", "celery", "worker")
FLOWER = ("airflow", "celery", "flower")
REDIS_PORT = 6379  # the redis image's
FLOWER_PORT = 5555  # [celery] flower_port's default
LOG_SERVER_PORT = "8793"  # [logging] worker_log_server_port's default

# What the Celery stack sets only because several stacks share one machine and one Redis: each gets
# its own queue, its workers made-up hostnames (a container has its own) and their own ports.
CELERY_LOCAL_ONLY = {
    "AIRFLOW__OPERATORS__DEFAULT_QUEUE",
    "AIRFLOW__CORE__HOSTNAME_CALLABLE",
}
# Its worker flags: its own queue and node name, no chatter with other test sessions' workers, and
# --concurrency, which compose sets as [celery] worker_concurrency (the harness sets both).
WORKER_FLAGS_LOCAL_ONLY = {
    "--queues",
    "--celery-hostname",
    "--without-mingle",
    "--without-gossip",
    "--concurrency",
}
# Given to every process by the harness; only a worker reads it.
WORKER_ONLY = {"AIRFLOW__CELERY__WORKER_CONCURRENCY"}

CELERY_DEPLOYMENTS = {name: dep for name, dep in DEPLOYMENTS.items() if "celery" in dep.profiles}
FULL = DEPLOYMENTS["celery+flower"]


def workers(dep: Deployment) -> list[str]:
    return [s for s in dep.services if dep.argv(s)[:3] == list(WORKER)]


def redis_service(dep: Deployment) -> str | None:
    return next((s for s, svc in dep.services.items() if svc.get("image", "").startswith("redis:")), None)


# -------------------------------------------------------------------------------- the e2e harness


@dataclass(frozen=True)
class CeleryHarness:
    #: AIRFLOW__ key -> ("==", value) | ("startswith", literal prefix of an f-string) | ("set", "")
    settings: dict[str, tuple[str, str]]
    worker_env_keys: set[str]
    worker_argv: list[str | None]
    workers: int | None


def _constants(tree: ast.Module) -> dict[str, object]:
    """Module-level ``NAME = constant`` and ``A, B = constant, constant``."""
    found: dict[str, object] = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            pairs = (
                zip(target.elts, node.value.elts, strict=False)
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple)
                else [(target, node.value)]
            )
            for name, value in pairs:
                if isinstance(name, ast.Name) and isinstance(value, ast.Constant):
                    found[name.id] = value.value
    return found


def _expected(node: ast.AST, names: dict[str, object]) -> tuple[str, str]:
    """What compose's value must be, from the harness's expression for it."""
    if isinstance(node, ast.Constant):
        return "==", str(node.value)
    if isinstance(node, ast.Name) and node.id in names:
        return "==", str(names[node.id])
    # str(parameter): the parameter's default
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "str" and len(node.args) == 1:
        arg = node.args[0]
        if isinstance(arg, ast.Name) and arg.id in names:
            return "==", str(names[arg.id])
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return "startswith", str(node.values[0].value)  # the scheme of f"redis://{host}..."
    return "set", ""


def read_celery_harness(root: Path) -> CeleryHarness:
    """What the Celery stack runs, from its source: ``__init__``'s overrides and defaults, the
    worker's environment and argv."""
    tree = ast.parse((root / CELERY_HARNESS).read_text())
    names = _constants(tree)
    settings: dict[str, tuple[str, str]] = {}
    n_workers = None
    for fn in _functions(tree, "__init__"):
        args = fn.args
        defaults = dict(zip([a.arg for a in args.kwonlyargs], args.kw_defaults, strict=True))
        params = {k: v.value for k, v in defaults.items() if isinstance(v, ast.Constant)}
        n_workers = params.get("workers") if isinstance(params.get("workers"), int) else None
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign) and any(
                getattr(t, "id", None) == "overrides" for t in node.targets
            ):
                if isinstance(node.value, ast.Dict):
                    for key, value in zip(node.value.keys, node.value.values, strict=True):
                        if isinstance(key, ast.Constant) and str(key.value).startswith("AIRFLOW__"):
                            settings[key.value] = _expected(value, {**names, **params})
    worker_env_keys = {
        key.value
        for fn in _functions(tree, "worker_env")
        for node in ast.walk(fn)
        if isinstance(node, ast.Dict)
        for key in node.keys
        if isinstance(key, ast.Constant) and isinstance(key.value, str)
    }
    argv = [
        items
        for fn in _functions(tree, "_launch_worker")
        for node in ast.walk(fn)
        if (items := _strings(node)) and items[:1] == ["airflow"]
    ]
    return CeleryHarness(settings, worker_env_keys, argv[0] if argv else [], n_workers)


def check_celery_parity(dep: Deployment, workdir: Path) -> list[str]:
    """The workers run what tests/e2e/_celery.py runs: as many, same command, flags and settings."""
    harness = read_celery_harness(dep.root)
    problems = []
    if harness.worker_argv[:3] != list(WORKER) or not harness.workers:
        problems.append(f"{CELERY_HARNESS}: cannot read the workers' argv or number ({harness})")
    if harness.settings.get("AIRFLOW__CORE__EXECUTOR") != ("==", "CeleryExecutor"):
        problems.append(f"{CELERY_HARNESS}: cannot read the executor it overrides ({harness.settings})")
    names = workers(dep)
    if len(names) != harness.workers:
        problems.append(f"the e2e Celery tier runs {harness.workers} workers; compose runs {names}")
    flags = {f for f in harness.worker_argv if f and f.startswith("--")} - WORKER_FLAGS_LOCAL_ONLY
    local = HARNESS_LOCAL_ONLY | CELERY_LOCAL_ONLY
    for name in dep.airflow_services:
        is_worker = name in names
        env = dep.env(name)
        if is_worker and (missing := sorted(f for f in flags if option(dep.argv(name), f) is None)):
            problems.append(f"{name}: the e2e tier's workers also run with {missing}")
        wanted = {k for k in harness.worker_env_keys if k.startswith("AIRFLOW__")} if is_worker else set()
        for key in sorted((set(harness.settings) | wanted) - local):
            if key in WORKER_ONLY and not is_worker:
                continue
            how, expected = harness.settings.get(key, ("set", ""))
            value = env.get(key)
            if not value or (how == "==" and value != expected) or not value.startswith(expected):
                problems.append(
                    f"{name}: {key} is {value!r}; the e2e Celery tier sets it ({how} {expected!r}); set it "
                    "in compose.yaml or, if it only tunes the test machine, add it to CELERY_LOCAL_ONLY"
                )
    for name in names:
        if name not in dep.airflow_services:
            problems.append(f"{name}: a worker not built from the Airflow Dockerfile")
    return problems


# ---------------------------------------------------------------------------------------- topology


def check_celery_topology(dep: Deployment, workdir: Path) -> list[str]:
    """Redis, workers and Flower start in a profile only; workers wait for Redis and the init
    service, each has its own hostname (its service name) and its healthcheck pings its own node."""
    problems = []
    for name, svc in dep.compose["services"].items():  # active or not
        celery = as_argv(svc.get("command"))[:2] == ["airflow", "celery"]
        if (celery or svc.get("image", "").startswith("redis:")) and not svc.get("profiles"):
            problems.append(f"{name}: Celery's services start only in a profile (not with the LocalExecutor)")
    redis = redis_service(dep)
    if redis is None:
        return [*problems, f"no redis service with profiles {dep.profiles}"]
    test = as_argv((dep.services[redis].get("healthcheck") or {}).get("test"))
    if test[-2:] != ["redis-cli", "ping"]:
        problems.append(f"{redis}: healthcheck {test} is not `redis-cli ping`")
    hostnames: dict[str, str] = {}
    for name in workers(dep):
        svc = dep.services[name]
        hostname = svc.get("hostname")
        # The API server fetches a running task's log from http://<hostname>:8793: a name it resolves.
        if hostname != name:
            problems.append(f"{name}: hostname {hostname!r}, not its service name (what others resolve)")
        if hostname in hostnames:
            problems.append(f"{name} and {hostnames[hostname]} have the same hostname {hostname!r}")
        hostnames[hostname] = name
        problems += _waits(
            dep, name, {redis: "service_healthy", dep.init_service: "service_completed_successfully"}
        )
        test = " ".join(as_argv((svc.get("healthcheck") or {}).get("test")))
        node = re.search(
            r"inspect ping (?:-d|--destination)[ =]\"?celery@(\$\{HOSTNAME\}|\$HOSTNAME)\"?", test
        )
        if "--app airflow.providers.celery.executors.celery_executor.app" not in test or not node:
            problems.append(f"{name}: healthcheck {test!r} does not ping this worker's own node")
        if not re.search(r'test "\$\{AIRFLOW__CORE__EXECUTOR\}" = CeleryExecutor &&', test):
            problems.append(f"{name}: healthcheck {test!r} passes under another executor (no task comes)")
    for name in (s for s in dep.services if dep.argv(s)[:3] == list(FLOWER)):
        problems += _waits(dep, name, {redis: "service_healthy"})
        ports = [str(p) for p in dep.services[name].get("ports") or []]
        loopback = all(p.startswith("127.0.0.1:") for p in ports)
        if not loopback or dep.published_port(name, FLOWER_PORT) is None:
            problems.append(f"{name}: Flower has no login: publish {FLOWER_PORT} on 127.0.0.1 only ({ports})")
        test = " ".join(as_argv((dep.services[name].get("healthcheck") or {}).get("test")))
        if f"localhost:{FLOWER_PORT}/" not in test:
            problems.append(f"{name}: healthcheck {test!r} does not probe its own port {FLOWER_PORT}")
    return problems


def _waits(dep: Deployment, name: str, conditions: dict[str | None, str]) -> list[str]:
    deps = depends_on(dep.services[name])
    return [
        f"{name}: does not wait for {target} ({condition})"
        for target, condition in conditions.items()
        if (deps.get(target or "") or {}).get("condition") != condition
    ]


def check_celery_endpoints(dep: Deployment, workdir: Path) -> list[str]:
    """The broker URL is the Redis service's; results go to the metadata database; the API server
    asks the workers for logs on the port they serve them."""
    redis = redis_service(dep)
    scheduler, api = dep.running("airflow", "scheduler"), dep.running("airflow", "api-server")
    names = workers(dep)
    if redis is None or scheduler is None or api is None or not names:
        return [f"no redis ({redis}), scheduler ({scheduler}), API server ({api}) or workers ({names})"]
    problems = []
    port = int(option(as_argv(dep.services[redis].get("command")), "--port") or REDIS_PORT)
    for name in [scheduler, *names]:  # who sends tasks, who takes them
        env = dep.env(name)
        broker = urlsplit(env.get("AIRFLOW__CELERY__BROKER_URL", ""))
        if (broker.scheme, broker.hostname, broker.port) != ("redis", redis, port):
            problems.append(f"{name}: broker {broker.geturl()!r} is not redis://{redis}:{port}")
        backend = env.get("AIRFLOW__CELERY__RESULT_BACKEND")
        database = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
        if backend != f"db+{database}":
            problems.append(f"{name}: result backend {backend!r} is not the metadata database, db+{database}")
    log_port = "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"
    served = {n: dep.env(n).get(log_port, LOG_SERVER_PORT) for n in [api, *names]}
    if len(set(served.values())) > 1:
        problems.append(f"the API server asks for logs on another port than workers serve them: {served}")
    return problems


# -------------------------------------------------------------------------------------------- docs

_COMMAND = re.compile(r"^(?:#\s*)?((?:[A-Z_]+=\S+\s+)*docker compose\s.*\sup\b.*)$")


def documented_commands(text: str) -> set[tuple[tuple[str, ...], tuple[tuple[str, str], ...]]]:
    """(profiles, variables) of each ``[NAME=value ...] docker compose ... up`` line."""
    found = set()
    for line in text.splitlines():
        if not (match := _COMMAND.match(line.strip())):
            continue
        words = shlex.split(match[1], comments=True)
        at = words.index("docker")
        variables = tuple(sorted(tuple(w.split("=", 1)) for w in words[:at]))
        profiles = tuple(sorted(words[i + 1] for i, w in enumerate(words[:-1]) if w == "--profile"))
        found.add((profiles, variables))
    return found


def check_documented_commands(dep: Deployment, workdir: Path) -> list[str]:
    """compose.yaml's header and docker/README.md give the commands of :data:`DEPLOYMENTS` (the
    Celery profile with AIRFLOW_EXECUTOR=CeleryExecutor), and no others."""
    checked = {(tuple(sorted(d.profiles)), tuple(sorted(d.variables))) for d in DEPLOYMENTS.values()}
    header = "".join(re.findall(r"^#.*\n", dep.compose_text, flags=re.MULTILINE))
    problems = []
    for label, text in (
        ("compose.yaml's header", header),
        ("docker/README.md", (dep.docker / "README.md").read_text()),
    ):
        documented = documented_commands(text)
        for profiles, variables in sorted(documented - checked):
            problems.append(f"{label} starts profiles {profiles} with {variables}, a deployment not checked")
        for profiles, variables in sorted(checked - documented):
            problems.append(f"{label} does not say how to start profiles {profiles} (with {variables})")
    return problems


# -------------------------------------------------------------------------------------- the tests

CELERY_CHECKS = {
    "celery_parity": check_celery_parity,
    "celery_topology": check_celery_topology,
    "celery_endpoints": check_celery_endpoints,
    "documented_commands": check_documented_commands,
}
ALL_CHECKS = {**CHECKS, **CELERY_CHECKS}


@pytest.mark.parametrize("deployment", list(CELERY_DEPLOYMENTS))
@pytest.mark.parametrize("name", list(CELERY_CHECKS))
def test_celery_deployment(name: str, deployment: str, tmp_path: Path) -> None:
    problems = CELERY_CHECKS[name](CELERY_DEPLOYMENTS[deployment], tmp_path)
    assert not problems, f"{CELERY_CHECKS[name].__doc__}\n" + "\n".join(problems)


COMPOSE, README = "docker/compose.yaml", "docker/README.md"
_WORKER_WAITS = "      redis:\n        condition: service_healthy\n      airflow-api-server:"
_FLOWER_WAITS = "      redis:\n        condition: service_healthy\n\nvolumes:"
_CELERY_ENV = "AIRFLOW_EXECUTOR=CeleryExecutor "
_CELERY_UP = _CELERY_ENV + "docker compose -f docker/compose.yaml --profile celery up"
_WORKER_ENV = '      DUMB_INIT_SETSID: "0"\n'
_WORKER_2 = "  airflow-worker-2:\n    <<: *airflow-worker\n    hostname: airflow-worker-2\n"
# fmt: off
CELERY_MUTATIONS = [
    _m("worker-without-celery-config", COMPOSE, _WORKER_ENV,
       _WORKER_ENV + '      AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS: ""\n',
       "celery_parity", "shared_settings"),
    _m("default-celery-config", COMPOSE, "CELERY_CONFIG_OPTIONS: airflow_mlflow.celery_config.CELERY_CONFIG",
       "CELERY_CONFIG_OPTIONS: airflow.providers.celery.executors.default_celery.DEFAULT_CELERY_CONFIG",
       "celery_parity"),
    _m("broker-wrong-host", COMPOSE, "redis://redis:6379/0", "redis://localhost:6379/0", "celery_endpoints"),
    _m("broker-wrong-port", COMPOSE, "redis://redis:6379/0", "redis://redis:6380/0", "celery_endpoints"),
    _m("broker-not-redis", COMPOSE, "redis://redis:6379/0", "amqp://redis:6379/0",
       "celery_parity", "celery_endpoints"),
    _m("result-backend-other-db", COMPOSE, "RESULT_BACKEND: db+postgresql+psycopg2://airflow:${AIRFLOW_DB_PASSWORD:-airflow}@postgres:5432/airflow\n",
       "RESULT_BACKEND: db+postgresql+psycopg2://airflow:${AIRFLOW_DB_PASSWORD:-airflow}@postgres:5432/results\n",
       "celery_endpoints"),
    _m("worker-log-port", COMPOSE, _WORKER_ENV,
       _WORKER_ENV + '      AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT: "8794"\n', "celery_endpoints"),
    _m("executor-not-celery", COMPOSE, "${AIRFLOW_EXECUTOR:-LocalExecutor}", "LocalExecutor",
       "shared_settings"),
    _m("worker-runs-scheduler", COMPOSE, '["airflow", "celery", "worker"]', '["airflow", "scheduler"]',
       "celery_parity", "shared_settings"),
    _m("one-worker", COMPOSE, _WORKER_2, "", "celery_parity"),
    _m("worker-concurrency", COMPOSE, 'WORKER_CONCURRENCY: "4"', 'WORKER_CONCURRENCY: "16"',
       "celery_parity"),
    _m("worker-not-waiting-for-redis", COMPOSE, _WORKER_WAITS, "      airflow-api-server:",
       "celery_topology"),
    _m("flower-not-waiting-for-redis", COMPOSE, _FLOWER_WAITS, "\nvolumes:", "celery_topology"),
    _m("same-hostname", COMPOSE, "hostname: airflow-worker-2", "hostname: airflow-worker-1",
       "celery_topology"),
    _m("worker-pings-other-node", COMPOSE, '"celery@$${HOSTNAME}"', '"celery@airflow-worker-1"',
       "celery_topology"),
    _m("healthy-under-local-executor", COMPOSE, '"$${AIRFLOW__CORE__EXECUTOR}" = CeleryExecutor &&\n',
       '"$${AIRFLOW__CORE__EXECUTOR}" &&\n', "celery_topology"),
    _m("worker-without-profile", COMPOSE, "    profiles: [celery]\n    hostname: airflow-worker-1\n",
       "    hostname: airflow-worker-1\n", "celery_topology"),
    _m("redis-no-healthcheck", COMPOSE, '      test: ["CMD", "redis-cli", "ping"]\n', "",
       "celery_topology", "references"),
    _m("redis-unpinned", COMPOSE, "image: redis:7.2-alpine", "image: redis", "references"),
    _m("flower-port-clash", COMPOSE, '"127.0.0.1:${FLOWER_PORT:-5555}:5555"', '"${AIRFLOW_PORT:-8080}:5555"',
       "references", "celery_topology"),
    _m("celery-key-typo", COMPOSE, "AIRFLOW__CELERY__BROKER_URL:", "AIRFLOW__CELERY__BROKER:",
       "airflow_config_keys", "celery_parity", "shared_settings"),
    _m("readme-without-executor", README, _CELERY_UP, _CELERY_UP.removeprefix(_CELERY_ENV),
       "documented_commands"),
    _m("header-without-flower", COMPOSE, "--profile celery --profile flower up", "--profile flower up",
       "documented_commands"),
]
# fmt: on


@pytest.mark.parametrize("mutation", CELERY_MUTATIONS, ids=[m.id for m in CELERY_MUTATIONS])
def test_check_catches(tmp_path: Path, mutation: Mutation) -> None:
    dep = broken_copy(tmp_path, mutation, like=FULL)
    for name in mutation.checks:
        workdir = tmp_path / name
        workdir.mkdir()
        assert ALL_CHECKS[name](dep, workdir), f"check {name!r} did not notice {mutation.id}"


def test_every_celery_check_has_a_negative_control() -> None:
    assert {c for m in CELERY_MUTATIONS for c in m.checks} >= set(CELERY_CHECKS)
