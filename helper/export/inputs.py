"""What an export starts from, checked before any work: the settings, the model folder, the output folder and the
verification data (padded validation batches, batch-1 examples, calibration examples). Every problem is collected
into one :class:`ExportError`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.errors import ProblemsError
from common.hub import hub_offline_reason
from helper.bench.data import EvalData, encode, eval_order, load_eval_data, pre_batch
from helper.bench.models import TOKENIZER_FILES, model_input_names
from helper.bench.runtime import missing_onnx_modules, onnx_missing_message
from helper.export.convert import OPSET, QUANTIZE_MODES


class ExportError(ProblemsError):
    """Bad export input (model folder, output folder, settings, data): every problem found, in one message."""

    headline = "{n} problem(s) found before exporting; nothing was written"


class ExportRefused(RuntimeError):  # noqa: N818 (a refusal, not a crash)
    """The export ran but failed a check (fp32 mismatch or the int8 accuracy gate); nothing was written."""


@dataclass(frozen=True)
class ExportOptions:
    """The settings of one export (``export.py``'s flags; :func:`helper.export.export_model`'s keyword arguments).

    Attributes:
        dataset: Data the checks run on (anything ``ClfDataModule`` takes: ``"demo"``, a folder, a Hub name).
        subset: Hub dataset configuration.
        split: Split to verify and gate on (``validation`` held out from train as in training when absent).
        text_fields: Override for the text column(s).
        label_field: Override for the label column.
        label_names: Class names in label order.
        max_length: Truncation length in tokens.
        max_samples: Use only the first this many examples of the split.
        batch_size: Batch size of the verification passes.
        quantize: ``"none"``, ``"int8"`` (dynamic) or ``"int8-static"`` (calibrated on ``calibration_samples``
            training examples).
        calibration_samples: Training examples that calibrate ``int8-static``.
        max_drop: Largest accepted accuracy loss of int8 against fp32, in points (a negative value demands a gain).
        overwrite: Replace an existing export at the output folder.
        threads: torch and ONNX Runtime intra-op threads for the checks (default: their own choice).
        opset: ONNX opset.
        push_to_hub: Upload the finished folder to this Hub repository (``user/name``).
    """

    dataset: Any = "demo"
    subset: str | None = None
    split: str = "validation"
    text_fields: str | list[str] | None = None
    label_field: str | None = None
    label_names: list[str] | None = None
    max_length: int = 128
    max_samples: int | None = None
    batch_size: int = 32
    quantize: str = "none"
    calibration_samples: int = 256
    max_drop: float = 1.0
    overwrite: bool = False
    threads: int | None = None
    opset: int = OPSET
    push_to_hub: str | None = None

    @classmethod
    def names(cls) -> list[str]:
        """The setting names, in order."""
        return [f.name for f in fields(cls)]

    def size_problems(self) -> list[str]:
        """Problems with the counts and sizes (each must be a positive integer), naming their flags."""
        problems = []
        for name in ("batch_size", "max_length", "max_samples", "calibration_samples", "threads", "opset"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                problems.append(f"--{name.replace('_', '-')}={value!r}: expected a positive integer")
        return problems

    def problems(self) -> list[str]:
        """Problems with the settings themselves, each naming its flag."""
        problems = self.size_problems()
        if self.quantize not in QUANTIZE_MODES:
            problems.append(f"--quantize={self.quantize!r} is not supported; expected one of {list(QUANTIZE_MODES)}")
        drop = self.max_drop
        if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not math.isfinite(drop):
            problems.append(f"--max-drop={drop!r}: expected a finite number of accuracy points (e.g. 1.0)")
        if self.push_to_hub is not None:
            reason = hub_offline_reason()
            if reason is not None:
                problems.append(
                    f"--push-to-hub={self.push_to_hub!r}: the Hugging Face Hub is unreachable ({reason}); export "
                    "without --push-to-hub and upload the folder later with huggingface_hub.upload_folder"
                )
        return problems


@dataclass
class Batches:
    """Padded validation batches (longest first) and the labels in the same order."""

    inputs: list[dict[str, torch.Tensor]]
    labels: np.ndarray
    dataset: str
    split: str
    label_names: list[str]
    calibration: list[dict[str, np.ndarray]] = field(default_factory=list)
    singles: list[dict[str, np.ndarray]] = field(default_factory=list)


def _flagged(problems: list[str]) -> list[str]:
    """The data loader's problems, naming ``export.py``'s flags (``--dataset=...``, ``--split=...``)."""
    return [f"--{p}" if p.startswith(("dataset=", "split=")) else p for p in problems]


def _calibration_rows(train: EvalData, held: EvalData, count: int) -> list[int]:
    """``count`` shuffled (seed 0) training rows whose texts are not among the verification examples."""
    seen = {held.example(i) for i in range(len(held))}
    rows = [i for i in range(len(train)) if train.example(i) not in seen]
    return [rows[i] for i in np.random.default_rng(0).permutation(len(rows))[:count]]


def load_batches(
    tokenizer: Any, names: list[str], options: ExportOptions, calibration_samples: int = 0
) -> tuple[Batches | None, list[str]]:
    """Load the verification split (as the benchmark does: :func:`helper.bench.data.load_eval_data`, so fields,
    labels and held-out validation match training), tokenize it with ``tokenizer`` and pad it into batches; with
    ``calibration_samples``, also that many shuffled training examples (never a verification text) as batch-1
    calibration inputs. Returns the batches (None on problems) and the problems."""
    o = options
    data_args = (o.subset, o.text_fields, o.label_field, o.label_names)
    held, problems = load_eval_data(o.dataset, o.split, *data_args, max_samples=o.max_samples, max_length=o.max_length)
    if held is None:
        return None, _flagged(problems)
    enc = encode(tokenizer, held)
    order = eval_order([len(ids) for ids in enc["input_ids"]])
    batches = pre_batch(tokenizer, enc, names, order, o.batch_size, torch.device("cpu"))
    calibration = []
    if calibration_samples:
        train, problems = load_eval_data(o.dataset, "train", *data_args, max_length=o.max_length)
        if train is None:
            return None, [f"--quantize=int8-static calibrates on training examples: {p}" for p in problems]
        cal = encode(tokenizer, train)
        rows = _calibration_rows(train, held, calibration_samples)
        calibration = [{k: np.asarray([cal[k][i]], dtype=np.int64) for k in names} for i in rows]
    singles = [{k: np.asarray([enc[k][i]], dtype=np.int64) for k in names} for i in order]  # batch 1, no padding
    labels = np.asarray(held.labels)[order]
    return Batches(batches, labels, held.dataset, o.split, list(held.label_names), calibration, singles), []


def check_model_folder(model_dir: str | Path) -> tuple[str | None, list[str]]:
    """Problems with the source folder: exists, has a ``*ForSequenceClassification`` config, weights, a tokenizer.

    Returns:
        The resolved folder (None when unusable) and the problems.
    """
    from transformers import AutoConfig

    from common.hub import HubUnavailableError
    from helper.models import resolve_model_path

    where = f"model={str(model_dir)!r}"
    try:
        path = resolve_model_path(model_dir)
    except (FileNotFoundError, HubUnavailableError) as err:
        return None, [f"{where}: {err}"]
    if not Path(path).is_dir():
        return None, [f"{where} is not a local folder; expected a trained model folder (e.g. outputs/student_ms)"]
    problems = []
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError) as err:
        return None, [f"{where}: cannot read its config.json: {err}"]
    archs = list(config.architectures or [])
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        problems.append(
            f"{where} is not a sequence classifier (config.architectures={archs}); expected a fine-tuned "
            "*ForSequenceClassification folder, e.g. the output of finetune.py or distillation_*.py"
        )
    if not any(Path(path).glob("*.safetensors")) and not any(Path(path).glob("pytorch_model*.bin")):
        problems.append(f"{where} holds no weight files; expected model.safetensors or pytorch_model.bin")
    if not any((Path(path) / f).is_file() for f in TOKENIZER_FILES):
        problems.append(
            f"{where} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); expected the tokenizer saved with the "
            "model (HgExport writes it), since the exported folder must carry the tokenizer its inputs came from"
        )
    return path, problems


def check_output(out_dir: str | Path, overwrite: bool) -> list[str]:
    """Problems with the output folder: an existing non-empty folder without ``overwrite``, or a file."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        return [f"out={str(out)!r} is a file; expected a folder to write the export into"]
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        return [
            f"out={str(out)!r} already holds an export ({', '.join(sorted(p.name for p in out.iterdir())[:4])}...); "
            "pass --overwrite to replace it, or choose another folder"
        ]
    return []


