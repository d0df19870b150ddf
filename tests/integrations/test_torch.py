"""The torch.distributed helpers: outside a job, and in a real 2-process gloo job
launched without torchrun (no RANK in the environment)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")

from ketch.integrations import torch as ketch_torch  # noqa: E402

pytestmark = pytest.mark.e2e


def test_without_a_process_group_values_come_back_unchanged():
    values = {"loss": torch.tensor(0.5), "acc": 0.75, "name": "x", "bad key (x)": 1}
    assert ketch_torch.all_reduce_metrics(values) == {"loss": 0.5, "acc": 0.75, "bad key _x_": 1.0}
    assert ketch_torch.is_rank_zero()
    with pytest.raises(ValueError, match="op='median'"):
        ketch_torch.all_reduce_metrics(values, op="median")


SPAWNED = """
    import os
    import sys

    import torch.distributed as dist
    import torch.multiprocessing as mp
    from ketch.integrations import torch as ketch_torch

    def worker(rank, port):
        address = f"tcp://127.0.0.1:{port}"
        dist.init_process_group("gloo", init_method=address, rank=rank, world_size=2)
        assert "RANK" not in os.environ  # a launcher that sets no rank variables
        run = ketch_torch.init(experiment="spawned", name="mp", capture_environment=False)
        for step in range(5):
            run.log({"loss": rank * 10 + step}, step=step)
        mean = ketch_torch.all_reduce_metrics({"score": float(rank)})
        top = ketch_torch.all_reduce_metrics({"score": float(rank)}, op="max")
        if ketch_torch.is_rank_zero():
            run.log({"mean_score": mean["score"], "max_score": top["score"]}, step=5)
        run.finish()
        dist.destroy_process_group()

    if __name__ == "__main__":
        mp.spawn(worker, args=(int(sys.argv[1]),), nprocs=2)
"""


def test_spawned_ranks_share_one_run(tracking, ketch_env, tmp_path):
    from tests.conftest import free_port

    script = tmp_path / "spawned.py"
    script.write_text(textwrap.dedent(SPAWNED))
    env = {k: v for k, v in ketch_env.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.pop("TORCHELASTIC_RUN_ID", None)
    proc = subprocess.run(
        [sys.executable, str(script), str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    [run] = tracking.search_runs(experiment_names=["spawned"])
    assert run.state == "FINISHED"
    assert run.ranks == [0, 1]
    assert run.tags["torch.distributed.world_size"] == "2"
    loss = tracking.get_metric_history(run.id, "loss")
    for rank in (0, 1):
        mine = [
            (s, v) for s, v, r in zip(loss.steps, loss.values, loss.ranks, strict=True) if r == rank
        ]
        assert mine == [(s, rank * 10 + s) for s in range(5)]
    assert run.metrics["mean_score"].last == 0.5
    assert run.metrics["max_score"].last == 1.0
