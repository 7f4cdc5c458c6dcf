"""The labelled splits of a data module: which splits it uses, and every problem of their rows at once."""

from __future__ import annotations

from collections.abc import Sequence

from datasets import Dataset, DatasetDict

from data.labels import label_count_problems, label_problems
from data.sources import DataError


def setting_problems(
    val_fraction: float, counts: dict[str, object], sample_seed: object, rest_as_unlabeled: object
) -> list[str]:
    """Every out-of-range or mistyped sampling setting of a data module (``counts``: settings that are positive ints).

    Args:
        val_fraction: Fraction of train held out when there is no validation split, in (0, 1).
        counts: Settings that must be positive integers or None, by name (``max_length``, ``batch_size``, ...).
        sample_seed: Seed of the labelled sample, an integer or None.
        rest_as_unlabeled: Whether the rows left out of the labelled sample join the transfer set, a bool.
    """
    problems = []
    if not 0.0 < val_fraction < 1.0:
        problems.append(f"val_fraction={val_fraction!r}: expected a number in (0, 1)")
    for name, value in counts.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            problems.append(f"{name}={value!r}: expected a positive integer")
    if sample_seed is not None and (isinstance(sample_seed, bool) or not isinstance(sample_seed, int)):
        problems.append(f"sample_seed (--data.sample_seed)={sample_seed!r}: expected an integer or null")
    if not isinstance(rest_as_unlabeled, bool):
        problems.append(f"rest_as_unlabeled (--data.rest_as_unlabeled)={rest_as_unlabeled!r}: expected true/false")
    return problems


def select_splits(
    raw: DatasetDict, train: str, val: str, test: str | None, val_fraction: float, seed: int
) -> DatasetDict:
    """The ``train``, ``validation`` (held out of train, seeded, when absent) and optional ``test`` splits of ``raw``.

    Raises:
        DataError: A named split that is missing, or a training split too small to hold out a validation split.
    """
    problems = []
    if train not in raw:
        problems.append(f"train_split={train!r} not found; available splits: {list(raw)}")
    if test is not None and test not in raw:
        problems.append(f"test_split={test!r} not found; available splits: {list(raw)}")
    if problems:
        raise DataError(problems)
    if val in raw:
        out = DatasetDict(train=raw[train], validation=raw[val])
    elif len(raw[train]) < 2:
        raise DataError([f"split {train!r} has {len(raw[train])} examples; cannot hold out a validation split"])
    else:
        parts = raw[train].train_test_split(test_size=val_fraction, seed=seed)
        out = DatasetDict(train=parts["train"], validation=parts["test"])
    if test is not None:
        out["test"] = raw[test]
    return out


def text_problems(rows: Dataset, fields: Sequence[str], where: str) -> list[str]:
    """The first non-string text of each field, e.g. ``where="split 'train'"``."""
    problems = []
    for field in fields:
        texts = rows[field]
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            problems.append(f"{where}, row {bad}: text field {field!r} is {texts[bad]!r}; expected a string")
    return problems


def check_splits(
    raw: DatasetDict, text_fields: Sequence[str], label_field: str, num_labels: int, problem_type: str
) -> None:
    """Check the label count and every split's rows (columns, labels, texts); report every problem at once.

    Raises:
        DataError: Every problem found.
    """
    problems = label_count_problems(num_labels, problem_type, label_field)
    for split, ds in raw.items():
        if len(ds) == 0:
            problems.append(f"split {split!r} is empty; expected at least one example")
            continue
        missing = [f for f in (*text_fields, label_field) if f not in ds.column_names]
        if missing:
            problems.append(f"split {split!r} lacks column(s) {missing}; existing columns: {ds.column_names}")
            continue
        labels = ds[label_field]
        if split == "test" and all(v == -1 for v in labels):
            continue  # unlabelled test set
        problems.extend(label_problems(split, labels, label_field, num_labels, problem_type))
        problems.extend(text_problems(ds, text_fields, f"split {split!r}"))
    if problems:
        raise DataError(problems)


def take_samples(
    raw: DatasetDict, max_train_samples: int | None, max_eval_samples: int | None, seed: int
) -> Dataset | None:
    """Keep a seeded random sample of ``max_train_samples`` training rows and the first ``max_eval_samples``
    validation rows of ``raw`` (in place); return the training rows left out of the sample (None: none taken)."""
    rest = None
    if max_train_samples is not None and max_train_samples < len(raw["train"]):
        shuffled = raw["train"].shuffle(seed=seed)
        raw["train"] = shuffled.select(range(max_train_samples))
        rest = shuffled.select(range(max_train_samples, len(shuffled)))
    if max_eval_samples is not None and max_eval_samples < len(raw["validation"]):
        raw["validation"] = raw["validation"].select(range(max_eval_samples))
    return rest
