"""Issue 14, done-when 1: distilling from the file ``label.py`` writes gives the same student as distilling from the
live teacher through its cache (weights within 1e-6, same metrics), for a student with its own trained vocabulary
(so the teacher labels in its tokens and the student trains on its own)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from transformers import AutoTokenizer, pipeline

from data.data_module import ClfDataModule
from helper.distiller import BaseDistiller
from helper.labelling import main as label_main
from tests.tiny import tiny_bert

POSITIVE = ["a fine warm day", "what a great film", "lovely acting all round", "i liked it a lot", "so funny"]
NEGATIVE = ["a sad grey day", "what a dull film", "clumsy acting all round", "i hated it a lot", "so boring"]
STUDENT = {"num_layers": 1, "hidden_size": 32, "num_heads": 2, "vocab_size": 120, "tokenizer": "train"}


@pytest.fixture
def setting(tmp_path: Path, minilm_path: str) -> Path:
    """A teacher folder (tiny random BERT, MiniLM tokenizer), labelled data and an unlabelled transfer file."""
    tiny_bert(layers=2, hidden=32, heads=2, seed=3).save_pretrained(tmp_path / "teacher")
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(tmp_path / "teacher")
    data = tmp_path / "data"
    data.mkdir()
    rows = {
        "train": [(t, 1) for t in POSITIVE] * 3 + [(t, 0) for t in NEGATIVE] * 3,
        "validation": [("a fine film", 1), ("a dull day", 0), ("great fun", 1), ("grey and sad", 0)],
    }
    for split, pairs in rows.items():
        (data / f"{split}.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in pairs))
    unlabeled = [f"{a} {b}" for a in ("fine", "dull", "great", "sad") for b in ("day", "film", "acting", "story")]
    (tmp_path / "unlabeled.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in unlabeled))
    return tmp_path


def _fit(dm: ClfDataModule, teacher: str | None) -> tuple[BaseDistiller, dict[str, float]]:
    pl.seed_everything(7)
    model = BaseDistiller(teacher, dict(STUDENT), ["LogitKD"], dm, alpha=0.5, lr=1e-3)
    trainer = pl.Trainer(
        max_steps=6,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        deterministic=True,
    )
    trainer.fit(model, datamodule=dm)
    metrics = trainer.validate(model, datamodule=dm, verbose=False)[0]
    return model, metrics


def _data(root: Path, **kwargs: object) -> ClfDataModule:
    return ClfDataModule(
        str(root / "data"), unlabeled=str(root / "unlabeled.jsonl"), max_length=24, batch_size=8, **kwargs
    )


def test_label_file_gives_the_live_teachers_student(setting: Path, tmp_path: Path):
    live_model, live_metrics = _fit(_data(setting, tokenizer=str(setting / "teacher")), str(setting / "teacher"))

    outputs = tmp_path / "teacher_outputs.jsonl"
    common = ["--teacher", str(setting / "teacher"), "--output", str(outputs), "--max-length", "24"]
    assert label_main([*common, "--dataset", str(setting / "data")]) == 0
    assert label_main([*common, "--dataset", str(setting / "unlabeled.jsonl")]) == 0
    lines = outputs.read_text().splitlines()
    assert len(lines) == len({json.loads(x)["text"] for x in lines})  # each distinct text once

    file_dm = _data(setting, teacher_outputs=str(outputs))
    file_model, file_metrics = _fit(file_dm, None)
    assert file_model.teacher is None

    live, fromfile = live_model.student.state_dict(), file_model.student.state_dict()
    assert live.keys() == fromfile.keys()
    for name, tensor in live.items():
        assert torch.allclose(tensor, fromfile[name], rtol=0, atol=1e-6), name
    assert live_metrics == pytest.approx(file_metrics, abs=1e-6)
    assert live_model.student.config.vocab_size == file_model.student.config.vocab_size <= 120


def test_label_py_resumes_and_repairs_a_half_written_line(setting: Path, tmp_path: Path):
    outputs = tmp_path / "out.jsonl"
    common = ["--teacher", str(setting / "teacher"), "--output", str(outputs), "--dataset", str(setting / "data")]
    assert label_main([*common, "--split", "validation"]) == 0
    first = outputs.read_text()
    assert len(first.splitlines()) == 4
    with outputs.open("a") as handle:  # an interrupted append
        handle.write('{"text": "a half-wri')
    assert label_main(common) == 0
    lines = outputs.read_text().splitlines()
    assert outputs.read_text().startswith(first)  # nothing the first call wrote is lost or rewritten
    assert len(lines) == 4 + len(set(POSITIVE + NEGATIVE))  # validation once, train's distinct texts once
    assert all(len(json.loads(x)["teacher_logits"]) == 2 for x in lines)


def test_label_py_reports_every_bad_flag(setting: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    code = label_main(
        [
            "--teacher", str(tmp_path / "nope"), "--dataset", str(setting / "data"), "--split", "dev",
            "--output", str(tmp_path / "missing" / "out.jsonl"), "--max-length", "0",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    for part in ("--max-length=0", "--output=", "does not exist", "--teacher=", "--split ['dev']"):
        assert part in err, (part, err)
    assert not (tmp_path / "missing").exists()


def test_exported_student_carries_its_own_tokenizer(setting: Path, tmp_path: Path):
    dm = _data(setting, tokenizer=str(setting / "teacher"))
    model, _ = _fit(dm, str(setting / "teacher"))
    model.student.save_pretrained(tmp_path / "student")
    dm.tokenizer.save_pretrained(tmp_path / "student")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "student")
    assert len(tokenizer) == model.student.config.vocab_size <= 120
    classify = pipeline("text-classification", model=str(tmp_path / "student"), device="cpu")
    assert classify("a fine film")[0]["label"] in {"LABEL_0", "LABEL_1", "0", "1", "negative", "positive"}


def test_language_model_label_distribution_in_the_same_format(tmp_path: Path):
    """The README's recipe for an LLM teacher: normalised log-probabilities of the label words, as teacher_logits."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from data.teacher_outputs import output_row
    from data.vocab import train_wordpiece
    from helper.labelling import label_word_logits

    tokenizer = train_wordpiece([*POSITIVE, *NEGATIVE, "label positive negative"], 120)
    torch.manual_seed(0)
    llm = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2)).eval()
    logits = label_word_logits(llm, tokenizer, POSITIVE[:2], ["negative", "positive"], prompt="{text} label")
    assert logits.shape == (2, 2) and torch.allclose(logits.exp().sum(-1), torch.ones(2))
    context = tokenizer("a fine warm day label", add_special_tokens=False)["input_ids"]
    word = tokenizer(" positive", add_special_tokens=False)["input_ids"]
    logp = llm(input_ids=torch.tensor([context + word])).logits[0].log_softmax(-1)
    by_hand = sum(logp[len(context) + j - 1, t] for j, t in enumerate(word))
    context_neg = tokenizer(" negative", add_special_tokens=False)["input_ids"]
    logp_neg = llm(input_ids=torch.tensor([context + context_neg])).logits[0].log_softmax(-1)
    by_hand_neg = sum(logp_neg[len(context) + j - 1, t] for j, t in enumerate(context_neg))
    expected = torch.stack([by_hand_neg, by_hand]).log_softmax(-1)
    assert torch.allclose(logits[0], expected.detach(), atol=1e-5)
    lines = [json.dumps(output_row([t], v.tolist())) for t, v in zip(POSITIVE[:2], logits, strict=True)]
    outputs = tmp_path / "llm.jsonl"
    outputs.write_text("\n".join(lines) + "\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps({"text": t, "label": 1}) + "\n" for t in POSITIVE[:2]))
    dm = ClfDataModule(str(data), teacher_outputs=str(outputs), val_fraction=0.5)
    assert dm.outputs.active and len(dm.outputs.table) == 2
