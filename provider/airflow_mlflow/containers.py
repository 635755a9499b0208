"""
A tracked ``KubernetesPodOperator`` or ``DockerOperator``: the task's MLflow run, given to the pod
or container, so that unmodified code in it calling ``mlflow.start_run()`` writes into that run.

In a DAG file, :func:`track_in_pod` / :func:`track_in_container` opt the task into tracking
(:func:`~airflow_mlflow.tracking.enable_tracking`) and record where the pod or container finds the
MLflow server and its credentials. In the task process, right before ``execute``, the listener
opens the task's run and :func:`export` adds ``MLFLOW_TRACKING_URI``, ``MLFLOW_RUN_ID``,
``MLFLOW_EXPERIMENT_ID``/``_NAME`` and the connection's non-secret settings to the pod's
``env_vars`` or the container's ``environment``. Credentials are only ever referenced: a
Kubernetes Secret's keys (``secret_key_ref``), or a credentials file mounted into the container;
a literal credential never enters a pod spec or a container's config.

A store that lives on the worker (the embedded default, any ``sqlite:``/``file:`` URI) cannot be
shared with a pod or container on another host: then nothing is exported, the task log says why,
and the task still runs (its run, kept by the task process, still records the attempt).

Import-cheap: a DAG file imports this module; neither MLflow nor kubernetes nor docker is loaded
here (the operators' classes are recognized by name).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_mlflow.tracking import enable_tracking

if TYPE_CHECKING:
    from airflow_mlflow.hooks.mlflow import MLflowHook
    from airflow_mlflow.runs import TaskRun

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The const task param holding a task's container settings (like ``tracking.TRACKING_PARAM``, it
#: survives serialization, mapping and the attempt's copy of the operator).
CONTAINER_PARAM = "_airflow_mlflow_container"
#: Where MLflow's client reads a credentials file: ``~/.mlflow/credentials`` of the container's user.
DEFAULT_CREDENTIALS_PATH = "/root/.mlflow/credentials"

_POD_CLASS = "airflow.providers.cncf.kubernetes.operators.pod.KubernetesPodOperator"
_DOCKER_CLASS = "airflow.providers.docker.operators.docker.DockerOperator"
_CLASSES = {"pod": _POD_CLASS, "container": _DOCKER_CLASS}
_HELPER = {"pod": "track_in_pod", "container": "track_in_container"}
_USERNAME, _PASSWORD, _TOKEN = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"
_CREDENTIALS = (_USERNAME, _PASSWORD, _TOKEN)
#: A file on the worker: a pod or container has no such path.
_CERT_PATH = "MLFLOW_TRACKING_SERVER_CERT_PATH"
#: Kubernetes object names (DNS subdomain) and Secret keys.
_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")


def track_in_pod(
    task: T,
    *,
    credentials_secret: str | None = None,
    tracking_uri: str | None = None,
    username_key: str = "username",
    password_key: str = "password",
    token_key: str = "token",
) -> T:
    """
    Track a ``KubernetesPodOperator`` task (or ``@task.kubernetes``; a mapped task or its
    ``XComArg`` too) and give its pod the task's MLflow run.

    The pod's container gets ``MLFLOW_TRACKING_URI``, ``MLFLOW_RUN_ID``, ``MLFLOW_EXPERIMENT_ID``,
    ``MLFLOW_EXPERIMENT_NAME`` and the connection's retry settings as ``env_vars``; a variable the
    task already sets (``env_vars``, ``secrets``, ``pod_runtime_info_envs``) wins.

    :param task: the operator, mapped operator or ``XComArg``
    :param credentials_secret: a Kubernetes Secret, in the pod's namespace, holding the MLflow
        server's credentials: they are referenced by ``secret_key_ref`` (for a connection with
        login/password, keys ``username_key`` and ``password_key``; with a token, ``token_key``;
        with none, all three, optional). Without it, the connection's credentials are not given to
        the pod (the task log says so): their values never enter the pod spec.
    :param tracking_uri: the MLflow server's URL as the pod reaches it (an in-cluster service, say),
        when it differs from the worker's (``localhost``, a host-only name). The same server: the
        run lives there.
    :param username_key: the Secret's key holding the user name
    :param password_key: the Secret's key holding the password
    :param token_key: the Secret's key holding the token
    :return: ``task``
    """
    target = _operator(task, _POD_CLASS, "track_in_pod")
    if credentials_secret is not None and not (
        isinstance(credentials_secret, str) and _SECRET_NAME.fullmatch(credentials_secret)
    ):
        raise ValueError(
            f"track_in_pod: credentials_secret must name a Kubernetes Secret (lower-case letters, "
            f"digits, '-' and '.'), got {credentials_secret!r}"
        )
    given = {"username_key": username_key, "password_key": password_key, "token_key": token_key}
    for field, key in given.items():
        if not (isinstance(key, str) and _SECRET_KEY.fullmatch(key)):
            raise ValueError(f"track_in_pod: {field} must be a Secret key ([-._a-zA-Z0-9]+), got {key!r}")
    keys = dict(zip(_CREDENTIALS, given.values(), strict=True))
    settings = {
        "kind": "pod",
        "tracking_uri": _server_uri("track_in_pod", tracking_uri),
        "credentials_secret": credentials_secret,
        "keys": keys,
    }
    _store(target, settings)
    return enable_tracking(task)


def track_in_container(
    task: T,
    *,
    tracking_uri: str | None = None,
    credentials_file: str | None = None,
    credentials_path: str = DEFAULT_CREDENTIALS_PATH,
) -> T:
    """
    Track a ``DockerOperator`` task (or ``@task.docker``; a mapped task or its ``XComArg`` too) and
    give its container the task's MLflow run.

    The container gets ``MLFLOW_TRACKING_URI``, ``MLFLOW_RUN_ID``, ``MLFLOW_EXPERIMENT_ID``,
    ``MLFLOW_EXPERIMENT_NAME`` and the connection's retry settings in ``environment``; a variable
    the task already sets (``environment``, ``env_file``, ``private_environment``) wins.

    Credentials are given by reference, as a file: MLflow's client reads a user name and password
    from ``~/.mlflow/credentials`` (an INI file, section ``[mlflow]``, keys
    ``mlflow_tracking_username`` and ``mlflow_tracking_password``) when its environment has none.
    ``credentials_file`` is bind-mounted there read-only. Docker has no other way to hand a
    container a secret without writing its value into the container's config: ``environment``,
    ``private_environment`` and ``env_file`` all end up as plain variables that ``docker inspect``
    shows, so none of them is used for credentials. MLflow reads a token only from
    ``MLFLOW_TRACKING_TOKEN``: a token connection's token is not given to the container (the task
    log says so).

    :param task: the operator, mapped operator or ``XComArg``
    :param tracking_uri: the MLflow server's URL as the container reaches it (for example
        ``http://host.docker.internal:5000`` when the worker uses ``localhost``); the same server
    :param credentials_file: an absolute path, on the Docker host, to a file in MLflow's
        credentials format (a file only the Docker engine's user can read, or a secret your
        platform writes there)
    :param credentials_path: where the container's MLflow client looks for it: ``~/.mlflow/credentials``
        of the container's user (default: root's)
    :return: ``task``
    """
    target = _operator(task, _DOCKER_CLASS, "track_in_container")
    for field, path in (("credentials_file", credentials_file), ("credentials_path", credentials_path)):
        if path is None and field == "credentials_file":
            continue
        if not (isinstance(path, str) and path.startswith("/") and "\n" not in path):
            raise ValueError(f"track_in_container: {field} must be an absolute path, got {path!r}")
    settings = {
        "kind": "container",
        "tracking_uri": _server_uri("track_in_container", tracking_uri),
        "credentials_file": credentials_file,
        "credentials_path": credentials_path,
    }
    _store(target, settings)
    return enable_tracking(task)


def export(task: Any, hook: MLflowHook, run: TaskRun, experiment_name: str) -> list[str] | None:
    """
    Give a pod or container task the MLflow environment of ``run`` (see the module docstring);
    the names set, or None when ``task`` runs neither a pod nor a container.

    Only the attempt's copy of the operator changes: ``env_vars``, ``environment`` and ``mounts``
    get new lists and dicts (the copy is shallow).
    """
    kind = next((kind for kind, path in _CLASSES.items() if _is_a(type(task), path)), None)
    if kind is None:
        return None
    settings, who = _settings(task), f"task {task.task_id}'s {kind}"
    if settings is None or settings.get("kind") != kind:
        log.info("MLflow: %s gets no MLflow environment; %s(task) gives it", who, _HELPER[kind])
        return []
    reason = _unshareable(hook)
    if reason:
        log.warning(
            f"MLflow: %s gets no MLflow environment: %s, which a {kind} on another host cannot reach. "
            f"Set connection %r to an MLflow server (tracking_uri= only changes the address the {kind} "
            "uses for it). The task runs; its run is recorded from this worker.",
            who,
            reason,
            hook.mlflow_conn_id,
        )
        return []
    env = hook.child_env(run.run_id, run.experiment_id, experiment_name)
    has_credentials = [name for name in _CREDENTIALS if env.pop(name, None) is not None]
    cert = env.pop(_CERT_PATH, None)
    if settings.get("tracking_uri"):
        env["MLFLOW_TRACKING_URI"] = settings["tracking_uri"]
    else:
        _warn_loopback(task, who, kind, env["MLFLOW_TRACKING_URI"])
    if cert:
        log.warning(
            f"MLflow: %s does not get the connection's ca_bundle %r: it is a file on this worker. "
            f"Mount the CA bundle into the {kind} and set {_CERT_PATH} to its path there.",
            who,
            cert,
        )
    artifacts = run.artifact_uri or ""
    if artifacts.startswith(("file:", "/")):
        log.warning(
            "MLflow: run %s stores artifacts at %s, a local path: %s writes artifacts there only if "
            "it mounts the same storage at that path, else they are lost with it (metrics and params "
            "are not affected).",
            run.run_id,
            artifacts,
            who,
        )
    if kind == "pod":
        return _to_pod(task, settings, env, has_credentials)
    return _to_container(task, settings, env, has_credentials)


def _to_pod(task: Any, settings: dict, env: dict[str, str], has_credentials: list[str]) -> list[str]:
    from kubernetes.client import models as k8s

    current = task.env_vars or []
    if isinstance(current, dict):
        current = [k8s.V1EnvVar(name=k, value=v) for k, v in current.items()]
    taken = {_env_name(var) for var in (*current, *(task.pod_runtime_info_envs or ()))}
    taken |= {s.deploy_target for s in task.secrets or () if getattr(s, "deploy_type", None) == "env"}
    added = [k8s.V1EnvVar(name=k, value=v) for k, v in env.items() if k not in taken]
    secret = settings.get("credentials_secret")
    if secret:
        # The connection's kind of credentials, required; with none, every kind, optional.
        wanted = has_credentials or list(_CREDENTIALS)
        optional = None if has_credentials else True
        for var in wanted:
            if var in taken:
                continue
            selector = k8s.V1SecretKeySelector(name=secret, key=settings["keys"][var], optional=optional)
            added.append(k8s.V1EnvVar(name=var, value_from=k8s.V1EnvVarSource(secret_key_ref=selector)))
    elif has_credentials and not set(has_credentials) <= taken:
        log.warning(
            "MLflow: task %s's pod does not get the connection's credentials: their values never go "
            "into a pod spec. Pass track_in_pod(task, credentials_secret=<a Kubernetes Secret with "
            "keys %s>) to reference them.",
            task.task_id,
            ", ".join(repr(settings["keys"][var]) for var in has_credentials),
        )
    task.env_vars = [*current, *added]  # a new list: the attempt's copy shares the DAG's
    return [var.name for var in added]


def _to_container(task: Any, settings: dict, env: dict[str, str], has_credentials: list[str]) -> list[str]:
    environment = dict(task.environment or {})
    taken = set(environment)
    if isinstance(task.env_file, str) and task.env_file.strip():
        try:
            taken |= set(task.unpack_environment_variables(task.env_file))
        except Exception:  # the operator itself reports a malformed env file when it runs
            pass
    added = {k: v for k, v in env.items() if k not in taken}
    task.environment = {**added, **environment}  # a new dict: the operator also writes into it
    names = list(added)
    source, target = settings.get("credentials_file"), settings.get("credentials_path")
    if source:
        mounts = list(task.mounts or [])
        if not any(_mount_target(m) == target for m in mounts):
            from docker.types import Mount

            task.mounts = [*mounts, Mount(target=target, source=source, type="bind", read_only=True)]
            names.append(f"{target} (credentials file)")
    if _TOKEN in has_credentials and _TOKEN not in taken:
        why = "MLflow reads a token only from MLFLOW_TRACKING_TOKEN, which would write it into the "
        why += "container's config: use a login/password connection and a credentials_file"
    elif not source and has_credentials and not set(has_credentials) <= taken:
        why = "their values never go into a container's config. Pass track_in_container(task, "
        why += "credentials_file=<a file on the Docker host in MLflow's credentials format>)"
    else:
        return names
    log.warning(
        "MLflow: task %s's container does not get the connection's credentials: %s.", task.task_id, why
    )
    return names


def _unshareable(hook: MLflowHook) -> str | None:
    """Why the connection's store cannot be reached from a pod or container, or None."""
    from airflow_mlflow.hooks.config import redact_uri

    config = hook.config
    if config.embedded:
        return (
            f"the embedded MLflow store is a SQLite file on this worker ({config.tracking_uri}), "
            f"used because connection {hook.mlflow_conn_id!r} is not defined"
        )
    for field in ("tracking_uri", "registry_uri"):
        uri = getattr(config, field)
        if not uri:
            continue
        if _scheme(uri) in {"sqlite", "file"} or uri.startswith(("/", ".", "~")):
            return f"the connection's {field} {redact_uri(uri)!r} is a file on this worker"
        if _userinfo(uri):
            return (
                f"the connection's {field} {redact_uri(uri)!r} carries credentials in the URI, which "
                "would be written into the spec in plain text"
            )
    return None


