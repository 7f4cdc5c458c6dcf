"""Tests for data.data_module: labels, validation, tokenized batches, length-grouped sampling, tokenizer checks."""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset, DatasetDict
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from data.data_module import (
    ClfDataModule,
    LengthGroupedSampler,
    check_tokenizers,
    model_fingerprint,
    row_digests,
    teacher_logits,
)
from data.sources import DataError
from tests.tiny import shared_data, tiny_bert

EMOTIONS = ["anger", "joy", "optimism", "sadness"]


@pytest.fixture(scope="module")
def tokenizer(minilm_path: str) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(minilm_path)


def make_data(train_labels: list, val_labels: list | None = None, texts: list | None = None) -> DatasetDict:
    """A DatasetDict with a plain (non-ClassLabel) label column."""
    texts = texts or [f"example number {i}" for i in range(len(train_labels))]
    splits = {"train": Dataset.from_dict({"sentence": texts, "label": train_labels})}
    if val_labels is not None:
        splits["validation"] = Dataset.from_dict(
            {"sentence": [f"held out {i}" for i in range(len(val_labels))], "label": val_labels}
        )
    return DatasetDict(splits)


def padding_fraction(lengths: list[int], order: list[int], batch_size: int) -> float:
    """Mean share of padding tokens over the batches formed by consecutive ``batch_size`` indices of ``order``."""
    fractions = []
    for start in range(0, len(order), batch_size):
        batch = [lengths[i] for i in order[start : start + batch_size]]
        fractions.append(1 - sum(batch) / (len(batch) * max(batch)))
    return sum(fractions) / len(fractions)


# ---------------------------------------------------------------------------------------------- label sets
def test_label_names_from_class_label(toy_dataset: DatasetDict) -> None:
    dm = ClfDataModule(toy_dataset)
    assert dm.num_labels == 2
    assert dm.label_names == ["negative", "positive"]
    assert dm.id2label == {0: "negative", 1: "positive"}
    assert dm.label2id == {"negative": 0, "positive": 1}
    assert dm.text_fields == ["sentence"] and dm.label_field == "label"


def test_num_labels_from_data_on_tweet_eval() -> None:
    dm = ClfDataModule(shared_data("tweet_eval_emotion"), max_train_samples=16, max_eval_samples=8)
    assert dm.num_labels == 4  # counted on the full training split, before the subset is taken
    assert dm.label_names == ["LABEL_0", "LABEL_1", "LABEL_2", "LABEL_3"]
    assert dm.text_fields == ["text"]
    assert (len(dm.raw["train"]), len(dm.raw["validation"])) == (16, 8)
    assert "test" not in dm.raw  # only loaded on request


def test_label_names_override_and_test_split() -> None:
    dm = ClfDataModule(shared_data("tweet_eval_emotion"), label_names=EMOTIONS, test_split="test", max_train_samples=8)
    assert dm.label_names == EMOTIONS
    assert dm.id2label[3] == "sadness"
    assert len(dm.raw["test"]) == 1421


def test_label_names_and_num_labels_must_agree(toy_dataset: DatasetDict) -> None:
    with pytest.raises(DataError, match="num_labels=3"):
        ClfDataModule(toy_dataset, num_labels=3)
    dm = ClfDataModule(make_data([0, 1, 0, 1], [0, 1]), num_labels=3)  # more classes than seen is allowed
    assert dm.label_names == ["LABEL_0", "LABEL_1", "LABEL_2"]


def test_string_labels_are_encoded() -> None:
    data = make_data(["pos", "neg", "pos", "neg"], ["neg", "pos"])
    dm = ClfDataModule(data)
    assert dm.label_names == ["neg", "pos"]
    assert list(dm.raw["train"]["label"]) == [1, 0, 1, 0]
    assert list(dm.raw["validation"]["label"]) == [0, 1]


