"""Tests for helper.finetuner.ClfFinetune: settings, train mode, schedule, optimizer groups, metrics, learning."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from datasets import DatasetDict
from transformers import AutoTokenizer, BertConfig, BertModel, PreTrainedTokenizerBase

from data.data_module import ClfDataModule
from helper.finetuner import ClfFinetune
from helper.training import flatten_metrics
from tests.tiny import quick_trainer, shared_data, tiny_bert

EMOTIONS = ["anger", "joy", "optimism", "sadness"]
PEAK = 1e-3


@pytest.fixture(scope="module")
def tokenizer(minilm_path: str) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture
def dm(toy_dataset: DatasetDict, tokenizer: PreTrainedTokenizerBase) -> ClfDataModule:
    return ClfDataModule(toy_dataset, tokenizer=tokenizer, batch_size=8, max_length=16)


def small_model(num_labels: int = 2, seed: int = 0):
    return tiny_bert(layers=1, hidden=32, heads=2, num_labels=num_labels, seed=seed)


# ---------------------------------------------------------------------------------------------- construction
def test_invalid_settings_are_reported_together(dm: ClfDataModule) -> None:
    with pytest.raises(ValueError) as info:
        ClfFinetune(small_model(), dm, lr=0.0, weight_decay=-0.1, warmup_ratio=1.0)
    msg = str(info.value)
    for part in ("lr=0.0", "weight_decay=-0.1", "warmup_ratio=1.0"):
        assert part in msg, msg
    with pytest.raises(ValueError, match="lr='1e-3'"):
        ClfFinetune(small_model(), dm, lr="1e-3")  # type: ignore[arg-type]


def test_label_count_mismatch_between_model_and_data(dm: ClfDataModule) -> None:
    with pytest.raises(ValueError) as info:
        ClfFinetune(small_model(num_labels=3), dm)
    msg = str(info.value)
    assert "num_labels=3" in msg and "2 classes" in msg and "'negative'" in msg


def test_model_object_gets_the_data_label_names(dm: ClfDataModule) -> None:
    module = ClfFinetune(small_model(), dm)
    assert module.model.config.id2label == {0: "negative", 1: "positive"}
    assert module.model.config.label2id == {"negative": 0, "positive": 1}
    assert module.hparams.lr == 5e-5 and module.hparams.warmup_ratio == 0.1


def test_model_by_path_gets_a_head_and_needs_data(dm: ClfDataModule, tmp_path: Path) -> None:
    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    BertModel(config).save_pretrained(tmp_path)
    module = ClfFinetune(str(tmp_path), dm)
    assert module.model.classifier.out_features == 2
    assert module.model.config.id2label == {0: "negative", 1: "positive"}
    assert module.model.training  # from_pretrained returns eval mode in transformers v5
    with pytest.raises(ValueError, match="dm=None"):
        ClfFinetune(str(tmp_path))


def test_without_data_module_names_come_from_the_model(tiny_batch: dict) -> None:
    model = small_model()
    model.config.id2label = {0: "no", 1: "yes"}
    module = ClfFinetune(model)
    module.val_metrics.update(module(tiny_batch), tiny_batch["labels"])
    keys = set(flatten_metrics(module.val_metrics.compute()))
    assert keys == {"val_acc", "val_f1", "val_f1_no", "val_f1_yes"}


def test_class_names_with_spaces_become_metric_names(tiny_batch: dict) -> None:
    model = small_model()
    model.config.id2label = {0: "very bad", 1: "ok"}
    module = ClfFinetune(model)
    module.val_metrics.update(module(tiny_batch), tiny_batch["labels"])
    assert {"val_f1_very_bad", "val_f1_ok"} <= set(flatten_metrics(module.val_metrics.compute()))


# ---------------------------------------------------------------------------------------------- train mode
class ModeProbe(pl.Callback):
    def __init__(self) -> None:
        self.train_states: list[tuple[bool, bool, bool, bool]] = []
        self.val_states: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        dropouts = [m.training for m in pl_module.model.modules() if isinstance(m, torch.nn.Dropout)]
        with torch.no_grad():  # dropout active: the same batch gives different logits twice
            differ = not torch.equal(pl_module(batch), pl_module(batch))
        self.train_states.append((pl_module.training, pl_module.model.training, all(dropouts), differ))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.val_states.append(pl_module.model.training)


def test_model_trains_in_train_mode_after_validation(dm: ClfDataModule) -> None:
    model = small_model().eval()  # as transformers v5 from_pretrained returns it
    module = ClfFinetune(model, dm)
    probe = ModeProbe()
    trainer = quick_trainer(callbacks=[probe], max_steps=2, val_check_interval=1, num_sanity_val_steps=1)
    trainer.fit(module, dm)
    assert len(probe.train_states) == 2
    assert all(state == (True, True, True, True) for state in probe.train_states), probe.train_states
    assert probe.val_states and not any(probe.val_states)  # validation runs in eval mode


# ---------------------------------------------------------------------------------------------- schedule and optimizer
class LrProbe(pl.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        groups = trainer.optimizers[0].param_groups
        assert len({g["lr"] for g in groups}) == 1
        self.lrs.append(groups[0]["lr"])


def test_linear_warmup_then_decay_to_zero_over_max_steps(dm: ClfDataModule) -> None:
    module = ClfFinetune(small_model(), dm, lr=PEAK, warmup_ratio=0.3)
    probe = LrProbe()
    trainer = quick_trainer(callbacks=[probe], max_steps=10, limit_val_batches=0)
    trainer.fit(module, dm)
    expected = [PEAK * s / 3 for s in range(3)] + [PEAK * (10 - s) / 7 for s in range(3, 10)]
    assert probe.lrs == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert module.lr_schedulers().get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)
    assert float(trainer.callback_metrics["lr"]) == pytest.approx(PEAK / 7, rel=1e-5)


class OrderProbe(pl.Callback):
    def __init__(self) -> None:
        self.orders: dict[int, list[tuple]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        rows = [tuple(ids.tolist()) for ids in batch["input_ids"]]
        self.orders.setdefault(trainer.current_epoch, []).append(tuple(rows))


def test_schedule_uses_estimated_stepping_batches(dm: ClfDataModule) -> None:
    module = ClfFinetune(small_model(), dm, lr=PEAK, warmup_ratio=0.25)
    probe = LrProbe()
    order = OrderProbe()
    # 32 examples / batch 8 = 4 batches per epoch, 2 epochs, 2 batches per optimizer step -> 4 optimizer steps
    trainer = quick_trainer(
        callbacks=[probe, order], max_steps=-1, max_epochs=2, accumulate_grad_batches=2, limit_val_batches=0
    )
    trainer.fit(module, dm)
    assert sorted(order.orders) == [0, 1]
    assert order.orders[0] != order.orders[1]  # Lightning calls set_epoch on the length-grouped sampler
    assert trainer.estimated_stepping_batches == 4
    per_step = [0.0, PEAK, PEAK * 2 / 3, PEAK / 3]
    assert probe.lrs == pytest.approx([lr for lr in per_step for _ in range(2)], rel=1e-6, abs=1e-12)
    assert module.lr_schedulers().get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)


def test_no_weight_decay_on_biases_and_layer_norms(dm: ClfDataModule) -> None:
    module = ClfFinetune(small_model(), dm, weight_decay=0.05)
    trainer = quick_trainer(max_steps=1, limit_val_batches=0)
    trainer.fit(module, dm)
    names = {id(p): n for n, p in module.model.named_parameters()}
    decay_of = {}
    for group in trainer.optimizers[0].param_groups:
        for param in group["params"]:
            assert id(param) not in decay_of, names[id(param)]
            decay_of[id(param)] = group["weight_decay"]
    assert set(decay_of) == set(names)  # every trainable parameter is optimised, once
    for pid, name in names.items():
        exempt = name.endswith(".bias") or "LayerNorm" in name
        assert decay_of[pid] == (0.0 if exempt else 0.05), name
    assert decay_of[id(module.model.bert.embeddings.LayerNorm.weight)] == 0.0
    assert decay_of[id(module.model.classifier.weight)] == 0.05


# ---------------------------------------------------------------------------------------------- metrics
def expected_metrics(module: ClfFinetune, loader, num_classes: int) -> dict[str, float]:
    preds, targets = [], []
    module.eval()
    with torch.no_grad():
        for batch in loader:
            preds.append(module(batch).argmax(-1))
            targets.append(batch["labels"])
    p, t = torch.cat(preds), torch.cat(targets)
    out = {"acc": (p == t).float().mean().item()}
    f1s, used = [], []
    for c in range(num_classes):
        tp = ((p == c) & (t == c)).sum().item()
        fp = ((p == c) & (t != c)).sum().item()
        fn = ((p != c) & (t == c)).sum().item()
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
        used.append(tp + fp + fn > 0)  # torchmetrics' macro average skips classes absent from both
    out["f1"] = sum(f for f, u in zip(f1s, used, strict=True) if u) / max(sum(used), 1)
    out["per_class"] = f1s
    return out


def check_logged(metrics: dict, expected: dict, names: list[str]) -> None:
    assert {"val_loss", "val_acc", "val_f1", *(f"val_f1_{n}" for n in names)} <= set(metrics), sorted(metrics)
    assert float(metrics["val_acc"]) == pytest.approx(expected["acc"], abs=1e-6)
    assert float(metrics["val_f1"]) == pytest.approx(expected["f1"], abs=1e-6)
    for name, f1 in zip(names, expected["per_class"], strict=True):
        assert float(metrics[f"val_f1_{name}"]) == pytest.approx(f1, abs=1e-6), name


def test_metrics_for_two_classes(dm: ClfDataModule) -> None:
    module = ClfFinetune(small_model(seed=5), dm)
    trainer = quick_trainer(limit_val_batches=None)
    (metrics,) = trainer.validate(module, dm, verbose=False)
    check_logged(metrics, expected_metrics(module, dm.val_dataloader(), 2), ["negative", "positive"])
    batch = next(iter(dm.val_dataloader()))
    loss = torch.nn.functional.cross_entropy(module(batch), batch["labels"])
    assert float(metrics["val_loss"]) == pytest.approx(loss.item(), rel=1e-5)


def test_metrics_for_four_classes(tokenizer: PreTrainedTokenizerBase) -> None:
    dm = ClfDataModule(
        shared_data("tweet_eval_emotion"),
        tokenizer=tokenizer,
        label_names=EMOTIONS,
        max_train_samples=8,
        max_eval_samples=24,
        max_length=32,
        batch_size=8,
    )
    module = ClfFinetune(small_model(num_labels=4, seed=2), dm)
    trainer = quick_trainer(limit_val_batches=None)
    (metrics,) = trainer.validate(module, dm, verbose=False)
    check_logged(metrics, expected_metrics(module, dm.val_dataloader(), 4), EMOTIONS)


# ---------------------------------------------------------------------------------------------- learning
def mean_train_loss(module: ClfFinetune, dm: ClfDataModule) -> float:
    module.eval()
    losses = []
    with torch.no_grad():
        for batch in dm.val_dataloader():
            losses.append(torch.nn.functional.cross_entropy(module(batch), batch["labels"]).item())
    module.train()
    return sum(losses) / len(losses)


def test_a_few_steps_reduce_the_loss(toy_dataset: DatasetDict, tokenizer: PreTrainedTokenizerBase) -> None:
    data = DatasetDict(train=toy_dataset["train"], validation=toy_dataset["train"])  # measure on the training set
    dm = ClfDataModule(data, tokenizer=tokenizer, batch_size=8, max_length=16)
    module = ClfFinetune(small_model(seed=4), dm, lr=1e-2, warmup_ratio=0.0, weight_decay=0.0)
    before = mean_train_loss(module, dm)
    quick_trainer(max_steps=20, limit_val_batches=0).fit(module, dm)  # tiny random BERTs start slowly
    after = mean_train_loss(module, dm)
    assert after < before - 0.05, (before, after)
