"""
Train a breast-cancer classifier and log it to MLflow: an ordinary training script.

    python train_classifier.py --C 1.0 --max-iter 1000 --seed 20261101

It trains a scaled logistic regression on scikit-learn's bundled breast-cancer data, evaluates it
on a holdout (``--seed`` picks the split), and logs to the active MLflow run: params, ``accuracy``,
``f1`` and ``roc_auc``, and the model (named ``model``, with its signature and an input example).
Where the run goes is MLflow's business: ``MLFLOW_TRACKING_URI``, and ``MLFLOW_RUN_ID`` to write
into a run that exists already.
"""

from __future__ import annotations

import argparse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--C", type=float, default=1.0, help="inverse regularisation strength")
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--test-size", type=float, default=0.3, help="share of rows held out")
    parser.add_argument("--seed", type=int, default=0, help="picks the holdout rows")
    return parser.parse_args(argv)


def train(args: argparse.Namespace) -> dict[str, float]:
    # Imported here, not at the top: --help answers at once.
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=args.test_size, random_state=args.seed % 2**32, stratify=y
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(C=args.C, max_iter=args.max_iter))
    model.fit(x_train, y_train)
    predicted = model.predict(x_test)
    metrics = {
        "accuracy": accuracy_score(y_test, predicted),
        "f1": f1_score(y_test, predicted),
        "roc_auc": roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]),
    }

    with mlflow.start_run():
        mlflow.log_params(
            {
                "C": args.C,
                "max_iter": args.max_iter,
                "test_size": args.test_size,
                "seed": args.seed,
                "model": "logistic_regression",
                "train_rows": len(x_train),
            }
        )
        mlflow.log_metrics(metrics)
        mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x_test, predicted),
            input_example=x_test.head(3),
        )
    return metrics


def main(argv: list[str] | None = None) -> None:
    metrics = train(parse_args(argv))
    print(", ".join(f"{name}={value:.4f}" for name, value in metrics.items()))


if __name__ == "__main__":
    main()