def test_string_labels_follow_the_given_label_names() -> None:
    data = make_data(["pos", "neg", "pos", "neg"], ["neg", "pos"])
    dm = ClfDataModule(data, label_names=["pos", "neg"])
    encoded = list(dm.raw["train"]["label"])
    assert [dm.label_names[i] for i in encoded] == ["pos", "neg", "pos", "neg"]


def test_validation_split_is_created_from_train_with_a_seed() -> None:
    texts = [f"sentence {i}" for i in range(40)]
    data = DatasetDict(train=Dataset.from_dict({"sentence": texts, "label": [i % 2 for i in range(40)]}))

    def split(seed: int) -> tuple[list[str], list[str]]:
        dm = ClfDataModule(data, val_fraction=0.25, seed=seed)
        return list(dm.raw["train"]["sentence"]), list(dm.raw["validation"]["sentence"])

    train, val = split(1)
    assert len(val) == 10 and len(train) == 30
    assert sorted(train + val) == sorted(texts)  # disjoint and complete
    assert split(1) == (train, val)
    assert set(split(2)[1]) != set(val)


def test_dev_file_is_used_as_validation(tmp_path) -> None:
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": 0}\n{"text": "b", "label": 1}\n')
    (tmp_path / "dev.jsonl").write_text('{"text": "c", "label": 1}\n')
    dm = ClfDataModule(str(tmp_path))
    assert list(dm.raw["validation"]["text"]) == ["c"]
    assert len(dm.raw["train"]) == 2


def test_missing_train_split_and_val_from_single_example() -> None:
    with pytest.raises(DataError, match="train_split='training'"):
        ClfDataModule(make_data([0, 1]), train_split="training")
    with pytest.raises(DataError, match="test_split='test'"):
        ClfDataModule(make_data([0, 1], [0, 1]), test_split="test")
    with pytest.raises(DataError, match="cannot hold out"):
        ClfDataModule(make_data([1]))


# ---------------------------------------------------------------------------------------------- bad labels
@pytest.mark.parametrize(
    ("train", "val", "expected"),
    [
        ([0, 1, 0, 1], [0, 1, 2], ["'validation'", "row 2", "'label'", "label 2", "0..1"]),
        ([0, 1, -1, 1], [0, 1], ["'train'", "row 2", "'label'", "label -1", "0..1"]),
        ([0, 1, None, 1], [0, 1], ["'train'", "row 2", "'label'", "None"]),
    ],
    ids=["out-of-range", "negative", "missing"],
)
def test_bad_labels_name_split_row_field_value(train: list, val: list, expected: list[str]) -> None:
    with pytest.raises(DataError) as info:
        ClfDataModule(make_data(train, val), label_names=["neg", "pos"])
    for part in expected:
        assert part in str(info.value), (part, str(info.value))


def test_missing_label_message_states_the_expected_range() -> None:
    with pytest.raises(DataError, match=r"0\.\.1"):
        ClfDataModule(make_data([0, 1, None, 1], [0, 1]), label_names=["neg", "pos"])


def test_float_label_names_the_offending_row_and_value() -> None:
    with pytest.raises(DataError) as info:
        ClfDataModule(make_data([0, 1, 0.5, 1], [0, 1]), label_names=["neg", "pos"])
    assert "row 2" in str(info.value) and "0.5" in str(info.value)


@pytest.mark.parametrize("labels", [[0, 1, math.nan, 1], [None, None]], ids=["float", "none"])  # 0.5: regression
def test_non_integer_label_column_never_states_an_empty_range(labels: list) -> None:
    with pytest.raises(DataError) as info:
        ClfDataModule(make_data(labels))
    assert "0..-1" not in str(info.value)


def test_empty_split() -> None:
    with pytest.raises(DataError, match="split 'validation' is empty"):
        ClfDataModule(make_data([0, 1, 0], []))


def test_unlabelled_test_split_is_allowed() -> None:
    data = make_data([0, 1, 0, 1], [0, 1])
    data["test"] = Dataset.from_dict({"sentence": ["x", "y"], "label": [-1, -1]})
    dm = ClfDataModule(data, test_split="test")
    assert list(dm.raw["test"]["label"]) == [-1, -1]


