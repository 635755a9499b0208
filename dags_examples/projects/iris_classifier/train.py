"""
Train a logistic regression on scikit-learn's bundled iris data and log it to MLflow.

    python train.py --C 0.5 --max-iter 200

The entry point of the ``iris_classifier`` MLflow Project. Its parameters are already on the run
(MLflow's project runner logs them), so this script logs only what it measured, ``accuracy`` and
``f1_macro`` on a fixed holdout, and the model (named ``model``, with its signature).
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--C", type=float, default=1.0, help="inverse regularisation strength")
    parser.add_argument("--max-iter", type=float, default=200)
    args = parser.parse_args(argv)

    # Imported here, not at the top: --help answers at once.
    import mlflow
    import sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split

    x, y = load_iris(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    model = LogisticRegression(C=args.C, max_iter=int(args.max_iter)).fit(x_train, y_train)
    predicted = model.predict(x_test)
    metrics = {
        "accuracy": accuracy_score(y_test, predicted),
        "f1_macro": f1_score(y_test, predicted, average="macro"),
    }

    with mlflow.start_run():  # the run of MLFLOW_RUN_ID: the project's (and the task's) run
        mlflow.log_metrics(metrics)
        mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x_test, predicted),
            # Named, not inferred: inferring imports the model again in a subprocess (seconds).
            pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"mlflow-skinny=={mlflow.__version__}"],
        )
    print(", ".join(f"{name}={value:.4f}" for name, value in metrics.items()))


if __name__ == "__main__":
    main()
