"""The examples to benchmark on: loading and checking a split, tokenizing it once per tokenizer, the latency examples
(nearest the median length) and the padded throughput batches (longest first)."""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, DatasetDict
from transformers import PreTrainedTokenizerBase

from common.hub import HubUnavailableError
from data.data_module import MODEL_INPUTS, ClfDataModule
from data.labels import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from data.sources import DataError, DataSource, detect_label_field, load_source, names_beside


@dataclass
class EvalData:
    """The examples to run: texts per text field, integer labels, and what they are.

    Attributes:
        dataset: Display name of the data source.
        split: Split name as the user gave it.
        fields: Text columns, one or a pair.
        texts: One list of strings per text field.
        labels: Class index of every example; multi-label: its multi-hot 0/1 vector; regression: its number.
        label_names: Class names in index order.
        max_length: Truncation length in tokens.
        note: Extra information about the split (e.g. held out from train), or an empty string.
        problem_type: The task (``data.labels.PROBLEM_TYPES``), as the data module detected it.
    """

    dataset: str
    split: str
    fields: list[str]
    texts: list[list[str]]
    labels: list[Any]
    label_names: list[str]
    max_length: int
    note: str = ""
    problem_type: str = SINGLE_LABEL

    def __len__(self) -> int:
        return len(self.labels)

    def example(self, i: int) -> tuple[str, ...]:
        """The text(s) of example ``i``, one per field."""
        return tuple(col[i] for col in self.texts)


def _dataset_name(data: Any) -> str:
    if isinstance(data, ClfDataModule):
        return str(data.source_name)
    if isinstance(data, (str, Path)):
        return str(data)
    return type(data).__name__


def _unlabelled(ds: Dataset, label_field: str | None) -> bool:
    try:
        field_name = detect_label_field(ds.column_names, label_field)
    except DataError:
        return False  # ClfDataModule names the missing label column
    return all(v is None or v == -1 for v in ds[field_name])


