"""PyTorch distributed training (DDP): one run for the whole job, whatever launched it.

``ketch.init`` already knows ``torchrun``: it reads RANK, WORLD_SIZE and
LOCAL_RANK, and with ``ranks="all"`` every rank attaches to the same run (see
``ketch._distributed``). This module adds what a DDP script needs around that::

    import torch.distributed as dist
    from ketch.integrations import torch as ketch_torch

    dist.init_process_group("gloo")
    run = ketch_torch.init(experiment="ddp", config={"lr": 0.1}, ranks="all")
    for step, batch in enumerate(loader):
        loss = train_step(batch)
        run.log({"train/loss": loss.item()}, step=step)     # every rank, kept apart by rank
    val = ketch_torch.all_reduce_metrics({"val/loss": val_loss})  # a collective
    if ketch_torch.is_rank_zero():
        run.log(val, step=step)
    run.finish()

* :func:`init` works under launchers that set no rank variables (``mp.spawn``,
  a hand-written ``init_process_group``): it takes the ranks from the initialised
  process group, and rank 0 broadcasts the run id. It tags the run with
  ``torch.distributed.backend`` and ``torch.distributed.world_size``.
* :func:`all_reduce_metrics` averages (or sums, maxes, mins) metric values
  across ranks, for numbers that describe the whole job.
* :func:`is_rank_zero` says whether this process is rank 0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import ketch
from ketch.integrations._common import metric_values, require

torch = require("torch", extra="torch")

import torch.distributed as dist  # noqa: E402

__all__ = ["all_reduce_metrics", "init", "is_rank_zero"]

_OPS = ("mean", "sum", "max", "min")


def _group_ready() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_rank_zero() -> bool:
    """Whether this process is rank 0 (of the process group, else of RANK; True alone)."""
    if _group_ready():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0") or 0) == 0


def init(
    experiment: str | None = None,
    name: str | None = None,
    *,
    ranks: str = "all",
    tags: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> ketch.Run:
    """:func:`ketch.init` for a ``torch.distributed`` job, on every rank.

    When the default process group is initialised and the launcher did not set
    RANK and WORLD_SIZE, they are set (in ``os.environ``) from the group first, so
    ketch sees the job's ranks. Call it after
    ``init_process_group`` with launchers other than torchrun.

    Args:
        experiment: ketch experiment; default KETCH_EXPERIMENT, else "Default".
        name: run name.
        ranks: "all" (default here): every rank logs into the one run, each point
            keeping its rank; "zero": only rank 0 logs, the others get a disabled run.
        tags: extra tags.
        **kwargs: passed on to :func:`ketch.init` (``config``, ``uri`` ...).

    Returns:
        The run; on ranks that do not log, a disabled run whose calls are no-ops.
    """
    all_tags = dict(tags or {})
    if _group_ready():
        os.environ.setdefault("RANK", str(dist.get_rank()))
        os.environ.setdefault("WORLD_SIZE", str(dist.get_world_size()))
        all_tags.setdefault("torch.distributed.backend", str(dist.get_backend()))
        all_tags.setdefault("torch.distributed.world_size", dist.get_world_size())
    return ketch.init(experiment, name, ranks=ranks, tags=all_tags, **kwargs)


def all_reduce_metrics(metrics: Mapping[str, Any], *, op: str = "mean") -> dict[str, float]:
    """Metric values reduced across the ranks of the default process group.

    A collective: every rank must call it, with the same keys. Values may be
    numbers or one-element tensors; entries that are not numbers are dropped.
    Without an initialised process group the values come back unchanged.

    Args:
        metrics: name → this rank's value.
        op: "mean" (default), "sum", "max" or "min".

    Raises:
        ValueError: ``op`` is not one of those.
    """
    if op not in _OPS:
        raise ValueError(f"op={op!r} must be one of {', '.join(_OPS)}")
    values = metric_values(metrics)
    if not _group_ready() or not values:
        return values
    keys = sorted(values)
    device = torch.device("cpu")
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    reduce_op = {
        "mean": dist.ReduceOp.SUM,
        "sum": dist.ReduceOp.SUM,
        "max": dist.ReduceOp.MAX,
        "min": dist.ReduceOp.MIN,
    }[op]
    dist.all_reduce(tensor, op=reduce_op)
    if op == "mean":
        tensor /= dist.get_world_size()
    return dict(zip(keys, tensor.tolist(), strict=True))
