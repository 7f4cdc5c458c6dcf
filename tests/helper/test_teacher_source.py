"""Which teacher signal and which tokens a distiller uses (issue 14): each misfit refused before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from data.data_module import ClfDataModule
from helper.distiller import BaseDistiller
from helper.teacher_source import TeacherSourceError
from tests.tiny import tiny_bert

TEXTS = [("Good Film", 1), ("Bad Film", 0), ("fine day", 1), ("sad day", 0)] * 2
OWN = {"num_layers": 1, "hidden_size": 32, "num_heads": 2, "vocab_size": 120, "tokenizer": "train"}


@pytest.fixture
def folder(tmp_path: Path, minilm_path: str) -> Path:
    tiny_bert(layers=2, hidden=32, heads=2).save_pretrained(tmp_path / "teacher")
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(tmp_path / "teacher")
    (tmp_path / "data").mkdir()
    for split in ("train", "validation"):
        lines = [json.dumps({"text": t, "label": y}) for t, y in TEXTS]
        (tmp_path / "data" / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    rows = [{"text": t, "teacher_logits": [0.0, 1.0]} for t, _ in TEXTS]
    (tmp_path / "outputs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def test_no_teacher_and_no_outputs(folder: Path):
    dm = ClfDataModule(str(folder / "data"), tokenizer="minilm")
    with pytest.raises(TeacherSourceError, match=r"model.teacher \(--model.teacher\) is null"):
        BaseDistiller(None, dict(OWN), ["LogitKD"], dm)


def test_teacher_model_and_outputs_both_given(folder: Path):
    dm = ClfDataModule(
        str(folder / "data"), tokenizer=str(folder / "teacher"), teacher_outputs=str(folder / "outputs.jsonl")
    )
    with pytest.raises(TeacherSourceError) as err:
        BaseDistiller(str(folder / "teacher"), dict(OWN), ["LogitKD"], dm)
    assert "both a teacher model" in str(err.value) and "--model.teacher null" in str(err.value)


def test_outputs_allow_logit_adaptors_only_and_no_augment(folder: Path):
    dm = ClfDataModule(str(folder / "data"), teacher_outputs=str(folder / "outputs.jsonl"), augment={"copies": 1})
    with pytest.raises(TeacherSourceError) as err:
        BaseDistiller(None, dict(OWN), ["HidnTinyBERT", "LogitKD"], dm, attention_maps=True)
    message = str(err.value)
    for part in (
        "['HidnTinyBERT']",
        "--model.adaptors",
        "--model.attention_maps",
        "--data.augment",
        "tokenizer: train",
    ):
        assert part in message, (part, message)


def test_own_vocabulary_with_intermediate_adaptors_is_refused(folder: Path):
    dm = ClfDataModule(str(folder / "data"), tokenizer=str(folder / "teacher"))
    with pytest.raises(TeacherSourceError, match="student reads its own tokens"):
        BaseDistiller(str(folder / "teacher"), dict(OWN), ["AttnMiniLM", "LogitKD"], dm)
    with pytest.raises(TeacherSourceError, match="cache_teacher_outputs"):
        BaseDistiller(str(folder / "teacher"), dict(OWN), ["LogitKD"], dm, cache_teacher_outputs=False)
    with pytest.raises(TeacherSourceError, match="vocab_size"):
        BaseDistiller(str(folder / "teacher"), {**OWN, "vocab_size": 3}, ["LogitKD"], dm)


def test_saved_student_with_another_tokenizer_distils_through_logits(folder: Path):
    tiny_bert(layers=1, hidden=32, heads=2).save_pretrained(folder / "cased")
    AutoTokenizer.from_pretrained(folder / "teacher", do_lower_case=False).save_pretrained(folder / "cased")
    dm = ClfDataModule(str(folder / "data"), tokenizer=str(folder / "teacher"))
    with pytest.raises(TeacherSourceError, match="tokenizers disagree"):
        BaseDistiller(str(folder / "teacher"), str(folder / "cased"), ["AttnMiniLM", "LogitKD"], dm)
    dm = ClfDataModule(str(folder / "data"), tokenizer=str(folder / "teacher"))
    BaseDistiller(str(folder / "teacher"), str(folder / "cased"), ["LogitKD"], dm)
    assert dm.teacher_tokenizer is not None and dm.tokenizer is not dm.teacher_tokenizer
    assert dm.tokenizer.tokenize("Good")[0] != dm.teacher_tokenizer.tokenize("Good")[0]


def test_trained_vocabulary_folder_is_reused_as_the_log_line_says(folder: Path):
    dm = ClfDataModule(str(folder / "data"), tokenizer=str(folder / "teacher"))
    trained = BaseDistiller(str(folder / "teacher"), dict(OWN), ["LogitKD"], dm)
    kept = Path(dm.tokenizer.name_or_path)  # the folder the run logs: "... kept at <folder>"
    assert not (kept / "config.json").exists() and (kept / "tokenizer.json").is_file()  # a tokenizer, no model
    again = ClfDataModule(str(folder / "data"), tokenizer=str(folder / "teacher"))
    spec = {k: v for k, v in OWN.items() if k not in ("vocab_size", "tokenizer")}
    alone = BaseDistiller(str(folder / "teacher"), {**spec, "tokenizer": str(kept)}, [], again, alpha=1.0)
    assert again.tokenizer.get_vocab() == dm.tokenizer.get_vocab()
    assert alone.student.config.vocab_size == trained.student.config.vocab_size
    (folder / "empty").mkdir()
    with pytest.raises(TeacherSourceError, match=r"has none of \['tokenizer.json'"):
        BaseDistiller(str(folder / "teacher"), {**spec, "tokenizer": str(folder / "empty")}, [], again, alpha=1.0)