def test_several_problems_are_reported_together() -> None:
    data = make_data([0, 1, 7, 1], [0, None], texts=["ok", None, "ok", "ok"])
    with pytest.raises(DataError) as info:
        ClfDataModule(data, label_names=["neg", "pos"])
    problems = info.value.problems
    assert len(problems) == 3, problems
    assert str(info.value).startswith("3 problems")
    assert any("'train'" in p and "label 7" in p for p in problems)
    assert any("'validation'" in p and "row 1" in p and "None" in p for p in problems)
    assert any("'train'" in p and "row 1" in p and "text field 'sentence'" in p for p in problems)


def test_missing_column_in_a_split() -> None:
    data = make_data([0, 1, 0, 1])
    data["validation"] = Dataset.from_dict({"text": ["x"], "label": [0]})
    with pytest.raises(DataError, match=r"split 'validation' lacks column\(s\) \['sentence'\]") as info:
        ClfDataModule(data)
    assert "['text', 'label']" in str(info.value)


def test_bad_constructor_arguments_are_listed_together(toy_dataset: DatasetDict) -> None:
    with pytest.raises(DataError) as info:
        ClfDataModule(toy_dataset, batch_size=0, val_fraction=1.5, max_length=-3, eval_batch_size=True)
    msg = str(info.value)
    assert len(info.value.problems) == 4
    for part in ("batch_size=0", "val_fraction=1.5", "max_length=-3", "eval_batch_size=True"):
        assert part in msg


def test_tokenizer_required_for_batches(toy_dataset: DatasetDict) -> None:
    dm = ClfDataModule(toy_dataset)
    with pytest.raises(ValueError, match="tokenizer=None"):
        dm.setup()


def test_tokenizer_by_alias(toy_dataset: DatasetDict, tokenizer: PreTrainedTokenizerBase) -> None:
    dm = ClfDataModule(toy_dataset, tokenizer="MiniLM")
    assert dm.tokenizer("a dull mess")["input_ids"] == tokenizer("a dull mess")["input_ids"]


# ---------------------------------------------------------------------------------------------- tokenization
def test_truncation_dynamic_padding_and_labels(tokenizer: PreTrainedTokenizerBase) -> None:
    texts = ["word " * 40, "short", "a bit longer text", "mid length here ok", "x", "y z"]
    data = DatasetDict(
        train=Dataset.from_dict({"sentence": texts, "label": [0, 1, 0, 1, 1, 0]}),
        validation=Dataset.from_dict({"sentence": texts[:3], "label": [0, 1, 0]}),
    )
    dm = ClfDataModule(data, tokenizer=tokenizer, max_length=8, batch_size=2, group_by_length=False)
    lengths = dm.lengths("train")
    assert max(lengths) == 8 and lengths[0] == 8  # the long text is truncated to max_length
    assert lengths[1] == 3  # [CLS] short [SEP]
    seen = 0
    for batch in dm.train_dataloader():
        assert set(batch) >= {"input_ids", "attention_mask", "labels"}
        real = batch["attention_mask"].sum(1)
        assert batch["input_ids"].shape[1] == int(real.max())  # padded to the batch's longest example only
        assert batch["labels"].dtype == torch.long and batch["labels"].shape == (len(real),)
        seen += len(real)
    assert seen == len(texts)


def test_sentence_pairs_get_token_type_ids(tokenizer: PreTrainedTokenizerBase) -> None:
    dm = ClfDataModule(shared_data("rte"), tokenizer=tokenizer, max_length=32, max_train_samples=8, batch_size=4)
    assert dm.text_fields == ["sentence1", "sentence2"]
    batch = next(iter(dm.train_dataloader()))
    assert "token_type_ids" in batch
    assert batch["input_ids"].shape[1] <= 32
    for ids, types, mask in zip(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], strict=True):
        n = int(mask.sum())
        assert (ids[:n] == tokenizer.sep_token_id).sum() == 2  # [CLS] a [SEP] b [SEP]
        assert types[0] == 0 and types[n - 1] == 1
    texts = dm.texts("train", limit=2)
    assert all(isinstance(t, tuple) and len(t) == 2 for t in texts)


