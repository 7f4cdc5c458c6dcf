"""Tests for data.teacher_copies: teacher labels and the augmented DatasetDict with hard-labelled copies."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from transformers import BertForSequenceClassification, PreTrainedTokenizerBase

from data.augment import neighbour_table
from data.data_module import ClfDataModule, row_digests
from data.teacher_copies import augment_with_teacher, teacher_labels
from tests.tiny import shared_data, tiny_bert

PAIRS = [
    ("The cat sat on the mat", "A cat is sitting"),
    ("it rained all day long in the city", "the weather was dry"),
    ("He plays Football", "he likes sport and plays football every weekend with his friends"),
    ("prices went up", "prices fell"),
    ("she wrote a letter to her mother", "a letter was written"),
]
SINGLES = [
    "a very long sentence that goes on and on about nothing much at all and then keeps going",
    "ok",
    "great acting and a warm story",
    "a dull mess",
    "i hated the ending",
    "boring and far too long",
    "funny and smart",
    "clumsy and flat",
]


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------- helpers


def varied_teacher(num_labels: int, seed: int = 1) -> BertForSequenceClassification:
    """A tiny random BERT whose predictions vary between inputs (a plain random head predicts one class everywhere)."""
    model = tiny_bert(layers=1, hidden=32, heads=2, num_labels=num_labels, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=gen) * 100)
        ids = torch.randint(1000, 8000, (16, 10), generator=gen)
        ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
        pooled = model.bert(input_ids=ids).pooler_output.mean(0)
        model.classifier.bias.copy_(-model.classifier.weight @ pooled)  # centre the logits on typical inputs
    return model.eval()


@torch.no_grad()
def one_by_one(model: BertForSequenceClassification, tokenizer, texts: list, max_length: int = 128) -> torch.Tensor:
    """Reference logits, one unpadded example at a time."""
    rows = []
    for text in texts:
        args = text if isinstance(text, tuple) else (text,)
        enc = tokenizer(*args, truncation=True, max_length=max_length, return_tensors="pt")
        rows.append(model(**enc).logits[0])
    return torch.stack(rows)


def assert_clear_argmax(logits: torch.Tensor) -> None:
    """Guard: no near-ties (so batching noise cannot flip a label) and more than one predicted class."""
    top2 = logits.topk(2, dim=-1).values
    assert (top2[:, 0] - top2[:, 1]).min() > 1e-3
    assert len(set(logits.argmax(-1).tolist())) > 1


def pair_data() -> DatasetDict:
    feats = Features(
        {"sentence1": Value("string"), "sentence2": Value("string"), "label": ClassLabel(names=["no", "yes"])}
    )
    first, second = zip(*PAIRS, strict=True)
    train = Dataset.from_dict({"sentence1": list(first), "sentence2": list(second), "label": [1, 0, 1, 0, 0]}, feats)
    val = Dataset.from_dict({"sentence1": ["a dog barks"], "sentence2": ["a dog is loud"], "label": [1]}, feats)
    return DatasetDict(train=train, validation=val)


def assert_copy_of(copy: str, original: str, table: dict[str, list[str]]) -> int:
    """Every word of ``copy`` is the original word or one of its neighbours; returns the number replaced."""
    new, old = copy.split(), original.split()
    assert len(new) == len(old), (copy, original)
    replaced = 0
    for n, o in zip(new, old, strict=True):
        if n != o:
            assert n in table.get(o.lower(), []), (n, o)
            replaced += 1
    return replaced


# ---------------------------------------------------------------------------------------------- teacher_labels
@pytest.mark.parametrize("batch_size", [3, 128])
def test_teacher_labels_match_one_at_a_time_single(tok: PreTrainedTokenizerBase, batch_size: int) -> None:
    teacher = varied_teacher(num_labels=3, seed=5)
    expected = one_by_one(teacher, tok, SINGLES, max_length=16)
    assert_clear_argmax(expected)
    got = teacher_labels(teacher, tok, SINGLES, max_length=16, batch_size=batch_size)
    assert got == expected.argmax(-1).tolist()


@pytest.mark.parametrize("batch_size", [2, 128])
def test_teacher_labels_match_one_at_a_time_pairs(tok: PreTrainedTokenizerBase, batch_size: int) -> None:
    teacher = varied_teacher(num_labels=3, seed=1)
    expected = one_by_one(teacher, tok, PAIRS)
    assert_clear_argmax(expected)
    assert teacher_labels(teacher, tok, PAIRS, max_length=128, batch_size=batch_size) == expected.argmax(-1).tolist()


def test_teacher_labels_of_no_texts(tok: PreTrainedTokenizerBase) -> None:
    assert teacher_labels(varied_teacher(num_labels=2), tok, [], max_length=32) == []


# ---------------------------------------------------------------------------------------------- augment_with_teacher
def test_augment_single_text(toy_dataset: DatasetDict, tok: PreTrainedTokenizerBase) -> None:
    dm = ClfDataModule(toy_dataset, tokenizer=tok)
    teacher = varied_teacher(num_labels=2)
    out = augment_with_teacher(dm, teacher, copies=2, p=0.5, k=5, seed=0)
    train, n = out["train"], len(dm.raw["train"])
    assert set(out) == {"train", "validation"}
    assert len(train) == 3 * n
    assert train.column_names == ["sentence", "label"]
    assert train.features["label"] == ClassLabel(names=dm.label_names)
    assert out["validation"].features["label"].names == dm.label_names
    # originals first, unchanged, with their own labels
    assert train["sentence"][:n] == dm.raw["train"]["sentence"]
    assert train["label"][:n] == dm.raw["train"]["label"]
    # copies: copy j of row i sits at n * (1 + j) + i and only swaps words for their embedding neighbours
    words = {w.lower() for s in dm.raw["train"]["sentence"] for w in s.split()}
    table = neighbour_table(tok, teacher.get_input_embeddings().weight.detach(), words, k=5)
    copies = train["sentence"][n:]
    replaced = sum(assert_copy_of(c, dm.raw["train"]["sentence"][i % n], table) for i, c in enumerate(copies))
    total = sum(len(c.split()) for c in copies)
    assert 0.3 * total < replaced < 0.7 * total
    # copies are labelled by the teacher
    logits = one_by_one(teacher, tok, copies)
    assert train["label"][n:] == logits.argmax(-1).tolist()
    assert train["label"][n:] != train["label"][:n] * 2  # the teacher, not the original labels
    # validation unchanged
    assert out["validation"]["sentence"] == dm.raw["validation"]["sentence"]
    assert out["validation"]["label"] == dm.raw["validation"]["label"]


def test_augment_p_one_replaces_every_eligible_word(tok: PreTrainedTokenizerBase) -> None:
    dm = ClfDataModule(pair_data(), tokenizer=tok)
    teacher = varied_teacher(num_labels=2)
    out = augment_with_teacher(dm, teacher, copies=1, p=1.0, k=3)
    words = {w.lower() for f in dm.text_fields for s in dm.raw["train"][f] for w in s.split()}
    table = neighbour_table(tok, teacher.get_input_embeddings().weight.detach(), words, k=3)
    n = len(PAIRS)
    for f in dm.text_fields:
        for copy, original in zip(out["train"][f][n:], dm.raw["train"][f], strict=True):
            # every word here has neighbours; the uncased vocabulary is looked up case-insensitively ("The" -> "the")
            for new, old in zip(copy.split(), original.split(), strict=True):
                assert new in table[old.lower()], (new, old)


def test_augment_is_seeded(toy_dataset: DatasetDict, tok: PreTrainedTokenizerBase) -> None:
    dm = ClfDataModule(toy_dataset, tokenizer=tok, max_train_samples=8)
    teacher = varied_teacher(num_labels=2)
    a = augment_with_teacher(dm, teacher, copies=1, p=0.5, k=5, seed=7)["train"]
    b = augment_with_teacher(dm, teacher, copies=1, p=0.5, k=5, seed=7)["train"]
    c = augment_with_teacher(dm, teacher, copies=1, p=0.5, k=5, seed=8)["train"]
    assert a.to_dict() == b.to_dict()
    assert a["sentence"][8:] != c["sentence"][8:]


def test_augment_pairs_keeps_both_fields_and_labels_pairs(tok: PreTrainedTokenizerBase) -> None:
    dm = ClfDataModule(pair_data(), tokenizer=tok)
    assert dm.text_fields == ["sentence1", "sentence2"]
    teacher = varied_teacher(num_labels=2, seed=3)
    out = augment_with_teacher(dm, teacher, copies=3, p=0.5, k=4, seed=1)
    train, n = out["train"], len(PAIRS)
    assert train.column_names == ["sentence1", "sentence2", "label"] and len(train) == 4 * n
    assert train.features["label"].names == ["no", "yes"]
    assert train[:n] == dm.raw["train"][:]
    words = {w.lower() for f in dm.text_fields for s in dm.raw["train"][f] for w in s.split()}
    table = neighbour_table(tok, teacher.get_input_embeddings().weight.detach(), words, k=4)
    replaced = 0
    for i in range(n, 4 * n):
        for f in dm.text_fields:
            replaced += assert_copy_of(train[f][i], dm.raw["train"][f][i % n], table)
    assert replaced > 0
    pairs = list(zip(train["sentence1"][n:], train["sentence2"][n:], strict=True))
    assert train["label"][n:] == one_by_one(teacher, tok, pairs).argmax(-1).tolist()
    assert out["validation"][:] == dm.raw["validation"][:]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"copies": 0, "p": 0.0, "k": 0}, ["copies=0", "p=0.0", "k=0"]),
        ({"copies": -1, "p": 1.5, "k": -2}, ["copies=-1", "p=1.5", "k=-2"]),
        ({"p": 0}, ["p=0"]),
        ({"k": 0}, ["k=0"]),
        ({"min_words": -1, "copies": 0}, ["min_words=-1", "copies=0"]),
    ],
)
def test_invalid_arguments_reported_together(
    toy_dataset: DatasetDict, tok: PreTrainedTokenizerBase, kwargs: dict, named: list[str]
) -> None:
    dm = ClfDataModule(toy_dataset, tokenizer=tok, max_train_samples=2)
    with pytest.raises(ValueError) as info:
        augment_with_teacher(dm, varied_teacher(num_labels=2), **kwargs)
    message = str(info.value)
    assert all(name in message for name in named), message
    for name in {"copies", "p", "k", "min_words"} - set(kwargs):
        assert f"{name}=" not in message


def test_min_words_copies_only_long_examples(toy_dataset: DatasetDict, tok: PreTrainedTokenizerBase) -> None:
    dm = ClfDataModule(toy_dataset, tokenizer=tok)
    out = augment_with_teacher(dm, varied_teacher(num_labels=2), copies=2, p=0.5, k=5, min_words=4)
    originals = dm.raw["train"]["sentence"]
    long = [s for s in originals if len(s.split()) >= 4]
    assert 0 < len(long) < len(originals)
    copies = out["train"]["sentence"][len(originals) :]
    assert len(copies) == 2 * len(long)
    assert [len(c.split()) for c in copies] == [len(s.split()) for s in long] * 2  # copy j of long example i, in order
    with pytest.raises(ValueError, match=r"min_words=100: no training example has that many words"):
        augment_with_teacher(dm, varied_teacher(num_labels=2), min_words=100)


def test_boundary_arguments_are_accepted(toy_dataset: DatasetDict, tok: PreTrainedTokenizerBase) -> None:
    dm = ClfDataModule(toy_dataset, tokenizer=tok, max_train_samples=2)
    out = augment_with_teacher(dm, varied_teacher(num_labels=2), copies=1, p=1.0, k=1)
    assert len(out["train"]) == 4


def test_augmented_data_feeds_back_into_data_module(toy_dataset: DatasetDict, tok: PreTrainedTokenizerBase) -> None:
    dm = ClfDataModule(toy_dataset, tokenizer=tok, max_train_samples=6)
    out = augment_with_teacher(dm, varied_teacher(num_labels=2), copies=2, p=0.5, k=5)
    dm2 = ClfDataModule(out, tokenizer=tok, batch_size=4)
    assert dm2.label_names == dm.label_names and dm2.text_fields == dm.text_fields
    assert len(dm2.raw["train"]) == 18 and len(dm2.raw["validation"]) == len(dm.raw["validation"])
    batch = next(iter(dm2.train_dataloader()))
    assert batch["input_ids"].shape[0] == 4 and set(batch["labels"].tolist()) <= {0, 1}


def test_augmented_copies_reuse_the_labelling_pass_in_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toy_dataset: DatasetDict, tok: PreTrainedTokenizerBase
) -> None:
    monkeypatch.setenv("DISTILLER_CACHE", str(tmp_path))
    dm = ClfDataModule(toy_dataset, tokenizer=tok, max_train_samples=6, max_length=32)
    teacher = varied_teacher(num_labels=2)
    out = augment_with_teacher(dm, teacher, copies=3, p=0.5, k=5)
    adm = ClfDataModule(out, tokenizer=tok, max_length=32)
    adm.setup()
    n = len(dm.raw["train"])
    copies = set(row_digests(adm.tokenized["train"].select(range(n, len(out["train"])))).tolist())
    others = set(row_digests(adm.tokenized["train"].select(range(n))).tolist())
    others |= set(row_digests(adm.tokenized["validation"]).tolist())
    seen: list[int] = []
    forward = type(teacher).forward
    monkeypatch.setattr(
        type(teacher), "forward", lambda self, **kw: seen.append(len(kw["input_ids"])) or forward(self, **kw)
    )
    adm.add_teacher_logits(teacher)
    assert sum(seen) == len(others - copies)  # only rows the labelling pass did not see
    logits = adm.tokenized["train"][n:]["teacher_logits"]
    assert logits.argmax(-1).tolist() == out["train"]["label"][n:]


def test_augment_rte_sample(tok: PreTrainedTokenizerBase) -> None:
    dm = ClfDataModule(
        shared_data("rte"),
        tokenizer=tok,
        label_names=["entailment", "not_entailment"],
        max_train_samples=3,
        max_eval_samples=2,
        max_length=64,
    )
    out = augment_with_teacher(dm, varied_teacher(num_labels=2), copies=1, p=0.3, k=3)
    assert out["train"].column_names == ["sentence1", "sentence2", "label"] and len(out["train"]) == 6
    assert out["train"].features["label"].names == ["entailment", "not_entailment"]
    assert out["train"]["sentence1"][:3] == dm.raw["train"]["sentence1"]
    assert len(out["validation"]) == 2


def test_teacher_with_another_label_count_is_refused_up_front(toy_dataset, minilm_path) -> None:
    dm = ClfDataModule(toy_dataset, tokenizer=minilm_path)
    with pytest.raises(ValueError, match=r"teacher num_labels=3: expected the data's 2 classes"):
        augment_with_teacher(dm, tiny_bert(layers=1, hidden=16, heads=2, num_labels=3), copies=1)


def test_augment_a_csv_with_string_labels(tmp_path: Path, tok: PreTrainedTokenizerBase) -> None:
    """CSV text and labels load as large_string; the augmented set keeps the class names and the original ids."""
    rows = [("great acting and a warm story", "OFF"), ("a dull mess", "NOT"), ("funny and smart", "OFF")]
    (tmp_path / "train.csv").write_text("tweet,is_offensive\n" + "".join(f"{t},{y}\n" for t, y in rows * 2))
    (tmp_path / "validation.csv").write_text("tweet,is_offensive\ni hated the ending,NOT\nclumsy and flat,OFF\n")
    dm = ClfDataModule(str(tmp_path), tokenizer=tok, label_field="is_offensive")
    assert dm.label_kinds == {"train": "string", "validation": "string"} and dm.label_names == ["NOT", "OFF"]
    out = augment_with_teacher(dm, varied_teacher(num_labels=2), copies=1, p=0.5, k=5)
    assert out["train"].features["is_offensive"] == ClassLabel(names=["NOT", "OFF"])
    assert out["train"]["is_offensive"][:6] == [1, 0, 1] * 2
    assert out["validation"]["is_offensive"] == [0, 1]
    dm2 = ClfDataModule(out, tokenizer=tok, label_field="is_offensive")
    assert dm2.label_names == ["NOT", "OFF"] and len(dm2.raw["train"]) == 12