@dataclass
class Inputs:
    """A checked export's starting point: the resolved model folder, the model (eval mode), its tokenizer, the data."""

    source: str
    model: Any
    tokenizer: Any
    batches: Batches


def check_inputs(model_dir: str | Path, out_dir: str | Path, options: ExportOptions) -> Inputs:
    """Check everything an export needs and load it: the ONNX packages, the settings, the output folder, the model
    folder, its tokenizer and the verification data (whose class count must be the model's).

    Raises:
        ExportError: Every problem found (nothing is written).
    """
    problems: list[str] = []
    missing = missing_onnx_modules()
    if missing:
        problems.append(onnx_missing_message(missing))
    problems += options.problems()
    problems += check_output(out_dir, options.overwrite)
    source, folder_problems = check_model_folder(model_dir)
    problems += folder_problems
    if source is None or folder_problems:
        raise ExportError(problems)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise ExportError([*problems, f"model={str(model_dir)!r}: its tokenizer could not be loaded: {err}"]) from None
    model = AutoModelForSequenceClassification.from_pretrained(source).eval()
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if options.size_problems():  # the data cannot be batched with these sizes; the problems are listed already
        raise ExportError(problems)
    calibration = options.calibration_samples if options.quantize == "int8-static" else 0
    batches, data_problems = load_batches(tokenizer, model_input_names(model, tokenizer), options, calibration)
    problems += data_problems
    if batches is not None and len(batches.label_names) != model.config.num_labels:
        problems.append(
            f"model={str(model_dir)!r} has num_labels={model.config.num_labels} but the data has "
            f"{len(batches.label_names)} classes {batches.label_names}; expected the same label count"
        )
    if problems or batches is None:
        raise ExportError(problems)
    return Inputs(str(source), model, tokenizer, batches)
