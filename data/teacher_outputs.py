"""Precomputed teacher outputs: a teacher's logits or probabilities that come with the data instead of a model.

A teacher need not be a model the run loads: a large language model or a paid API can label the data once, on
another machine, and the run distils from those label distributions (``model.teacher`` left out). The outputs come
either inside the data files, as a column per example, or in separate JSON Lines files.

Format (what ``label.py`` writes, :func:`output_row`), one JSON object per line::

    {"text": "I love it", "teacher_logits": [-1.2, 2.3]}
    {"text": "a premise", "text_pair": "a hypothesis", "teacher_probs": [0.9, 0.1]}
    {"id": "tweet-17", "teacher_logits": [0.3, -0.4, 1.1, 0.0]}

- ``teacher_logits``: one number per class, in the order of the data's label names (``--data.label_names``; the
  class names always come from the data). Log-probabilities are logits too (softmax of ``log p`` is ``p``).
- ``teacher_probs``: probabilities (>= 0, summing to 1 within 1e-3); converted to log-space, ``log(max(p, 1e-12))``,
  for the logit adaptors, so ``softmax(z / T)`` is ``p^(1/T)`` renormalised and the temperature keeps its meaning.
- Another name: ``--data.teacher_outputs_field NAME`` with ``--data.teacher_outputs_kind logits|probs``.
- Joined to the data by the text (``text``, and ``text_pair`` for sentence pairs; the default,
  ``--data.teacher_outputs_key text``) or by an id column present in both (``--data.teacher_outputs_key id``).

Inside the data files the column (``teacher_logits`` / ``teacher_probs`` or the named field) needs no join. Every row
of every split and of the transfer set must then carry outputs (transfer rows are labelled this way, not by a model);
every problem (wrong length, non-finite values, probabilities that are negative or do not sum to 1, rows with no
outputs, ids that join nothing, conflicting outputs for one text) is reported at once, before any model is built, as
a :class:`data.sources.DataError`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from data.labels import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from data.sources import DataError

TEACHER_LOGITS = "teacher_logits"
TEACHER_PROBS = "teacher_probs"
#: Field names read without ``--data.teacher_outputs_field``, and what they hold.
KNOWN_FIELDS = {TEACHER_LOGITS: "logits", TEACHER_PROBS: "probs"}
KINDS = ("logits", "probs")
#: Probabilities must sum to 1 within this.
PROB_TOLERANCE = 1e-3
#: Smallest probability taken to log-space (``log(0)`` would be ``-inf``).
MIN_PROB = 1e-12
#: Text keys of the JSON Lines format (single text; second text of a pair).
TEXT_KEYS = ("text", "text_pair")
#: How many rows of one kind of problem are shown before "... and N more".
SHOWN = 3
FLAGS = "--data.teacher_outputs / --data.teacher_outputs_field / --data.teacher_outputs_key"

Key = tuple[str, ...]


def _short(text: object, width: int = 60) -> str:
    text = repr(text)
    return text if len(text) <= width else text[: width - 3] + "..."


def vector_problem(value: object, kind: str, num_labels: int, problem_type: str = SINGLE_LABEL) -> str | None:
    """What is wrong with one output vector (``None`` when it is fine).

    Probabilities of a single-label teacher form one distribution (non-negative, summing to 1); those of a multi-label
    teacher are one probability per label (each in [0, 1], any sum); a regression teacher's output is its value
    (``teacher_logits``), never a probability.
    """
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        return f"{_short(value)} is not a list of numbers"
    if len(value) != num_labels:
        return f"has {len(value)} values; expected {num_labels} (one per class)"
    if not all(math.isfinite(v) for v in value):
        return f"{_short(value)} has non-finite values"
    if kind == "probs" and problem_type == REGRESSION:
        return "is given as probabilities, but a regression teacher's output is its value; expected teacher_logits"
    if kind == "probs" and problem_type == MULTI_LABEL:
        if any(not 0.0 <= v <= 1.0 for v in value):
            return f"{_short(value)} has per-label probabilities outside [0, 1]"
    elif kind == "probs":
        if any(v < 0 for v in value):
            return f"{_short(value)} has negative probabilities"
        if abs(sum(value) - 1.0) > PROB_TOLERANCE:
            return f"probabilities sum to {sum(value):.6g}; expected 1 (within {PROB_TOLERANCE:g})"
    return None


def to_logits(vectors: Sequence[Sequence[float]], kind: str, problem_type: str = SINGLE_LABEL) -> torch.Tensor:
    """Output vectors as float32 logits: logits as they are; probabilities of one distribution as
    ``log(max(p, 1e-12))`` (``softmax`` gives them back); per-label probabilities (multi-label) as log-odds
    ``log(p / (1 - p))``, clamped to [1e-12, 1 - 1e-12] (``sigmoid`` gives them back)."""
    out = torch.tensor([list(v) for v in vectors], dtype=torch.float64)
    if kind == "probs" and problem_type == MULTI_LABEL:
        out = out.clamp(MIN_PROB, 1.0 - MIN_PROB)
        return (out.log() - (1.0 - out).log()).float()
    return out.float().clamp(min=MIN_PROB).log() if kind == "probs" else out.float()


class _Problems:
    """Problems of one kind grouped, a few rows shown."""

    def __init__(self) -> None:
        self.rows: dict[str, list[str]] = {}

    def add(self, what: str, where: str) -> None:
        self.rows.setdefault(what, []).append(where)

    def lines(self) -> list[str]:
        out = []
        for what, where in self.rows.items():
            more = f" and {len(where) - SHOWN:,} more" if len(where) > SHOWN else ""
            out.append(f"{what}: {', '.join(where[:SHOWN])}{more}")
        return out


class TeacherOutputs:
    """The teacher outputs of a data module's rows: read, checked, joined and looked up by text.

    Every source (a JSON Lines file, a column of a split, a column of the unlabelled data) ends in one table from a
    row's text(s) to its logits, so any row the data module makes from them (the labelled sample, the rows left out
    of it, transfer rows) finds its outputs by its text.

    Args:
        files: JSON Lines file(s) of outputs (``--data.teacher_outputs``), or None.
        field: Name of the outputs field (default: ``teacher_logits`` or ``teacher_probs``, whichever is present).
        kind: ``logits`` or ``probs``: what ``field`` holds (default: from the known names, else ``logits``).
        key: ``text`` (join by the text) or the name of an id column present in the data and in the files.
        num_labels: Classes of the data (the length of every vector).
        problem_type: The data's problem type: how probabilities are checked and turned into logits.
    """

    def __init__(
        self,
        files: str | Path | Sequence[str | Path] | None,
        field: str | None,
        kind: str | None,
        key: str,
        num_labels: int,
        problem_type: str = SINGLE_LABEL,
    ) -> None:
        single = isinstance(files, (str, Path))
        self.files = [] if files is None else [Path(files)] if single else [Path(f) for f in files]
        self.field, self.kind, self.key, self.num_labels = field, kind, key, num_labels
        self.problem_type = problem_type
        self.table: dict[Key, list[float]] = {}
        self.by_id: dict[Any, tuple[list[float], str]] = {}
        self.kinds: dict[Key, str] = {}
        self.problems: list[str] = []
        self.sources: list[str] = []  # where outputs were found, for the log line
        if kind is not None and kind not in KINDS:
            self.problems.append(
                f"teacher_outputs_kind (--data.teacher_outputs_kind)={kind!r}: expected one of {list(KINDS)}"
            )
        if not isinstance(key, str) or not key:
            self.problems.append(
                f"teacher_outputs_key (--data.teacher_outputs_key)={key!r}: expected 'text' or an id column's name"
            )
        for path in self.files:
            self._read_file(path)

    # ------------------------------------------------------------------ reading
    @property
    def active(self) -> bool:
        """Whether the data carries teacher outputs (a file was given or a split has an outputs column)."""
        return bool(self.files or self.sources)

    def _fields_of(self, names: Sequence[str]) -> list[tuple[str, str]]:
        """The outputs fields among ``names`` with their kind."""
        if self.field is not None:
            return [(self.field, self.kind or KNOWN_FIELDS.get(self.field, "logits"))] if self.field in names else []
        return [(f, k) for f, k in KNOWN_FIELDS.items() if f in names]

    def _read_file(self, path: Path) -> None:
        flag = f"teacher_outputs (--data.teacher_outputs)={str(path)!r}"
        if not path.is_file():
            self.problems.append(f"{flag}: file not found; expected a JSON Lines file of teacher outputs")
            return
        bad = _Problems()
        count = 0
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                where = f"line {number}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    bad.add("not valid JSON", f"{where} ({err.msg})")
                    continue
                if not isinstance(row, dict):
                    bad.add("not a JSON object", where)
                    continue
                count += 1
                found = self._fields_of(list(row))
                if len(found) != 1:
                    names = [self.field] if self.field else list(KNOWN_FIELDS)
                    bad.add(f"expected exactly one outputs field among {names}", f"{where} has {list(row)}")
                    continue
                name, kind = found[0]
                problem = vector_problem(row[name], kind, self.num_labels, self.problem_type)
                if problem is not None:
                    bad.add(f"{name} {problem}", where)
                    continue
                vector = to_logits([row[name]], kind, self.problem_type)[0].tolist()
                if self.key == "text":
                    texts = tuple(row.get(k) for k in TEXT_KEYS if k in row)
                    if not texts or not all(isinstance(t, str) for t in texts):
                        bad.add("expected a string 'text' (and 'text_pair' for pairs) to join by text", where)
                        continue
                    self._put(texts, vector, where, bad)
                elif self.key not in row:
                    bad.add(f"has no id field {self.key!r} (--data.teacher_outputs_key)", where)
                else:
                    ident = row[self.key]
                    if ident in self.by_id and self.by_id[ident][0] != vector:
                        bad.add(f"id {self.key!r} repeated with other outputs", f"{where} ({_short(ident)})")
                    self.by_id.setdefault(ident, (vector, where))
        self.problems.extend(f"{flag}: {p}" for p in bad.lines())
        if count == 0 and not bad.rows:
            self.problems.append(f"{flag}: the file has no rows")
        self.sources.append(f"{path} ({count:,} rows)")

    def _put(self, texts: Key, vector: list[float], where: str, bad: _Problems) -> None:
        known = self.table.get(texts)
        if known is not None and any(abs(a - b) > 1e-6 for a, b in zip(known, vector, strict=True)):
            bad.add("the same text has other outputs elsewhere", f"{where} ({_short(texts[0])})")
        self.table.setdefault(texts, vector)

    def collect(self, rows: Dataset, text_fields: Sequence[str], where: str) -> None:
        """Take the outputs of a data split: its outputs column, or (joined by id) the files' rows for its ids.

        Call it on every loaded split and transfer source before their other columns are dropped.

        Args:
            rows: The rows as loaded (text fields, maybe an outputs column and an id column).
            text_fields: Their text field(s).
            where: How the rows are named in messages, e.g. ``"split 'train'"``.
        """
        bad = _Problems()
        found = self._fields_of(rows.column_names)
        texts = list(zip(*(rows[f] for f in text_fields), strict=True)) if found or self.by_id else []
        if found:
            name, kind = found[0]
            self.sources.append(f"{where}: column {name!r}")
            for i, (text, value) in enumerate(zip(texts, rows[name], strict=True)):
                if value is None:
                    continue  # reported as a row without outputs
                problem = vector_problem(value, kind, self.num_labels, self.problem_type)
                if problem is not None:
                    bad.add(f"{where}: {name} {problem}", f"row {i}")
                else:
                    self._put(text, to_logits([value], kind, self.problem_type)[0].tolist(), f"{where} row {i}", bad)
        elif self.key != "text" and self.by_id:
            if self.key not in rows.column_names:
                self.problems.append(
                    f"{where} has no id column {self.key!r} to join the teacher outputs by "
                    f"(--data.teacher_outputs_key); its columns: {rows.column_names}"
                )
                return
            for i, (text, ident) in enumerate(zip(texts, rows[self.key], strict=True)):
                entry = self.by_id.get(ident)
                if entry is None:
                    bad.add(
                        f"{where}: id(s) not found in the teacher outputs files (--data.teacher_outputs_key "
                        f"{self.key})",
                        f"row {i} ({_short(ident)})",
                    )
                else:
                    self._put(text, entry[0], f"{where} row {i}", bad)
        self.problems.extend(bad.lines())

    def collect_splits(self, splits: dict[str, Dataset], text_fields: Sequence[str]) -> None:
        """:meth:`collect` on every split as loaded (``{"train": rows, ...}``, named ``split 'train'`` in messages)."""
        for split, rows in splits.items():
            self.collect(rows, text_fields, f"split {split!r}")

    # ------------------------------------------------------------------ checks and lookups
    def missing(self, rows: Dataset, text_fields: Sequence[str]) -> list[int]:
        """Indices of the rows that have no teacher outputs."""
        columns = [rows[f] for f in text_fields]
        return [i for i, text in enumerate(zip(*columns, strict=True)) if text not in self.table]

    def coverage_problems(self, parts: dict[str, Dataset], text_fields: Sequence[str]) -> list[str]:
        """Rows without outputs, per part (``{"split 'train'": rows, ...}``), when the data carries outputs."""
        if not self.active:
            return []
        out = []
        for where, rows in parts.items():
            missing = self.missing(rows, text_fields)
            if missing:
                shown = ", ".join(f"row {i} {_short(rows[text_fields[0]][i], 40)}" for i in missing[:SHOWN])
                out.append(
                    f"{where}: {len(missing):,} of {len(rows):,} rows have no teacher outputs ({shown}"
                    f"{', ...' if len(missing) > SHOWN else ''}); expected every row to carry them when the data "
                    f"carries teacher outputs ({FLAGS})"
                )
        return out

    def logits(self, rows: Dataset, text_fields: Sequence[str]) -> list[list[float]]:
        """The logits of every row, in order (each row must have outputs: see :meth:`coverage_problems`)."""
        columns = [rows[f] for f in text_fields]
        return [self.table[text] for text in zip(*columns, strict=True)]

    def raise_problems(self) -> None:
        """Raise every problem found so far as one :class:`DataError`."""
        if self.problems:
            raise DataError(self.problems)

    def check_rows(self, splits: dict[str, Dataset], transfer: dict[str, Dataset], text_fields: Sequence[str]) -> None:
        """Raise every problem found so far, rows without outputs included, as one :class:`DataError`.

        Args:
            splits: The labelled splits as the data module keeps them (``{"train": rows, ...}``).
            transfer: The transfer rows by origin (:mod:`data.transfer`).
            text_fields: Their text field(s).
        """
        parts = {f"split {k!r}": v for k, v in splits.items()}
        parts.update({f"transfer {k!r}": v for k, v in transfer.items()})
        self.problems.extend(self.coverage_problems(parts, text_fields))
        self.raise_problems()

    def describe(self) -> str:
        """One log line: where the outputs came from and how many texts they cover."""
        return f"teacher outputs for {len(self.table):,} distinct texts from {'; '.join(self.sources)}"


def output_row(texts: Sequence[str], logits: Sequence[float], ident: Any = None, id_field: str = "id") -> dict:
    """One line of the JSON Lines format (the texts under ``text`` / ``text_pair``, an id when given)."""
    row: dict[str, Any] = {}
    if ident is not None:
        row[id_field] = ident
    row.update(zip(TEXT_KEYS, texts, strict=False))
    row[TEACHER_LOGITS] = [float(v) for v in logits]
    return row


def teacher_token_rows(
    parts: Sequence[Dataset], tokenizer: PreTrainedTokenizerBase, text_fields: Sequence[str], max_length: int
) -> Dataset:
    """Rows tokenized with the teacher's tokenizer (``input_ids``, ``token_type_ids``), parts concatenated in order.

    When a student reads its own tokens, the teacher-logit store labels these rows instead: the same texts, in the
    same order as the student's rows, in the teacher's tokens.
    """
    from datasets import concatenate_datasets

    tokenized = [
        part.map(
            _tokenize_texts,
            batched=True,
            remove_columns=part.column_names,
            desc="Tokenizing for the teacher",
            fn_kwargs={"tokenizer": tokenizer, "text_fields": list(text_fields), "max_length": max_length},
        )
        for part in parts
    ]
    return tokenized[0] if len(tokenized) == 1 else concatenate_datasets(tokenized)


def _tokenize_texts(
    batch: dict[str, list], tokenizer: PreTrainedTokenizerBase, text_fields: list[str], max_length: int
) -> dict[str, list]:
    enc = tokenizer(*(batch[f] for f in text_fields), truncation=True, max_length=max_length)
    return {k: v for k, v in enc.items() if k in ("input_ids", "token_type_ids")}


def teacher_rows(
    splits: dict[str, Dataset],
    transfer: dict[str, Dataset],
    split: str,
    tokenizer: PreTrainedTokenizerBase,
    text_fields: Sequence[str],
    max_length: int,
) -> Dataset:
    """The rows of a data module's tokenized split in the teacher's tokens (:func:`teacher_token_rows`).

    ``train`` holds the labelled rows, then every transfer part (in the order of ``transfer``); another split its rows.
    """
    parts = [splits["train"], *transfer.values()] if split == "train" else [splits[split]]
    parts = [p.select_columns(list(text_fields)) for p in parts]
    return teacher_token_rows(parts, tokenizer, text_fields, max_length)
