"""Targets of every problem type: detecting single-label, multi-label (lists of ids, multi-hot) or regression
(fractional floats) from a label column, and turning the column into what the loss reads (ids, multi-hot floats,
floats), with the checks of every split."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from datasets import ClassLabel, Dataset, DatasetDict, Value
from datasets import Sequence as SequenceFeature

from data.labels import (
    IGNORE_INDEX,
    MULTI_LABEL,
    PROBLEM_TYPES,
    REGRESSION,
    SINGLE_LABEL,
    is_json_list,
    normalise_labels,
    sorted_label_names,
)
from data.sources import DataError, label_kind


@dataclass
class LabelInfo:
    """What :func:`normalise_targets` found in a label column.

    Attributes:
        kinds: The label kind of every split as loaded (:func:`data.sources.label_kind`).
        problem_type: One of :data:`PROBLEM_TYPES`.
        notes: Remarks for the user (e.g. how many examples have an empty list of labels).
    """

    kinds: dict[str, str]
    problem_type: str
    notes: list[str] = field(default_factory=list)


def problem_type_problems(problem_type: object) -> list[str]:
    """Problems with a ``problem_type`` argument (an empty list when it is None or one of :data:`PROBLEM_TYPES`)."""
    if problem_type is None or problem_type in PROBLEM_TYPES:
        return []
    return [
        f"problem_type (--data.problem_type)={problem_type!r}: expected one of {list(PROBLEM_TYPES)}, or null to "
        "detect it from the label column"
    ]


def _is_list(value: object) -> bool:
    return isinstance(value, (list, tuple))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _unlabelled(split: str, values: list) -> bool:
    """A test split whose labels are all ``-1`` (GLUE's unlabelled test sets)."""
    return split == "test" and all(v == -1 for v in values)


def _column_shape(split: str, ds: Dataset, field_name: str, kind: str) -> tuple[str, str | None]:
    """``("list" | "scalar" | "unlabelled", None)``, or ``("mixed", problem)`` when a column mixes lists and values."""
    if kind == "multi":
        return "list", None
    values = ds[field_name]
    if _unlabelled(split, values):
        return "unlabelled", None
    if kind != "other":
        return "scalar", None
    first_list = next((i for i, v in enumerate(values) if _is_list(v)), None)
    first_value = next((i for i, v in enumerate(values) if v is not None and not _is_list(v)), None)
    if first_list is not None and first_value is not None:
        return "mixed", (
            f"split {split!r}: label field {field_name!r} mixes lists (row {first_list}: {values[first_list]!r}) "
            f"and single values (row {first_value}: {values[first_value]!r}); expected one kind throughout: a list "
            "of class ids per example (multi-label), one class per example, or one number (regression)"
        )
    return ("list" if first_list is not None else "scalar"), None


def _parseis_json_lists(ds: Dataset, field_name: str) -> Dataset:
    """A split whose label strings are JSON lists (``"[0, 27]"``, as CSV files hold lists), with the lists parsed."""
    values = [None if v is None else json.loads(v) for v in ds[field_name]]
    return ds.remove_columns(field_name).add_column(field_name, values)


def _fractional(ds: Dataset, field_name: str) -> bool:
    """Whether a float column holds a finite number that is not whole (then it is a regression target)."""
    return any(v is not None and math.isfinite(v) and v != int(v) for v in ds[field_name])


def normalise_targets(
    raw: DatasetDict,
    field_name: str,
    label_names: Sequence[str] | None,
    problem_type: str | None = None,
    num_labels: int | None = None,
) -> LabelInfo:
    """Find the problem type of a label column and bring every split's labels to its canonical form.

    * **single-label classification** (one class per example): integer class ids, by :func:`normalise_labels`.
    * **multi-label classification**: a list per example of class ids (``Sequence(int)``, ``Sequence(ClassLabel)``,
      or lists written as JSON text in a CSV file) or of class names, or a multi-hot vector (lists of 0/1 of one
      length on every row: always when they are floats; integers when the length is ``num_labels`` /
      ``len(label_names)`` or a row repeats a value). All become lists of class ids (``Sequence(int64)``); an
      **empty list means "none of the labels"** (an all-zero target), and a note says how many there are.
    * **regression**: a ``float`` column holding a number that is not whole (unless two or more ``label_names`` or
      ``num_labels`` >= 2 say the column holds classes: then that number is reported as a bad class id), or any
      number column with ``problem_type="regression"``: ``float32`` targets (``num_labels`` 1). A ``float`` column
      of whole numbers stays class ids unless ``problem_type`` says regression.

    Args:
        raw: The splits, as loaded (replaced by their converted copies).
        field_name: The label column.
        label_names: The names given by the user, if any.
        problem_type: One of :data:`PROBLEM_TYPES`, or None to detect it from the column.
        num_labels: The label count given by the user, if any (tells a multi-hot vector from a list of ids).

    Returns:
        The label kinds as loaded, the problem type and notes.

    Raises:
        DataError: Every problem found: a column that mixes lists and single values (in a split or across splits),
            missing or NaN targets, elements that are not class ids, a ``problem_type`` that does not fit the column.
    """
    problems = problem_type_problems(problem_type)
    if problems:
        raise DataError(problems)
    kinds = {s: label_kind(ds.features.get(field_name)) for s, ds in raw.items() if field_name in ds.column_names}
    if problem_type != SINGLE_LABEL:  # lists written as text, e.g. a CSV export of lists
        for split, kind in kinds.items():
            values = [v for v in raw[split][field_name] if v is not None] if kind == "string" else []
            if values and all(is_json_list(v) for v in values):
                raw[split] = _parseis_json_lists(raw[split], field_name)
    shapes: dict[str, str] = {}
    for split in kinds:
        kind = label_kind(raw[split].features.get(field_name))
        shapes[split], problem = _column_shape(split, raw[split], field_name, kind)
        if problem:
            problems.append(problem)
    lists = [s for s, shape in shapes.items() if shape == "list"]
    scalars = [s for s, shape in shapes.items() if shape == "scalar"]
    if lists and scalars:
        problems.append(
            f"label field {field_name!r} holds lists of labels in split(s) {lists} but single values in {scalars}; "
            "expected the same kind in every split (lists of class ids for multi-label data)"
        )
    if problems:
        raise DataError(problems)
    if lists:
        if problem_type in (SINGLE_LABEL, REGRESSION):
            raise DataError(
                [
                    f"problem_type (--data.problem_type)={problem_type!r} but label field {field_name!r} holds lists "
                    f"of labels in split(s) {lists} (several labels per example); expected "
                    f"problem_type={MULTI_LABEL!r} (or null), or set label_field (--data.label_field) to a "
                    "single-label column"
                ]
            )
        notes = _normalise_lists(raw, field_name, lists, label_names, num_labels)
        return LabelInfo(kinds, MULTI_LABEL, notes)
    if problem_type == MULTI_LABEL:
        raise DataError(
            [
                f"problem_type (--data.problem_type)={MULTI_LABEL!r} but label field {field_name!r} holds one value "
                f"per example in split(s) {scalars}; expected a list of class ids (or a multi-hot vector) per example"
            ]
        )
    floats = [s for s in scalars if kinds[s] == "float"]
    classes = (label_names is not None and len(label_names) >= 2) or (num_labels is not None and num_labels >= 2)
    fractional = any(_fractional(raw[s], field_name) for s in floats)
    if problem_type == REGRESSION or (problem_type is None and not classes and fractional):
        _normalise_regression(raw, field_name, scalars)
        return LabelInfo(kinds, REGRESSION)
    normalise_labels(raw, field_name, label_names)
    return LabelInfo(kinds, SINGLE_LABEL)


def _normalise_regression(raw: DatasetDict, field_name: str, splits: list[str]) -> None:
    """Cast regression targets to ``float32``; refuse missing, NaN, infinite and non-numeric ones (every split)."""
    problems = []
    for split in splits:
        for i, v in enumerate(raw[split][field_name]):
            if not _is_number(v) or not math.isfinite(v):
                problems.append(
                    f"split {split!r}, row {i}: regression target {v!r} in {field_name!r}; expected a finite number "
                    "(NaN, infinite and missing targets cannot be learned from: drop or fill those rows)"
                )
                break
    if problems:
        raise DataError(problems)
    for split in splits:
        raw[split] = raw[split].cast_column(field_name, Value("float32"))


def _multi_hot_width(rows: list[list], expected: int | None) -> int | None:
    """The length of the multi-hot vectors a list column holds, or None when it holds lists of class ids."""
    lengths = {len(r) for r in rows}
    if len(lengths) != 1 or 0 in lengths:
        return None
    values = [v for r in rows for v in r]
    if not all(_is_number(v) and v in (0, 1) for v in values):
        return None
    width = lengths.pop()
    floats = any(isinstance(v, float) for v in values)
    repeats = any(len(set(r)) < len(r) for r in rows)
    return width if floats or repeats or width == expected else None


def _normalise_lists(
    raw: DatasetDict,
    field_name: str,
    splits: list[str],
    label_names: Sequence[str] | None,
    num_labels: int | None,
) -> list[str]:
    """Turn every multi-label split into lists of class ids (``Sequence(int64)``); return notes for the user."""
    rows = {s: [list(v) if _is_list(v) else v for v in raw[s][field_name]] for s in splits}
    problems = []
    for split, values in rows.items():
        bad = next((i for i, v in enumerate(values) if v is None), None)
        if bad is not None:
            problems.append(
                f"split {split!r}, row {bad}: label field {field_name!r} is missing (None); expected a list of "
                "class ids (an empty list means none of the labels)"
            )
    if problems:
        raise DataError(problems)
    every = [r for values in rows.values() for r in values]
    expected = num_labels or (len(label_names) if label_names else None)
    width = _multi_hot_width(every, expected)
    names = None
    if width is not None:
        rows = {s: [[j for j, v in enumerate(r) if v == 1] for r in values] for s, values in rows.items()}
        if expected is not None and expected != width:
            raise DataError(
                [
                    f"label field {field_name!r} holds multi-hot vectors of length {width} but "
                    f"{'num_labels' if num_labels else 'label_names'} says {expected} labels; expected them to agree"
                ]
            )
        names = list(label_names) if label_names else [f"LABEL_{i}" for i in range(width)]
    else:
        strings = {v for r in every for v in r if isinstance(v, str)}
        if strings:
            numbers = next((v for r in every for v in r if not isinstance(v, str)), None)
            if numbers is not None:
                raise DataError(
                    [
                        f"label field {field_name!r} mixes class names ({sorted(strings)[0]!r}) and other values "
                        f"({numbers!r}) in its lists; expected one kind throughout (all ids, or all names)"
                    ]
                )
            names = list(label_names) if label_names else sorted_label_names(strings)
            unknown = sorted(strings - set(names))
            if unknown:
                raise DataError(
                    [
                        f"label field {field_name!r} has names {unknown[:10]} in its lists that are not in "
                        f"label_names={names}; expected every label to be one of the names"
                    ]
                )
            index = {n: i for i, n in enumerate(names)}
            rows = {s: [[index[v] for v in r] for r in values] for s, values in rows.items()}
    for split, values in rows.items():
        bad = next(
            ((i, v) for i, r in enumerate(values) for v in r if isinstance(v, bool) or not isinstance(v, int)), None
        )
        if bad is not None:
            problems.append(
                f"split {split!r}, row {bad[0]}: label {bad[1]!r} ({type(bad[1]).__name__}) in a list of "
                f"{field_name!r}; expected integer class ids (or class names, or a multi-hot vector of 0/1)"
            )
    if problems:
        raise DataError(problems)
    feature = SequenceFeature(ClassLabel(names=names)) if names is not None else SequenceFeature(Value("int64"))
    for split, values in rows.items():
        if not (names is None and raw[split].features[field_name] == SequenceFeature(Value("int64"))):
            raw[split] = raw[split].remove_columns(field_name).add_column(field_name, values, feature=feature)
    empty = sum(len(r) == 0 for r in rows.get("train", []))
    if empty:
        return [
            f"label field {field_name!r}: {empty:,} of {len(rows['train']):,} training examples have an empty list "
            "of labels; an empty list means none of the labels (an all-zero target)"
        ]
    return []


def target_feature(problem_type: str, num_labels: int) -> Value | SequenceFeature:
    """The ``datasets`` feature of the ``labels`` of tokenized rows: class ids, multi-hot floats, or floats."""
    if problem_type == MULTI_LABEL:
        return SequenceFeature(Value("float32"), length=num_labels)
    return Value("float32") if problem_type == REGRESSION else Value("int64")


def _multi_hot(batch: dict[str, list], field_name: str, num_labels: int) -> dict[str, list]:
    out = []
    for ids in batch[field_name]:
        row = [0.0] * num_labels
        for i in ids:
            row[i] = 1.0
        out.append(row)
    return {field_name: out}


def to_targets(ds: Dataset, field_name: str, problem_type: str, num_labels: int) -> Dataset:
    """A split with its labels as training targets: multi-hot ``float32`` vectors (multi-label), ``float32``
    (regression), or unchanged class ids (single-label)."""
    if problem_type == MULTI_LABEL:
        features = ds.features.copy()
        features[field_name] = target_feature(problem_type, num_labels)
        return ds.map(
            _multi_hot,
            batched=True,
            features=features,
            fn_kwargs={"field_name": field_name, "num_labels": num_labels},
            desc="Multi-hot targets",
        )
    if problem_type == REGRESSION and ds.features[field_name] != Value("float32"):
        return ds.cast_column(field_name, Value("float32"))
    return ds


def missing_targets(rows: int, problem_type: str, num_labels: int) -> tuple[list, Value | SequenceFeature]:
    """Labels of rows that have none (transfer rows) and their feature: ``-100`` class ids, else NaN targets."""
    if problem_type == MULTI_LABEL:
        return [[math.nan] * num_labels] * rows, target_feature(problem_type, num_labels)
    if problem_type == REGRESSION:
        return [math.nan] * rows, target_feature(problem_type, num_labels)
    return [IGNORE_INDEX] * rows, Value("int64")
