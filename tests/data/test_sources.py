"""Tests for data.sources: every source form, field detection and clear errors for bad sources."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from datasets import Dataset, DatasetDict

from common.hub import HubUnavailableError
from data.sources import (
    DEMO_DIR,
    DataError,
    class_label_names,
    detect_label_field,
    detect_text_fields,
    load_source,
)
from tests.tiny import shared_data

ROWS = [
    {"sentence": "a wonderful film", "label": 1},
    {"sentence": "a dull mess", "label": 0},
    {"sentence": "funny and smart", "label": 1},
]
VAL_ROWS = [{"sentence": "boring", "label": 0}, {"sentence": "great", "label": 1}]


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Write ``rows`` in the format given by the file ending."""
    suffix = path.suffix
    if suffix in (".jsonl",):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif suffix == ".json":
        path.write_text(json.dumps(rows))
    elif suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    elif suffix == ".tsv":
        pd.DataFrame(rows).to_csv(path, index=False, sep="\t")
    elif suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(path, index=False)
    else:
        raise AssertionError(suffix)
    return path


# ---------------------------------------------------------------------------------------------- source forms
def test_datasetdict_is_returned_unchanged(toy_dataset: DatasetDict) -> None:
    assert load_source(toy_dataset) is toy_dataset


def test_single_dataset_becomes_train() -> None:
    ds = Dataset.from_list(ROWS)
    out = load_source(ds)
    assert list(out) == ["train"]
    assert out["train"]["sentence"][:] == [r["sentence"] for r in ROWS]


def test_demo_set_has_train_and_validation() -> None:
    out = load_source("demo")
    assert set(out) == {"train", "validation"}
    n_train = sum(1 for line in (DEMO_DIR / "train.jsonl").read_text().splitlines() if line.strip())
    n_val = sum(1 for line in (DEMO_DIR / "validation.jsonl").read_text().splitlines() if line.strip())
    assert (len(out["train"]), len(out["validation"])) == (n_train, n_val)
    assert {"sentence", "label"} <= set(out["train"].column_names)


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".tsv", ".parquet"])
def test_split_to_file_mapping_in_every_format(tmp_path: Path, suffix: str) -> None:
    files = {
        "train": write_rows(tmp_path / f"tr{suffix}", ROWS),
        "validation": write_rows(tmp_path / f"va{suffix}", VAL_ROWS),
    }
    out = load_source({k: str(v) for k, v in files.items()})
    assert set(out) == {"train", "validation"}
    assert list(out["train"]["sentence"]) == [r["sentence"] for r in ROWS]
    assert [int(v) for v in out["train"]["label"]] == [r["label"] for r in ROWS]
    assert list(out["validation"]["sentence"]) == [r["sentence"] for r in VAL_ROWS]


def test_tsv_is_split_on_tabs(tmp_path: Path) -> None:
    rows = [{"sentence": "commas, inside, text", "label": 1}, {"sentence": "x", "label": 0}]
    out = load_source({"train": str(write_rows(tmp_path / "t.tsv", rows))})
    assert out["train"].column_names == ["sentence", "label"]
    assert out["train"]["sentence"][0] == "commas, inside, text"


def test_folder_with_split_files_and_dev_alias(tmp_path: Path) -> None:
    write_rows(tmp_path / "train.jsonl", ROWS)
    write_rows(tmp_path / "dev.jsonl", VAL_ROWS)
    write_rows(tmp_path / "test.jsonl", VAL_ROWS[:1])
    out = load_source(tmp_path)
    assert set(out) == {"train", "validation", "test"}
    assert len(out["validation"]) == len(VAL_ROWS)
    assert len(out["test"]) == 1
    assert len(load_source(str(tmp_path))["train"]) == len(ROWS)  # a str path works too


def test_real_shared_folder() -> None:
    out = load_source(shared_data("rte"))
    assert set(out) == {"train", "validation"}
    assert (len(out["train"]), len(out["validation"])) == (2490, 277)


def test_single_file_is_used_as_train(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "all.csv", ROWS)
    out = load_source(str(path))
    assert list(out) == ["train"]
    assert len(out["train"]) == len(ROWS)


# ---------------------------------------------------------------------------------------------- bad sources
@pytest.mark.parametrize(
    ("name", "content"),
    [("broken.jsonl", b'{"sentence": "ok", "label": 1}\n{this is not json\n'), ("broken.parquet", b"PAR1 garbage")],
)
def test_corrupt_file_names_the_path(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_source({"train": str(path)})
    assert str(path) in str(info.value)


def test_corrupt_file_in_folder_names_the_path(tmp_path: Path) -> None:
    write_rows(tmp_path / "train.jsonl", ROWS)
    (tmp_path / "validation.jsonl").write_text("[[[ not json")
    with pytest.raises(DataError, match="validation.jsonl"):
        load_source(tmp_path)


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="does not exist") as info:
        load_source(str(missing))
    assert str(missing) in str(info.value)
    with pytest.raises(DataError, match="does not exist"):
        load_source("nope/train.jsonl")  # a relative file name is never taken for a Hub name


