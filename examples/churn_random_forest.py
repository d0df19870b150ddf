"""Customer churn with a scikit-learn random forest, tracked by ketch.

The classic tracking example: log the hyperparameters, train, log the metrics.
The forest is grown in steps (``warm_start``), so accuracy, F1 and ROC AUC are
logged as the trees are added, like epochs of a neural network.

Start a server, then run the example::

    ketch server &
    export KETCH_TRACKING_URI=grpc://127.0.0.1:50051
    python examples/churn_random_forest.py --n-estimators 200
    ketch runs list --experiment customer-churn

The data is synthetic (``make_classification``) with churn-like imbalance:
about one customer in five churns.
"""

from __future__ import annotations

import argparse

import ketch
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split

SEED = 42


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-estimators", type=int, default=100, help="trees in the forest")
    parser.add_argument("--max-depth", type=int, default=10, help="deepest a tree may grow")
    parser.add_argument("--min-samples-split", type=int, default=5)
    parser.add_argument("--rows", type=int, default=2000, help="customers to simulate")
    parser.add_argument("--step", type=int, default=10, help="trees added per logged step")
    parser.add_argument("--name", default="rf-baseline", help="run name")
    return parser.parse_args()


def load_data(rows: int):
    """Synthetic customers: 20 features, 80% stay and 20% churn; a stratified split."""
    features, churned = make_classification(
        n_samples=rows,
        n_features=20,
        n_informative=8,
        n_redundant=4,
        weights=[0.8, 0.2],
        flip_y=0.02,
        random_state=SEED,
    )
    return train_test_split(features, churned, test_size=0.25, stratify=churned, random_state=SEED)


def evaluate(model, features, labels) -> dict[str, float]:
    predicted = model.predict(features)
    return {
        "accuracy": accuracy_score(labels, predicted),
        "f1": f1_score(labels, predicted),
        "roc_auc": roc_auc_score(labels, model.predict_proba(features)[:, 1]),
    }


def main() -> None:
    args = parse_args()
    ketch.set_seed(SEED)
    x_train, x_val, y_train, y_val = load_data(args.rows)
    params = {
        "n_estimators": args.n_estimators,
        "max_depth": args.max_depth,
        "min_samples_split": args.min_samples_split,
        "random_state": SEED,
    }

    with ketch.init(experiment="customer-churn", name=args.name, config=params) as run:
        model = RandomForestClassifier(**params, warm_start=True)
        sizes = [*range(args.step, args.n_estimators, args.step), args.n_estimators]
        for step, trees in enumerate(sizes):
            model.set_params(n_estimators=trees)
            model.fit(x_train, y_train)
            train = evaluate(model, x_train, y_train)
            val = evaluate(model, x_val, y_val)
            run.log(
                {"trees": trees, **_prefixed("train", train), **_prefixed("val", val)}, step=step
            )

        final = evaluate(model, x_val, y_val)
        run.log(final, step=len(sizes) - 1)
        run.set_tags({"model": "RandomForestClassifier", "dataset": f"synthetic-{args.rows}"})
        print(
            f"accuracy={final['accuracy']:.4f} f1={final['f1']:.4f} roc_auc={final['roc_auc']:.4f}"
        )

    print(f"run id: {run.id}")


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{key}": value for key, value in metrics.items()}


if __name__ == "__main__":
    main()
