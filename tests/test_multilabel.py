"""Multi-label classification and regression end to end on tiny models: data, fine-tuning, distillation with a
transfer set, resume, the exported folder in ``pipeline()``, and bad input (issue #16)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from datasets import Dataset, DatasetDict
from pytorch_lightning.callbacks import ModelCheckpoint
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase, pipeline

from data.data_module import ClfDataModule
from data.labels import MULTI_LABEL, REGRESSION
from data.sources import DataError
from helper.checkpoint import HgCkptIO, HgExport
from helper.distiller import BaseDistiller
from helper.finetuner import ClfFinetune
from helper.module import hard_label_loss, labelled_rows
from tests.tiny import tiny_bert

NAMES = ["anger", "joy", "fear"]
TEXTS = [
    "i am so angry about this",
    "what a happy day, i love it",
    "this is scary and i am afraid",
    "angry and scared at once",
    "joyful, lovely, wonderful",
    "nothing special here",
    "furious, just furious",
    "terrified of the dark",
]
LABELS = [[0], [1], [2], [0, 2], [1], [], [0], [2]]


def multi_label_data() -> DatasetDict:
    train = Dataset.from_dict({"text": TEXTS * 4, "labels": LABELS * 4})
    val = Dataset.from_dict({"text": TEXTS, "labels": LABELS})
    return DatasetDict(train=train, validation=val, test=val)


def regression_data() -> DatasetDict:
    scores = [0.9, 0.1, 0.75, 0.5, 0.05, 0.33, 1.0, 0.8]
    train = Dataset.from_dict({"text": TEXTS * 4, "label": scores * 4})
    val = Dataset.from_dict({"text": TEXTS, "label": scores})
    return DatasetDict(train=train, validation=val)


@pytest.fixture(scope="module")
def tokenizer(minilm_path: str) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(minilm_path)


def make_dm(data: DatasetDict, tokenizer: PreTrainedTokenizerBase, **kwargs) -> ClfDataModule:
    kwargs.setdefault("label_names", NAMES if "labels" in data["train"].column_names else None)
    return ClfDataModule(data, tokenizer=tokenizer, batch_size=8, max_length=16, **kwargs)


def trainer(callbacks: list | None = None, **kwargs) -> pl.Trainer:
    kwargs.setdefault("max_steps", 3)
    kwargs.setdefault("num_sanity_val_steps", 0)
    kwargs.setdefault("enable_checkpointing", any(isinstance(c, ModelCheckpoint) for c in callbacks or []))
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks or [],
        **kwargs,
    )


# ---------------------------------------------------------------------------------------------- data
def test_label_lists_become_multi_hot_float_targets(tokenizer: PreTrainedTokenizerBase) -> None:
    dm = make_dm(multi_label_data(), tokenizer)
    assert dm.problem_type == MULTI_LABEL and dm.num_labels == 3 and dm.label_names == NAMES
    assert any("empty list of labels" in n and "none of the labels" in n for n in dm.notes), dm.notes
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    assert batch["labels"].dtype == torch.float32 and batch["labels"].shape == (8, 3)
    rows = {tuple(r) for r in batch["labels"].tolist()}
    assert (1.0, 0.0, 1.0) in rows and (0.0, 0.0, 0.0) in rows  # [0, 2] and the empty list


def test_multi_hot_vectors_and_label_names_json_beside_the_files(tmp_path: Path, tokenizer) -> None:
    hot = [[1 if i in ids else 0 for i in range(3)] for ids in LABELS]
    for split in ("train", "validation"):
        rows = [json.dumps({"text": t, "labels": h}) for t, h in zip(TEXTS, hot, strict=True)]
        (tmp_path / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    (tmp_path / "label_names.json").write_text(json.dumps(NAMES))
    dm = ClfDataModule(str(tmp_path), tokenizer=tokenizer)
    assert dm.problem_type == MULTI_LABEL and dm.label_names == NAMES
    assert [list(r) for r in dm.raw["train"]["labels"]] == LABELS


def test_float_scores_are_regression(tokenizer: PreTrainedTokenizerBase) -> None:
    dm = make_dm(regression_data(), tokenizer)
    assert dm.problem_type == REGRESSION and dm.num_labels == 1
    dm.setup()
    labels = next(iter(dm.val_dataloader()))["labels"]
    assert labels.dtype == torch.float32 and labels.shape == (8,)
    rows = Dataset.from_dict({"text": ["a", "b"], "label": [0.0, 1.0]})
    whole = DatasetDict(train=rows, validation=rows)  # whole numbers in a float column: class ids, unless told
    assert ClfDataModule(whole).problem_type == "single_label_classification"
    assert ClfDataModule(whole, problem_type=REGRESSION).problem_type == REGRESSION


def test_bad_labels_are_reported_together_before_training() -> None:
    data = multi_label_data()
    data["validation"] = Dataset.from_dict({"text": ["a", "b"], "labels": [[0, 7], [1]]})
    data["test"] = Dataset.from_dict({"text": ["c", "d"], "labels": [[3], [-1]]})
    with pytest.raises(DataError) as info:
        ClfDataModule(data, label_names=NAMES, test_split="test")
    assert info.value.problems == [
        "split 'validation', row 0: label 7 in the list [0, 7] of 'labels' is outside 0..2 (num_labels=3)",
        "split 'test', row 0: label 3 in the list [3] of 'labels' is outside 0..2 (num_labels=3)",
    ]


def test_mixed_label_kinds_and_nan_targets_are_refused(tmp_path: Path) -> None:
    for split in ("train", "validation"):
        (tmp_path / f"{split}.jsonl").write_text('{"text": "a", "labels": [1]}\n{"text": "b", "labels": 2}\n')
    with pytest.raises(DataError) as info:
        ClfDataModule(str(tmp_path))
    assert [p.split(":")[0] for p in info.value.problems] == ["split 'train'", "split 'validation'"]
    assert "mixes lists (row 0: [1]) and single values (row 1: 2)" in info.value.problems[0]
    data = regression_data()
    data["validation"] = Dataset.from_dict({"text": ["a", "b"], "label": [0.5, math.nan]})
    with pytest.raises(DataError, match=r"split 'validation', row 1: regression target nan"):
        ClfDataModule(data)
    with pytest.raises(DataError, match=r"problem_type \(--data.problem_type\)='multi_label_classification' but"):
        ClfDataModule(regression_data(), problem_type=MULTI_LABEL)
    with pytest.raises(DataError, match=r"problem_type \(--data.problem_type\)='multi-label': expected one of"):
        ClfDataModule(regression_data(), problem_type="multi-label")


# ---------------------------------------------------------------------------------------------- losses
def test_hard_label_loss_leaves_out_rows_without_labels() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [3.0, 3.0]])
    targets = torch.tensor([[1.0, 0.0], [math.nan, math.nan], [0.0, 1.0]])
    assert labelled_rows(targets).tolist() == [True, False, True]
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[[0, 2]], targets[[0, 2]])
    torch.testing.assert_close(hard_label_loss(logits, targets, MULTI_LABEL), expected)
    scores = torch.tensor([0.5, math.nan, 2.0])
    torch.testing.assert_close(
        hard_label_loss(torch.tensor([[1.0], [9.0], [2.0]]), scores, REGRESSION), torch.tensor(0.125)
    )
    assert hard_label_loss(logits[1:2], targets[1:2], MULTI_LABEL).item() == 0.0  # no labelled row: 0, not NaN


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def multi_label_teacher(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    """A tiny multi-label classifier fine-tuned for a few steps and exported (HgExport)."""
    out = tmp_path_factory.mktemp("ml") / "teacher"
    dm = make_dm(multi_label_data(), tokenizer, test_split="test")
    module = ClfFinetune(tiny_bert(layers=2, hidden=32, heads=2, num_labels=3), dm, lr=1e-3)
    fit = trainer([ModelCheckpoint(dirpath=out.parent / "ckpt"), HgExport(dirpath=str(out))], plugins=[HgCkptIO()])
    fit.fit(module, datamodule=dm)
    results = fit.test(module, datamodule=dm, verbose=False)[0]
    for key in ("test_f1", "test_f1_micro", "test_acc", "test_auroc", "test_ap", "test_f1_joy"):
        assert 0.0 <= results[key] <= 1.0, (key, results)
    return out


def test_exported_multi_label_folder_gives_sigmoid_scores_in_pipeline(multi_label_teacher: Path) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(multi_label_teacher)
    assert model.config.problem_type == MULTI_LABEL and model.config.id2label[1] == "joy"
    tok = AutoTokenizer.from_pretrained(multi_label_teacher)
    classify = pipeline("text-classification", model=str(multi_label_teacher), top_k=None)
    scores = {d["label"]: d["score"] for d in classify([TEXTS[3]])[0]}
    logits = model(**tok(TEXTS[3], return_tensors="pt")).logits[0]
    expected = dict(zip(NAMES, torch.sigmoid(logits).tolist(), strict=True))
    assert scores == pytest.approx(expected, abs=1e-5)  # sigmoid per label, not a softmax summing to 1
    target = torch.tensor([[1.0, 0.0, 1.0]])
    loss = model(**tok(TEXTS[3], return_tensors="pt"), labels=target).loss
    torch.testing.assert_close(loss, torch.nn.functional.binary_cross_entropy_with_logits(logits[None], target))


@pytest.mark.parametrize("cache", [True, False])
def test_distil_multi_label_with_a_transfer_set(multi_label_teacher: Path, tokenizer, cache: bool) -> None:
    unlabeled = Dataset.from_dict({"text": ["so very angry today", "joy everywhere", "fear and joy", "meh"]})
    dm = make_dm(multi_label_data(), tokenizer, unlabeled=DatasetDict(train=unlabeled))
    module = BaseDistiller(
        str(multi_label_teacher),
        {"layers": [1]},
        [{"name": "LogitBinaryKD", "weight": 1.0}, {"name": "LogitBCE", "weight": 0.5}],
        dm,
        alpha=0.5,
        temperature=2.0,
        lr=1e-3,
        cache_teacher_outputs=cache,
    )
    logged: list[dict] = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            logged.append({k: float(v) for k, v in trainer.callback_metrics.items()})

    trainer([Record()], max_steps=5, limit_val_batches=1).fit(module, datamodule=dm)
    assert all(math.isfinite(r["train_loss"]) for r in logged)
    assert any(r["train_labelled_fraction"] < 1.0 for r in logged)  # transfer rows were in batches (no label)
    assert module.student.config.problem_type == MULTI_LABEL
    assert 0.0 <= float(trainer().callback_metrics.get("val_f1", 0.0)) <= 1.0


def test_single_label_adaptor_or_teacher_on_multi_label_data_is_refused(multi_label_teacher: Path, tokenizer) -> None:
    dm = make_dm(multi_label_data(), tokenizer)
    with pytest.raises(ValueError) as info:
        BaseDistiller(str(multi_label_teacher), {"layers": [1]}, ["LogitKD", "LogitCE"], dm)
    msg = str(info.value)
    assert (
        msg.count("expected one of the adaptors for multi_label_classification: LogitBCE, LogitBinaryKD, LogitMSE") == 2
    )
    single = ClfDataModule(
        DatasetDict(train=Dataset.from_dict({"text": TEXTS * 2, "label": [0, 1, 2, 0, 1, 2, 0, 1] * 2})),
        tokenizer=tokenizer,
        label_names=NAMES,
    )
    with pytest.raises(ValueError, match=r"teacher has problem_type='multi_label_classification'.*'single_label"):
        BaseDistiller(str(multi_label_teacher), {"layers": [1]}, ["LogitBinaryKD"], single)


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty:UserWarning")  # resuming
def test_multi_label_resume_continues_from_the_checkpoint(multi_label_teacher: Path, tokenizer, tmp_path) -> None:
    def run(max_steps: int, ckpt_path: str | None = None) -> BaseDistiller:
        pl.seed_everything(0)
        dm = make_dm(multi_label_data(), tokenizer)
        module = BaseDistiller(str(multi_label_teacher), {"layers": [1]}, ["LogitBinaryKD"], dm, lr=1e-3)
        callback = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=2)
        fit = trainer([callback], max_steps=max_steps, limit_val_batches=0)
        fit.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=False)  # our own checkpoint (rng states)
        return module

    straight = {k: v.clone() for k, v in run(4).student.state_dict().items()}
    run(2)
    resumed = run(4, str(tmp_path / "ckpt" / "last.ckpt")).student.state_dict()
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, msg=name)


def test_regression_finetune_distil_and_export(tokenizer, tmp_path: Path) -> None:
    dm = make_dm(regression_data(), tokenizer)
    module = ClfFinetune(tiny_bert(layers=2, hidden=32, heads=2, num_labels=1), dm, lr=1e-3)
    out = tmp_path / "teacher"
    callbacks = [ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_pearson", mode="max"), HgExport(str(out))]
    fit = trainer(callbacks, plugins=[HgCkptIO()], max_steps=4)  # one epoch, validated at its end
    fit.fit(module, datamodule=dm)
    metrics = fit.callback_metrics
    assert {"val_pearson", "val_spearman", "val_mse", "val_loss"} <= set(metrics)
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.problem_type == REGRESSION and model.config.num_labels == 1
    scores = pipeline("text-classification", model=str(out), top_k=None)([TEXTS[0]])[0]
    logit = model(**AutoTokenizer.from_pretrained(out)(TEXTS[0], return_tensors="pt")).logits[0, 0].item()
    assert scores[0]["score"] == pytest.approx(logit, abs=1e-5)  # the raw output, no sigmoid or softmax
    with pytest.raises(ValueError, match="expected one of the adaptors for regression: LogitMSE"):
        BaseDistiller(str(out), {"layers": [1]}, ["LogitBinaryKD"], make_dm(regression_data(), tokenizer))
    distil = BaseDistiller(str(out), {"layers": [1]}, ["LogitMSE"], make_dm(regression_data(), tokenizer), lr=1e-3)
    trainer(max_steps=3, limit_val_batches=1).fit(distil, datamodule=distil.dm)
    assert distil.student.config.problem_type == REGRESSION


def test_benchmark_tunes_the_threshold_on_validation_and_reports_test(multi_label_teacher: Path, tmp_path) -> None:
    from helper.bench import run_benchmark
    from helper.bench.settings import BenchmarkError

    data = multi_label_data()
    kwargs = {"latency_runs": 2, "warmup": 0, "rounds": 1, "batch_size": 4, "label_names": NAMES}
    fixed = run_benchmark([str(multi_label_teacher)], data, split="test", **kwargs)[0]
    tuned = run_benchmark([str(multi_label_teacher)], data, split="test", tune_threshold=True, **kwargs)[0]
    assert fixed["threshold"] == 0.5 and 0.05 <= tuned["threshold"] <= 0.95
    for row in (fixed, tuned):
        assert {"accuracy", "f1_macro", "f1_micro", "auroc_macro", "ap_macro", "f1_joy"} <= set(row)
    if tuned["threshold"] != 0.5:  # the test split is the validation split here: tuning cannot lose macro F1
        assert tuned["f1_macro"] >= fixed["f1_macro"]
    with pytest.raises(BenchmarkError) as info:
        run_benchmark(
            [str(multi_label_teacher)], data, split="validation", tune_threshold=True, threshold=1.5, **kwargs
        )
    assert len(info.value.problems) == 2 and "expected another split (e.g. test)" in str(info.value)


def test_a_new_multi_label_head_starts_at_the_label_priors(tokenizer, tmp_path: Path) -> None:
    base = tmp_path / "base"
    tiny = tiny_bert(layers=1, hidden=32, heads=2, num_labels=3)
    tiny.bert.save_pretrained(base)  # a base encoder (no head): the head is created by ClfFinetune
    tokenizer.save_pretrained(base)
    dm = make_dm(multi_label_data(), tokenizer)
    prior = torch.tensor([3 / 8, 1 / 4, 3 / 8])  # anger in 3 of the 8 lists, joy in 2, fear in 3
    bias = ClfFinetune(str(base), dm).model.classifier.bias.detach()
    torch.testing.assert_close(bias, torch.log(prior / (1 - prior)))
    assert ClfFinetune(str(base), dm, prior_bias=False).model.classifier.bias.abs().max() == 0  # HF's zero init


def test_a_single_label_teacher_on_multi_label_data_is_refused(tokenizer, tmp_path: Path) -> None:
    teacher = tiny_bert(layers=2, hidden=32, heads=2, num_labels=3)  # config.problem_type unset: single-label
    teacher.save_pretrained(tmp_path / "t")
    tokenizer.save_pretrained(tmp_path / "t")
    with pytest.raises(ValueError) as info:
        BaseDistiller(str(tmp_path / "t"), {"layers": [1]}, ["LogitBinaryKD"], make_dm(multi_label_data(), tokenizer))
    assert "teacher has problem_type='single_label_classification' (config.problem_type unset" in str(info.value)
    assert "but the data is 'multi_label_classification'" in str(info.value)


def test_the_model_card_of_a_multi_label_export_shows_sigmoid_usage(multi_label_teacher: Path) -> None:
    card = (multi_label_teacher / "README.md").read_text()
    assert "problem type:** multi_label_classification" in card and "top_k=None" in card