def test_missing_files_in_mapping_are_listed_together(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_source({"train": str(tmp_path / "a.jsonl"), "validation": str(tmp_path / "b.jsonl")})
    assert len(info.value.problems) == 2
    assert "'train'" in str(info.value) and str(tmp_path / "a.jsonl") in str(info.value)
    assert "'validation'" in str(info.value) and str(tmp_path / "b.jsonl") in str(info.value)


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("a wonderful film\t1\n")
    for source in (str(path), {"train": str(path)}):
        with pytest.raises(DataError, match=r"unsupported ending '\.txt'") as info:
            load_source(source)
        assert str(path) in str(info.value)
        assert ".jsonl" in str(info.value)  # names what is accepted


def test_mixed_formats_are_refused(tmp_path: Path) -> None:
    files = {
        "train": str(write_rows(tmp_path / "a.jsonl", ROWS)),
        "validation": str(write_rows(tmp_path / "b.csv", ROWS)),
    }
    with pytest.raises(DataError, match="mix formats"):
        load_source(files)


def test_folder_without_data_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(DataError, match="holds no data files"):
        load_source(tmp_path)


def test_wrong_source_type() -> None:
    with pytest.raises(DataError, match="int"):
        load_source(42)  # type: ignore[arg-type]


def test_hub_name_offline_fails_fast_with_local_alternatives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(HubUnavailableError) as info:
        load_source("glue", subset="sst2")
    assert time.perf_counter() - start < 5
    msg = str(info.value)
    assert "glue/sst2" in msg
    assert "HF_HUB_OFFLINE" in msg
    assert "demo" in msg and "../shared/data/sst2" in msg


def test_typo_under_an_existing_local_folder_is_a_missing_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mydata").mkdir()
    with pytest.raises(DataError, match="does not exist"):
        load_source("mydata/trian")


# ---------------------------------------------------------------------------------------------- field detection
@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (["sentence", "label", "idx"], ["sentence"]),
        (["idx", "text", "label"], ["text"]),
        (["tweet", "label"], ["tweet"]),
        (["question1", "question2", "label"], ["question1", "question2"]),
        (["premise", "hypothesis", "label"], ["premise", "hypothesis"]),
        (["question", "sentence", "label"], ["question", "sentence"]),  # QNLI: the pair wins over 'sentence'
        (["sentence2", "sentence1", "label"], ["sentence1", "sentence2"]),  # pair order is fixed, not column order
    ],
)
def test_detect_text_fields(columns: list[str], expected: list[str]) -> None:
    assert detect_text_fields(columns) == expected


def test_detect_pair_fields_on_real_rte() -> None:
    columns = load_source(shared_data("rte"))["train"].column_names
    assert detect_text_fields(columns) == ["sentence1", "sentence2"]
    assert detect_label_field(columns) == "label"


def test_text_field_overrides() -> None:
    assert detect_text_fields(["body", "title", "label"], "body") == ["body"]
    assert detect_text_fields(["body", "title", "label"], ("title", "body")) == ["title", "body"]
    assert detect_text_fields(["sentence", "other"], "other") == ["other"]  # an override beats detection


def test_text_field_override_errors_list_existing_columns() -> None:
    with pytest.raises(DataError) as info:
        detect_text_fields(["body", "label"], ["body", "headline"])
    msg = str(info.value)
    assert "'headline'" in msg and "['body', 'label']" in msg
    with pytest.raises(DataError):
        detect_text_fields(["a", "b", "c"], ["a", "b", "c"])  # at most a pair
    with pytest.raises(DataError):
        detect_text_fields(["a", "b"], [])


def test_no_text_field_lists_existing_columns() -> None:
    with pytest.raises(DataError) as info:
        detect_text_fields(["body", "label"])
    assert "['body', 'label']" in str(info.value)
    assert "text_fields" in str(info.value)


def test_label_field_detection_and_override() -> None:
    assert detect_label_field(["text", "labels"]) == "labels"
    assert detect_label_field(["text", "category", "label"]) == "label"  # 'label' is tried first
    assert detect_label_field(["text", "y"], "y") == "y"
    with pytest.raises(DataError) as info:
        detect_label_field(["text", "y"], "gold")
    assert "'gold'" in str(info.value) and "['text', 'y']" in str(info.value)
    with pytest.raises(DataError, match="label_field") as info:
        detect_label_field(["text", "y"])
    assert "['text', 'y']" in str(info.value)


def test_class_label_names(toy_dataset: DatasetDict) -> None:
    assert class_label_names(toy_dataset, "label") == ["negative", "positive"]
    plain = DatasetDict(train=Dataset.from_list(ROWS))
    assert class_label_names(plain, "label") is None


def test_data_error_lists_every_problem() -> None:
    one = DataError(["only one"])
    assert str(one) == "only one"
    many = DataError(["first", "second"])
    assert many.problems == ["first", "second"]
    assert str(many).startswith("2 problems")
    assert "- first" in str(many) and "- second" in str(many)
    assert isinstance(many, ValueError)
