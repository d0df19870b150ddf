"""The Transformers callback with a real Trainer (a tiny BERT built from a config, on
CPU, nothing downloaded) against a real server."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")
transformers = pytest.importorskip("transformers")

import ketch  # noqa: E402
from ketch.integrations.transformers import KetchCallback  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

pytestmark = pytest.mark.e2e

STEPS = 4


def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=32,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


def dataset(rows: int = 16) -> list[dict]:
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 32, (rows, 8), generator=gen)
    return [
        {"input_ids": ids[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": i % 2}
        for i in range(rows)
    ]


def arguments(tmp_path, **kwargs) -> TrainingArguments:
    settings = {
        "output_dir": str(tmp_path / "out"),
        "max_steps": STEPS,
        "per_device_train_batch_size": 4,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": STEPS,
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
    }
    return TrainingArguments(**{**settings, **kwargs})


def test_training_logs_args_metrics_and_checkpoints(tracking, tmp_path):
    callback = KetchCallback(experiment="hf", run_name="tiny-bert", log_checkpoints=True)
    trainer = Trainer(
        model=tiny_bert(),
        args=arguments(tmp_path, learning_rate=1e-3),
        train_dataset=dataset(),
        callbacks=[callback],
    )
    trainer.train()

    assert callback.run is None  # finished at the end of training
    [run] = tracking.search_runs(experiment_names=["hf"])
    assert run.name == "tiny-bert"
    assert run.state == "FINISHED"
    assert run.params["learning_rate"] == "0.001"
    assert run.params["max_steps"] == str(STEPS)
    assert run.params["model_config.hidden_size"] == "8"
    loss = tracking.get_metric_history(run.id, "loss")
    assert list(loss.steps) == list(range(1, STEPS + 1))
    assert "train_runtime" in run.metrics
    stored = {a.path for a in tracking.iter_artifacts(run.id)}
    assert any(p.startswith(f"checkpoints/checkpoint-{STEPS}/") for p in stored), stored

    trainer.evaluate(eval_dataset=dataset(8))  # after training: the same run again
    assert callback.run is not None and callback.run.id == run.id
    callback.run.finish()
    assert "eval_loss" in tracking.get_run(run.id).metrics


def test_an_active_run_is_used_and_left_open(tracking, tmp_path):
    with ketch.init(experiment="hf-active", name="outer") as outer:
        callback = KetchCallback()
        Trainer(
            model=tiny_bert(),
            args=arguments(tmp_path, save_strategy="no"),
            train_dataset=dataset(),
            callbacks=[callback],
        ).train()
        assert callback.run is outer
        assert tracking.get_run(outer.id).state == "RUNNING"
    stored = tracking.get_run(outer.id)
    assert stored.state == "FINISHED"
    assert "loss" in stored.metrics
    assert len(tracking.search_runs(experiment_names=["hf-active"])) == 1


def test_other_processes_write_nothing(tracking, tmp_path):
    callback = KetchCallback(experiment="hf-rank1")
    state = TrainerState(is_world_process_zero=False)
    args = arguments(tmp_path)
    callback.on_train_begin(args, state, TrainerControl(), model=tiny_bert())
    callback.on_log(args, state, TrainerControl(), logs={"loss": 1.0})
    callback.on_train_end(args, state, TrainerControl())
    assert callback.run is None
    assert tracking.get_experiment_by_name("hf-rank1") is None
