"""DAGs of tracked plain operators with Airflow assets as inlets and outlets (issue 12, item 3)."""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import Asset, AssetAlias, Metadata, dag

from airflow_mlflow import enable_tracking

START = pendulum.datetime(2026, 1, 1, tz="UTC")

RAW = Asset(uri="s3://bucket/raw/orders.parquet", name="raw_orders", group="data")
FEATURES = Asset(uri="s3://bucket/features/orders.parquet", name="order_features")
MODEL_INPUT = Asset(uri="file:///data/model_input.csv", name="model_input")
REPORT = Asset(uri="s3://bucket/reports/orders.html", name="orders_report")


def _features():
    # The task sets one of the keys the provider sets: its own value must win.
    yield Metadata(FEATURES, {"rows": 42, "mlflow_experiment_id": "user-value"})


def assets_dag(dag_id: str, *, opt_in: bool = True, flaky: bool = False):
    @dag(dag_id=dag_id, schedule=None, start_date=START, catchup=False)
    def _dag():
        bash = BashOperator(
            task_id="featurize",
            bash_command="test {{ ti.try_number }} -gt 1" if flaky else "echo ok",
            # An alias is left out, RAW counted once, the reference counts as the asset it names.
            inlets=[RAW, MODEL_INPUT, AssetAlias("some_alias"), RAW, Asset.ref(name="order_features")],
            outlets=[REPORT],
            retries=1 if flaky else 0,
            retry_delay=0,
        )
        py = PythonOperator(
            task_id="publish",
            python_callable=_features,
            inlets=[RAW],
            outlets=[FEATURES, REPORT],
        )
        bash >> py

    built = _dag()
    return enable_tracking(built) if opt_in else built


tracked = assets_dag("assets_tracked")
retried = assets_dag("assets_retried", flaky=True)
untracked = assets_dag("assets_untracked", opt_in=False)
