"""KetchLogger with a real (tiny, CPU) Lightning training against a real server."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning.pytorch")

from ketch.integrations.lightning import KetchLogger  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers.logger import DummyExperiment  # noqa: E402
from lightning.pytorch.utilities import rank_zero_only  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

pytestmark = pytest.mark.e2e

ROWS, BATCH, EPOCHS = 64, 16, 2
STEPS_PER_EPOCH = ROWS // BATCH


class Regressor(L.LightningModule):
    def __init__(self, lr: float = 0.05, hidden: int = 8, explode_at: int = -1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
        )

    def _loss(self, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def training_step(self, batch, batch_idx):
        if self.global_step == self.hparams.explode_at:
            raise RuntimeError("exploded")
        loss = self._loss(batch)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch))

    def test_step(self, batch, batch_idx):
        self.log("test_loss", self._loss(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loader() -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(ROWS, 4, generator=gen)
    y = x.sum(dim=1, keepdim=True)
    return DataLoader(TensorDataset(x, y), batch_size=BATCH)


def trainer(tmp_path, logger: KetchLogger, **kwargs) -> L.Trainer:
    return L.Trainer(
        max_epochs=EPOCHS,
        logger=logger,
        accelerator="cpu",
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


def test_fit_and_test_are_recorded_in_one_run_with_checkpoints(tracking, tmp_path):
    logger = KetchLogger(experiment="lightning", run_name="tiny", tags={"team": "core"})
    checkpoints = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", monitor="val_loss", save_top_k=1, save_last=True
    )
    model = Regressor()
    fit = trainer(tmp_path, logger, callbacks=[checkpoints])
    fit.fit(model, loader(), loader())

    run = tracking.get_run(logger.version)
    assert logger.name == "lightning"
    assert run.name == "tiny"
    assert run.state == "FINISHED"
    assert run.tags["team"] == "core"
    assert run.params == {"lr": "0.05", "hidden": "8", "explode_at": "-1"}
    train_loss = tracking.get_metric_history(run.id, "train_loss")
    assert list(train_loss.steps) == list(range(EPOCHS * STEPS_PER_EPOCH))
    val_loss = tracking.get_metric_history(run.id, "val_loss")
    assert len(val_loss) == EPOCHS
    assert run.metrics["epoch"].last == EPOCHS - 1

    stored = {a.path for a in tracking.iter_artifacts(run.id)}
    assert "checkpoints/last.ckpt" in stored
    assert "checkpoints/v1/last.ckpt" in stored  # saved again after epoch 2
    assert run.tags["checkpoint.best"] in stored
    best_name = checkpoints.best_model_path.rpartition("/")[2]
    assert run.tags["checkpoint.best"].endswith(best_name)
    assert float(run.tags["checkpoint.best_score"]) == pytest.approx(
        float(checkpoints.best_model_score)
    )

    trainer(tmp_path, logger).test(model, loader())
    again = tracking.get_run(run.id)
    assert again.state == "FINISHED"
    assert "test_loss" in again.metrics


def test_a_failed_fit_marks_the_run_failed(tracking, tmp_path):
    logger = KetchLogger(experiment="lightning", run_name="boom", log_checkpoints=False)
    with pytest.raises(RuntimeError, match="exploded"):
        trainer(tmp_path, logger).fit(Regressor(explode_at=2), loader())
    run = tracking.get_run(logger.version)
    assert run.state == "FAILED"
    assert list(tracking.get_metric_history(run.id, "train_loss").steps) == [0, 1]


def test_other_ranks_write_nothing(tracking, monkeypatch):
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = KetchLogger(experiment="lightning-rank1")
    assert isinstance(logger.experiment, DummyExperiment)
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.finalize("success")
    assert logger.version == ""
    assert tracking.get_experiment_by_name("lightning-rank1") is None
