"""Tests for the transfer set of ClfDataModule: unlabelled text, left-out training rows and augmented copies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from jsonargparse import ArgumentParser

import data.sources
from data.augment import Augment
from data.balance import Balance
from data.data_module import IGNORE_INDEX, TEACHER_LOGITS, ClfDataModule
from data.sources import DataError
from tests.tiny import shared_data, tiny_bert

POS = ["a wonderful film", "great acting and a warm story", "i loved every minute", "funny and smart"]
NEG = ["a dull mess", "boring and far too long", "i hated the ending", "clumsy and flat"]
UNLABELED = [f"an unseen review number {i} of a film" for i in range(6)]


@pytest.fixture
def labelled() -> DatasetDict:
    feats = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    train = Dataset.from_dict({"sentence": POS * 2 + NEG * 2, "label": [1] * 8 + [0] * 8}, features=feats)
    val = Dataset.from_dict({"sentence": ["held out good", "held out bad"], "label": [1, 0]}, features=feats)
    test = Dataset.from_dict(
        {"sentence": ["tested good", "tested bad", "tested fine"], "label": [1, 0, 1]}, features=feats
    )
    return DatasetDict(train=train, validation=val, test=test)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def transfer_texts(dm: ClfDataModule) -> list[str]:
    return [t for rows in dm.transfer.values() for t in rows["sentence"]]


# ---------------------------------------------------------------------------------------------- sources
@pytest.mark.parametrize("form", ["folder", "file", "mapping", "datasetdict", "dataset"])
def test_unlabeled_from_every_source_form(tmp_path: Path, labelled: DatasetDict, tok, form: str) -> None:
    rows = [{"text": t} for t in UNLABELED]  # another field name than the labelled data's: renamed to "sentence"
    source: object
    if form == "folder":
        write_jsonl(tmp_path / "tweets" / "train.jsonl", rows)
        source = str(tmp_path / "tweets")
    elif form == "file":
        source = str(write_jsonl(tmp_path / "more.jsonl", rows))
    elif form == "mapping":
        source = {"train": str(write_jsonl(tmp_path / "more.jsonl", rows))}
    elif form == "datasetdict":
        source = DatasetDict(train=Dataset.from_list(rows))
    else:
        source = Dataset.from_list(rows)
    dm = ClfDataModule(labelled, tokenizer=tok, unlabeled=source, test_split="test")
    assert dm.transfer_sources == ["unlabeled"]
    assert dm.transfer["unlabeled"].column_names == ["sentence"]
    assert sorted(transfer_texts(dm)) == sorted(UNLABELED)
    assert dm.train_rows() == {"labeled": 16, "transfer": 6}
    assert dm.describe_train_rows() == "training rows: 16 labelled, 6 transfer (6 unlabeled)"


def test_unlabeled_hub_name_and_subset(monkeypatch: pytest.MonkeyPatch, labelled: DatasetDict, tok) -> None:
    calls = []
    monkeypatch.setattr(data.sources, "require_hub", lambda *args: None)

    def load_dataset(name: str, subset: str | None = None) -> DatasetDict:
        calls.append((name, subset))
        return DatasetDict(
            train=Dataset.from_dict({"sentence": UNLABELED[:3]}), test=Dataset.from_dict({"sentence": ["x"]})
        )

    monkeypatch.setattr(data.sources.datasets, "load_dataset", load_dataset)
    dm = ClfDataModule(labelled, tokenizer=tok, unlabeled="someone/reviews", unlabeled_subset="en")
    assert calls == [("someone/reviews", "en")]
    assert transfer_texts(dm) == UNLABELED[:3]  # its train split, not its test split
    dm = ClfDataModule(labelled, tokenizer=tok, unlabeled="someone/reviews", unlabeled_split="test")
    assert transfer_texts(dm) == ["x"]


def test_label_column_of_unlabeled_is_ignored_and_said(labelled: DatasetDict, tok) -> None:
    source = Dataset.from_dict({"sentence": UNLABELED, "label": [1, 0, 1, 0, 1, 0]})
    dm = ClfDataModule(labelled, tokenizer=tok, unlabeled=source)
    assert dm.transfer["unlabeled"].column_names == ["sentence"]
    assert any("column(s) ['label'] ignored" in note for note in dm.notes), dm.notes
    dm.setup()
    train = dm.tokenized["train"]
    assert train[len(train) - 6 :]["labels"].tolist() == [IGNORE_INDEX] * 6  # its labels are not used


def test_transfer_rows_stay_out_of_validation_and_test(labelled: DatasetDict, tok) -> None:
    source = Dataset.from_dict({"sentence": [*UNLABELED, "held out good", "tested bad"]})  # two evaluation texts
    dm = ClfDataModule(labelled, tokenizer=tok, unlabeled=source, test_split="test")
    assert sorted(transfer_texts(dm)) == sorted(UNLABELED)  # the evaluation texts were dropped ...
    assert any("2 row(s) whose text is also in the validation or test split dropped" in n for n in dm.notes)
    dm.setup()
    assert len(dm.tokenized["validation"]) == 2 and len(dm.tokenized["test"]) == 3  # ... and nothing was added
    assert IGNORE_INDEX not in dm.tokenized["validation"][:]["labels"].tolist()
    assert IGNORE_INDEX not in dm.tokenized["test"][:]["labels"].tolist()
    assert list(dm.raw["validation"]["sentence"]) == ["held out good", "held out bad"]


def test_training_batches_carry_ignore_index_for_transfer_rows(labelled: DatasetDict, tok) -> None:
    dm = ClfDataModule(labelled, tokenizer=tok, unlabeled=Dataset.from_dict({"sentence": UNLABELED}), batch_size=4)
    assert dm.steps_per_epoch() == 6  # (16 + 6) / 4
    labels = torch.cat([b["labels"] for b in dm.train_dataloader()])
    assert len(labels) == 22
    assert (labels == IGNORE_INDEX).sum() == 6
    assert sorted(labels[labels != IGNORE_INDEX].tolist()) == [0] * 8 + [1] * 8
    decoded = {
        tok.decode(b["input_ids"][i], skip_special_tokens=True)
        for b in dm.train_dataloader()
        for i in range(len(b["labels"]))
        if b["labels"][i] == IGNORE_INDEX
    }
    assert decoded == set(UNLABELED)


def test_rest_of_the_training_split_as_unlabeled(labelled: DatasetDict, tok) -> None:
    dm = ClfDataModule(labelled, tokenizer=tok, max_train_samples=5, rest_as_unlabeled=True, seed=3)
    same = ClfDataModule(labelled, tokenizer=tok, max_train_samples=5, seed=3)
    assert list(dm.raw["train"]["sentence"]) == list(
        same.raw["train"]["sentence"]
    )  # the labelled sample does not change
    assert dm.transfer_sources == ["rest_as_unlabeled"]
    assert dm.train_rows() == {"labeled": 5, "transfer": 11}
    assert sorted(list(dm.raw["train"]["sentence"]) + transfer_texts(dm)) == sorted(labelled["train"]["sentence"])
    assert dm.transfer["rest"].column_names == ["sentence"]  # their labels are gone
    assert dm.describe_train_rows() == "training rows: 5 labelled, 11 transfer (11 left out of the labelled sample)"


def test_min_transfer_words_drops_short_transfer_rows_before_the_sample(labelled: DatasetDict, tok) -> None:
    short = ["ok", "so so", "not bad at all"]  # 1, 2 and 4 words; UNLABELED rows have 8
    source = Dataset.from_dict({"sentence": short + UNLABELED})
    dm = ClfDataModule(labelled, tokenizer=tok, unlabeled=source, min_transfer_words=4, max_unlabeled_samples=5)
    assert len(dm.transfer["unlabeled"]) == 5  # the sample is taken from the 7 long enough rows
    assert set(transfer_texts(dm)) <= set(UNLABELED + ["not bad at all"])
    assert any("2 of 9 rows from unlabeled have fewer than 4 words" in note for note in dm.notes), dm.notes
    # the labelled sample's other rows: POS/NEG phrases of 3-5 words; only those of 5 words stay transfer rows
    rest = ClfDataModule(labelled, tokenizer=tok, max_train_samples=5, rest_as_unlabeled=True, min_transfer_words=5)
    assert rest.transfer["rest"]["sentence"] and all(len(t.split()) >= 5 for t in rest.transfer["rest"]["sentence"])
    plain = ClfDataModule(labelled, tokenizer=tok, max_train_samples=5)
    assert list(rest.raw["train"]["sentence"]) == list(plain.raw["train"]["sentence"])  # labelled rows stay as they are


def test_sample_seed_keeps_the_labelled_sample_across_seeds(labelled: DatasetDict, tok) -> None:
    base = ClfDataModule(labelled, tokenizer=tok, max_train_samples=5, seed=1, rest_as_unlabeled=True)
    other = ClfDataModule(labelled, tokenizer=tok, max_train_samples=5, seed=2, sample_seed=1, rest_as_unlabeled=True)
    assert list(other.raw["train"]["sentence"]) == list(base.raw["train"]["sentence"])
    assert list(other.transfer["rest"]["sentence"]) == list(base.transfer["rest"]["sentence"])
    assert other.seed == 2  # the batch order still follows seed
    moved = ClfDataModule(labelled, tokenizer=tok, max_train_samples=5, seed=2)
    assert list(moved.raw["train"]["sentence"]) != list(base.raw["train"]["sentence"])


# ---------------------------------------------------------------------------------------------- teacher labels
def test_store_labels_each_transfer_row_once(tmp_path, monkeypatch, labelled: DatasetDict, tok) -> None:
    monkeypatch.setenv("DISTILLER_CACHE", str(tmp_path))
    teacher = tiny_bert(layers=2, hidden=32, heads=2, num_labels=2, seed=5)
    source = Dataset.from_dict({"sentence": [*UNLABELED, UNLABELED[0]]})  # one row twice
    dm = ClfDataModule(labelled, tokenizer=tok, unlabeled=source)
    dm.add_teacher_logits(teacher, progress=False)
    stats = dm.label_stats["train"]
    assert (stats.rows, stats.labelled, stats.from_store) == (23, 4 + 4 + 6, 0)  # each distinct text once
    train = dm.tokenized["train"]
    with torch.no_grad():
        for i in (0, 16, 22):
            row = train[i]
            alone = teacher(input_ids=row["input_ids"][None]).logits[0]
            torch.testing.assert_close(row[TEACHER_LOGITS], alone, rtol=1e-4, atol=1e-5)
    again = ClfDataModule(labelled, tokenizer=tok, unlabeled=source)  # a second run over the same data
    again.add_teacher_logits(teacher, progress=False)
    assert again.label_stats["train"].labelled == 0 and again.label_stats["train"].from_store == 23
    torch.testing.assert_close(again.tokenized["train"][:][TEACHER_LOGITS], train[:][TEACHER_LOGITS])


def test_augmented_copies_are_transfer_rows_labelled_by_the_teacher(tmp_path, monkeypatch, labelled, tok) -> None:
    monkeypatch.setenv("DISTILLER_CACHE", str(tmp_path))
    teacher = tiny_bert(layers=2, hidden=32, heads=2, num_labels=2, seed=6)
    dm = ClfDataModule(labelled, tokenizer=tok, augment={"copies": 2, "p": 1.0, "k": 3, "min_words": 4}, batch_size=4)
    eligible = sum(len(t.split()) >= 4 for t in labelled["train"]["sentence"])
    assert dm.augment == Augment(copies=2, p=1.0, k=3, min_words=4)
    assert dm.train_rows() == {"labeled": 16, "transfer": 2 * eligible}
    planned = dm.steps_per_epoch()
    dm.setup()
    assert len(dm.tokenized["train"]) == 16  # the copies need the teacher's embeddings: not made yet
    dm.add_teacher_logits(teacher, progress=False)  # makes them, then labels every row
    train = dm.tokenized["train"]
    assert len(train) == 16 + 2 * eligible and dm.steps_per_epoch() == planned
    assert train[16:]["labels"].tolist() == [IGNORE_INDEX] * (2 * eligible)
    copies = dm.transfer["augment"]["sentence"]
    assert all(c not in labelled["train"]["sentence"] for c in copies)  # p = 1: every word with neighbours replaced
    again = ClfDataModule(labelled, tokenizer=tok, augment={"copies": 2, "p": 1.0, "k": 3, "min_words": 4})
    again.add_teacher_logits(teacher, progress=False)
    assert list(again.transfer["augment"]["sentence"]) == list(copies)  # seeded
    assert again.label_stats["train"].labelled == 0


def test_augment_rows_all_copies_the_transfer_rows_too(tmp_path, monkeypatch, labelled, tok) -> None:
    monkeypatch.setenv("DISTILLER_CACHE", str(tmp_path))
    teacher = tiny_bert(layers=2, hidden=32, heads=2, num_labels=2, seed=6)
    unlabeled = Dataset.from_dict({"sentence": UNLABELED})
    augment = {"copies": 2, "p": 1.0, "k": 3, "rows": "all"}
    dm = ClfDataModule(labelled, tokenizer=tok, unlabeled=unlabeled, augment=augment, batch_size=4)
    assert dm.train_rows() == {"labeled": 16, "transfer": 6 + 2 * (16 + 6)}
    planned = dm.steps_per_epoch()
    dm.add_teacher_logits(teacher, progress=False)
    copies = list(dm.transfer["augment"]["sentence"])
    assert len(dm.tokenized["train"]) == 16 + 6 + 2 * 22 and dm.steps_per_epoch() == planned
    sources = list(labelled["train"]["sentence"]) + UNLABELED  # copy 1 of every source row, then copy 2
    assert [len(c.split()) for c in copies] == [len(t.split()) for t in sources] * 2
    assert all(c != t for c, t in zip(copies, sources * 2, strict=True))  # p = 1: words replaced
    labelled_only = ClfDataModule(labelled, tokenizer=tok, unlabeled=unlabeled, augment={**augment, "rows": "labeled"})
    labelled_only.add_teacher_logits(teacher, progress=False)
    only = list(labelled_only.transfer["augment"]["sentence"])
    assert len(only) == 32 and only[:16] == copies[:16]  # copy 1 of the labelled rows: the same choices


# ---------------------------------------------------------------------------------------------- bad input
def test_unlabeled_without_text_field_lists_the_columns(labelled: DatasetDict, tok) -> None:
    with pytest.raises(DataError) as info:
        ClfDataModule(labelled, tokenizer=tok, unlabeled=Dataset.from_dict({"body": ["x"], "id": [1]}))
    message = str(info.value)
    assert "unlabeled='Dataset'" in message and "['body', 'id']" in message and "unlabeled_text_fields" in message


def test_unlabeled_pair_against_single_text(labelled: DatasetDict, tok) -> None:
    pairs = Dataset.from_dict({"premise": ["a"], "hypothesis": ["b"]})
    with pytest.raises(
        DataError,
        match=r"\['premise', 'hypothesis'\] \(a sentence pair\) but the labelled data has "
        r"\['sentence'\] \(a single text\)",
    ):
        ClfDataModule(labelled, tokenizer=tok, unlabeled=pairs)


def test_unlabeled_single_text_for_a_pair_task(tok) -> None:
    pair_data = DatasetDict(
        train=Dataset.from_dict({"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [0, 1]}),
        validation=Dataset.from_dict({"sentence1": ["e"], "sentence2": ["f"], "label": [0]}),
    )
    with pytest.raises(DataError, match=r"\['text'\] \(a single text\) but the labelled data has"):
        ClfDataModule(pair_data, tokenizer=tok, unlabeled=Dataset.from_dict({"text": ["x"]}))
    renamed = Dataset.from_dict({"premise": ["x"], "hypothesis": ["y"]})  # another known pair: renamed
    dm = ClfDataModule(pair_data, tokenizer=tok, unlabeled=renamed)
    assert dm.transfer["unlabeled"].column_names == ["sentence1", "sentence2"]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"unlabeled": Dataset.from_dict({"sentence": []})}, "has no rows: the transfer set is empty"),
        (
            {"unlabeled": Dataset.from_dict({"sentence": ["held out good"]})},
            "the transfer set from ['unlabeled'] is empty",
        ),
        ({"max_train_samples": 16, "rest_as_unlabeled": True}, "the transfer set is empty"),
        (
            {"rest_as_unlabeled": True},
            "rest_as_unlabeled (--data.rest_as_unlabeled)=True but max_train_samples is None",
        ),
        ({"unlabeled_split": "train"}, "but unlabeled (--data.unlabeled) is None"),
        (
            {
                "unlabeled": DatasetDict(
                    a=Dataset.from_dict({"sentence": ["x"]}), b=Dataset.from_dict({"sentence": ["y"]})
                )
            },
            "has splits ['a', 'b'] and none is 'train'",
        ),
        (
            {"unlabeled": Dataset.from_dict({"sentence": ["x"]}), "unlabeled_split": "test"},
            "unlabeled_split='test' not found",
        ),
        ({"unlabeled": Dataset.from_dict({"sentence": ["x", None]})}, "row 1: text field 'sentence' is None"),
        ({"augment": {"min_words": 50}}, "augment.min_words (--data.augment.min_words)=50: no training example"),
        ({"augment": {"rows": "all"}}, "augment.rows (--data.augment.rows)='all' copies the transfer rows too, but"),
        (
            {"augment": {"rows": "every"}},
            "augment.rows (--data.augment.rows)='every': expected one of ['labeled', 'all']",
        ),
        ({"augment": {"copies": 2, "shape": 1}}, "unknown key(s) ['shape']"),
        (
            {"unlabeled": Dataset.from_dict({"sentence": ["two words"]}), "min_transfer_words": 3},
            "min_transfer_words (--data.min_transfer_words)=3: none of the 1 transfer rows from unlabeled has that "
            "many words (the longest has 2)",
        ),
        ({"min_transfer_words": 3}, "min_transfer_words (--data.min_transfer_words)=3 filters unlabelled transfer"),
        ({"unlabeled": Dataset.from_dict({"sentence": ["x y"]}), "min_transfer_words": 0}, "min_transfer_words=0"),
    ],
)
def test_bad_transfer_sets(labelled: DatasetDict, tok, kwargs: dict, expected: str) -> None:
    with pytest.raises(DataError) as info:
        ClfDataModule(labelled, tokenizer=tok, **kwargs)
    assert expected in str(info.value)


def test_augment_values_out_of_range_reported_together(labelled: DatasetDict, tok, tmp_path: Path) -> None:
    bad = Augment(copies=0, p=1.5, k=0, min_words=-1, seed=True)
    with pytest.raises(DataError) as info:
        ClfDataModule(labelled, tokenizer=tok, augment=bad, max_length=0)
    message = str(info.value)
    for part in (
        "augment.copies (--data.augment.copies)=0: expected an integer >= 1",
        "augment.p (--data.augment.p)=1.5: expected a probability in (0, 1]",
        "augment.k (--data.augment.k)=0: expected an integer >= 1",
        "augment.min_words (--data.augment.min_words)=-1: expected an integer >= 0",
        "augment.seed (--data.augment.seed)=True: expected an integer",
        "max_length=0",
    ):
        assert part in message, message
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- configuration
def test_augment_and_unlabeled_parse_from_yaml_and_command_line(tmp_path: Path) -> None:
    parser = ArgumentParser()
    parser.add_class_arguments(ClfDataModule, "data")
    config = tmp_path / "config.yaml"
    config.write_text(
        "data:\n  unlabeled: ../shared/data/tweets_unlabeled\n  augment: {copies: 2, p: 0.5}\n  balance: {power: 1.0}\n"
    )
    parser.add_argument("--config", action="config")
    cfg = parser.parse_args(["--config", str(config), "--data.augment.copies", "4", "--data.augment.seed", "7"])
    assert cfg.data.unlabeled == "../shared/data/tweets_unlabeled"
    augment = parser.instantiate_classes(cfg).data.augment
    assert isinstance(augment, Augment)
    assert (augment.copies, augment.p, augment.k, augment.seed) == (4, 0.5, 10, 7)
    cfg = parser.parse_args(["--config", str(config), "--data.augment", "null", "--data.unlabeled", "null"])
    assert cfg.data.augment is None and cfg.data.unlabeled is None
    cfg = parser.parse_args(["--data.augment.copies", "3"])  # from nothing: the other settings take their defaults
    assert cfg.data.augment.copies == 3 and cfg.data.augment.p == 0.3 and cfg.data.augment.rows == "labeled"
    cfg = parser.parse_args(["--config", str(config), "--data.augment.rows", "all"])
    assert cfg.data.augment.rows == "all" and cfg.data.augment.copies == 2
    cfg = parser.parse_args(["--config", str(config), "--data.balance.max_repeats", "4"])
    assert parser.instantiate_classes(cfg).data.balance == Balance(power=1.0, max_repeats=4)
    assert parser.parse_args(["--config", str(config), "--data.balance", "null"]).data.balance is None
    assert parser.parse_args(["--data.balance.power", "0.7"]).data.balance.max_repeats == 8  # from nothing: defaults
    with pytest.raises(SystemExit):
        parser.parse_args(["--data.augment.copies", "many"])


@pytest.mark.slow
def test_tweet_eval_with_the_unlabelled_tweets(tok) -> None:
    dm = ClfDataModule(
        str(shared_data("tweet_eval_emotion")),
        tokenizer=tok,
        test_split="test",
        unlabeled=str(shared_data("tweets_unlabeled")),
        label_names=["anger", "joy", "optimism", "sadness"],
        max_length=96,
    )
    assert dm.train_rows() == {"labeled": 3257, "transfer": 44507}  # none of the tweets is an evaluation text
    assert dm.notes == [] and dm.steps_per_epoch() == 1493  # no label column to ignore
    evaluation = set(dm.raw["validation"]["text"]) | set(dm.raw["test"]["text"])
    assert evaluation.isdisjoint(dm.transfer["unlabeled"]["text"])
