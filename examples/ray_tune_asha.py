"""Customer churn: a Ray Tune search with ASHA early stopping, tracked by ketch.

Each trial trains a linear classifier (``SGDClassifier``) epoch by epoch and
reports validation log loss and F1; ASHA stops the trials that fall behind.
ketch records the Tune experiment as one run and each trial as a child run: its
config as params, every reported result at step ``training_iteration``, and its
outcome (FINISHED, or KILLED when ASHA stopped it early). Inside the trainable,
``setup_run`` opens the same trial run to log the training F1 as well.

Start a server, then run the example (small: CPU only, a few seconds a trial)::

    ketch server &
    export KETCH_TRACKING_URI=grpc://127.0.0.1:50051
    python examples/ray_tune_asha.py --samples 8 --epochs 8
    ketch runs list --experiment customer-churn-tune
"""

from __future__ import annotations

import argparse

import numpy as np
import ray
from ketch.integrations.ray import KetchLoggerCallback, setup_run
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from sklearn.datasets import make_classification
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import f1_score, log_loss
from sklearn.model_selection import train_test_split

SEED = 42
EXPERIMENT = "customer-churn-tune"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8, help="trials to sample")
    parser.add_argument("--epochs", type=int, default=8, help="most epochs a trial trains")
    parser.add_argument("--rows", type=int, default=2000, help="customers to simulate")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs Ray may use")
    parser.add_argument("--name", default="churn-sgd-asha", help="Tune experiment name")
    parser.add_argument("--storage-path", default=None, help="Tune results; default ~/ray_results")
    return parser.parse_args()


def load_data(rows: int):
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


def train_churn(config: dict) -> None:
    """The trainable: one epoch of SGD per reported result."""
    x_train, x_val, y_train, y_val = load_data(config["rows"])
    model = SGDClassifier(
        loss="log_loss",
        alpha=config["alpha"],
        learning_rate="constant",
        eta0=config["eta0"],
        random_state=SEED,
    )
    classes = np.array([0, 1])
    with setup_run(config, experiment=EXPERIMENT) as run:
        for epoch in range(1, config["epochs"] + 1):
            model.partial_fit(x_train, y_train, classes=classes)
            run.log({"train_f1": f1_score(y_train, model.predict(x_train))}, step=epoch)
            tune.report(
                {
                    "val_loss": log_loss(y_val, model.predict_proba(x_val)),
                    "val_f1": f1_score(y_val, model.predict(x_val)),
                }
            )


def main() -> None:
    args = parse_args()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    tuner = tune.Tuner(
        train_churn,
        param_space={
            "alpha": tune.loguniform(1e-5, 1e-1),
            "eta0": tune.loguniform(1e-4, 1.0),
            "epochs": args.epochs,
            "rows": args.rows,
        },
        tune_config=tune.TuneConfig(
            metric="val_loss",
            mode="min",
            num_samples=args.samples,
            scheduler=ASHAScheduler(max_t=args.epochs, grace_period=1, reduction_factor=2),
            search_alg=tune.search.BasicVariantGenerator(random_state=SEED),
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=args.name,
            storage_path=args.storage_path,
            callbacks=[KetchLoggerCallback(experiment=EXPERIMENT)],
            verbose=0,
        ),
    )
    results = tuner.fit()
    best = results.get_best_result()
    print(f"best: val_loss={best.metrics['val_loss']:.4f} val_f1={best.metrics['val_f1']:.4f}")
    print(f"best config: alpha={best.config['alpha']:.2e} eta0={best.config['eta0']:.2e}")
    ray.shutdown()


if __name__ == "__main__":
    main()
