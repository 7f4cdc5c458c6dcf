"""The transfer set of a data module: rows without labels that the teacher labels for the student.

Transfer rows come from up to three origins, each a dataset of the labelled data's text field(s) only:
``unlabeled`` (unlabelled in-domain text from any source :class:`~data.data_module.ClfDataModule` accepts), ``rest``
(the training rows left out of the labelled sample, ``rest_as_unlabeled``) and ``augment`` (word-replacement copies
of the labelled rows, or of every row with ``rows: all``, made once the teacher is known: :func:`augment_copies`).
Rows whose text is also in the validation or test split are dropped, and every problem of the transfer settings is
reported at once, as a :class:`data.sources.DataError`, before any model is built.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from datasets import Dataset, DatasetDict, Features, Value, concatenate_datasets
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from data.augment import Augment, augment_problems, word_replacement_copies, words_per_row
from data.balance import Balance, balance_problems
from data.sources import LABEL_FIELDS, DataError, DataSource, detect_text_fields, load_source
from data.splits import text_problems
from data.teacher_outputs import TeacherOutputs

#: How each origin is named in the log line of :func:`describe_rows`.
ORIGINS = {"unlabeled": "unlabeled", "rest": "left out of the labelled sample"}


def source_name(source: object) -> str:
    """How a data source is named in messages and hyperparameters (a path or name, else its type)."""
    return str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__


def text_features(fields: list[str]) -> Features:
    """String features for the text field(s) of transfer rows."""
    return Features({f: Value("string") for f in fields})


def parse_settings(
    value: object, cls: type, field: str, check: Callable[[object], list[str]]
) -> tuple[object | None, list[str]]:
    """A settings dataclass of the data module (``augment``, ``balance``) from its value and the value's problems.

    Args:
        value: None, an instance of ``cls``, or a mapping from Python code (converted).
        cls: The dataclass.
        field: The data module's argument (named in the messages, as ``--data.<field>``).
        check: Lists the problems of a ``cls`` instance.
    """
    problems = []
    if isinstance(value, dict):  # given as a mapping by Python code
        keys = list(cls.__dataclass_fields__)
        unknown = sorted(set(value) - set(keys))
        if unknown:
            problems.append(f"{field} (--data.{field}) has unknown key(s) {unknown}; expected keys among {keys}")
        value = cls(**{k: v for k, v in value.items() if k in keys})
    if value is not None and not isinstance(value, cls):
        problems.append(f"{field} (--data.{field})={value!r}: expected null or a mapping of {cls.__name__} settings")
    elif value is not None:
        problems.extend(check(value))
    return value, problems


def parse_augment(augment: Augment | dict | None) -> tuple[Augment | None, list[str]]:
    """The ``augment`` setting as an :class:`Augment` (a mapping from Python code is converted) and its problems."""
    return parse_settings(augment, Augment, "augment", augment_problems)


def parse_balance(balance: Balance | dict | None) -> tuple[Balance | None, list[str]]:
    """The ``balance`` setting as a :class:`Balance` (a mapping from Python code is converted) and its problems."""
    return parse_settings(balance, Balance, "balance", balance_problems)


def augment_sources(
    train: Dataset, transfer: dict[str, Dataset], text_fields: list[str], augment: Augment | None
) -> Dataset:
    """The rows ``augment`` copies: the labelled training rows, and with ``rows: all`` the transfer rows after them.

    Args:
        train: The labelled training rows.
        transfer: The transfer rows by origin (earlier ``augment`` copies among them are never copied again).
        text_fields: The text fields (the only columns of the result when transfer rows join).
        augment: The settings (None: the labelled rows).
    """
    others = [rows for name, rows in transfer.items() if name != "augment"]
    if augment is None or augment.rows == "labeled" or not others:
        return train
    return concatenate_datasets([train.select_columns(text_fields).cast(text_features(text_fields)), *others])


def augment_row_count(train: Dataset, text_fields: list[str], augment: Augment | None) -> int:
    """How many augmented copies the source rows give (known before they are made).

    Args:
        train: The rows to copy (:func:`augment_sources`).
        text_fields: The text fields.
        augment: The settings (None: no copies).
    """
    if augment is None:
        return 0
    return augment.copies * sum(n >= augment.min_words for n in words_per_row(train, text_fields))


def augment_copies(
    train: Dataset,
    text_fields: list[str],
    tokenizer: PreTrainedTokenizerBase,
    teacher: PreTrainedModel,
    augment: Augment,
) -> Dataset:
    """The ``augment`` transfer rows: word-replacement copies of ``train`` (:func:`augment_sources`) from the teacher's
    word embeddings."""
    embeddings = teacher.get_input_embeddings().weight.detach().cpu()
    copies = word_replacement_copies(train, text_fields, tokenizer, embeddings, augment)
    return Dataset.from_dict(copies, features=text_features(text_fields))


def describe_rows(labeled: int, transfer: dict[str, Dataset], augment_rows: int | None) -> str:
    """One log line: labelled and transfer rows, the transfer rows by origin (``augment_rows`` None: no augment)."""
    parts = [f"{len(rows):,} {ORIGINS[name]}" for name, rows in transfer.items() if name != "augment"]
    if augment_rows is not None:
        parts.append(f"{augment_rows:,} augmented copies")
    total = sum(len(rows) for name, rows in transfer.items() if name != "augment") + (augment_rows or 0)
    detail = f" ({', '.join(parts)})" if parts else ""
    return f"training rows: {labeled:,} labelled, {total:,} transfer{detail}"


class TransferLoader:
    """Loads and checks the transfer sources of a data module's (already loaded and checked) labelled data.

    Args:
        raw: The labelled splits (``train``, ``validation``, maybe ``test``), the labelled sample already taken.
        text_fields: Their text field(s).
        label_field: Their label field (a column of that name in unlabelled data is ignored).
        seed: Seed of the ``max_unlabeled_samples`` subset.
        outputs: The data's precomputed teacher outputs; an outputs column of the unlabelled data joins them.
        note: Keeps and logs a remark about the data (e.g. ignored columns, dropped rows).
    """

    def __init__(
        self,
        raw: DatasetDict,
        text_fields: list[str],
        label_field: str,
        seed: int,
        outputs: TeacherOutputs,
        note: Callable[[str], None],
    ) -> None:
        self.raw, self.text_fields, self.label_field = raw, text_fields, label_field
        self.seed, self.outputs, self.note = seed, outputs, note

    def load(
        self,
        unlabeled: DataSource | None,
        subset: str | None,
        split: str | None,
        text_fields: str | list[str] | None,
        max_samples: int | None,
        rest: Dataset | None,
        rest_as_unlabeled: bool,
        max_train_samples: int | None,
        augment: Augment | None,
        min_words: int | None = None,
    ) -> dict[str, Dataset]:
        """Load and check every transfer source; report every problem at once (:class:`DataError`).

        ``min_words`` (``min_transfer_words``) drops the ``unlabeled`` and ``rest`` rows of fewer words (all text fields
        together), before ``max_samples`` takes its sample of the unlabelled rows.

        Returns:
            The transfer rows by origin (``unlabeled``, ``rest``): text fields only, no label.
        """
        transfer: dict[str, Dataset] = {}
        problems: list[str] = []
        if rest_as_unlabeled:
            if max_train_samples is None:
                problems.append(
                    "rest_as_unlabeled (--data.rest_as_unlabeled)=True but max_train_samples is None; expected "
                    "max_train_samples (the size of the labelled sample) so that the other training rows become "
                    "the transfer set"
                )
            elif rest is None or len(rest) == 0:
                problems.append(
                    f"rest_as_unlabeled=True but max_train_samples={max_train_samples} keeps all "
                    f"{len(self.raw['train'])} training rows: the transfer set is empty; expected max_train_samples "
                    "below the training split's size"
                )
            else:
                rows, found = self._keep_long(rest.select_columns(self.text_fields), "rest", min_words)
                problems.extend(found)
                if rows is not None:
                    transfer["rest"] = rows
        if unlabeled is not None:
            rows, found = self._load_unlabeled(unlabeled, subset, split, text_fields, max_samples, min_words)
            problems.extend(found)
            if rows is not None:
                transfer["unlabeled"] = rows
        elif any(v is not None for v in (subset, split, text_fields, max_samples)):
            given = {
                k: v
                for k, v in (
                    ("unlabeled_subset", subset),
                    ("unlabeled_split", split),
                    ("unlabeled_text_fields", text_fields),
                    ("max_unlabeled_samples", max_samples),
                )
                if v is not None
            }
            problems.append(f"{given} given but unlabeled (--data.unlabeled) is None; expected an unlabelled source")
        if min_words is not None and not rest_as_unlabeled and unlabeled is None:
            problems.append(
                f"min_transfer_words (--data.min_transfer_words)={min_words} filters unlabelled transfer rows, but the "
                "run has none; expected --data.unlabeled or --data.rest_as_unlabeled (augmented copies have "
                "--data.augment.min_words)"
            )
        if augment is not None and augment.rows == "all" and not transfer and not problems:
            problems.append(
                "augment.rows (--data.augment.rows)='all' copies the transfer rows too, but the run has none; "
                "expected 'labeled', or a transfer set (--data.unlabeled or --data.rest_as_unlabeled)"
            )
        sources = augment_sources(self.raw["train"], transfer, self.text_fields, augment)
        if augment is not None and not problems and augment_row_count(sources, self.text_fields, augment) == 0:
            problems.append(
                f"augment.min_words (--data.augment.min_words)={augment.min_words}: no training example to copy "
                "has that many words, so augmentation makes no rows; expected a smaller value"
            )
        if problems:
            raise DataError(problems)
        if transfer:
            leaked = self._drop_evaluation_texts(transfer)
            if leaked:
                self.note(f"transfer set: {leaked} row(s) whose text is also in the validation or test split dropped")
            empty = [name for name, rows in transfer.items() if len(rows) == 0]
            if empty:
                raise DataError(
                    [
                        f"the transfer set from {empty} is empty once rows that are also in the validation or test "
                        "split are dropped; expected at least one other row"
                    ]
                )
        return transfer

    def _load_unlabeled(
        self,
        source: DataSource,
        subset: str | None,
        split: str | None,
        text_fields: str | list[str] | None,
        max_samples: int | None,
        min_words: int | None = None,
    ) -> tuple[Dataset | None, list[str]]:
        """The unlabelled rows (renamed to the labelled text fields), or None and the problems found."""
        name = source_name(source)
        raw = load_source(source, subset)
        if split is None:
            split = "train" if "train" in raw else (next(iter(raw)) if len(raw) == 1 else None)
            if split is None:
                return None, [
                    f"unlabeled={name!r} has splits {list(raw)} and none is 'train'; expected unlabeled_split "
                    "(--data.unlabeled_split) naming the one to use"
                ]
        elif split not in raw:
            return None, [f"unlabeled_split={split!r} not found in unlabeled={name!r}; available splits: {list(raw)}"]
        rows = raw[split]
        columns = rows.column_names
        if text_fields is None and all(f in columns for f in self.text_fields):
            fields = list(self.text_fields)
        else:
            try:
                fields = detect_text_fields(columns, text_fields)
            except DataError as err:
                flag = "unlabeled_text_fields (--data.unlabeled_text_fields)"
                return None, [f"unlabeled={name!r} (split {split!r}): {p} ({flag})" for p in err.problems]
        if len(fields) != len(self.text_fields):
            kinds = {1: "a single text", 2: "a sentence pair"}
            return None, [
                f"unlabeled={name!r} has text field(s) {fields} ({kinds[len(fields)]}) but the labelled data has "
                f"{self.text_fields} ({kinds[len(self.text_fields)]}); expected the same kind of input (set "
                "unlabeled_text_fields, --data.unlabeled_text_fields, to the matching column(s))"
            ]
        problems = text_problems(rows, fields, f"unlabeled={name!r}")
        if len(rows) == 0:
            problems.append(f"unlabeled={name!r} (split {split!r}) has no rows: the transfer set is empty")
        if problems:
            return None, problems
        labels = [c for c in columns if c == self.label_field or c in LABEL_FIELDS]
        if labels:
            self.note(f"unlabeled={name!r}: column(s) {labels} ignored: transfer rows are labelled by the teacher")
        self.outputs.collect(rows, fields, f"unlabeled={name!r}")
        rows = rows.select_columns(fields)
        if fields != self.text_fields:
            rows = rows.rename_columns(dict(zip(fields, self.text_fields, strict=True)))
        rows, problems = self._keep_long(rows, "unlabeled", min_words)
        if rows is not None and max_samples is not None and max_samples < len(rows):
            rows = rows.shuffle(seed=self.seed).select(range(max_samples))
        return rows, problems

    def _keep_long(self, rows: Dataset, origin: str, min_words: int | None) -> tuple[Dataset | None, list[str]]:
        """The transfer rows of ``origin`` with at least ``min_words`` words (None: all), or None and the problem."""
        if min_words is None:
            return rows, []
        counts = words_per_row(rows, self.text_fields)
        where = "from unlabeled" if origin == "unlabeled" else ORIGINS[origin]
        keep = [i for i, n in enumerate(counts) if n >= min_words]
        if not keep:
            return None, [
                f"min_transfer_words (--data.min_transfer_words)={min_words}: none of the {len(rows):,} transfer rows "
                f"{where} has that many words (the longest has {max(counts, default=0)}); expected a "
                "smaller value"
            ]
        self.note(
            f"transfer set: {len(rows) - len(keep):,} of {len(rows):,} rows {where} have fewer than "
            f"{min_words} words (min_transfer_words) and are dropped; {len(keep):,} kept"
        )
        return rows.select(keep), []

    def _drop_evaluation_texts(self, transfer: dict[str, Dataset]) -> int:
        """Remove transfer rows whose text is also in the validation or test split; return how many."""
        seen = set()
        for split in ("validation", "test"):
            if split in self.raw:
                seen.update(zip(*(self.raw[split][f] for f in self.text_fields), strict=True))
        dropped = 0
        for name, rows in list(transfer.items()):
            keep = [
                i for i, text in enumerate(zip(*(rows[f] for f in self.text_fields), strict=True)) if text not in seen
            ]
            if len(keep) < len(rows):
                dropped += len(rows) - len(keep)
                transfer[name] = rows.select(keep)
        return dropped
