"""``[core] hostname_callable`` for several Airflow workers on one machine (the Celery stack).

A real deployment runs one worker per machine, each with its own hostname. The Celery e2e stack
runs two workers here, so each gets its name through :data:`ENV` and Airflow (the task instance's
hostname) and the provider (the task run's ``airflow.hostname``) read it through this callable.
"""

from __future__ import annotations

import os
import socket

ENV = "AMLF_TEST_HOSTNAME"


def from_env() -> str:
    """``$AMLF_TEST_HOSTNAME``, else the machine's FQDN (Airflow's default)."""
    return os.environ.get(ENV) or socket.getfqdn()
