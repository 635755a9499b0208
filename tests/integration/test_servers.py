"""The server fixtures themselves: tracking, proxied artifacts and basic auth against real servers."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.integration._mlflow_servers import MLflowAuthServer, MLflowServer, _server_env


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _use_credentials(monkeypatch: pytest.MonkeyPatch, username: str, password: str) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)


def test_server_attributes(mlflow_server: MLflowServer) -> None:
    assert mlflow_server.url == f"http://{mlflow_server.host}:{mlflow_server.port}"
    assert mlflow_server.backend_uri.startswith("postgresql+psycopg2://")
    assert mlflow_server.artifacts_dir.is_dir()
    assert mlflow_server.log_path.is_file()


def test_run_metric_and_proxied_artifact_round_trip(mlflow_server: MLflowServer, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.url)
    experiment_id = client.create_experiment(_unique("it-servers"))
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "accuracy", 0.75, step=3)

    src = tmp_path / "upload" / "notes.txt"
    src.parent.mkdir()
    src.write_text("hello from the integration tier\n")
    client.log_artifact(run.info.run_id, str(src), artifact_path="docs")
    client.set_terminated(run.info.run_id)

    fetched = client.get_run(run.info.run_id)
    assert fetched.data.metrics == {"accuracy": 0.75}
    assert fetched.info.status == "FINISHED"
    assert fetched.info.artifact_uri.startswith("mlflow-artifacts:")

    local = client.download_artifacts(run.info.run_id, "docs/notes.txt", dst_path=str(tmp_path / "down"))
    assert Path(local).read_text() == "hello from the integration tier\n"
    # Proxied: the bytes went through the server into its --artifacts-destination.
    assert [p.name for p in mlflow_server.artifacts_dir.rglob("notes.txt")] == ["notes.txt"]


def test_auth_admin_credentials_work(mlflow_auth_server: MLflowAuthServer, monkeypatch) -> None:
    from mlflow import MlflowClient

    _use_credentials(monkeypatch, mlflow_auth_server.admin_username, mlflow_auth_server.admin_password)
    client = MlflowClient(tracking_uri=mlflow_auth_server.url)
    experiment_id = client.create_experiment(_unique("it-auth-admin"))
    assert client.get_experiment(experiment_id).experiment_id == experiment_id


@pytest.mark.parametrize("credentials", ["wrong-password", None], ids=["wrong-password", "anonymous"])
def test_auth_rejects_bad_or_missing_credentials(
    mlflow_auth_server: MLflowAuthServer, monkeypatch, credentials: str | None
) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if credentials is None:
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
            monkeypatch.delenv(name, raising=False)
    else:
        _use_credentials(monkeypatch, mlflow_auth_server.admin_username, credentials)
    client = MlflowClient(tracking_uri=mlflow_auth_server.url)
    with pytest.raises(MlflowException) as excinfo:
        client.search_experiments(max_results=1)
    assert excinfo.value.error_code == "UNAUTHENTICATED"
    assert excinfo.value.get_http_status_code() == 401


def test_auth_created_user_can_work_in_own_experiment_only(
    mlflow_auth_server: MLflowAuthServer, monkeypatch
) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    admin = MlflowClient(tracking_uri=mlflow_auth_server.url)
    _use_credentials(monkeypatch, mlflow_auth_server.admin_username, mlflow_auth_server.admin_password)
    admins_experiment = admin.create_experiment(_unique("it-auth-owned-by-admin"))

    username, password = _unique("user"), "pw-" + uuid.uuid4().hex
    user = mlflow_auth_server.create_user(username, password)
    assert user["username"] == username
    assert user["is_admin"] is False

    _use_credentials(monkeypatch, username, password)
    client = MlflowClient(tracking_uri=mlflow_auth_server.url)
    own_experiment = client.create_experiment(_unique("it-auth-owned-by-user"))
    run = client.create_run(own_experiment)
    client.log_param(run.info.run_id, "who", username)
    assert client.get_run(run.info.run_id).data.params == {"who": username}

    # default_permission = READ: reading someone else's experiment works, writing to it does not.
    assert client.get_experiment(admins_experiment).experiment_id == admins_experiment
    with pytest.raises(MlflowException) as excinfo:
        client.create_run(admins_experiment)
    assert excinfo.value.error_code == "PERMISSION_DENIED"


def test_server_env_drops_client_credentials(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "someone")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "secret")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "token")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://elsewhere")
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "overrides-the-ini")
    env = _server_env({})
    assert not {k for k in env if k.startswith(("MLFLOW_TRACKING_", "MLFLOW_AUTH_"))}
