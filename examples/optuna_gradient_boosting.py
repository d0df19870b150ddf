"""Customer churn: an Optuna search over gradient boosting, tracked by ketch.

Each trial cross-validates a ``GradientBoostingClassifier`` and reports the mean
F1 after every fold, so a median pruner can stop hopeless trials early. ketch
records the study as one run and each trial as a child run (params, F1, the
per-fold curve, pruned trials as KILLED), and tags the best trial.

Start a server, then run the example::

    ketch server &
    export KETCH_TRACKING_URI=grpc://127.0.0.1:50051
    python examples/optuna_gradient_boosting.py --trials 20
    ketch runs list --experiment customer-churn-hpo

Several processes can share one study through Optuna's storage; they share
its study run too::

    python examples/optuna_gradient_boosting.py --storage sqlite:///churn.db &
    python examples/optuna_gradient_boosting.py --storage sqlite:///churn.db

The data is synthetic (``make_classification``) with churn-like imbalance.
"""

from __future__ import annotations

import argparse

import numpy as np
import optuna
from ketch.integrations.optuna import KetchCallback
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

SEED = 42
EXPERIMENT = "customer-churn-hpo"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials to run")
    parser.add_argument("--rows", type=int, default=2000, help="customers to simulate")
    parser.add_argument("--folds", type=int, default=3, help="cross-validation folds")
    parser.add_argument("--jobs", type=int, default=1, help="trials run in parallel threads")
    parser.add_argument("--storage", default=None, help="Optuna storage URL to share a study")
    parser.add_argument("--study-name", default="churn-gb", help="Optuna study name")
    return parser.parse_args()


def load_data(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic customers: 20 features, 80% stay and 20% churn."""
    return make_classification(
        n_samples=rows,
        n_features=20,
        n_informative=8,
        n_redundant=4,
        weights=[0.8, 0.2],
        flip_y=0.02,
        random_state=SEED,
    )


def make_objective(features: np.ndarray, churned: np.ndarray, folds: int):
    """The objective: mean F1 over stratified folds, reported after each fold."""
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=SEED).split(features, churned))

    def objective(trial: optuna.Trial) -> float:
        params = {
            "n_estimators": trial.suggest_int("n_estimators", 20, 150, step=10),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "max_depth": trial.suggest_int("max_depth", 2, 5),
            "subsample": trial.suggest_float("subsample", 0.6, 1.0),
        }
        scores: list[float] = []
        for fold, (train, val) in enumerate(splits):
            model = GradientBoostingClassifier(**params, random_state=SEED)
            model.fit(features[train], churned[train])
            scores.append(f1_score(churned[val], model.predict(features[val])))
            trial.report(float(np.mean(scores)), step=fold)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(scores))

    return objective


def main() -> None:
    args = parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    features, churned = load_data(args.rows)
    study = optuna.create_study(
        study_name=args.study_name,
        storage=args.storage,
        load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=SEED),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
    )
    callback = KetchCallback(experiment=EXPERIMENT, metric_name="f1")
    study.optimize(
        make_objective(features, churned, args.folds),
        n_trials=args.trials,
        n_jobs=args.jobs,
        callbacks=[callback],
    )
    callback.finish()

    best = study.best_trial
    print(f"best trial {best.number}: f1={best.value:.4f} {best.params}")
    print(f"study run id: {study.user_attrs['ketch_run_id']}")


if __name__ == "__main__":
    main()
