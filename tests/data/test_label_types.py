"""Label and text columns as ``datasets`` types them, from every loader ``ClfDataModule`` accepts.

``datasets`` reads the strings of CSV, TSV and Parquet files as ``large_string`` and those of JSON as ``string``;
numbers as ``int64``/``float64``; ``ClassLabel`` survives only where the features are stored (in memory, and in
Parquet files written by ``datasets``). The matrix below loads every combination of file format, label form and
single text / text pair through ``ClfDataModule`` and checks the classes, their names and the ids of every row.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, LargeList, Sequence, Value
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from data.data_module import ClfDataModule, label_name_problems, sorted_label_names
from data.sources import DataError, label_kind

#: Classes of the string labels, in the order given as ``label_names`` (deliberately not sorted).
GIVEN = ["positive", "negative", "neutral"]
SORTED = sorted(GIVEN)
TRAIN = ["positive", "negative", "neutral", "negative", "positive", "neutral", "positive"]
VALIDATION = ["neutral", "positive", "negative"]
#: Texts with a comma, quotes and a tab-free apostrophe, so CSV/TSV quoting is exercised.
TEXTS = ['well, "fine" then', "it's bad", "meh", "awful; just awful", "great", "so-so", "loved it"]
FORMATS = ["csv", "tsv", "jsonl", "json", "parquet", "memory", "pandas"]
LABELS = ["int", "string-named", "string-unnamed", "float", "classlabel"]
#: Where a ``ClassLabel`` feature can be stored; the text formats only hold its integer ids.
CLASSLABEL_FORMATS = {"parquet", "memory", "pandas"}
#: The label kind each format and label form load as (``data.sources.label_kind``).
LOADED_KIND = {"int": "int", "string-named": "string", "string-unnamed": "string", "float": "float"}


@pytest.fixture(scope="module")
def tokenizer(minilm_path: str) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(minilm_path)


def columns(names: list[str], pair: bool, offset: int = 0) -> dict[str, list[str]]:
    """Text columns for ``len(names)`` rows: ``tweet``, or ``sentence1``/``sentence2``."""
    texts = [TEXTS[(i + offset) % len(TEXTS)] for i in range(len(names))]
    if not pair:
        return {"tweet": texts}
    return {"sentence1": texts, "sentence2": [f"second {i}, part" for i in range(len(names))]}


def label_values(names: list[str], labels: str) -> list:
    """The label column for rows whose classes are ``names``, in the given label form."""
    ids = [SORTED.index(n) for n in names]
    if labels == "int":
        return ids
    if labels == "float":
        return [float(i) for i in ids]
    if labels == "classlabel":
        return ids
    return list(names)


def write_split(folder: Path, split: str, fmt: str, frame: pd.DataFrame, features: Features | None) -> None:
    path = folder / f"{split}.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif fmt == "json":
        path.write_text(json.dumps(frame.to_dict(orient="records")))
    elif fmt == "parquet":
        if features is None:
            frame.to_parquet(path, index=False)
        else:  # written by datasets, which stores the ClassLabel in the file's metadata
            Dataset.from_pandas(frame, features=features, preserve_index=False).to_parquet(str(path))
    else:
        raise ValueError(fmt)


def build_source(tmp_path: Path, fmt: str, labels: str, pair: bool) -> str | DatasetDict:
    """Train and validation splits of the case, as a folder of files or an in-memory ``DatasetDict``."""
    splits = {}
    for offset, (split, names) in enumerate((("train", TRAIN), ("validation", VALIDATION))):
        splits[split] = {**columns(names, pair, offset), "label": label_values(names, labels)}
    text_names = ["sentence1", "sentence2"] if pair else ["tweet"]
    features = None
    if labels == "classlabel":
        features = Features({**{c: Value("string") for c in text_names}, "label": ClassLabel(names=SORTED)})
    if fmt == "memory":
        return DatasetDict({s: Dataset.from_dict(d, features=features) for s, d in splits.items()})
    if fmt == "pandas":  # pandas 3 strings arrive as large_string
        return DatasetDict(
            {
                split: Dataset.from_pandas(pd.DataFrame(d), features=features, preserve_index=False)
                for split, d in splits.items()
            }
        )
    for split, data in splits.items():
        write_split(tmp_path, split, fmt, pd.DataFrame(data), features)
    return str(tmp_path)


def expected(labels: str) -> tuple[list[str], list[int], list[int]]:
    """Label names, train ids and validation ids the data module should give."""
    if labels == "string-named":
        names = GIVEN
    elif labels in ("string-unnamed", "classlabel"):
        names = SORTED
    else:
        names = [f"LABEL_{i}" for i in range(len(SORTED))]
    order = GIVEN if labels == "string-named" else SORTED
    return names, [order.index(n) for n in TRAIN], [order.index(n) for n in VALIDATION]


CASES = [
    pytest.param(fmt, labels, pair, id=f"{fmt}-{labels}-{'pair' if pair else 'single'}")
    for fmt in FORMATS
    for labels in LABELS
    for pair in (False, True)
    if labels != "classlabel" or fmt in CLASSLABEL_FORMATS
]


@pytest.mark.parametrize(("fmt", "labels", "pair"), CASES)
def test_label_matrix(tmp_path, tokenizer, fmt: str, labels: str, pair: bool) -> None:
    source = build_source(tmp_path, fmt, labels, pair)
    names, train_ids, val_ids = expected(labels)
    dm = ClfDataModule(
        source, tokenizer=tokenizer, label_names=GIVEN if labels == "string-named" else None, batch_size=4
    )
    kind = "class" if labels == "classlabel" else LOADED_KIND[labels]
    assert dm.label_kinds == {"train": kind, "validation": kind}  # the case really exercises that type
    assert dm.text_fields == (["sentence1", "sentence2"] if pair else ["tweet"])
    assert dm.num_labels == 3
    assert dm.label_names == names
    assert dm.id2label == dict(enumerate(names))
    assert list(dm.raw["train"]["label"]) == train_ids
    assert list(dm.raw["validation"]["label"]) == val_ids
    assert list(dm.raw["train"][dm.text_fields[0]]) == [TEXTS[i] for i in range(len(TRAIN))]  # quoting survived
    dm.setup()
    assert [int(v) for v in dm.tokenized["validation"]["labels"]] == val_ids
    batch = next(iter(dm.train_dataloader()))
    assert batch["labels"].dtype == torch.long
    assert bool((batch["token_type_ids"] == 1).any()) == pair  # the second text of a pair is segment 1


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet"])
def test_file_strings_load_as_large_string(tmp_path, fmt: str) -> None:
    """The premise of the matrix: these files give ``large_string`` columns (JSON gives ``string``)."""
    build_source(tmp_path, fmt, "string-unnamed", pair=False)
    from data.sources import load_source

    features = load_source(str(tmp_path))["train"].features
    assert features["tweet"] == Value("large_string") and features["label"] == Value("large_string")


# ---------------------------------------------------------------------------------------------- other label types
@pytest.mark.parametrize("fmt", ["csv", "memory"])
def test_bool_labels_are_false_0_and_true_1(tmp_path, fmt: str) -> None:
    train = {"text": ["a", "b", "c", "d"], "label": [True, False, False, True]}
    val = {"text": ["e", "f"], "label": [False, True]}
    if fmt == "memory":
        source = DatasetDict(train=Dataset.from_dict(train), validation=Dataset.from_dict(val))
    else:
        pd.DataFrame(train).to_csv(tmp_path / "train.csv", index=False)
        pd.DataFrame(val).to_csv(tmp_path / "validation.csv", index=False)
        source = str(tmp_path)
    dm = ClfDataModule(source)
    assert dm.label_kinds["train"] == "bool"
    assert dm.label_names == ["False", "True"]
    assert list(dm.raw["train"]["label"]) == [1, 0, 0, 1]
    named = ClfDataModule(source, label_names=["kept", "flagged"])
    assert named.id2label == {0: "kept", 1: "flagged"} and list(named.raw["validation"]["label"]) == [0, 1]


@pytest.mark.parametrize(("first", "second"), [("OFF", "NOT"), ("1", "0")], ids=["string", "int-becomes-float"])
def test_empty_label_cells_are_reported_as_missing(tmp_path, first: str, second: str) -> None:
    """An empty cell is None; it turns a CSV column of integers into float64, which must still load."""
    (tmp_path / "train.csv").write_text(f"tweet,label\ngood,{first}\nbad,\nok,{second}\n")
    (tmp_path / "validation.csv").write_text(f"tweet,label\nfine,{first}\nmeh,\n")
    with pytest.raises(DataError) as info:
        ClfDataModule(str(tmp_path), label_names=["NOT", "OFF"])
    assert info.value.problems == [
        "split 'train', row 1: label field 'label' is missing (None); expected an integer in 0..1",
        "split 'validation', row 1: label field 'label' is missing (None); expected an integer in 0..1",
    ]


def test_string_labels_outside_label_names_are_listed(tmp_path) -> None:
    (tmp_path / "train.tsv").write_text("tweet\tis_offensive\nyou fool\tOFF\nnice\tNOT\nhm\tOFFENSIVE\n")
    with pytest.raises(DataError) as info:
        ClfDataModule(str(tmp_path / "train.tsv"), label_field="is_offensive", label_names=["NOT", "OFF"])
    assert str(info.value) == (
        "label field 'is_offensive' has values ['OFFENSIVE'] that are not in label_names=['NOT', 'OFF']; "
        "expected every label to be one of the names (the data hold 3 names: list them all in id order, e.g. "
        """--data.label_names '["NOT", "OFF", "OFFENSIVE"]', or set --data.label_names null to take them sorted)"""
    )


def test_num_labels_must_match_the_names_found_in_string_labels() -> None:
    data = DatasetDict(
        train=Dataset.from_dict({"text": ["a", "b"], "label": ["NOT", "OFF"]}),
        validation=Dataset.from_dict({"text": ["c"], "label": ["OFF"]}),
    )
    with pytest.raises(DataError) as info:
        ClfDataModule(data, num_labels=3)
    assert str(info.value) == (
        "num_labels=3 but the data's label field 'label' has 2 classes: ['NOT', 'OFF']; expected them to agree "
        "(give label_names listing every class)"
    )


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_float_labels_are_refused(value: float) -> None:
    data = DatasetDict(
        train=Dataset.from_dict({"text": ["a", "b", "c"], "label": [0.0, 1.0, value]}),
        validation=Dataset.from_dict({"text": ["d"], "label": [1.0]}),
    )
    with pytest.raises(DataError) as info:
        ClfDataModule(data)
    assert str(info.value) == (
        f"split 'train', row 2: label {value!r} in 'label' is not a whole number; expected an integer class id"
    )
    data["validation"] = Dataset.from_dict({"text": ["d"], "label": [0.25]})  # a fraction: regression targets
    with pytest.raises(DataError) as info:
        ClfDataModule(data)
    assert str(info.value) == (
        f"split 'train', row 2: regression target {value!r} in 'label'; expected a finite number (NaN, infinite and "
        "missing targets cannot be learned from: drop or fill those rows)"
    )


def test_fractional_float_labels_are_regression_targets() -> None:
    data = DatasetDict(
        train=Dataset.from_dict({"text": ["a", "b", "c"], "label": [0.0, 1.0, 0.5]}),
        validation=Dataset.from_dict({"text": ["d"], "label": [1.0]}),
    )
    dm = ClfDataModule(data)
    assert (dm.problem_type, dm.num_labels, dm.label_names) == ("regression", 1, ["LABEL_0"])
    assert dm.raw["train"].features["label"] == Value("float32") and dm.raw["train"]["label"] == [0.0, 1.0, 0.5]


def test_digit_string_labels_sort_numerically() -> None:
    assert sorted_label_names({"10", "9", "2"}) == ["2", "9", "10"]
    assert sorted_label_names({"b", "10", "a"}) == ["10", "a", "b"]  # not all integers: plain sort
    data = DatasetDict(
        train=Dataset.from_dict({"text": list("abcd"), "label": ["10", "2", "9", "2"]}),
        validation=Dataset.from_dict({"text": ["e"], "label": ["9"]}),
    )
    dm = ClfDataModule(data)
    assert dm.label_names == ["2", "9", "10"] and list(dm.raw["train"]["label"]) == [2, 0, 1, 0]


@pytest.mark.parametrize(
    "feature", [Sequence(Value("int64")), LargeList(Value("int64")), Sequence(Value("large_string"))], ids=str
)
def test_list_labels_are_multi_label(feature) -> None:
    values = [[0, 1], [1]] if "int" in str(feature) else [["joy", "love"], ["anger"]]
    features = Features({"text": Value("string"), "labels": feature})
    data = DatasetDict(train=Dataset.from_dict({"text": ["a", "b"], "labels": values}, features=features))
    data["validation"] = data["train"]
    dm = ClfDataModule(data)
    assert dm.problem_type == "multi_label_classification"
    if "int" in str(feature):
        assert dm.label_names == ["LABEL_0", "LABEL_1"] and [list(v) for v in dm.raw["train"]["labels"]] == values
    else:  # names: sorted, as for single-label string columns
        assert dm.label_names == ["anger", "joy", "love"]
        assert [list(v) for v in dm.raw["train"]["labels"]] == [[1, 2], [0]]
    with pytest.raises(DataError) as info:
        ClfDataModule(data, problem_type="single_label_classification")
    assert str(info.value) == (
        "problem_type (--data.problem_type)='single_label_classification' but label field 'labels' holds lists of "
        "labels in split(s) ['train', 'validation'] (several labels per example); expected "
        "problem_type='multi_label_classification' (or null), or set label_field (--data.label_field) to a "
        "single-label column"
    )


def test_list_labels_from_a_parquet_file(tmp_path) -> None:
    frame = pd.DataFrame({"text": ["a", "b", "c", "d"], "labels": [[0, 3], [1], [], [2]]})
    frame.to_parquet(tmp_path / "train.parquet", index=False)
    dm = ClfDataModule(str(tmp_path), val_fraction=0.25, num_labels=4)
    assert dm.problem_type == "multi_label_classification" and dm.num_labels == 4
    assert sorted(map(list, [*dm.raw["train"]["labels"], *dm.raw["validation"]["labels"]])) == [[], [0, 3], [1], [2]]


def test_lists_written_as_text_in_a_csv_are_multi_label(tmp_path) -> None:
    (tmp_path / "train.csv").write_text('text,labels\na,"[0, 27]"\nb,[3]\nc,"[]"\nd,[1]\n')
    (tmp_path / "validation.csv").write_text('text,labels\ne,"[2, 1]"\n')
    dm = ClfDataModule(str(tmp_path))
    assert dm.problem_type == "multi_label_classification" and dm.num_labels == 28
    assert [list(v) for v in dm.raw["train"]["labels"]] == [[0, 27], [3], [], [1]]
    assert dm.notes == [
        "label field 'labels': 1 of 4 training examples have an empty list of labels; an empty list means none of "
        "the labels (an all-zero target)"
    ]
    (tmp_path / "validation.csv").unlink()
    (tmp_path / "train.csv").write_text("text,labels\na,[MASK]\nb,[CLS]\nc,[MASK]\n")  # names, not JSON lists
    assert ClfDataModule(str(tmp_path), val_fraction=0.34).label_names == ["[CLS]", "[MASK]"]


def test_label_kind_follows_the_feature_objects() -> None:
    kinds = {
        "class": ClassLabel(names=["a", "b"]),
        "int": Value("uint8"),
        "float": Value("float32"),
        "bool": Value("bool"),
        "string": Value("large_string"),
        "multi": LargeList(Value("int32")),
        "null": Value("null"),
        "other": Value("date32"),
    }
    for kind, feature in kinds.items():
        assert label_kind(feature) == kind, feature
    assert label_kind(Value("string")) == label_kind(Value("string_view")) == "string"


# ---------------------------------------------------------------------------------------------- label_names as typed
@pytest.mark.parametrize(
    ("names", "entries"),
    [
        (["NOT", False], "entry 1 is False (bool)"),
        ([True, False], "entry 0 is True (bool), entry 1 is False (bool)"),
        ([0, "one"], "entry 0 is 0 (int)"),
        (["a", None], "entry 1 is None (NoneType)"),
    ],
    ids=["OFF", "YES-NO", "number", "null"],
)
def test_non_string_label_names_are_refused_with_a_hint_to_quote(toy_dataset, names: list, entries: str) -> None:
    with pytest.raises(DataError) as info:
        ClfDataModule(toy_dataset, label_names=names)
    assert str(info.value) == (
        f"label_names (--data.label_names)={names!r}: {entries}; expected every class name to be a string. YAML "
        "reads unquoted OFF, ON, NO, YES, TRUE, FALSE as booleans, bare numbers as numbers and null as None: quote "
        """every name, e.g. --data.label_names '["NOT", "OFF"]' (in a config file: label_names: ["NOT", "OFF"])"""
    )


def test_label_name_problems_are_collected_with_the_other_arguments() -> None:
    assert label_name_problems(None) == [] and label_name_problems(["NOT", "OFF"]) == []
    assert label_name_problems("NOT") == [
        "label_names (--data.label_names)='NOT': expected a list of class names, in label order"
    ]
    with pytest.raises(DataError) as info:
        ClfDataModule("demo", batch_size=0, label_names=["NOT", "NOT"])
    assert info.value.problems == [
        "batch_size=0: expected a positive integer",
        "label_names (--data.label_names)=['NOT', 'NOT']: ['NOT'] appear more than once; expected one distinct name "
        "per class",
    ]


def test_yaml_booleans_arrive_as_bool_through_the_cli_parser() -> None:
    """What jsonargparse hands the data module for unquoted and quoted names (the type lets bools through)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(ClfDataModule, "data")
    assert parser.parse_args(["--data.label_names=[NOT,OFF]"]).data.label_names == ["NOT", False]
    assert parser.parse_args(['--data.label_names=["NOT", "OFF"]']).data.label_names == ["NOT", "OFF"]
