#!/usr/bin/env bash
# Run once by the postgres image, when its data volume is first initialised: one role and one
# database each for Airflow's metadata and MLflow's tracking store. The passwords come from the
# postgres service's environment (AIRFLOW_DB_PASSWORD, MLFLOW_DB_PASSWORD in docker/.env).
set -eo pipefail

psql --no-psqlrc --set ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set airflow_password="${AIRFLOW_DB_PASSWORD:?}" \
    --set mlflow_password="${MLFLOW_DB_PASSWORD:?}" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow;
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;
SQL