def test_other_field_names_and_string_labels_reach_the_batches(tokenizer: PreTrainedTokenizerBase) -> None:
    data = DatasetDict(
        train=Dataset.from_dict({"review": ["good", "bad", "fine", "awful"], "category": ["up", "down", "up", "down"]})
    )
    dm = ClfDataModule(data, tokenizer=tokenizer, val_fraction=0.5, batch_size=2, seed=0)
    assert (dm.text_fields, dm.label_field, dm.label_names) == (["review"], "category", ["down", "up"])
    batch = next(iter(dm.train_dataloader()))
    assert batch["labels"].dtype == torch.long
    words = [tokenizer.decode(ids, skip_special_tokens=True) for ids in batch["input_ids"]]
    assert [int(v) for v in batch["labels"]] == [0 if w in ("bad", "awful") else 1 for w in words]


def test_train_subset_is_seeded(toy_dataset: DatasetDict) -> None:
    def subset(seed: int) -> list[str]:
        return list(ClfDataModule(toy_dataset, max_train_samples=6, seed=seed).raw["train"]["sentence"])

    assert subset(0) == subset(0)
    assert subset(0) != subset(1)


def test_max_eval_samples_takes_the_first_examples(toy_dataset: DatasetDict) -> None:
    dm = ClfDataModule(toy_dataset, max_eval_samples=3, max_train_samples=5, batch_size=2)
    assert list(dm.raw["validation"]["sentence"]) == list(toy_dataset["validation"]["sentence"][:3])
    assert len(dm.raw["train"]) == 5
    assert dm.steps_per_epoch() == 3
    assert dm.eval_batch_size == 4


def test_texts(toy_dataset: DatasetDict) -> None:
    dm = ClfDataModule(toy_dataset)
    assert dm.texts() == list(toy_dataset["validation"]["sentence"])
    assert dm.texts("train", limit=2) == list(toy_dataset["train"]["sentence"][:2])
    assert len(dm.texts(limit=1000)) == len(toy_dataset["validation"])


def test_loaders_use_length_grouping(tokenizer: PreTrainedTokenizerBase) -> None:
    texts = ["word " * n for n in range(1, 21)]
    data = DatasetDict(train=Dataset.from_dict({"sentence": texts, "label": [i % 2 for i in range(20)]}))
    data["validation"] = data["train"]
    dm = ClfDataModule(data, tokenizer=tokenizer, batch_size=4, eval_batch_size=5)
    val_lengths = [int(b["attention_mask"].sum(1).max()) for b in dm.val_dataloader()]
    assert val_lengths == sorted(val_lengths, reverse=True)  # longest batch first
    train = dm.train_dataloader()
    assert isinstance(train.sampler, LengthGroupedSampler)
    assert sorted(i for i in train.sampler) == list(range(20))
    with pytest.raises(DataError, match="test_split"):
        dm.test_dataloader()


# ---------------------------------------------------------------------------------------------- sampler
@pytest.fixture(scope="module")
def lengths() -> list[int]:
    g = torch.Generator().manual_seed(0)
    return torch.randint(5, 100, (400,), generator=g).tolist()


def test_sampler_is_a_permutation(lengths: list[int]) -> None:
    for shuffle in (True, False):
        order = list(LengthGroupedSampler(lengths, batch_size=8, shuffle=shuffle, group_batches=5))
        assert len(order) == len(lengths)
        assert sorted(order) == list(range(len(lengths)))
    assert len(LengthGroupedSampler(lengths, 8)) == len(lengths)


