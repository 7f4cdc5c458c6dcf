"""Distilling with a transfer set: CE on labelled rows only, adaptors on every row, refusals, the baseline switch."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset

from data.data_module import IGNORE_INDEX, TEACHER_LOGITS, ClfDataModule
from helper.distiller import BaseDistiller
from tests.tiny import quick_trainer as tiny_quick_trainer
from tests.tiny import tiny_bert

UNLABELED = [f"an unseen review number {i} of a film" for i in range(12)]


#: The shared test trainer, 3 steps and Lightning's sanity check (as these tests always ran).
quick_trainer = partial(tiny_quick_trainer, max_steps=3, num_sanity_val_steps=2)


@pytest.fixture
def transfer_dm(toy_dataset, minilm_path) -> ClfDataModule:
    return ClfDataModule(
        toy_dataset, tokenizer=minilm_path, batch_size=8, unlabeled=Dataset.from_dict({"text": UNLABELED})
    )


def test_ce_counts_labelled_rows_only(tiny_teacher, tiny_student) -> None:
    distiller = BaseDistiller(tiny_teacher, tiny_student, ["LogitKD"], alpha=0.3)
    logits = torch.randn(4, 2, requires_grad=True)
    labels = torch.tensor([1, IGNORE_INDEX, 0, IGNORE_INDEX])
    parts = distiller.total_loss({"LogitKD": torch.tensor(0.0)}, logits, labels)
    torch.testing.assert_close(parts["ce"], F.cross_entropy(logits[[0, 2]], labels[[0, 2]]))
    none = distiller.total_loss({"LogitKD": torch.tensor(0.5)}, logits, torch.full((4,), IGNORE_INDEX))
    assert none["ce"].item() == 0.0 and torch.isfinite(none["loss"]) and none["loss"].item() == pytest.approx(0.5)
    none["loss"].backward()
    assert torch.isfinite(logits.grad).all()


def test_transfer_set_needs_an_adaptor(transfer_dm, tiny_teacher, tiny_student) -> None:
    with pytest.raises(ValueError, match=r"data.unlabeled.*no adaptor with a weight > 0.*--data.unlabeled null"):
        BaseDistiller(tiny_teacher, tiny_student, [], transfer_dm, alpha=1.0)
    with pytest.raises(ValueError, match=r"no adaptor with a weight > 0"):
        BaseDistiller(tiny_teacher, tiny_student, [("LogitKD", 0.0)], transfer_dm)


def test_baseline_switch_trains_the_student_alone(toy_dataset, minilm_path, tiny_teacher, tiny_student) -> None:
    dm = ClfDataModule(toy_dataset, tokenizer=minilm_path, batch_size=8)
    distiller = BaseDistiller(tiny_teacher, tiny_student, [], dm, alpha=1.0)
    before = {k: v.clone() for k, v in distiller.student.state_dict().items()}
    quick_trainer().fit(distiller, dm)
    assert any(not torch.equal(before[k], v) for k, v in distiller.student.state_dict().items())
    assert distiller.hparams["train_rows"] == {"labeled": len(dm.raw["train"]), "transfer": 0}


def test_cached_logits_label_transfer_rows_once_and_train_on_them(
    tmp_path, monkeypatch, transfer_dm, tiny_teacher, tiny_student
) -> None:
    monkeypatch.setenv("DISTILLER_CACHE", str(tmp_path))
    distiller = BaseDistiller(tiny_teacher, tiny_student, ["LogitKD"], transfer_dm)
    assert distiller.hparams["train_rows"] == {"labeled": len(transfer_dm.raw["train"]), "transfer": 12}
    trainer = quick_trainer(max_steps=len(transfer_dm.train_dataloader()))  # one epoch: every transfer row once
    trainer.fit(distiller, transfer_dm)
    assert distiller.use_teacher_cache
    assert transfer_dm.label_stats["train"].labelled == 8 + 12  # distinct labelled texts + unlabelled ones
    assert (transfer_dm.tokenized["train"][:]["labels"] == IGNORE_INDEX).sum() == 12
    assert TEACHER_LOGITS in transfer_dm.tokenized["train"].column_names
    assert 0 < trainer.callback_metrics["train_labelled_fraction"] <= 1
    again = ClfDataModule(
        transfer_dm.raw, tokenizer=transfer_dm.tokenizer, batch_size=8, unlabeled=Dataset.from_dict({"text": UNLABELED})
    )
    quick_trainer(max_steps=1).fit(BaseDistiller(tiny_teacher, tiny_bert(2, 32, 2, seed=1), ["LogitKD"], again), again)
    assert again.label_stats["train"].labelled == 0


def test_augmented_copies_reach_intermediate_adaptors(toy_dataset, minilm_path, tiny_teacher, tiny_student) -> None:
    dm = ClfDataModule(toy_dataset, tokenizer=minilm_path, batch_size=8, augment={"copies": 1, "p": 0.5, "k": 3})
    distiller = BaseDistiller(tiny_teacher, tiny_student, ["HidnTinyBERT", "LogitKD"], dm)
    assert distiller.t_taps is not None  # the teacher runs in every step: no cache
    quick_trainer(max_steps=1).fit(distiller, dm)
    assert len(dm.tokenized["train"]) == 2 * len(dm.raw["train"])
    assert "augment" in dm.transfer and len(dm.transfer["augment"]) == len(dm.raw["train"])


def test_finetuning_refuses_a_transfer_set(transfer_dm, tiny_student) -> None:
    from helper.finetuner import ClfFinetune

    with pytest.raises(ValueError, match=r"data.unlabeled.*no teacher to label.*--data.unlabeled null"):
        ClfFinetune(tiny_student, transfer_dm)


def test_balance_with_intermediate_adaptors_labels_before_training(
    tmp_path, monkeypatch, toy_dataset, minilm_path, tiny_teacher, tiny_student
) -> None:
    monkeypatch.setenv("DISTILLER_CACHE", str(tmp_path))
    unlabeled = Dataset.from_dict({"text": UNLABELED})
    dm = ClfDataModule(toy_dataset, tokenizer=minilm_path, batch_size=8, unlabeled=unlabeled, balance={"power": 1.0})
    distiller = BaseDistiller(tiny_teacher, tiny_student, ["HidnTinyBERT", "LogitKD"], dm)
    assert distiller.t_taps is not None  # the teacher runs in every step, yet labels the transfer rows first
    quick_trainer(max_steps=1).fit(distiller, dm)
    assert not distiller.use_teacher_cache and dm.label_stats["train"].rows == len(dm.raw["train"]) + 12
    top = dm.tokenized["train"][len(dm.raw["train"]) :][TEACHER_LOGITS].argmax(-1).tolist()
    counts = [top.count(c) for c in range(dm.num_labels)]
    assert len(top) == dm.transfer_rows() == sum(n * max(1, round(max(counts) / n)) for n in counts if n)
