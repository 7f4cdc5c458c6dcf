"""Precomputed teacher outputs (issue 14): reading, joining, conversion, and every bad input reported at once."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from data.data_module import TEACHER_LOGITS, ClfDataModule
from data.sources import DataError
from data.teacher_outputs import to_logits, vector_problem
from data.vocab import student_vocabulary, train_wordpiece

TRAIN = [("good film", 1), ("bad film", 0), ("fine day", 1), ("sad day", 0)]
VALIDATION = [("good day", 1), ("bad day", 0)]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for split, rows in (("train", TRAIN), ("validation", VALIDATION)):
        _write(
            folder / f"{split}.jsonl", [{"id": f"{split}-{i}", "text": t, "label": y} for i, (t, y) in enumerate(rows)]
        )
    return folder


def _outputs(texts: list[str], **extra: dict) -> list[dict]:
    return [{"text": t, "teacher_logits": [0.5, -0.5]} for t in texts]


def test_file_joined_by_text_reaches_the_batches_and_probs_go_to_log_space(data: Path, tmp_path: Path):
    rows = _outputs([t for t, _ in TRAIN])
    rows += [{"text": "good day", "teacher_probs": [0.25, 0.75]}, {"text": "bad day", "teacher_probs": [1.0, 0.0]}]
    dm = ClfDataModule(str(data), tokenizer="minilm", teacher_outputs=str(_write(tmp_path / "t.jsonl", rows)))
    dm.setup()
    val = dm.tokenized["validation"].with_format(None)[TEACHER_LOGITS]
    assert torch.allclose(torch.tensor(val[0]).softmax(-1), torch.tensor([0.25, 0.75]))
    assert val[1][1] == pytest.approx(math.log(1e-12), rel=1e-5)  # p = 0 is clamped, not -inf
    batch = next(iter(dm.train_dataloader()))
    assert batch[TEACHER_LOGITS].shape == (len(batch["labels"]), 2)
    # temperature keeps its meaning: softmax(log p / T) is p^(1/T) renormalised
    p = torch.tensor([0.2, 0.8])
    assert torch.allclose((to_logits([p.tolist()], "probs")[0] / 2).softmax(-1), p.sqrt() / p.sqrt().sum())


def test_join_by_id_and_outputs_column_inside_the_data(data: Path, tmp_path: Path):
    rows = [{"id": f"train-{i}", "teacher_logits": [float(i), 0.0]} for i in range(len(TRAIN))]
    rows += [{"id": f"validation-{i}", "teacher_logits": [0.0, 1.0]} for i in range(len(VALIDATION))]
    outputs = _write(tmp_path / "ids.jsonl", rows)
    dm = ClfDataModule(str(data), tokenizer="minilm", teacher_outputs=str(outputs), teacher_outputs_key="id")
    assert dm.outputs.logits(dm.raw["train"], ["text"]) == [[float(i), 0.0] for i in range(len(TRAIN))]
    inside = tmp_path / "inside"
    inside.mkdir()
    _write(inside / "train.jsonl", [{"text": t, "label": y, "teacher_probs": [0.5, 0.5]} for t, y in TRAIN])
    dm = ClfDataModule(str(inside), tokenizer="minilm")
    assert dm.outputs.active and len(dm.outputs.table) == len(TRAIN)


def test_every_bad_output_is_reported_at_once(data: Path, tmp_path: Path):
    lines = [
        json.dumps({"text": "good film", "teacher_logits": [1.0, 2.0, 3.0]}),  # wrong length
        '{"text": "bad film", "teacher_logits": [NaN, 1.0]}',  # non-finite
        json.dumps({"text": "fine day", "teacher_probs": [-0.5, 1.5]}),  # negative
        json.dumps({"text": "sad day", "teacher_probs": [0.3, 0.3]}),  # does not sum to 1
        json.dumps({"text": "good day", "label": 1}),  # no outputs field
        "not json",
    ]
    outputs = tmp_path / "bad.jsonl"
    outputs.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        ClfDataModule(str(data), tokenizer="minilm", teacher_outputs=str(outputs))
    message = str(err.value)
    for part in (
        "--data.teacher_outputs",
        "has 3 values; expected 2",
        "non-finite",
        "negative probabilities",
        "probabilities sum to 0.6",
        "expected exactly one outputs field",
        "not valid JSON",
        "split 'train': 4 of 4 rows have no teacher outputs",
        "split 'validation': 2 of 2 rows have no teacher outputs",
    ):
        assert part in message, (part, message)


def test_ids_that_do_not_join_and_a_missing_file(data: Path, tmp_path: Path):
    outputs = _write(tmp_path / "ids.jsonl", [{"id": "train-0", "teacher_logits": [0.0, 1.0]}])
    with pytest.raises(DataError) as err:
        ClfDataModule(
            str(data), tokenizer="minilm", teacher_outputs=[str(outputs), str(tmp_path / "none.jsonl")],
            teacher_outputs_key="id",
        )  # fmt: skip
    message = str(err.value)
    assert "id(s) not found in the teacher outputs files" in message and "'train-1'" in message
    assert "none.jsonl" in message and "file not found" in message


def test_vector_problem():
    assert vector_problem([0.1, 0.9], "probs", 2) is None
    assert vector_problem([0.1, 0.9005], "probs", 2) is None  # within 1e-3
    assert "sum to" in vector_problem([0.1, 0.902], "probs", 2)
    assert "not a list of numbers" in vector_problem("0.5", "logits", 2)
    assert "non-finite" in vector_problem([float("inf"), 0.0], "logits", 2)


def test_vocabulary_is_trained_once_and_reused(tmp_path: Path):
    texts = [f"word{i % 7} thing{i % 5} and more" for i in range(50)]
    first = student_vocabulary(texts, 120)
    again = student_vocabulary(list(reversed(texts)), 120)
    assert first.name_or_path == again.name_or_path  # the cached one: the same texts in any order
    assert first.get_vocab() == again.get_vocab() and len(first) <= 120
    assert first.convert_ids_to_tokens(first("word1 thing2")["input_ids"])[0] == "[CLS]"
    with pytest.raises(ValueError, match="vocab_size=5"):
        train_wordpiece(texts, 5)


def test_multi_label_probabilities_are_per_label_and_become_log_odds():
    from data.labels import MULTI_LABEL, REGRESSION

    assert vector_problem([0.9, 0.8, 0.0], "probs", 3, MULTI_LABEL) is None  # any sum: one probability per label
    assert "outside [0, 1]" in vector_problem([1.2, 0.1, 0.0], "probs", 3, MULTI_LABEL)
    assert "sum to" in vector_problem([0.9, 0.8, 0.0], "probs", 3)  # single-label: one distribution
    assert "regression" in vector_problem([0.4], "probs", 1, REGRESSION)
    p = torch.tensor([0.9, 0.25, 0.5])
    logits = to_logits([p.tolist()], "probs", MULTI_LABEL)[0]
    assert torch.allclose(logits.sigmoid(), p, atol=1e-6) and torch.allclose(logits[2], torch.tensor(0.0))
    assert torch.isfinite(to_logits([[0.0, 1.0]], "probs", MULTI_LABEL)).all()  # clamped, never infinite