def load_eval_data(
    data: ClfDataModule | DataSource,
    split: str = "validation",
    subset: str | None = None,
    text_fields: str | list[str] | None = None,
    label_field: str | None = None,
    label_names: list[str] | None = None,
    max_samples: int | None = None,
    max_length: int = 128,
) -> tuple[EvalData | None, list[str]]:
    """Load and check the split to benchmark on.

    Args:
        data: A ``ClfDataModule`` (its ``raw`` splits and detected fields are used; the other data arguments are
            ignored), or anything ``ClfDataModule`` accepts (``"demo"``, a folder, files, a ``DatasetDict``, a Hub
            name).
        split: Split name. ``"validation"`` on data without one is held out from train as ``ClfDataModule`` does
            for training (its default seed and fraction), i.e. the examples a model trained with those defaults
            was validated on.
        subset: Hub dataset configuration.
        text_fields: Override for the text column(s).
        label_field: Override for the label column.
        label_names: Class names in label order (default: from a ``ClassLabel`` feature, else ``LABEL_i``).
        max_samples: Keep only the first this many examples of the split.
        max_length: Truncation length in tokens.

    Returns:
        The examples (None when there are problems) and the list of problems.
    """
    name = _dataset_name(data)
    note = ""
    if isinstance(data, ClfDataModule):
        dm, key = data, split
        if split not in dm.raw:
            return None, [f"split={split!r} not found in the data module; available splits: {list(dm.raw)}"]
        max_length = dm.max_length
    else:
        try:
            raw = load_source(data, subset)
        except DataError as err:
            return None, [f"dataset={name!r}: {p}" for p in err.problems]
        except HubUnavailableError as err:
            return None, [f"dataset={name!r}: {err}"]
        if split not in raw:
            if not (split == "validation" and "train" in raw):
                return None, [f"split={split!r} not found in dataset {name!r}; available splits: {list(raw)}"]
            note = "held out from train (seeded, as in training)"
        elif len(raw[split]) == 0:
            return None, [f"split {split!r} of dataset {name!r} is empty; expected at least one example"]
        elif _unlabelled(raw[split], label_field):
            return None, [
                f"split {split!r} of dataset {name!r} has no labels (all -1 or missing); expected a labelled split "
                "to measure quality"
            ]
        if split == "train":  # keep the whole train split: pass it again as the evaluation split
            raw, val = DatasetDict(train=raw["train"], validation=raw["train"]), "validation"
        else:
            val = split
        try:
            dm = ClfDataModule(
                raw,
                tokenizer=None,
                text_fields=text_fields,
                label_field=label_field,
                label_names=label_names if label_names is not None else names_beside(data),
                train_split="train" if "train" in raw else split,
                val_split=val,
                max_length=max_length,
            )
        except DataError as err:
            renamed = [p.replace("split 'validation'", f"split {split!r}") for p in err.problems]
            return None, [f"dataset={name!r}: {p}" for p in renamed]
        key = "validation"
    ds = dm.raw[key]
    if max_samples is not None and max_samples < len(ds):
        ds = ds.select(range(max_samples))
    if len(ds) == 0:
        return None, [f"split {split!r} of dataset {name!r} is empty; expected at least one example"]
    if dm.problem_type == MULTI_LABEL:  # lists of class ids (checked by the data module) as multi-hot vectors
        labels: list[Any] = [[float(i in set(ids)) for i in range(dm.num_labels)] for ids in ds[dm.label_field]]
    elif dm.problem_type == REGRESSION:
        labels = [float(v) for v in ds[dm.label_field]]
    else:
        labels = [int(v) for v in ds[dm.label_field]]
        if any(not 0 <= v < dm.num_labels for v in labels):
            return None, [f"split {split!r} of dataset {name!r} has labels outside 0..{dm.num_labels - 1}"]
    texts = [list(ds[f]) for f in dm.text_fields]
    fields = list(dm.text_fields)
    return EvalData(name, split, fields, texts, labels, list(dm.label_names), max_length, note, dm.problem_type), []


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase, max_length: int) -> str:
    """A key that is equal for tokenizers that encode texts identically (used to tokenize once per tokenizer)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # drop the truncation/padding state, which changes with every call
        state = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        body = json.dumps(state, sort_keys=True)
    else:
        body = json.dumps(sorted(tokenizer.get_vocab().items()))
    extra = f"{type(tokenizer).__name__}|{tokenizer.model_input_names}|{tokenizer.padding_side}|{max_length}"
    return hashlib.sha1((body + extra).encode("utf-8")).hexdigest()


def encode(tokenizer: PreTrainedTokenizerBase, data: EvalData) -> dict[str, list[list[int]]]:
    """Tokenize every example without padding (truncation at ``data.max_length``)."""
    enc = tokenizer(*data.texts, truncation=True, max_length=data.max_length)
    return {k: list(v) for k, v in enc.items() if k in MODEL_INPUTS}


def median_length_indices(lengths: Sequence[int], count: int) -> list[int]:
    """Indices of the ``count`` examples whose length is nearest the median (ties: earlier examples first).

    When ``count`` exceeds the number of examples, all examples are returned, nearest the median first.
    """
    if not lengths:
        return []
    median = statistics.median(lengths)
    order = sorted(range(len(lengths)), key=lambda i: (abs(lengths[i] - median), i))
    return order[: min(count, len(lengths))]


def eval_order(lengths: Sequence[int]) -> list[int]:
    """Example indices longest first (ties: earlier first), as the evaluation loader orders them."""
    return sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))  # longest first, stable


def pre_batch(
    tokenizer: PreTrainedTokenizerBase,
    encoded: dict[str, list[list[int]]],
    keys: Sequence[str],
    order: Sequence[int],
    batch_size: int,
    device: torch.device,
) -> list[dict[str, torch.Tensor]]:
    """Padded tensor batches of the examples in ``order`` (on ``device``), ``batch_size`` examples each."""
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        features = {k: [encoded[k][i] for i in idx] for k in keys if k in encoded}
        padded = tokenizer.pad(features, padding=True, return_tensors="pt")
        batches.append({k: v.to(device) for k, v in padded.items() if k in keys})
    return batches
