"""benchmarks/distill_compare.py on a tiny teacher and the demo set: every variant runs, saves and reports."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from benchmarks import distill_compare as compare
from tests.tiny import REPO_ROOT, save_tiny_model


@pytest.fixture
def teacher_folder(tmp_path, minilm_path):
    return save_tiny_model(tmp_path / "teacher", minilm_path, ["negative", "positive"], layers=4, hidden=64, heads=4)


def test_variants_are_saved_and_reported(tmp_path, teacher_folder, capsys):
    args = [
        "--teacher", str(teacher_folder), "--dataset", "demo", "--label-names", "negative", "positive",
        "--student-layers", "0", "3",
        "--epochs", "1", "--max-train-samples", "48", "--batch-size", "16", "--max-length", "32", "--threads", "1",
        "--variants", "alone", "logit_kd", "logit_kd_nocache", "two_step", "inter_kd",
        "--save-dir", str(tmp_path / "students"), "--results", str(tmp_path / "results.json"),
    ]  # fmt: skip
    compare.main(args)
    out = capsys.readouterr().out
    assert "| variant | seeds | val accuracy |" in out and "| two_step | 1 |" in out

    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["variants"]) == ["alone", "logit_kd", "logit_kd_nocache", "two_step", "inter_kd"]
    assert results["settings"]["max_train_samples"] == 48 and results["threads"] == 1
    # the teacher runs in eval mode, so cached logits are what the uncached run computes: same training, same result
    cached, online = results["variants"]["logit_kd"], results["variants"]["logit_kd_nocache"]
    assert cached["val_acc"] == pytest.approx(online["val_acc"], abs=0.011)

    for variant in results["variants"]:
        folder = tmp_path / "students" / variant
        student = AutoModelForSequenceClassification.from_pretrained(folder)
        assert student.config.num_hidden_layers == 2 and student.config.id2label == {0: "negative", 1: "positive"}
        assert AutoTokenizer.from_pretrained(folder)("a film")["input_ids"]
    # each variant trained its own copy of the same initialisation
    alone = AutoModelForSequenceClassification.from_pretrained(tmp_path / "students" / "alone")
    kd = AutoModelForSequenceClassification.from_pretrained(tmp_path / "students" / "logit_kd")
    assert not torch.equal(alone.classifier.weight, kd.classifier.weight)
    # two_step's second stage trains the head only, inter_kd's the whole student: same first stage, other encoders
    two_step = AutoModelForSequenceClassification.from_pretrained(tmp_path / "students" / "two_step")
    inter_kd = AutoModelForSequenceClassification.from_pretrained(tmp_path / "students" / "inter_kd")
    assert not torch.equal(
        two_step.bert.encoder.layer[1].output.dense.weight, inter_kd.bert.encoder.layer[1].output.dense.weight
    )


def test_an_existing_save_folder_is_refused_before_any_training(tmp_path, teacher_folder):
    (tmp_path / "students" / "alone").mkdir(parents=True)
    with pytest.raises(SystemExit):
        compare.parse_args(
            ["--teacher", str(teacher_folder), "--dataset", "demo", "--save-dir", str(tmp_path / "students")]
        )


def write_split(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def data_with_test(tmp_path):
    """The demo set with a labelled test split (the last 30 validation rows), and unlabelled text beside it."""
    demo = REPO_ROOT / "data" / "demo"
    train = [json.loads(line) for line in (demo / "train.jsonl").read_text().splitlines()]
    val = [json.loads(line) for line in (demo / "validation.jsonl").read_text().splitlines()]
    folder = tmp_path / "data"
    folder.mkdir()
    write_split(folder / "train.jsonl", train[:64])
    write_split(folder / "validation.jsonl", val[:30])
    write_split(folder / "test.jsonl", val[70:])
    write_split(tmp_path / "unlabeled.jsonl", [{"text": r["sentence"], "label": r["label"]} for r in train[300:306]])
    return folder, tmp_path / "unlabeled.jsonl"


def test_transfer_variants_report_validation_and_test_over_seeds(tmp_path, teacher_folder, data_with_test, capsys):
    folder, unlabeled = data_with_test
    args = [
        "--teacher", str(teacher_folder), "--dataset", str(folder), "--label-names", "negative", "positive",
        "--student-layers", "0", "3", "--test-split", "test", "--unlabeled", str(unlabeled),
        "--steps", "3", "--batch-size", "16", "--max-length", "32", "--threads", "1", "--seeds", "1", "2",
        "--variants", "alone", "transfer_kd", "aug_transfer", "--augment-copies", "1", "--labelling-check",
        "--results", str(tmp_path / "results.json"),
    ]  # fmt: skip
    compare.main(args)
    out = capsys.readouterr().out
    assert "| variant | seeds | val accuracy | val macro F1 | test accuracy | test macro F1 |" in out
    assert "| transfer_kd | 2 |" in out and " ± " in out
    assert "second pass labelled 0 rows" in out
    results = json.loads((tmp_path / "results.json").read_text())
    variants = results["variants"]
    assert list(variants) == ["alone", "transfer_kd", "aug_transfer"]
    assert variants["alone"]["train_rows"] == {"labeled": 64, "transfer": 0}
    assert variants["transfer_kd"]["train_rows"] == {"labeled": 64, "transfer": 6}
    assert variants["aug_transfer"]["train_rows"] == {"labeled": 64, "transfer": 64}
    for variant in variants.values():
        assert variant["seeds"] == [1, 2] and 0 <= variant["test_acc"] <= 1 and 0 <= variant["val_f1"] <= 1
        per_seed = variant["per_seed"]
        assert variant["test_acc"] == pytest.approx((per_seed["1"]["test_acc"] + per_seed["2"]["test_acc"]) / 2)
    assert set(results["teacher"]) == {"validation", "test"}
    check = results["labelling_check"]
    assert check["labelled_first"] == 64 + 6 and check["labelled_second"] == 0 and check["from_store_second"] == 70


def test_transfer_variants_need_a_transfer_set(teacher_folder):
    with pytest.raises(SystemExit):
        compare.parse_args(["--teacher", str(teacher_folder), "--dataset", "demo", "--variants", "transfer_kd"])
    with pytest.raises(SystemExit):
        compare.parse_args(["--teacher", str(teacher_folder), "--dataset", "demo", "--rest-as-unlabeled"])