def test_sampler_batches_are_length_homogeneous(lengths: list[int]) -> None:
    bs = 8
    grouped = padding_fraction(lengths, list(LengthGroupedSampler(lengths, bs, seed=3)), bs)
    random_order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(3)).tolist()
    baseline = padding_fraction(lengths, random_order, bs)
    assert grouped < 0.5 * baseline, (grouped, baseline)


def test_sampler_is_deterministic_per_seed_and_epoch(lengths: list[int]) -> None:
    a = LengthGroupedSampler(lengths, 8, seed=1)
    b = LengthGroupedSampler(lengths, 8, seed=1)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    second = list(a)
    assert second != first
    b.set_epoch(1)
    assert list(b) == second
    assert list(LengthGroupedSampler(lengths, 8, seed=2)) != first


def test_eval_order_is_sorted_longest_first(lengths: list[int]) -> None:
    order = list(LengthGroupedSampler(lengths, 8, shuffle=False))
    ordered = [lengths[i] for i in order]
    assert ordered == sorted(lengths, reverse=True)
    sampler = LengthGroupedSampler(lengths, 8, shuffle=False)
    sampler.set_epoch(3)
    assert list(sampler) == order


def test_sampler_batches_stay_aligned_when_size_does_not_divide() -> None:
    lengths = list(range(10))  # one chunk; ideal batches (longest first) {9,8,7,6}, {5,4,3,2}, {1,0}
    ideal = [{9, 8, 7, 6}, {5, 4, 3, 2}, {1, 0}]
    for seed in range(8):
        order = list(LengthGroupedSampler(lengths, batch_size=4, seed=seed))
        batches = [set(order[i : i + 4]) for i in range(0, 10, 4)]
        assert all(b in ideal for b in batches), (seed, batches)


