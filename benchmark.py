"""Compare fine-tuned classifiers (a teacher and its students): size, batch-1 latency, throughput and quality.

Usage (from the repository root)::

    python benchmark.py outputs/teacher outputs/student_ms outputs/student_ms_onnx \
        outputs/student_ms_onnx/model_int8.onnx --names teacher mix-step onnx-fp32 onnx-int8 --dataset demo \
        --label-names negative positive [--split validation] [--threads 2] [--batch-size 64] [--latency-runs 100] \
        [--rounds 5] [--ratio-to teacher]

Models are PyTorch folders (``*ForSequenceClassification``) or ONNX models written by ``export.py``: a ``.onnx``
file, or a folder holding ``model.onnx`` (else ``model_int8.onnx``) and no PyTorch weights, next to a tokenizer (and
``config.json`` for the class names). ONNX models run in ONNX Runtime CPU sessions with ``intra_op_num_threads`` =
``--threads`` and one inter-op thread, on the same pre-tokenized inputs as the PyTorch rows.

Every model is checked before anything is timed: it must exist, hold a ``*ForSequenceClassification``
config, weight files (or an ONNX file) and a tokenizer (or ``--tokenizer``), and agree with the data on the number of
classes and, when both name them, on the class names. All problems are reported together.

How the numbers are measured (CPU by default; ``--device cuda`` synchronises around every timed call):

* ``torch.set_num_threads(threads)`` is fixed for the whole run and reported; models run in eval mode under
  ``torch.inference_mode()``; the garbage collector is paused while timing; clocks are ``time.perf_counter``.
* Latency: batch size 1, no padding. The inputs are the ``latency_runs`` examples of the split whose token count is
  nearest the median (the same examples, in the same order, for every model), tokenized beforehand. All models are
  loaded first and timed in interleaved rounds (A B C ... A B C ...), so that a machine whose speed drifts over
  minutes slows every model alike: ``warmup`` untimed calls per model first, then ``rounds`` rounds in which each
  model in turn makes one untimed call (its weights back in cache) and one timed call per latency example. Reported:
  the median over rounds of each round's median (with the min-max of the round medians as its spread), mean and
  standard deviation over all timed calls, and the latency ratio to the reference model (``--ratio-to``, default the
  first) computed per round: its median, min-max, and how many rounds agree with the median (are on the same side of
  1).
* Throughput: the whole split at ``batch_size``, longest examples first (as the project's evaluation loader orders
  them), padded per batch beforehand; one untimed warm-up batch when ``warmup > 0``. Samples per second of model
  time. ``--include-tokenization`` moves tokenization and padding inside the timed region (latency and throughput).
* Quality (torchmetrics, from the throughput pass): accuracy and macro F1; binary tasks also precision, recall and
  ROC-AUC of class 1; multi-class tasks also the F1 of every class. Stored as fractions, shown as percentages.

Outputs: a Markdown table on stdout, and ``results.csv``, ``results.json`` and ``accuracy_vs_latency.png`` in
``--output-dir``. ``--wandb`` also logs the table as a ``wandb.Table`` (offline when no credentials are set up;
``WANDB_MODE`` is respected).
"""

from __future__ import annotations

import argparse
import csv
import gc
import hashlib
import importlib.util
import inspect
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedTokenizerBase

from data.data_module import MODEL_INPUTS, ClfDataModule
from data.sources import DataError, DataSource, detect_label_field, load_source
from helper.hub import HubUnavailableError
from helper.models import load_tokenizer, resolve_model_path

#: Weight files counted for the size on disk, by preference (a folder holding both formats counts the first).
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
#: Files that show a folder carries its own tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model")
CSV_NAME, JSON_NAME, PLOT_NAME = "results.csv", "results.json", "accuracy_vs_latency.png"
#: ONNX files looked for in a folder given as a model, by preference (the names ``export.py`` writes).
ONNX_FILES = ("model.onnx", "model_int8.onnx")
#: Keys shared by every row (the run's settings), in the order they are written after the per-model keys.
META_KEYS = (
    "dataset",
    "split",
    "examples",
    "num_labels",
    "threads",
    "torch_version",
    "onnxruntime_version",
    "device",
    "device_name",
    "batch_size",
    "latency_runs",
    "rounds",
    "ratio_to",
    "warmup",
    "latency_examples",
    "include_tokenization",
    "max_length",
    "cpu_count",
    "load_avg_1min",
)


