"""Train, register, request, approve: a model reaches Production the way a CI pipeline
takes it there, with two approvers and a metric gate.

Needs a server with API tokens and four principals (tokens are printed last)::

    ketch admin token create --data-dir ketch-data --name admin --role admin
    ketch admin token create --data-dir ketch-data --name trainer --role writer
    ketch admin token create --data-dir ketch-data --name alice --role approver
    ketch admin token create --data-dir ketch-data --name bob --role approver
    ketch server --data-dir ketch-data --auth token &

    export KETCH_TRACKING_URI=grpc://127.0.0.1:50051
    export KETCH_ADMIN_TOKEN=ketch_...        # sets the Production policy
    export KETCH_API_TOKEN=ketch_...          # the trainer: trains, registers, requests
    export KETCH_APPROVER_TOKENS=ketch_...,ketch_...   # alice and bob
    python examples/promote_to_production.py

The trainer may not approve its own request, and an approval counts once per
principal: the policy's two approvals have to come from two other people.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
from pathlib import Path

import ketch
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

SEED = 7


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="churn", help="registered model name")
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--n-estimators", type=int, default=100)
    parser.add_argument("--min-accuracy", type=float, default=0.8, help="the Production gate")
    parser.add_argument("--ci-url", default="https://ci.example.com/pipelines/42")
    return parser.parse_args()


def need(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        sys.exit(f"set {name} (see this script's docstring)")
    return value


def train(args: argparse.Namespace, model_dir: Path) -> str:
    """Train and log a model; return the run id."""
    X, y = make_classification(
        n_samples=args.rows, n_features=12, n_informative=6, weights=[0.8], random_state=SEED
    )
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=SEED)
    config = {"n_estimators": args.n_estimators, "max_depth": 8, "random_state": SEED}
    with ketch.init("churn-registry", "rf-candidate", config=config) as run:
        forest = RandomForestClassifier(**config).fit(X_train, y_train)
        predicted = forest.predict(X_test)
        accuracy = accuracy_score(y_test, predicted)
        run.log({"accuracy": accuracy, "f1": f1_score(y_test, predicted)}, step=0)
        print(f"accuracy {accuracy:.3f} (the Production gate wants {args.min_accuracy})")
        (model_dir / "model.pkl").write_bytes(pickle.dumps(forest))
        run.log_model(model_dir, args.model, flavor="sklearn")
        return run.id


def main() -> int:
    args = parse_args()
    admin = ketch.Client(api_token=need("KETCH_ADMIN_TOKEN"))
    trainer = ketch.Client(api_token=need("KETCH_API_TOKEN"))
    approvers = [ketch.Client(api_token=t) for t in need("KETCH_APPROVER_TOKENS").split(",")]

    try:
        admin.create_model(args.model, "customer churn classifier")
    except ketch.errors.AlreadyExists:
        pass
    admin.set_policy(
        args.model,
        "production",
        approvals=2,
        approver_roles=["approver"],
        gates=[f"metrics.accuracy >= {args.min_accuracy}"],
        archive_existing=True,
    )

    with tempfile.TemporaryDirectory() as tmp:
        run_id = train(args, Path(tmp))
    version = trainer.register_model(args.model, run_id)
    print(f"registered {version.uri} from run {run_id}")

    staging = trainer.request_transition(args.model, version.version, "staging")
    print(f"staging: {staging.state}")  # no approvals needed: applied at once
    request = trainer.request_transition(
        args.model, version.version, "production", comment="candidate from the nightly run"
    )
    print(f"production request {request.id}: {request.state}")
    for approver in approvers:
        request = approver.approve(
            request.id, comment="offline eval looks good", evidence_url=args.ci_url
        )
        done = f"{request.approvals}/{request.approvals_required}"
        print(f"approved: {request.state} ({done} approvals)")

    live = trainer.get_model_version(f"models:/{args.model}/Production")
    print(f"production version: {live.version}")
    return 0 if live.version == version.version else 1


if __name__ == "__main__":
    sys.exit(main())
