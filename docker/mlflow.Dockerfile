# syntax=docker/dockerfile:1
#
# The MLflow tracking server of docker/compose.yaml: full mlflow (UI, REST API, proxied
# artifacts; [auth] for `--app-name basic-auth`) and psycopg2 for its PostgreSQL store.
# Versions match the `server` extra of pyproject.toml.
#
#   docker build -f docker/mlflow.Dockerfile -t airflow-mlflow-server:dev docker

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN pip install --no-cache-dir "mlflow[auth]==3.17.2" "psycopg2-binary==2.9.13" \
    && useradd --create-home --uid 10001 mlflow \
    && mkdir /mlartifacts \
    && chown mlflow /mlartifacts

# A named volume mounted on /mlartifacts starts with this directory's owner: the mlflow user.
USER 10001
WORKDIR /home/mlflow
EXPOSE 5000
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000", "--artifacts-destination", "/mlartifacts"]
