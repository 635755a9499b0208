"""
Tracked training: every task lands in MLflow, nested under one run for the DAG run.

* ``train`` is mapped over three regularisation strengths; each mapped task instance gets its
  own MLflow run, where plain ``mlflow.log_*`` calls and ``mlflow.sklearn.log_model`` land.
* ``summary`` logs the best score with ``MLflowLogOperator``, from XCom, without any MLflow code.

Runs on the embedded default store (no set-up) or any ``mlflow_default`` connection. Heavy
libraries are imported inside the tasks, so parsing this file stays cheap for the scheduler.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_mlflow import MLflowLogOperator


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["mlflow", "example"],
    doc_md=__doc__,
)
def tracked_training():
    @task.mlflow
    def train(c: float) -> float:
        import mlflow
        from sklearn.datasets import load_breast_cancer
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x, y = load_breast_cancer(return_X_y=True, as_frame=True)
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500)).fit(x_train, y_train)
        accuracy = float(model.score(x_test, y_test))

        mlflow.log_params({"C": c, "model": "logistic_regression", "dataset": "breast_cancer"})
        mlflow.log_metrics({"accuracy": accuracy, "train_rows": len(x_train)})
        mlflow.sklearn.log_model(model, name="model", input_example=x_test.head(3))
        return accuracy

    scores = train.expand(c=[0.01, 0.1, 1.0])

    MLflowLogOperator(
        task_id="summary",
        params={"candidates": 3},
        metrics={"best_accuracy": "{{ ti.xcom_pull(task_ids='train') | max }}"},
        tags={"kind": "summary"},
    ).set_upstream(scores)


tracked_training()