@pytest.mark.parametrize("n", [64, 70])
def test_distributed_shares_rebuild_the_single_process_batches(lengths: list[int], n: int) -> None:
    """2 processes of batch 4 see, step by step, the examples of 1 process with batch 8 (grouping kept)."""
    lengths = (lengths * 10)[:n]
    single = LengthGroupedSampler(lengths, 8, shuffle=True, seed=3)
    ranks = [LengthGroupedSampler(lengths, 4, shuffle=True, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    for sampler in (single, *ranks):
        sampler.set_epoch(1)
    one = list(single)
    shares = [list(r) for r in ranks]
    assert [len(s) for s in shares] == [len(r) for r in ranks]
    steps = math.ceil(n / 8)
    assert all(math.ceil(len(s) / 4) == steps for s in shares)  # every process runs the same number of steps
    for step in range(steps):
        together = shares[0][4 * step : 4 * step + 4] + shares[1][4 * step : 4 * step + 4]
        expected = one[8 * step : 8 * step + 8]
        assert set(together) >= set(expected) and len(set(together) - set(expected)) == 0


def test_lightning_keeps_the_sampler_under_ddp() -> None:
    from torch.utils.data import DistributedSampler

    assert isinstance(LengthGroupedSampler([3, 4, 5], 2), DistributedSampler)


def test_check_tokenizers_names_first_differing_example(tokenizer: PreTrainedTokenizerBase, minilm_path: str) -> None:
    cased = AutoTokenizer.from_pretrained(minilm_path, do_lower_case=False)
    texts = ["all lower case", ("pair", "also lower"), "Now Capitalised", "Second Difference"]
    with pytest.raises(ValueError) as info:
        check_tokenizers(tokenizer, cased, texts)
    msg = str(info.value)
    assert "example 2" in msg and "'Now Capitalised'" in msg
    assert "Second Difference" not in msg
    assert "[UNK]" in msg  # the student's tokens are shown


def test_check_tokenizers_with_a_different_vocabulary(tokenizer: PreTrainedTokenizerBase) -> None:
    backend = Tokenizer(WordLevel({"[UNK]": 0, "[PAD]": 1, "hello": 2, "world": 3}, unk_token="[UNK]"))
    backend.pre_tokenizer = Whitespace()
    word_level = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]")
    check_tokenizers(word_level, word_level, ["hello world"])
    with pytest.raises(ValueError, match="example 0 'hello world'"):
        check_tokenizers(tokenizer, word_level, ["hello world"])


# ---------------------------------------------------------------------------------------------- teacher-logit store
def counting_teacher(monkeypatch: pytest.MonkeyPatch, teacher: torch.nn.Module) -> list[int]:
    """Patch the teacher's class so every forward records its batch size; returns the record."""
    seen: list[int] = []
    forward = type(teacher).forward

    def counted(self, *args, **kwargs):
        seen.append(len(kwargs["input_ids"]))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(type(teacher), "forward", counted)
    return seen


def test_row_digests_depend_on_tokens_only(tokenizer: PreTrainedTokenizerBase) -> None:
    rows = Dataset.from_dict(
        {
            "input_ids": [[101, 7, 102], [101, 7, 102], [101, 8, 102], [101, 7, 102]],
            "token_type_ids": [[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 1, 1]],
            "labels": [0, 1, 0, 0],
        }
    )
    keys = row_digests(rows).tolist()
    assert keys[0] == keys[1]  # same tokens, other label
    assert len({keys[0], keys[2], keys[3]}) == 3  # another token / other segment ids
    assert row_digests(rows.select([3, 0])).tolist() == [keys[3], keys[0]]  # position does not matter
    assert all(0 <= k < 2**63 for k in keys)


def test_teacher_store_runs_each_distinct_row_once(tmp_path, monkeypatch, tokenizer) -> None:
    monkeypatch.setenv("DISTILLER_CACHE", str(tmp_path))
    teacher = tiny_bert(layers=2, hidden=32, heads=2, num_labels=3, seed=4).train()
    texts = ["a good film", "a bad film", "a good film", "the end", "it was long and dull"]
    enc = tokenizer(texts, truncation=True, max_length=16)
    rows = Dataset.from_dict({k: enc[k] for k in ("input_ids", "token_type_ids")})
    seen = counting_teacher(monkeypatch, teacher)
    first = teacher_logits(teacher, rows, batch_size=2)
    assert sum(seen) == 4  # the repeated text once
    torch.testing.assert_close(first[0], first[2])
    with torch.no_grad():
        for i, text in enumerate(texts):
            alone = teacher.eval()(**tokenizer(text, return_tensors="pt")).logits[0]
            torch.testing.assert_close(first[i], alone, rtol=1e-4, atol=1e-5)
    teacher.train()
    seen.clear()
    more = tokenizer(["the end", "a new line", "a bad film"], truncation=True, max_length=16)
    second = teacher_logits(teacher, Dataset.from_dict(dict(more)), batch_size=2)
    assert sum(seen) == 1  # only the unseen row ran
    torch.testing.assert_close(second[[0, 2]], first[[3, 1]])
    seen.clear()
    torch.testing.assert_close(teacher_logits(teacher, rows), first)  # everything stored: the teacher does not run
    assert seen == []
    key = model_fingerprint(teacher)  # one store file (and the lock that guards its updates), no temporary left
    assert sorted(p.name for p in (tmp_path / "teacher_logits").iterdir()) == [f"{key}.pt", f"{key}.pt.lock"]
    assert teacher.training  # a training-mode teacher is restored after the eval-mode pass


def test_teacher_store_of_a_changed_teacher_is_separate(tmp_path, monkeypatch, tokenizer) -> None:
    monkeypatch.setenv("DISTILLER_CACHE", str(tmp_path))
    teacher = tiny_bert(layers=2, hidden=32, heads=2, num_labels=2, seed=4)
    rows = Dataset.from_dict(dict(tokenizer(["one line", "another line"])))
    before = teacher_logits(teacher, rows)
    with torch.no_grad():
        teacher.classifier.bias.add_(1.0)
    after = teacher_logits(teacher, rows)
    torch.testing.assert_close(after, before + 1.0)
    assert len(list((tmp_path / "teacher_logits").glob("*.pt"))) == 2
