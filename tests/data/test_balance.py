"""Balancing the transfer set on the teacher's top class (``data.balance``): the repeats, the training split they
give (from a teacher model or from precomputed outputs), the planned steps, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from transformers import PreTrainedTokenizerBase

from data.balance import Balance, balanced_indices, class_repeats, describe_balance
from data.data_module import IGNORE_INDEX, TEACHER_LOGITS, ClfDataModule
from data.sources import DataError
from tests.tiny import tiny_bert

POS = ["a wonderful film", "great acting and a warm story", "i loved every minute", "funny and smart"]
NEG = ["a dull mess", "boring and far too long", "i hated the ending", "clumsy and flat"]
COMMON = [f"an ordinary review number {i}" for i in range(8)]  # the teacher's top class: negative
RARE = "a rare glowing review"  # the teacher's top class: positive


@pytest.fixture
def labelled() -> DatasetDict:
    feats = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    train = Dataset.from_dict({"sentence": POS + NEG, "label": [1] * 4 + [0] * 4}, features=feats)
    val = Dataset.from_dict({"sentence": ["held out good", "held out bad"], "label": [1, 0]}, features=feats)
    return DatasetDict(train=train, validation=val)


def outputs_file(tmp_path: Path) -> Path:
    """Teacher outputs for every row: the labelled rows lean on their label, COMMON negative, RARE positive."""
    rows = [{"text": t, "teacher_logits": [0.0, 2.0]} for t in [*POS, "held out good", RARE]]
    rows += [{"text": t, "teacher_logits": [2.0, 0.0]} for t in [*NEG, "held out bad", *COMMON]]
    path = tmp_path / "outputs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def train_texts(dm: ClfDataModule) -> list[str]:
    return [
        dm.tokenizer.decode(ids, skip_special_tokens=True)
        for ids in dm.tokenized["train"].with_format(None)["input_ids"]
    ]


# ---------------------------------------------------------------------------------------------- the repeats
def test_class_repeats_follow_the_power_and_the_cap() -> None:
    top = [0] * 100 + [1] * 25 + [2] * 4
    assert class_repeats(top, 4, Balance(power=1.0, max_repeats=50)) == ([100, 25, 4, 0], [1, 4, 25, 0])
    assert class_repeats(top, 4, Balance(power=1.0, max_repeats=8)) == ([100, 25, 4, 0], [1, 4, 8, 0])
    assert class_repeats(top, 4, Balance(power=0.5, max_repeats=8)) == ([100, 25, 4, 0], [1, 2, 5, 0])
    assert class_repeats([1, 1, 0], 2, Balance(power=0.5)) == ([1, 2], [1, 1])  # round(1.41) = 1: no repeat


def test_balanced_indices_keep_labelled_rows_once() -> None:
    assert balanced_indices(2, [1, 0, 1], [1, 3]) == [0, 1, 2, 2, 2, 3, 4, 4, 4]
    line = describe_balance([100, 25], [1, 4], ["joy", "optimism"])
    assert (
        line
        == "balance: the teacher's top class over 125 transfer rows: joy 100 x1, optimism 25 x4 -> 200 transfer rows"
    )


# ---------------------------------------------------------------------------------------------- the training split
def test_balance_from_precomputed_outputs(tmp_path: Path, labelled: DatasetDict, tok) -> None:
    unlabeled = Dataset.from_dict({"sentence": [*COMMON, RARE]})
    outputs = str(outputs_file(tmp_path))
    dm = ClfDataModule(
        labelled, tokenizer=tok, unlabeled=unlabeled, teacher_outputs=outputs, balance={"power": 1.0}, batch_size=4
    )
    assert dm.balance == Balance(power=1.0, max_repeats=8)
    dm.setup()
    texts = train_texts(dm)
    assert texts[:8] == [*POS, *NEG]  # the labelled rows first, once each
    assert sorted(texts[8:]) == sorted([*COMMON, *[RARE] * 8])  # 8 common rows x1, the rare one x8
    assert dm.train_rows() == {"labeled": 8, "transfer": 16} and dm.steps_per_epoch() == 6
    assert dm.tokenized["train"][8:]["labels"].tolist() == [IGNORE_INDEX] * 16
    assert any(
        "balance: the teacher's top class over 9 transfer rows: negative 8 x1, positive 1 x8" in n for n in dm.notes
    )
    assert sum(len(batch["labels"]) for batch in dm.train_dataloader()) == 24
    plain = ClfDataModule(labelled, tokenizer=tok, unlabeled=unlabeled, teacher_outputs=outputs, batch_size=4)
    plain.setup()
    assert plain.train_rows() == {"labeled": 8, "transfer": 9} and len(plain.tokenized["train"]) == 17


def splitting_teacher(seed: int, tok: PreTrainedTokenizerBase, texts: list[str], positive: int) -> torch.nn.Module:
    """A tiny random teacher whose classifier bias makes exactly ``positive`` of ``texts`` its positive class."""
    teacher = tiny_bert(layers=2, hidden=32, heads=2, num_labels=2, seed=seed)
    with torch.no_grad():
        logits = torch.cat([teacher(**tok(t, return_tensors="pt")).logits for t in texts])
        margins = (logits[:, 1] - logits[:, 0]).sort().values
        k = len(texts) - positive
        teacher.classifier.bias[1] -= (margins[k - 1] + margins[k]) / 2
    return teacher


def test_balance_from_a_teacher_model_is_not_compounded(tmp_path, monkeypatch, labelled: DatasetDict, tok) -> None:
    monkeypatch.setenv("DISTILLER_CACHE", str(tmp_path))
    texts = [*COMMON, RARE, "one more line", "and another one here"]
    dm = ClfDataModule(labelled, tokenizer=tok, unlabeled=Dataset.from_dict({"sentence": texts}), balance={"power": 1})
    for seed, positive, repeats in ((3, 2, 5), (4, 3, 3)):  # a second teacher relabels the unbalanced rows
        dm.add_teacher_logits(splitting_teacher(seed, tok, texts, positive), progress=False)
        assert dm.label_stats["train"].rows == 8 + 11  # every row once, labelled rows first
        train = dm.tokenized["train"][:]
        top = train[TEACHER_LOGITS][8:].argmax(-1).tolist()
        transfer = train_texts(dm)[8:]
        assert len(transfer) == dm.transfer_rows() == 11 - positive + repeats * positive  # round(9 / 2), round(8 / 3)
        for text, cls in zip(transfer, top, strict=True):  # a row of the smaller class appears 5 (3) times
            assert transfer.count(text) == (repeats if cls == 1 else 1)
        assert sorted(set(transfer)) == sorted(texts)


# ---------------------------------------------------------------------------------------------- refusals and parsing
@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"balance": {}}, "balance (--data.balance)={'power': 0.5, 'max_repeats': 8} repeats transfer rows, but the"),
        ({"balance": {"power": 0}}, "balance.power (--data.balance.power)=0: expected a number in (0, 1]"),
        ({"balance": {"power": 2.0, "max_repeats": 0}}, "balance.max_repeats (--data.balance.max_repeats)=0"),
        ({"balance": {"powr": 1}}, "balance (--data.balance) has unknown key(s) ['powr']"),
        ({"balance": 0.5}, "balance (--data.balance)=0.5: expected null or a mapping of Balance settings"),
    ],
)
def test_bad_balance(labelled: DatasetDict, tok, kwargs: dict, expected: str) -> None:
    with pytest.raises(DataError) as info:
        ClfDataModule(labelled, tokenizer=tok, **kwargs)
    assert expected in str(info.value)


def test_balance_needs_one_class_per_row(tok) -> None:
    multi = DatasetDict(
        train=Dataset.from_dict({"text": ["a b", "c d"], "labels": [[0, 1], [1]]}),
        validation=Dataset.from_dict({"text": ["e"], "labels": [[0]]}),
    )
    with pytest.raises(DataError, match=r"problem_type='multi_label_classification' has none"):
        ClfDataModule(multi, tokenizer=tok, unlabeled=Dataset.from_dict({"text": ["x y"]}), balance={})
