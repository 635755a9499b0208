"""``MLflowHook``: the one place that talks to MLflow."""

from __future__ import annotations

from airflow_mlflow.hooks.artifacts import ArtifactVerbs
from airflow_mlflow.hooks.evaluation import EvaluationVerbs
from airflow_mlflow.hooks.models import ModelVerbs
from airflow_mlflow.hooks.predict import PredictVerbs
from airflow_mlflow.hooks.projects import ProjectVerbs
from airflow_mlflow.hooks.registry import RegistryVerbs
from airflow_mlflow.hooks.tracking import TrackingVerbs


class MLflowHook(
    TrackingVerbs, ArtifactVerbs, RegistryVerbs, ModelVerbs, EvaluationVerbs, ProjectVerbs, PredictVerbs
):
    """
    Interact with MLflow: tracking, registry and artifacts.

    The connection (conn_type ``mlflow``) holds:

    * ``host`` / ``port`` / ``schema`` (``http`` or ``https``): an MLflow tracking server;
    * ``login`` / ``password``: HTTP basic auth (``mlflow server --app-name basic-auth``);
    * extras: ``token`` (bearer), ``tracking_uri`` (any MLflow URI; overrides host),
      ``registry_uri``, ``ui_url`` (where MLflow's UI is, for links), ``experiment_name``
      (default experiment), ``insecure_tls`` or ``ca_bundle``.

    When ``mlflow_default`` is defined nowhere, the embedded default is used (and the log says so):
    MLflow's SQL store in ``$AIRFLOW_HOME/mlflow/mlflow.db`` with artifacts in
    ``$AIRFLOW_HOME/mlflow/artifacts``. A connection that exists but cannot be read in this process
    is an error, never the embedded default.

    The verbs come in groups (:mod:`~airflow_mlflow.hooks.tracking`,
    :mod:`~airflow_mlflow.hooks.artifacts`, :mod:`~airflow_mlflow.hooks.registry`), each built on
    :class:`~airflow_mlflow.hooks.base.MLflowHookBase`, which owns the connection's config, the
    client, error translation and REST reads.

    :param mlflow_conn_id: the connection to use
    :param team_name: in multi-team mode, the team whose connections a server-side process reads
        (tasks and triggers are scoped by Airflow itself)
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "mlflow"
    hook_name = "MLflow"