def _warn_loopback(task: Any, who: str, kind: str, uri: str) -> None:
    from urllib.parse import urlsplit

    if kind == "container" and getattr(task, "network_mode", None) == "host":
        return
    try:
        host = urlsplit(uri).hostname or ""
    except ValueError:
        return
    if not _loopback(host):
        return
    log.warning(
        f"MLflow: %s gets MLFLOW_TRACKING_URI=%s, a loopback address: a {kind} on another host (or in "
        f"its own network) cannot reach it. Pass {_HELPER[kind]}(task, tracking_uri=<the server's "
        f"address as the {kind} sees it>).",
        who,
        uri,
    )


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _server_uri(helper: str, uri: str | None) -> str | None:
    if uri is None:
        return None
    if not isinstance(uri, str) or _scheme(uri) not in {"http", "https"} or "://" not in uri:
        raise ValueError(f"{helper}: tracking_uri must be an http(s) URL of an MLflow server, got {uri!r}")
    if _userinfo(uri):
        raise ValueError(
            f"{helper}: tracking_uri must not carry credentials (user:password@); got a URL for host "
            f"{uri.split('://', 1)[1].split('/', 1)[0].rsplit('@', 1)[1]!r}"
        )
    return uri.strip().rstrip("/")


def _scheme(uri: str) -> str:
    return uri.split(":", 1)[0].split("+", 1)[0].lower()


