"""Label columns: names and ids, what each ``datasets`` feature type means, and the checks of every split."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from datasets import ClassLabel, Dataset, DatasetDict, Value
from datasets import Sequence as SequenceFeature

from data.sources import DataError, class_label_names, label_kind

#: ``problem_type`` values, as Hugging Face model configs name them (``config.problem_type``).
SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
REGRESSION = "regression"
PROBLEM_TYPES = (SINGLE_LABEL, MULTI_LABEL, REGRESSION)
#: Label of a transfer row (no label) in a single-label batch: the ignore index of ``cross_entropy``. Multi-label and
#: regression rows without a label hold NaN targets instead (a real target is never NaN: the data are checked).
IGNORE_INDEX = -100

#: What a class name may arrive as from the command line or a YAML config (checked by :func:`label_name_problems`).
LabelNames = list[str | bool | int | float | None]


def sorted_label_names(values: set[str]) -> list[str]:
    """Class names found in a string label column, in id order: sorted, numerically when all are integers."""
    if values and all(v.strip().lstrip("+-").isdigit() for v in values):
        return sorted(values, key=lambda v: (int(v), v))
    return sorted(values)


def _json_list(text: str) -> bool:
    """Whether a string is a JSON list (``"[0, 27]"``), as lists of labels are written in CSV files."""
    if not (text.startswith("[") and text.endswith("]")):
        return False
    try:
        return isinstance(json.loads(text), list)
    except ValueError:
        return False


def label_name_problems(label_names: object) -> list[str]:
    """Problems with ``label_names`` as it arrived (an empty list when it is fine).

    YAML, which reads the command line and the config files, turns unquoted ``OFF``, ``ON``, ``NO``, ``YES``,
    ``TRUE`` and ``FALSE`` (any case) into booleans, bare numbers into numbers and ``null`` into None, so
    ``--data.label_names '[NOT,OFF]'`` arrives as ``['NOT', False]``. What the user typed cannot be recovered from
    ``False`` (``OFF``, ``off``, ``No``, ...), so such a list is refused with a hint to quote the names.

    Args:
        label_names: The ``label_names`` argument of :class:`ClfDataModule`.

    Returns:
        One message per problem: not a list, entries that are not strings, repeated names.
    """
    if label_names is None:
        return []
    if isinstance(label_names, str) or not isinstance(label_names, Sequence):
        return [f"label_names (--data.label_names)={label_names!r}: expected a list of class names, in label order"]
    problems = []
    bad = [(i, v) for i, v in enumerate(label_names) if not isinstance(v, str)]
    if bad:
        entries = ", ".join(f"entry {i} is {v!r} ({type(v).__name__})" for i, v in bad)
        problems.append(
            f"label_names (--data.label_names)={list(label_names)!r}: {entries}; expected every class name to be a "
            "string. YAML reads unquoted OFF, ON, NO, YES, TRUE, FALSE as booleans, bare numbers as numbers and null "
            """as None: quote every name, e.g. --data.label_names '["NOT", "OFF"]' (in a config file: """
            """label_names: ["NOT", "OFF"])"""
        )
    repeated = sorted({str(v) for v in label_names if list(label_names).count(v) > 1})
    if repeated:
        problems.append(
            f"label_names (--data.label_names)={list(label_names)!r}: {repeated} appear more than once; "
            "expected one distinct name per class"
        )
    return problems


def normalise_labels(raw: DatasetDict, field: str, label_names: Sequence[str] | None) -> dict[str, str]:
    """Bring every split's labels to integer class ids, following the ``datasets`` feature type of each split.

    * ``ClassLabel``, ``int*``/``uint*``: kept (the ids are checked by :meth:`_validate`).
    * ``string``/``large_string``/``string_view`` (JSON gives ``string``; CSV, TSV and Parquet ``large_string``):
      names become ids, in ``label_names`` order when given, else sorted (numerically when every name is an
      integer, so ``"10"`` follows ``"9"``); the names of every split are pooled.
    * ``bool``: ``False`` -> 0, ``True`` -> 1 (named ``label_names``, else ``"False"``/``"True"``).
    * ``float*``: whole numbers become ``int64``; any other number is refused.
    * ``List``/``LargeList``/``Sequence`` (several labels per example): refused; :func:`normalise_targets` handles
      them as multi-label data.

    The splits of ``raw`` are replaced by their cast copies.

    Args:
        raw: The splits, as loaded.
        field: The label column.
        label_names: The names given by the user, if any.

    Returns:
        The label kind of every split as loaded (:func:`data.sources.label_kind`), e.g. for error reports and tests.

    Raises:
        DataError: Every problem found (names missing from ``label_names``, fractional labels, list labels).
    """
    kinds = {s: label_kind(ds.features.get(field)) for s, ds in raw.items() if field in ds.column_names}
    string_splits = [s for s, kind in kinds.items() if kind == "string"]
    values = {v for s in string_splits for v in raw[s][field] if v is not None}
    multi = [s for s, kind in kinds.items() if kind == "multi"]
    if multi:
        lists = f"lists ({raw[multi[0]].features[field]})"
    elif values and all(_json_list(v) for v in values):  # lists written as text, e.g. a CSV export of lists
        example = min(values, key=lambda v: (-v.count(","), len(v)))  # a short one with several labels
        multi, lists = string_splits, f"lists written as text, e.g. {example!r},"
    if multi:
        raise DataError(
            [
                f"label field {field!r} holds {lists} in split(s) {multi}: several labels per example, but "
                f"problem_type (--data.problem_type) is {SINGLE_LABEL!r}; expected one class per example (an integer "
                f"id or a name), or problem_type {MULTI_LABEL!r} (or null, to detect it)"
            ]
        )
    problems = []
    names = None
    if string_splits:
        names = list(label_names) if label_names else sorted_label_names(values)
        unknown = sorted(values - set(names))
        if unknown:
            every = f" '{json.dumps(sorted_label_names(values))}'" if len(values) <= 20 else " [...]"
            problems.append(
                f"label field {field!r} has values {unknown[:10]}{' ...' if len(unknown) > 10 else ''} that are "
                f"not in label_names={names}; expected every label to be one of the names (the data hold "
                f"{len(values)} names: list them all in id order, e.g. --data.label_names{every}, or set "
                "--data.label_names null to take them sorted)"
            )
    casts: dict[str, ClassLabel | Value] = {}
    for split, kind in kinds.items():
        if kind == "string":
            casts[split] = ClassLabel(names=names)
        elif kind == "bool":
            casts[split] = ClassLabel(names=list(label_names) if label_names else ["False", "True"])
        elif kind == "float":
            problems.extend(fractional_label_problems(raw[split], split, field))
            casts[split] = Value("int64")
    if problems:
        raise DataError(problems)
    for split, cast in casts.items():
        raw[split] = raw[split].cast_column(field, cast)
    return kinds


def fractional_label_problems(ds: Dataset, split: str, field: str) -> list[str]:
    """The first label of a float column that is not a whole number, as a problem (none: an empty list)."""
    for i, v in enumerate(ds[field]):
        if v is not None and (not math.isfinite(v) or v != int(v)):
            return [
                f"split {split!r}, row {i}: label {v!r} in {field!r} is not a whole number; "
                "expected an integer class id"
            ]
    return []


def resolve_label_names(
    raw: DatasetDict,
    field: str,
    label_names: Sequence[str] | None,
    num_labels: int | None,
    problem_type: str = SINGLE_LABEL,
) -> list[str]:
    """The class names: ``label_names``, a ``ClassLabel`` feature's names, else ``LABEL_i`` up to the largest id.

    Multi-label data take the largest id of any list; regression has one output, named after ``label_names`` or
    ``LABEL_0`` (as Hugging Face names it).
    """
    if problem_type == REGRESSION:
        names = list(label_names) if label_names else ["LABEL_0"]
        problems = label_count_problems(num_labels or len(names), REGRESSION, field)
        if problems:
            raise DataError(problems)
        return names
    names = label_names or class_label_names(raw, field)
    if names is not None:
        if num_labels is not None and num_labels != len(names):
            where = "label_names" if label_names else f"the data's label field {field!r}"
            raise DataError(
                [
                    f"num_labels={num_labels} but {where} has {len(names)} classes: {list(names)}; "
                    "expected them to agree (give label_names listing every class)"
                ]
            )
        return list(names)
    if num_labels is None:
        values = raw["train"][field]
        if problem_type == MULTI_LABEL:
            values = [v for ids in values for v in ids]
        values = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
        num_labels = (max(values) + 1) if values else 0
    return [f"LABEL_{i}" for i in range(num_labels)]


def expected_ids(num_labels: int) -> str:
    """What a valid label is, for messages."""
    if num_labels == 0:
        return "an integer class id (no class found in the data: set label_names or num_labels)"
    return f"an integer in 0..{num_labels - 1}"


def label_problems(
    split: str, labels: list[Any], field: str, num_labels: int, problem_type: str = SINGLE_LABEL
) -> list[str]:
    """The first bad label of a split (missing, not an integer id, out of range), as a problem; else none.

    Multi-label splits: the first class id outside ``0..num_labels-1`` (:func:`multi_label_problems`); regression
    targets were checked by :func:`normalise_targets`.
    """
    if problem_type == MULTI_LABEL:
        return multi_label_problems(split, labels, field, num_labels)
    if problem_type == REGRESSION:
        return []
    for i, value in enumerate(labels):
        if value is None:
            return [
                f"split {split!r}, row {i}: label field {field!r} is missing (None); "
                f"expected {expected_ids(num_labels)}"
            ]
        if isinstance(value, bool) or not isinstance(value, int):
            mixed = (
                "; the column mixes class ids and names, expected one kind throughout (all ids, or all names)"
                if isinstance(value, str)  # string columns were mapped to ids: this one also holds numbers
                else ""
            )
            return [
                f"split {split!r}, row {i}: label {value!r} ({type(value).__name__}) in {field!r}; "
                f"expected {expected_ids(num_labels)}{mixed}"
            ]
        if not 0 <= value < num_labels:
            return [
                f"split {split!r}, row {i}: label {value} in {field!r} is outside "
                f"0..{num_labels - 1} (num_labels={num_labels})"
            ]
    return []


# ---------------------------------------------------------------------------------------------- problem types
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


def _parse_json_lists(ds: Dataset, field_name: str) -> Dataset:
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
            if values and all(_json_list(v) for v in values):
                raw[split] = _parse_json_lists(raw[split], field_name)
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


def label_count_problems(num_labels: int, problem_type: str, field_name: str) -> list[str]:
    """Problems with the number of labels for a problem type (single-label: 2+, multi-label: 1+, regression: 1)."""
    if problem_type == REGRESSION:
        if num_labels != 1:
            return [
                f"{field_name!r} holds regression targets (one number per example) but num_labels={num_labels}; "
                "expected num_labels 1 (or null) and at most one label name"
            ]
        return []
    least = 2 if problem_type == SINGLE_LABEL else 1
    if num_labels < least:
        return [f"{field_name!r}: found {num_labels} class(es); expected at least {least}"]
    return []


def multi_label_problems(split: str, rows: list[Any], field_name: str, num_labels: int) -> list[str]:
    """The first class id of a multi-label split outside ``0..num_labels-1``, as a problem; else none."""
    for i, ids in enumerate(rows):
        bad = next((v for v in ids if not 0 <= v < num_labels), None)
        if bad is not None:
            return [
                f"split {split!r}, row {i}: label {bad} in the list {list(ids)} of {field_name!r} is outside "
                f"0..{num_labels - 1} (num_labels={num_labels})"
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
