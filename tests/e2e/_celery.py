"""The e2e stack on the CeleryExecutor: :class:`AirflowStack` plus Celery workers, Redis as broker.

Redis (``127.0.0.1:6379``, started by ``.ci/run``) is the broker; PostgreSQL (the metadata DB) the
result backend (Airflow's default: ``db+`` the metadata DB's URI). Every task goes to a queue
named for this stack only (``[operators] default_queue``), so a concurrent stack on the same Redis
never takes its tasks.

Each worker is its own process group with its own working directory, ``AIRFLOW_HOME`` (so its
own task logs), ``TMPDIR`` and log-server port: the workers share nothing through the file system
that separate machines would not (the DAGs folder is the deployment's bundle). A real deployment
has one hostname per machine; here each worker gets one through ``[core] hostname_callable``
(:mod:`tests.e2e._hostname`), which is what Airflow records on the task instances it runs and
what the provider tags their MLflow runs with (``airflow.hostname``).

The workers use the provider's Celery config
(``[celery] celery_config_options = airflow_mlflow.celery_config.CELERY_CONFIG``), which imports
MLflow once per worker before it forks its pool.
"""

from __future__ import annotations

import glob
import os
import secrets
import subprocess
from pathlib import Path

from tests.e2e._airflow import AirflowStack, StackError, free_port, tail
from tests.e2e._hostname import ENV as HOSTNAME_ENV
from tests.support import wait_for

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
CELERY_CONFIG = "airflow_mlflow.celery_config.CELERY_CONFIG"


def redis_ping() -> str | None:
    """None when Redis answers PING on 127.0.0.1:6379, else why not."""
    import redis

    try:
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=5).ping()
    except redis.RedisError as err:
        return f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT} ({err}); start it as .ci/run does"
    return None


class CeleryStack(AirflowStack):
    """:class:`AirflowStack` with ``executor = CeleryExecutor`` and ``workers`` Celery workers.

    ``worker_names``: the hostnames the workers run as (``worker-1``, ...), also their process
    names in ``procs`` and their log names.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        mlflow_server_url: str,
        workers: int = 2,
        concurrency: int = 4,
        redis_db: int = 0,
    ) -> None:
        self.queue = f"amlf-e2e-{os.getpid()}-{secrets.token_hex(4)}"
        self.concurrency = concurrency
        self.worker_names = [f"worker-{n}" for n in range(1, workers + 1)]
        overrides = {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            # Every worker slot busy, and no more: tasks wait in the scheduler, not in Redis.
            "AIRFLOW__CORE__PARALLELISM": str(workers * concurrency),
            "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": CELERY_CONFIG,
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.e2e._hostname.from_env",
        }
        super().__init__(workdir, mlflow_server_url=mlflow_server_url, env_overrides=overrides)

    def start(self) -> None:
        """The base stack, then the workers (does not wait for them: :meth:`wait_workers_ready`)."""
        problem = redis_ping()
        if problem:
            raise StackError(problem)
        super().start()
        for name in self.worker_names:
            self._launch_worker(name)

    def worker_env(self, name: str) -> dict[str, str]:
        own = self.workdir / name
        for sub in ("home", "tmp"):
            (own / sub).mkdir(parents=True, exist_ok=True)
        return {
            **self.env,
            "AIRFLOW_HOME": str(own / "home"),
            "TMPDIR": str(own / "tmp"),
            HOSTNAME_ENV: name,
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        }

    def _launch_worker(self, name: str) -> None:
        cmd = [
            "airflow",
            "celery",
            "worker",
            "--queues",
            self.queue,
            "--concurrency",
            str(self.concurrency),
            "--celery-hostname",
            f"{name}@{self.queue}",
            # No chatter with other workers on the same Redis (other test sessions).
            "--without-mingle",
            "--without-gossip",
        ]
        log_path = self.logs / f"{name}.log"
        with log_path.open("ab") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            self.procs[name] = subprocess.Popen(
                cmd,
                env=self.worker_env(name),
                cwd=self.workdir / name,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stop() signals the worker and its pool together
            )
        self._pgids.add(self.procs[name].pid)

    def describe_failure(self, dag_id: str, run_id: str) -> str:
        """The base description, plus the failed tries' logs read from the workers' own folders:
        the API server cannot fetch them (it would ask the workers' made-up hostnames)."""
        parts = [super().describe_failure(dag_id, run_id)]
        for ti in self.task_instances(dag_id, run_id):
            if ti["state"] not in {"failed", "up_for_retry"}:
                continue
            mapped = f"/map_index={ti['map_index']}" if ti["map_index"] >= 0 else ""
            relative = f"dag_id={dag_id}/run_id={run_id}/task_id={ti['task_id']}{mapped}"
            pattern = f"worker-*/home/logs/{glob.escape(relative)}/attempt=*.log"
            for path in sorted(self.workdir.glob(pattern)):
                parts.append(f"--- {path.relative_to(self.workdir)}:\n{tail(path, 40)}")
        return "\n".join(parts)

    def wait_workers_ready(self, timeout: float = 120) -> None:
        """Until every worker has logged Celery's ``ready.`` (connected, consuming its queue)."""

        def ready() -> bool:
            self._check_alive()
            return all(f"{name}@{self.queue} ready." in self.log_text(name) for name in self.worker_names)

        try:
            wait_for("the Celery workers to be ready", ready, timeout, 0.5)
        except TimeoutError as err:
            tails = "\n".join(f"--- {n}:\n{self.log_tail(n, 30)}" for n in self.worker_names)
            raise StackError(f"{err}\n{tails}") from err
