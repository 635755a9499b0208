"""Names shared by the fault suite's DAG file and its tests."""

#: Connection ids the suite stores in the stack's metadata DB (see tests/faults/conftest.py).
URI_CONN = "mlflow_uri"
DOWN_CONN = "mlflow_down"
SECRET_MODEL = "faults_secret_model"
