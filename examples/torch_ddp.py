"""Distributed data-parallel training (DDP) on CPU, every rank streaming into one run.

A small MLP learns churn from synthetic customers with ``DistributedDataParallel``
over the ``gloo`` backend. With ``ranks="all"`` each rank logs its own training
loss into the same ketch run (every point keeps its rank); the validation
metrics are averaged across ranks and logged once, by rank 0.

Start a server, then launch two CPU processes with torchrun::

    ketch server &
    export KETCH_TRACKING_URI=grpc://127.0.0.1:50051
    torchrun --standalone --nproc-per-node 2 examples/torch_ddp.py --epochs 5
    ketch runs list --experiment churn-ddp
"""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist
from ketch.integrations import torch as ketch_torch
from sklearn.datasets import make_classification
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

SEED = 42


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rows", type=int, default=4000, help="customers to simulate")
    parser.add_argument("--batch-size", type=int, default=64, help="per rank")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--name", default="mlp-ddp", help="run name")
    return parser.parse_args()


def datasets(rows: int) -> tuple[TensorDataset, TensorDataset]:
    """The same synthetic split on every rank (fixed seed): 80% train, 20% validation."""
    features, churned = make_classification(
        n_samples=rows, n_features=20, n_informative=8, weights=[0.8, 0.2], random_state=SEED
    )
    x = torch.tensor(features, dtype=torch.float32)
    y = torch.tensor(churned, dtype=torch.float32).unsqueeze(1)
    cut = int(rows * 0.8)
    return TensorDataset(x[:cut], y[:cut]), TensorDataset(x[cut:], y[cut:])


def evaluate(model: nn.Module, loader: DataLoader) -> dict[str, float]:
    """This rank's share of the validation set: summed loss, hits and count."""
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")
    total = hits = count = 0.0
    model.eval()
    with torch.no_grad():
        for x, y in loader:
            logits = model(x)
            total += loss_fn(logits, y).item()
            hits += ((logits > 0).float() == y).sum().item()
            count += len(y)
    model.train()
    return {"loss_sum": total, "hits": hits, "count": count}


def main() -> None:
    args = parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(SEED)

    config = {k: v for k, v in vars(args).items() if k != "name"} | {"world_size": world}
    run = ketch_torch.init(experiment="churn-ddp", name=args.name, config=config, ranks="all")

    train, val = datasets(args.rows)
    train_loader = DataLoader(
        train, batch_size=args.batch_size, sampler=DistributedSampler(train, seed=SEED)
    )
    val_loader = DataLoader(val, batch_size=256, sampler=DistributedSampler(val, shuffle=False))
    model = DistributedDataParallel(
        nn.Sequential(nn.Linear(20, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 1))
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = nn.BCEWithLogitsLoss()

    step = 0
    for epoch in range(args.epochs):
        train_loader.sampler.set_epoch(epoch)
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            run.log({"train/loss": loss.item(), "epoch": epoch}, step=step)  # every rank
            step += 1
        totals = ketch_torch.all_reduce_metrics(evaluate(model, val_loader), op="sum")
        val = {
            "val/loss": totals["loss_sum"] / totals["count"],
            "val/accuracy": totals["hits"] / totals["count"],
        }
        if ketch_torch.is_rank_zero():
            run.log(val, step=step)
            print(f"epoch {epoch}: val loss {val['val/loss']:.4f} acc {val['val/accuracy']:.4f}")

    run.finish()
    if rank == 0:
        print(f"run id: {run.id}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