def _userinfo(uri: str) -> bool:
    return "://" in uri and "@" in uri.split("://", 1)[1].split("/", 1)[0]


def _operator(task: Any, class_path: str, helper: str) -> Any:
    """The operator (or mapped operator) behind ``task``, checked to run ``class_path``."""
    target = getattr(task, "operator", None) if type(task).__name__.endswith("XComArg") else task
    cls = getattr(target, "operator_class", None) or type(target)  # a mapped operator's class
    if not (isinstance(cls, type) and _is_a(cls, class_path)):
        name = getattr(target, "task_id", None)
        raise TypeError(
            f"{helper}: task {name!r} is a {getattr(cls, '__qualname__', cls)!s}, not a "
            f"{class_path.rsplit('.', 1)[1]}"
        )
    return target


def _is_a(cls: type, class_path: str) -> bool:
    return any(f"{c.__module__}.{c.__qualname__}" == class_path for c in cls.__mro__)


def _store(target: Any, settings: dict) -> None:
    from airflow.sdk import Param

    target.params[CONTAINER_PARAM] = Param(settings, const=settings)


def _settings(task: Any) -> dict | None:
    params = getattr(task, "params", None)
    if params is None or CONTAINER_PARAM not in params:
        return None
    value = params[CONTAINER_PARAM]  # ParamsDict resolves the Param to its value
    value = getattr(value, "value", value)
    return value if isinstance(value, dict) else None


def _env_name(var: Any) -> str | None:
    return var.get("name") if isinstance(var, dict) else getattr(var, "name", None)


def _mount_target(mount: Any) -> str | None:
    """docker's ``Mount`` is a dict (``Target``); a user's dict says ``target``."""
    return (mount.get("Target") or mount.get("target")) if isinstance(mount, dict) else None
