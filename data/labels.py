"""Label columns: names and ids, what each ``datasets`` feature type means, and the checks of every split."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from datasets import ClassLabel, Dataset, DatasetDict, Value

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


def is_json_list(text: str) -> bool:
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

    * ``ClassLabel``, ``int*``/``uint*``: kept (the ids are checked by :func:`data.splits.check_splits`).
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
    elif values and all(is_json_list(v) for v in values):  # lists written as text, e.g. a CSV export of lists
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
