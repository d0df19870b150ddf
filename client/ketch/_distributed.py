"""Distributed training: which rank this process is, and which run all ranks share.

Under torchrun (RANK, WORLD_SIZE, LOCAL_RANK in the environment) every rank
calls ``ketch.init``. With ``ranks="zero"`` (the default) only rank 0 logs and
the other ranks get a disabled run. With ``ranks="all"`` every rank attaches
to one run with its own writer, and each point keeps the rank that wrote it.

The ranks agree on the run without talking to each other: KETCH_RUN_ID when
set; else the create request's idempotency key is derived from the job's id
(TORCHELASTIC_RUN_ID, which torchrun sets per job), so every rank's CreateRun
returns the same run; else, when torch.distributed is initialised, rank 0
creates the run and broadcasts its id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from collections.abc import Mapping

from ketch import errors

__all__ = ["Ranks", "detect", "job_request_id"]

RANK_MODES = ("zero", "all")


@dataclasses.dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    mode: str = "zero"

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def logs(self) -> bool:
        """Whether this process writes to the run."""
        return self.mode == "all" or self.rank == 0


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(env.get(name, default))
    except ValueError:
        return default


def detect(mode: str | None = None, env: Mapping[str, str] | None = None) -> Ranks:
    """This process's rank from the torchrun environment; ``mode`` or KETCH_RANKS."""
    env = os.environ if env is None else env
    chosen = (mode or env.get("KETCH_RANKS") or "zero").lower()
    if chosen not in RANK_MODES:
        raise errors.InvalidArgument(
            f"ranks={chosen!r} must be 'zero' (rank 0 logs) or 'all' (every rank logs)",
            metadata={"field": "ranks"},
        )
    return Ranks(
        rank=_int(env, "RANK", 0),
        world_size=_int(env, "WORLD_SIZE", 1),
        local_rank=_int(env, "LOCAL_RANK", 0),
        mode=chosen,
    )


def job_request_id(experiment: str, name: str, env: Mapping[str, str] | None = None) -> str:
    """A CreateRun request id shared by every rank of this job, or "" when there is none."""
    env = os.environ if env is None else env
    job = env.get("TORCHELASTIC_RUN_ID", "")
    if not job or job == "none":
        return ""
    raw = "\0".join(["ketch-job", job, experiment, name, env.get("WORLD_SIZE", "")])
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def broadcast_run_id(run_id: str) -> str | None:
    """Rank 0's run id on every rank via torch.distributed, if it is initialised."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    box = [run_id]
    dist.broadcast_object_list(box, src=0)
    return box[0]