class BenchmarkError(ValueError):
    """Bad benchmark input (settings, data or models): every problem found, listed in one message."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        listed = "\n".join(f"- {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) found before benchmarking; nothing was timed:\n{listed}")


@dataclass
class EvalData:
    """The examples to run: texts per text field, integer labels, and what they are.

    Attributes:
        dataset: Display name of the data source.
        split: Split name as the user gave it.
        fields: Text columns, one or a pair.
        texts: One list of strings per text field.
        labels: Class index of every example.
        label_names: Class names in index order.
        max_length: Truncation length in tokens.
        note: Extra information about the split (e.g. held out from train), or an empty string.
    """

    dataset: str
    split: str
    fields: list[str]
    texts: list[list[str]]
    labels: list[int]
    label_names: list[str]
    max_length: int
    note: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def example(self, i: int) -> tuple[str, ...]:
        """The text(s) of example ``i``, one per field."""
        return tuple(col[i] for col in self.texts)


@dataclass
class ModelSpec:
    """A checked model: where it is, its config and tokenizer.

    Attributes:
        name: Display name.
        source: The name or path as given.
        path: Resolved folder or Hub name.
        config: The model's configuration.
        tokenizer: The tokenizer used to encode the data for this model.
        tokenizer_source: Where the tokenizer came from.
        size_mb: Size of the weight files (or the ONNX file) in MB (10^6 bytes), or None when unknown.
        onnx_file: The ONNX file to run with ONNX Runtime, or None for a PyTorch model.
    """

    name: str
    source: str
    path: str
    config: PretrainedConfig | None
    tokenizer: PreTrainedTokenizerBase
    tokenizer_source: str
    size_mb: float | None = None
    onnx_file: str | None = None


# ---------------------------------------------------------------------------------------------------- checks
def _positive_int(name: str, value: Any, minimum: int = 1) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return [f"{name}={value!r}: expected an integer >= {minimum}"]
    return []


def check_settings(
    threads: int | None,
    batch_size: int,
    latency_runs: int,
    warmup: int,
    max_samples: int | None,
    max_length: int,
    device: str,
    rounds: int = 5,
) -> list[str]:
    """Problems with the numeric settings and the device (an empty list when all are fine)."""
    problems = []
    problems += _positive_int("threads", threads)
    problems += _positive_int("rounds", rounds)
    problems += _positive_int("batch_size", batch_size)
    problems += _positive_int("latency_runs", latency_runs)
    problems += _positive_int("warmup", warmup, minimum=0)
    problems += _positive_int("max_samples", max_samples)
    problems += _positive_int("max_length", max_length)
    if device == "auto":
        return problems
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        return [*problems, f"device={device!r}: expected 'cpu', 'cuda', 'cuda:N' or 'auto'"]
    if dev.type not in ("cpu", "cuda"):
        problems.append(f"device={device!r}: expected 'cpu', 'cuda', 'cuda:N' or 'auto'")
    elif dev.type == "cuda" and not torch.cuda.is_available():
        problems.append(f"device={device!r}: CUDA is not available here; expected 'cpu' or 'auto'")
    return problems


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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
                label_names=label_names,
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
    labels = [int(v) for v in ds[dm.label_field]]
    if any(not 0 <= v < dm.num_labels for v in labels):
        return None, [f"split {split!r} of dataset {name!r} has labels outside 0..{dm.num_labels - 1}"]
    texts = [list(ds[f]) for f in dm.text_fields]
    return EvalData(name, split, list(dm.text_fields), texts, labels, list(dm.label_names), max_length, note), []


def _is_default_names(names: Sequence[str]) -> bool:
    return all(str(n) == f"LABEL_{i}" for i, n in enumerate(names))


def weights_size_mb(path: str | Path) -> float | None:
    """Size in MB (10^6 bytes) of a model folder's weight files (``*.safetensors``, else ``pytorch_model*.bin``).

    Hub names are looked up in the local cache. Returns None when no weight file is found.
    """
    folder = Path(path)
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(str(path), local_files_only=True))
        except Exception:  # not cached, or not a Hub name: the size is unknown
            return None
    for pattern in WEIGHT_PATTERNS:
        files = [p for p in folder.glob(pattern) if p.is_file()]
        if files:
            return sum(p.stat().st_size for p in files) / 1e6
    return None


def inspect_models(
    models: Sequence[str | Path],
    names: Sequence[str] | None,
    label_names: Sequence[str] | None,
    tokenizer: str | PreTrainedTokenizerBase | None = None,
    max_length: int = 128,
) -> tuple[list[ModelSpec], list[str]]:
    """Check every model from its config and files (no weights are loaded).

    Args:
        models: Model folders (or Hub names / aliases).
        names: Display names, one per model (default: the folder names).
        label_names: The data's class names, for the label checks (skipped when None).
        tokenizer: Tokenizer for models whose folder has none (object, path or Hub name).
        max_length: Truncation length, checked against the models' position embeddings.

    Returns:
        The checked models and the problems found (all models are checked even after a problem).
    """
    problems: list[str] = []
    if not models:
        return [], ["models=[]: expected at least one model folder"]
    if names is not None and len(names) != len(models):
        problems.append(f"names has {len(names)} entries for {len(models)} models; expected one name per model")
        names = None
    if names is None:
        names = _default_names([str(m) for m in models])
    elif len(set(names)) != len(names):
        problems.append(f"names={list(names)}: expected distinct names")
    fallback = None
    if tokenizer is not None:
        try:
            fallback = tokenizer if isinstance(tokenizer, PreTrainedTokenizerBase) else load_tokenizer(tokenizer)
        except (OSError, ValueError) as err:
            problems.append(f"tokenizer={str(tokenizer)!r} could not be loaded: {err}")
    specs = []
    for source, name in zip(models, names, strict=True):
        spec, found = _inspect_model(str(source), name, label_names, fallback, tokenizer, max_length)
        problems += found
        if spec is not None:
            specs.append(spec)
    return specs, problems


def _default_names(sources: Sequence[str]) -> list[str]:
    names = [Path(s.rstrip("/")).name or s for s in sources]
    if len(set(names)) == len(names):
        return names
    parents = [Path(s.rstrip("/")).parent.name for s in sources]
    return [f"{p}/{n}" if names.count(n) > 1 else n for p, n in zip(parents, names, strict=True)]


def onnx_model_file(source: str) -> Path | None:
    """The ONNX file a model argument names: a ``.onnx`` path, or a folder without PyTorch weights that holds
    ``model.onnx`` (else ``model_int8.onnx``); None for anything else (a PyTorch folder or a Hub name)."""
    path = Path(source).expanduser()
    if path.suffix.lower() == ".onnx":
        return path
    if path.is_dir() and weights_size_mb(path) is None:
        for name in ONNX_FILES:
            if (path / name).is_file():
                return path / name
    return None


def _inspect_model(
    source: str,
    name: str,
    label_names: Sequence[str] | None,
    fallback: PreTrainedTokenizerBase | None,
    fallback_source: Any,
    max_length: int,
) -> tuple[ModelSpec | None, list[str]]:
    where = f"model {name!r}" + (f" ({source})" if source != name else "")
    onnx_file = onnx_model_file(source)
    if onnx_file is not None:
        path, config, size, num_labels, problems = _inspect_onnx(where, onnx_file)
        if path is None:
            return None, problems
    else:
        try:
            path = resolve_model_path(source)
        except (FileNotFoundError, HubUnavailableError) as err:
            return None, [f"{where}: {err}"]
        try:
            config = AutoConfig.from_pretrained(path)
        except (OSError, ValueError, KeyError) as err:
            return None, [f"{where}: cannot read its config: {err}"]
        problems = []
        archs = list(config.architectures or [])
        if not any(a.endswith("ForSequenceClassification") for a in archs):
            problems.append(
                f"{where} is not a sequence classifier (config.architectures={archs}); expected a fine-tuned "
                "*ForSequenceClassification folder, e.g. the output of finetune.py or distillation_*.py"
            )
            num_labels = None
        else:
            num_labels = config.num_labels
        size = weights_size_mb(path)
        if Path(path).is_dir() and size is None:
            problems.append(f"{where} holds no weight files; expected one of {list(WEIGHT_PATTERNS)}")
    if label_names is not None and num_labels is not None:
        label_names = [str(n) for n in label_names]
        if num_labels != len(label_names):
            problems.append(
                f"{where} has num_labels={num_labels} but the data has {len(label_names)} classes "
                f"{label_names}; expected the same label count"
            )
        elif config is not None:
            model_names = [str(config.id2label.get(i, f"LABEL_{i}")) for i in range(config.num_labels)]
            if not _is_default_names(model_names) and not _is_default_names(label_names):
                if model_names != label_names:
                    problems.append(
                        f"{where} has id2label names {model_names} but the data's label names are "
                        f"{label_names}; expected the same names in the same order (or pass --label-names)"
                    )
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and max_length > positions:
        problems.append(
            f"{where}: max_length={max_length} exceeds its max_position_embeddings={positions}; expected "
            f"max_length <= {positions}"
        )
    tok, tok_source = None, None
    has_own = not Path(path).is_dir() or any((Path(path) / f).is_file() for f in TOKENIZER_FILES)
    tok_error = None
    if has_own:
        try:
            tok, tok_source = load_tokenizer(path), path
        except (OSError, ValueError) as err:
            tok_error = err
    if tok is None and fallback is not None:
        tok, tok_source = fallback, str(getattr(fallback_source, "name_or_path", fallback_source))
    elif tok_error is not None:
        problems.append(f"{where}: its tokenizer could not be loaded ({tok_error}); pass --tokenizer")
    elif tok is None:
        problems.append(
            f"{where} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); expected a tokenizer saved with the "
            "model, or pass --tokenizer"
        )
    vocab = getattr(config, "vocab_size", None)
    if tok is not None and isinstance(vocab, int) and len(tok) > vocab:
        problems.append(
            f"{where}: its tokenizer has {len(tok)} tokens but the model's vocab_size is {vocab}; expected a "
            "tokenizer that fits the model"
        )
    if problems:
        return None, problems
    file = str(onnx_file) if onnx_file is not None else None
    return ModelSpec(name, source, path, config, tok, str(tok_source), size, file), []


def _inspect_onnx(
    where: str, file: Path
) -> tuple[str | None, PretrainedConfig | None, float | None, int | None, list[str]]:
    """Check an ONNX model: the packages, the file, and the folder's ``config.json`` when there is one.

    Returns:
        The folder (None when unusable), its config (or None), the file size in MB, the number of classes (from the
        config, else the graph's output; None when unknown) and the problems.
    """
    from helper.export import onnx_missing_message

    missing = [pkg for pkg in ("onnx", "onnxruntime") if importlib.util.find_spec(pkg) is None]
    if missing:
        return None, None, None, None, [f"{where} is an ONNX model, but {onnx_missing_message(missing)}"]
    if not file.is_file():
        return None, None, None, None, [f"{where}: ONNX file {str(file)!r} does not exist"]
    import onnx

    try:
        graph = onnx.load(str(file), load_external_data=False).graph
    except Exception as err:  # onnx raises DecodeError and others for a damaged file
        return None, None, None, None, [f"{where}: {str(file)!r} is not a readable ONNX model ({err})"]
    problems = []
    folder = file.parent
    config = None
    if (folder / "config.json").is_file():
        try:
            config = AutoConfig.from_pretrained(folder)
        except (OSError, ValueError, KeyError) as err:
            problems.append(f"{where}: cannot read the config.json beside it: {err}")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in graph.output[0].type.tensor_type.shape.dim]
    num_labels = config.num_labels if config is not None else (dims[-1] if dims and dims[-1] else None)
    from helper.export import onnx_size_mb

    return str(folder), config, onnx_size_mb(file), num_labels, problems


# ---------------------------------------------------------------------------------------------------- inputs
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


def _ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> None:
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token


def _accepted_inputs(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    params = inspect.signature(model.forward).parameters
    return [k for k in MODEL_INPUTS if k in params and k in tokenizer.model_input_names]


def _eval_order(lengths: Sequence[int]) -> list[int]:
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


# ---------------------------------------------------------------------------------------------------- timing
@contextmanager
def _timing_conditions() -> Any:
    """``inference_mode`` and a paused garbage collector (collected once before)."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        with torch.inference_mode():
            yield
    finally:
        if was_enabled:
            gc.enable()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_rounds(
    calls: Sequence[Sequence[Callable[[], Any]]], rounds: int, warmup: int, device: torch.device
) -> list[list[list[float]]]:
    """Time several models in interleaved rounds (A B C ... A B C ...) on the same inputs.

    ``calls[m]`` holds model ``m``'s batch-1 calls, one per latency example. First ``warmup`` untimed calls per model;
    then, in each round, each model in turn makes one untimed call (when ``warmup > 0``: its weights back in cache
    after the other models ran) and every one of its calls once, timed.

    Returns:
        Milliseconds per timed call, indexed ``[model][round][call]``.
    """
    times: list[list[list[float]]] = [[] for _ in calls]
    with _timing_conditions():
        for model_calls in calls:
            for i in range(warmup):
                model_calls[i % len(model_calls)]()
        _sync(device)
        for _ in range(rounds):
            for m, model_calls in enumerate(calls):
                if warmup > 0:
                    model_calls[0]()
                    _sync(device)
                round_times = []
                for call in model_calls:
                    start = time.perf_counter()
                    call()
                    _sync(device)
                    round_times.append((time.perf_counter() - start) * 1000.0)
                times[m].append(round_times)
    return times


def latency_stats(times: Sequence[Sequence[Sequence[float]]], reference: int = 0) -> list[dict[str, Any]]:
    """Per-model latency figures from :func:`time_rounds`' output, and ratios to model ``reference`` per round.

    Returns:
        One dict per model: ``latency_ms_median`` (median of the round medians), ``latency_ms_round_min`` /
        ``_round_max`` (their spread), ``latency_ms_rounds`` (the round medians), ``latency_ms_mean`` and
        ``latency_ms_std`` (over all timed calls), ``latency_ratio`` (median over rounds of this model's round median
        divided by the reference's), ``latency_ratio_min`` / ``_max`` and ``latency_ratio_agree`` (rounds whose
        ratio is on the same side of 1 as the median ratio; all rounds when the median is exactly 1).
    """
    medians = [[statistics.median(r) for r in model] for model in times]
    out = []
    for model, model_medians in zip(times, medians, strict=True):
        flat = [t for r in model for t in r]
        ratios = [a / b if b > 0 else math.inf for a, b in zip(model_medians, medians[reference], strict=True)]
        ratio = statistics.median(ratios)
        if ratio > 1:
            agree = sum(r > 1 for r in ratios)
        elif ratio < 1:
            agree = sum(r < 1 for r in ratios)
        else:
            agree = len(ratios)
        out.append(
            {
                "latency_ms_median": statistics.median(model_medians),
                "latency_ms_round_min": min(model_medians),
                "latency_ms_round_max": max(model_medians),
                "latency_ms_mean": statistics.fmean(flat),
                "latency_ms_std": statistics.stdev(flat) if len(flat) > 1 else 0.0,
                "latency_ratio": ratio,
                "latency_ratio_min": min(ratios),
                "latency_ratio_max": max(ratios),
                "latency_ratio_agree": agree,
                "latency_rounds": len(model_medians),
                "latency_ms_rounds": [round(m, 4) for m in model_medians],
            }
        )
    return out


def measure_throughput(
    forward: Callable[[int], torch.Tensor], num_batches: int, warmup: bool, device: torch.device
) -> tuple[float, list[torch.Tensor]]:
    """Seconds to run ``forward(0..num_batches-1)`` once (after one untimed call when ``warmup``), and its logits."""
    outputs = []
    with _timing_conditions():
        if warmup and num_batches:
            forward(0)
        _sync(device)
        start = time.perf_counter()
        for b in range(num_batches):
            outputs.append(forward(b))
        _sync(device)
        seconds = time.perf_counter() - start
    return seconds, outputs


# ---------------------------------------------------------------------------------------------------- quality
def _column_label(name: str) -> str:
    return str(name).strip().replace(" ", "_").replace("|", "_")


def quality_metrics(logits: torch.Tensor, labels: torch.Tensor, label_names: Sequence[str]) -> dict[str, float | None]:
    """Accuracy and macro F1; binary: precision, recall and ROC-AUC of class 1; multi-class: F1 of every class.

    Args:
        logits: ``(N, C)`` scores.
        labels: ``(N,)`` class indices.
        label_names: The ``C`` class names (used for the per-class column names ``f1_<name>``).

    Returns:
        Metric name to value in [0, 1]; ``roc_auc`` is None when the labels hold a single class.
    """
    from torchmetrics.classification import (
        BinaryAUROC,
        BinaryPrecision,
        BinaryRecall,
        MulticlassAccuracy,
        MulticlassF1Score,
    )

    num_classes = len(label_names)
    logits, labels = logits.float().cpu(), labels.long().cpu()
    preds = logits.argmax(dim=-1)
    out: dict[str, float | None] = {
        "accuracy": MulticlassAccuracy(num_classes=num_classes, average="micro")(preds, labels).item(),
        "f1_macro": MulticlassF1Score(num_classes=num_classes, average="macro")(preds, labels).item(),
    }
    if num_classes == 2:
        out["precision"] = BinaryPrecision()(preds, labels).item()
        out["recall"] = BinaryRecall()(preds, labels).item()
        scores = logits.softmax(dim=-1)[:, 1]
        out["roc_auc"] = BinaryAUROC()(scores, labels).item() if labels.unique().numel() == 2 else None
    else:
        per_class = MulticlassF1Score(num_classes=num_classes, average=None)(preds, labels).tolist()
        for name, value in zip(label_names, per_class, strict=True):
            out[f"f1_{_column_label(name)}"] = value
    return out


# ---------------------------------------------------------------------------------------------------- one model
@dataclass
class Runner:
    """A loaded model, ready to time: PyTorch or an ONNX Runtime session.

    Attributes:
        spec: The checked model.
        keys: Token inputs the model takes.
        prepare: Turns a dict of token tensors into the model's native inputs (device tensors or int64 arrays); called
            outside the timed region unless tokenization is timed too.
        run: Logits (a CPU or device tensor) for prepared inputs.
        params: Number of parameters (ONNX: elements of the non-scalar initializers).
        dtype: Weight precision, e.g. ``float32`` or ``int8``.
        runtime: ``"torch"`` or ``"onnxruntime"``.
    """

    spec: ModelSpec
    keys: list[str]
    prepare: Callable[[dict[str, torch.Tensor]], Any]
    run: Callable[[Any], torch.Tensor]
    params: int
    dtype: str
    runtime: str


def load_runner(spec: ModelSpec, device: torch.device, threads: int) -> Runner:
    """Load ``spec``: a PyTorch model in eval mode on ``device``, or an ONNX Runtime CPU session with ``threads``
    intra-op threads and one inter-op thread."""
    tok = spec.tokenizer
    _ensure_pad_token(tok)
    if spec.onnx_file is not None:
        from helper.export import onnx_param_count, onnx_precision, ort_session, session_inputs

        session = ort_session(spec.onnx_file, threads)
        keys = session_inputs(session)

        def prepare_np(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
            return {k: tensors[k].cpu().numpy().astype(np.int64, copy=False) for k in keys}

        def run_np(inputs: dict[str, np.ndarray]) -> torch.Tensor:
            return torch.from_numpy(session.run(None, inputs)[0])

        precision = onnx_precision(spec.onnx_file)
        return Runner(spec, keys, prepare_np, run_np, onnx_param_count(spec.onnx_file), precision, "onnxruntime")
    model = AutoModelForSequenceClassification.from_pretrained(spec.path).eval().to(device)
    if model.config.pad_token_id is None and tok.pad_token_id is not None:
        model.config.pad_token_id = tok.pad_token_id
    keys = _accepted_inputs(model, tok)

    def prepare(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(device) for k, v in tensors.items() if k in keys}

    def run(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**inputs).logits

    params = sum(p.numel() for p in model.parameters())
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    return Runner(spec, keys, prepare, run, params, dtype, "torch")


def latency_calls(
    runner: Runner,
    data: EvalData,
    encoded: dict[str, list[list[int]]],
    latency_idx: Sequence[int],
    include_tok: bool,
) -> list[Callable[[], torch.Tensor]]:
    """One batch-1 call per latency example (inputs prepared beforehand unless tokenization is timed)."""
    tok = runner.spec.tokenizer
    tok_kwargs = {"truncation": True, "max_length": data.max_length, "return_tensors": "pt"}
    if include_tok:

        def one(i: int) -> Callable[[], torch.Tensor]:
            def call() -> torch.Tensor:
                return runner.run(runner.prepare(dict(tok(*data.example(i), **tok_kwargs))))

            return call
    else:
        singles = {i: runner.prepare({k: torch.tensor([encoded[k][i]]) for k in runner.keys}) for i in latency_idx}

        def one(i: int) -> Callable[[], torch.Tensor]:
            return lambda: runner.run(singles[i])

    return [one(i) for i in latency_idx]


def _throughput_and_quality(
    runner: Runner,
    data: EvalData,
    encoded: dict[str, list[list[int]]],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """The whole split at ``batch_size``, longest first: samples per second of model time, and the quality metrics."""
    device: torch.device = settings["device"]
    batch_size, include_tok = settings["batch_size"], settings["include_tokenization"]
    tok = runner.spec.tokenizer
    lengths = [len(ids) for ids in encoded["input_ids"]]
    order = _eval_order(lengths)
    tok_kwargs = {"truncation": True, "max_length": data.max_length, "return_tensors": "pt"}
    chunks = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    if include_tok:

        def forward(b: int) -> torch.Tensor:
            idx = chunks[b]
            texts = [[col[i] for i in idx] for col in data.texts]
            return runner.run(runner.prepare(dict(tok(*texts, padding=True, **tok_kwargs))))
    else:
        batches = [runner.prepare(b) for b in pre_batch(tok, encoded, runner.keys, order, batch_size, device)]

        def forward(b: int) -> torch.Tensor:
            return runner.run(batches[b])

    seconds, outputs = measure_throughput(forward, len(chunks), settings["warmup"] > 0, device)
    logits = torch.cat([o.float().cpu() for o in outputs])
    labels = torch.tensor([data.labels[i] for i in order])
    return {
        "throughput_samples_s": len(order) / seconds if seconds > 0 else math.inf,
        "throughput_seconds": seconds,
        **quality_metrics(logits, labels, data.label_names),
    }


# ---------------------------------------------------------------------------------------------------- the run
def device_name(device: torch.device) -> str:
    """Human-readable name of the CPU or GPU that runs the models."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):  # not available on this platform
        return None


def run_benchmark(
    models: Sequence[str | Path],
    dm_or_dataset: ClfDataModule | DataSource = "demo",
    *,
    names: Sequence[str] | None = None,
    split: str = "validation",
    subset: str | None = None,
    text_fields: str | list[str] | None = None,
    label_field: str | None = None,
    label_names: list[str] | None = None,
    batch_size: int = 64,
    latency_runs: int = 100,
    warmup: int = 10,
    threads: int | None = None,
    max_samples: int | None = None,
    max_length: int = 128,
    include_tokenization: bool = False,
    tokenizer: str | PreTrainedTokenizerBase | None = None,
    device: str = "cpu",
    rounds: int = 5,
    ratio_to: str | None = None,
    output_dir: str | Path | None = None,
    wandb: bool = False,
    wandb_project: str = "transformer-distiller",
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Benchmark classifiers on one split: size, parameters, latency, throughput and quality.

    Everything (settings, data, every model's config, labels, weights and tokenizer) is checked before any model is
    loaded or timed, and all problems are raised together.

    Args:
        models: Model folders (or cached Hub names) of fine-tuned ``*ForSequenceClassification`` models.
        dm_or_dataset: A ``ClfDataModule``, or a data source it accepts (``"demo"``, folder, files, ``DatasetDict``,
            Hub name). With a data module, ``subset``, ``text_fields``, ``label_field``, ``label_names`` and
            ``max_length`` come from it.
        names: Display names, one per model (default: folder names).
        split: Split to evaluate on.
        subset: Hub dataset configuration.
        text_fields: Override for the text column(s).
        label_field: Override for the label column.
        label_names: Class names in label order.
        batch_size: Batch size of the throughput pass.
        latency_runs: Timed batch-1 calls per model and round (the number of median-length examples used).
        warmup: Untimed batch-1 calls before timing latency (and one untimed batch before throughput when > 0).
        threads: ``torch.set_num_threads`` for the run (default: the current setting); restored afterwards. ONNX
            Runtime sessions get as many intra-op threads (and one inter-op thread).
        max_samples: Use the first this many examples of the split.
        max_length: Truncation length in tokens.
        include_tokenization: Time tokenization and padding together with the model.
        tokenizer: Tokenizer for model folders that have none.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (ONNX models run on the CPU).
        rounds: Interleaved latency rounds (every model timed once per round, in turn).
        ratio_to: Display name of the model the latency ratios are computed against (default: the first).
        output_dir: When given, write ``results.csv``, ``results.json`` and ``accuracy_vs_latency.png`` there.
        wandb: Log the results as a ``wandb.Table``.
        wandb_project: wandb project name.
        progress: Called with a short message as each model starts (e.g. ``print`` to stderr).

    Returns:
        One dictionary per model, in input order: the per-model results followed by the run's settings
        (``threads``, ``torch_version``, ``device_name``, ...). Quality values are fractions in [0, 1].

    Raises:
        BenchmarkError: Listing every problem with the settings, the data and the models.
    """
    load_before = _load_average()  # before this process adds its own load
    problems = check_settings(threads, batch_size, latency_runs, warmup, max_samples, max_length, device, rounds)
    data, data_problems = load_eval_data(
        dm_or_dataset, split, subset, text_fields, label_field, label_names, max_samples, max_length
    )
    problems += data_problems
    effective_length = data.max_length if data is not None else max_length
    expected_names = data.label_names if data is not None else label_names  # check models even when data failed
    specs, model_problems = inspect_models(models, names, expected_names, tokenizer, effective_length)
    problems += model_problems
    shown = [spec.name for spec in specs]
    if ratio_to is not None and not model_problems and ratio_to not in shown:
        problems.append(f"ratio_to={ratio_to!r} is not one of the model names {shown}; expected one of them")
    if any(spec.onnx_file for spec in specs) and device != "cpu" and _resolve_device(device).type != "cpu":
        problems.append(
            f"device={device!r}: ONNX models run on the CPU here (ONNX Runtime's CPU provider); expected --device cpu "
            "when an ONNX model is compared"
        )
    if problems:
        raise BenchmarkError(problems)
    assert data is not None

    dev = _resolve_device(device)
    previous_threads = torch.get_num_threads()
    threads = threads or previous_threads
    torch.set_num_threads(threads)
    try:
        keys = [tokenizer_fingerprint(spec.tokenizer, data.max_length) for spec in specs]
        encodings: dict[str, dict[str, list[list[int]]]] = {}
        for spec, key in zip(specs, keys, strict=True):
            if key not in encodings:
                encodings[key] = encode(spec.tokenizer, data)
        first = encodings[keys[0]]
        latency_idx = median_length_indices([len(ids) for ids in first["input_ids"]], latency_runs)
        settings = {
            "device": dev,
            "batch_size": batch_size,
            "latency_runs": latency_runs,
            "warmup": warmup,
            "include_tokenization": include_tokenization,
        }
        meta = {
            "dataset": data.dataset,
            "split": data.split + (f" ({data.note})" if data.note else ""),
            "examples": len(data),
            "num_labels": len(data.label_names),
            "threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
            "device": str(dev),
            "device_name": device_name(dev),
            "batch_size": batch_size,
            "latency_runs": latency_runs,
            "warmup": warmup,
            "latency_examples": len(latency_idx),
            "include_tokenization": include_tokenization,
            "max_length": data.max_length,
            "cpu_count": os.cpu_count(),
            "load_avg_1min": load_before,
        }
        meta["rounds"] = rounds
        if any(spec.onnx_file for spec in specs):
            import onnxruntime

            meta["onnxruntime_version"] = onnxruntime.__version__
        meta["ratio_to"] = ratio_to or specs[0].name
        reference = shown.index(meta["ratio_to"])
        runners = []
        for spec in specs:
            if progress is not None:
                progress(f"loading {spec.name} ({spec.onnx_file or spec.path})")
            runners.append(load_runner(spec, dev, meta["threads"]))
        calls = [
            latency_calls(runner, data, encodings[key], latency_idx, include_tokenization)
            for runner, key in zip(runners, keys, strict=True)
        ]
        if progress is not None:
            progress(
                f"latency: {rounds} interleaved rounds x {len(latency_idx)} batch-1 calls per model, "
                f"{meta['threads']} thread(s)"
            )
        latency = latency_stats(time_rounds(calls, rounds, warmup, dev), reference)
        del calls
        rows = []
        for runner, key, lat in zip(runners, keys, latency, strict=True):
            spec = runner.spec
            if progress is not None:
                progress(f"throughput and quality: {spec.name} on {len(data)} examples")
            lengths = [len(ids) for ids in encodings[key]["input_ids"]]
            rows.append(
                {
                    "model": spec.name,
                    "runtime": runner.runtime,
                    "path": str(spec.onnx_file or spec.path),
                    "tokenizer": spec.tokenizer_source,
                    "dtype": runner.dtype,
                    "size_mb": spec.size_mb,
                    "params": runner.params,
                    "latency_tokens": statistics.fmean(lengths[i] for i in latency_idx),
                    **lat,
                    **_throughput_and_quality(runner, data, encodings[key], settings),
                    **meta,
                }
            )
            gc.collect()
    finally:
        torch.set_num_threads(previous_threads)
    files = write_results(rows, output_dir) if output_dir is not None else {}
    if wandb:
        log_to_wandb(rows, project=wandb_project, plot=files.get("plot"))
    return rows


# ---------------------------------------------------------------------------------------------------- reporting
def metric_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Quality keys present in the rows, in report order (accuracy, macro F1, then binary or per-class ones)."""
    fixed = ["accuracy", "f1_macro", "precision", "recall", "roc_auc"]
    keys = [k for k in fixed if any(k in r for r in rows)]
    per_class = [k for k in rows[0] if k.startswith("f1_") and k != "f1_macro"] if rows else []
    return keys + per_class


def table_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """All keys of the rows in a stable order: model results, quality, then the run's settings."""
    lead = [
        "model",
        "size_mb",
        "params",
        "latency_ms_mean",
        "latency_ms_std",
        "latency_ms_median",
        "latency_ms_round_min",
        "latency_ms_round_max",
        "latency_ratio",
        "latency_ratio_min",
        "latency_ratio_max",
        "latency_ratio_agree",
        "throughput_samples_s",
    ]
    metrics = metric_columns(rows)
    rest = ["latency_rounds", "latency_ms_rounds", "latency_tokens", "throughput_seconds", "runtime", "dtype", "path"]
    rest.append("tokenizer")
    seen = set(lead + metrics + rest + list(META_KEYS))
    extra = [k for r in rows for k in r if k not in seen]
    return lead + metrics + rest + list(dict.fromkeys(extra)) + [k for k in META_KEYS if any(k in r for r in rows)]


_METRIC_TITLES = {
    "accuracy": "accuracy (%)",
    "f1_macro": "macro F1 (%)",
    "precision": "precision (%)",
    "recall": "recall (%)",
    "roc_auc": "ROC-AUC (%)",
}


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def markdown_report(rows: Sequence[dict[str, Any]]) -> str:
    """Header lines (dataset, split, examples, threads, torch, device) and a Markdown table, one row per model."""
    if not rows:
        return "(no results)"
    m = rows[0]
    ort = f" | onnxruntime {m['onnxruntime_version']}" if m.get("onnxruntime_version") else ""
    header = (
        f"Benchmark: dataset {m['dataset']} | split {m['split']} | {m['examples']} examples | "
        f"threads {m['threads']} | torch {m['torch_version']}{ort} | device {m['device']} ({m['device_name']})"
    )
    rounds = m.get("rounds", 1)
    timing = (
        f"Latency: batch 1, models interleaved in {rounds} round(s) (A B C ... A B C ...), each round "
        f"{m['latency_runs']} timed calls per model over the {m['latency_examples']} examples nearest the median "
        f"length, after {m['warmup']} warm-up calls; median of the round medians [min-max over rounds], and the "
        f"latency ratio to {m.get('ratio_to', rows[0]['model'])!r} per round: median [min-max], rounds agreeing; "
        f"throughput: batch {m['batch_size']} over the whole split; tokenization "
        f"{'included in' if m['include_tokenization'] else 'excluded from'} timing."
    )
    load, cores = m.get("load_avg_1min"), m.get("cpu_count")
    if m["device"] == "cpu" and load is not None and cores and load + m["threads"] > cores + 0.5:
        timing += (
            f"\nWarning: the 1-minute load average was {load} on {cores} cores before the run, so other processes "
            f"compete with the {m['threads']} benchmark thread(s); timings are noisy (try fewer --threads or an idle "
            "machine)."
        )
    metrics = metric_columns(rows)
    titles = [
        "model",
        "runtime",
        "size (MB)",
        "params (M)",
        "latency b1 mean ± std (ms)",
        "latency b1 median (ms)",
        "round medians min–max (ms)",
        "latency ratio [min–max] (agree)",
        "throughput (samples/s)",
    ] + [_METRIC_TITLES.get(k, f"F1 {k[3:]} (%)") for k in metrics]
    lines = [header, "", timing, "", "| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for r in rows:
        runtime = str(r.get("runtime", "torch")) + (f" {r['dtype']}" if r.get("dtype") else "")
        spread = f"{_fmt(r.get('latency_ms_round_min'), 2)}–{_fmt(r.get('latency_ms_round_max'), 2)}"
        ratio = (
            f"{_fmt(r.get('latency_ratio'), 3)} [{_fmt(r.get('latency_ratio_min'), 3)}–"
            f"{_fmt(r.get('latency_ratio_max'), 3)}] "
            f"({r.get('latency_ratio_agree', '–')}/{r.get('latency_rounds', '–')})"
        )
        cells = [
            str(r["model"]).replace("|", "\\|"),
            runtime,
            _fmt(r["size_mb"], 1),
            _fmt(r["params"] / 1e6, 2),
            f"{_fmt(r['latency_ms_mean'], 2)} ± {_fmt(r['latency_ms_std'], 2)}",
            _fmt(r["latency_ms_median"], 2),
            spread,
            ratio,
            _fmt(r["throughput_samples_s"], 1),
        ] + [_fmt(None if r.get(k) is None else 100 * r[k], 2) for k in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def label_heights(points: Sequence[tuple[float, float, str]], gap: float) -> list[float]:
    """Heights for the points' labels: each at its point's height, moved down where labels at nearby latencies would
    overlap, so that such labels are at least ``gap`` apart (points given as ``(latency, accuracy, name)``).

    Labels are drawn to the right of their points; a label reaches about ``0.02 * span`` per character (the plot's
    latency span, at the plot's size and font), so a long label also collides with points further right.
    """
    heights = [y for _, y, _ in points]
    xs = [x for x, _, _ in points]
    span = (max(xs) - min(xs)) or 1.0
    reach = [0.03 * span + 0.02 * span * len(name) for _, _, name in points]

    def overlaps(i: int, j: int) -> bool:
        left, right = (i, j) if xs[i] <= xs[j] else (j, i)
        return abs(xs[j] - xs[i]) < 0.15 * span or xs[right] - xs[left] < reach[left]

    placed: list[int] = []
    for i in sorted(range(len(points)), key=lambda i: -points[i][1]):
        near = [j for j in placed if overlaps(i, j)]
        for j in sorted(near, key=lambda j: -heights[j]):
            if heights[i] > heights[j] - gap:
                heights[i] = min(heights[i], heights[j] - gap)
        placed.append(i)
    return heights


def plot_accuracy_vs_latency(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Save a scatter plot (x: batch-1 median latency in ms, y: accuracy in %), one labelled point per model."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    points = [(r["latency_ms_median"], 100 * r["accuracy"], str(r["model"])) for r in rows]
    colors = []
    for (x, y, _), r in zip(points, rows, strict=True):
        marker = "s" if r.get("runtime") == "onnxruntime" else "o"
        colors.append(ax.scatter([x], [y], s=40, marker=marker).get_facecolor()[0])
        low, high = r.get("latency_ms_round_min"), r.get("latency_ms_round_max")
        if low is not None and high is not None:  # the spread of the round medians
            ax.errorbar([x], [y], xerr=[[x - low], [high - x]], fmt="none", ecolor=colors[-1], lw=1, capsize=2)
    m = rows[0]
    ax.set_xlabel("batch-1 median latency (ms; bars: min-max over rounds; squares: ONNX Runtime)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{m['dataset']} / {m['split']}: {m['threads']} thread(s), {m['device_name']}", fontsize=9)
    ax.margins(x=0.25, y=0.2)
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    heights = label_heights(points, 0.045 * (y1 - y0))
    for (x, y, name), label_y, color in zip(points, heights, colors, strict=True):
        arrow = {"arrowstyle": "-", "lw": 0.6, "color": color} if abs(label_y - y) > 1e-9 else None
        xytext = (x + 0.03 * (x1 - x0), label_y)
        ax.annotate(name, (x, y), xytext=xytext, va="center", fontsize=9, color=color, arrowprops=arrow)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def write_results(rows: Sequence[dict[str, Any]], output_dir: str | Path) -> dict[str, Path]:
    """Write ``results.csv``, ``results.json`` (``{"meta": ..., "results": rows}``) and the plot.

    Returns:
        The written paths under the keys ``csv``, ``json`` and ``plot``.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    columns = table_columns(rows)
    csv_path, json_path = out / CSV_NAME, out / JSON_NAME
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: "" if r.get(k) is None else r.get(k) for k in columns})
    meta = {k: rows[0][k] for k in META_KEYS if rows and k in rows[0]}
    payload = {"meta": meta, "results": [{k: _json_value(r.get(k)) for k in columns} for r in rows]}
    json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    plot_path = plot_accuracy_vs_latency(rows, out / PLOT_NAME)
    return {"csv": csv_path, "json": json_path, "plot": plot_path}


def log_to_wandb(
    rows: Sequence[dict[str, Any]], project: str = "transformer-distiller", plot: Path | None = None
) -> None:
    """Log the results as a ``wandb.Table`` (and the plot, when given) in a new run of job type ``benchmark``.

    ``WANDB_MODE`` is respected; when it is unset and no credentials are configured the run is offline.
    """
    import wandb as wandb_lib

    from helper.cli import wandb_has_credentials

    kwargs = {}
    if "WANDB_MODE" not in os.environ and not wandb_has_credentials():
        kwargs["mode"] = "offline"
    columns = table_columns(rows)
    meta = {k: rows[0][k] for k in META_KEYS if rows and k in rows[0]}
    run = wandb_lib.init(project=project, job_type="benchmark", config=meta, **kwargs)
    try:
        table = wandb_lib.Table(columns=columns, data=[[_json_value(r.get(k)) for k in columns] for r in rows])
        payload: dict[str, Any] = {"benchmark": table}
        if plot is not None and Path(plot).is_file():
            payload["accuracy_vs_latency"] = wandb_lib.Image(str(plot))
        run.log(payload)
    finally:
        run.finish()


# ---------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        description="Compare fine-tuned classifiers: size, batch-1 latency, throughput and quality on one split.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "models",
        nargs="+",
        help="model folders (e.g. outputs/teacher outputs/student_ms), ONNX folders from export.py or .onnx files",
    )
    p.add_argument("--dataset", default="demo", help="'demo', a data folder, a file, or a Hub name")
    p.add_argument("--subset", default=None, help="Hub dataset configuration, e.g. sst2 for glue")
    p.add_argument("--split", default="validation", help="split to evaluate on")
    p.add_argument("--label-names", nargs="+", default=None, help="class names in label order")
    p.add_argument("--text-fields", nargs="+", default=None, help="text column(s), one or a pair")
    p.add_argument("--label-field", default=None, help="label column")
    p.add_argument("--names", nargs="+", default=None, help="display names, one per model")
    p.add_argument("--batch-size", type=int, default=64, help="batch size of the throughput pass")
    p.add_argument("--latency-runs", type=int, default=100, help="timed batch-1 runs per model and round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds (A B C ... A B C ...)")
    p.add_argument("--ratio-to", default=None, help="display name of the model latency ratios refer to (default first)")
    p.add_argument("--warmup", type=int, default=10, help="untimed batch-1 runs before timing")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's current setting)")
    p.add_argument("--max-samples", type=int, default=None, help="use the first N examples of the split")
    p.add_argument("--max-length", type=int, default=128, help="truncation length in tokens")
    p.add_argument("--include-tokenization", action="store_true", help="time tokenization with the model")
    p.add_argument("--tokenizer", default=None, help="tokenizer for model folders that have none")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--output-dir", default="outputs/benchmark", help="folder for results.csv/json and the plot")
    p.add_argument("--wandb", action="store_true", help="log the table to wandb (offline without credentials)")
    p.add_argument("--wandb-project", default="transformer-distiller", help="wandb project")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line; prints the Markdown report. Returns the exit status."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # keep stderr to the benchmark's own progress lines
    text_fields = args.text_fields[0] if args.text_fields and len(args.text_fields) == 1 else args.text_fields
    try:
        rows = run_benchmark(
            args.models,
            args.dataset,
            names=args.names,
            split=args.split,
            subset=args.subset,
            text_fields=text_fields,
            label_field=args.label_field,
            label_names=args.label_names,
            batch_size=args.batch_size,
            latency_runs=args.latency_runs,
            warmup=args.warmup,
            threads=args.threads,
            max_samples=args.max_samples,
            max_length=args.max_length,
            include_tokenization=args.include_tokenization,
            tokenizer=args.tokenizer,
            device=args.device,
            rounds=args.rounds,
            ratio_to=args.ratio_to,
            output_dir=args.output_dir,
            wandb=args.wandb,
            wandb_project=args.wandb_project,
            progress=lambda msg: print(msg, file=sys.stderr, flush=True),
        )
    except BenchmarkError as err:
        print(f"benchmark.py: error: {err}", file=sys.stderr)
        return 2
    print(markdown_report(rows))
    out = Path(args.output_dir)
    print(f"\nwrote {out / CSV_NAME}, {out / JSON_NAME}, {out / PLOT_NAME}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
