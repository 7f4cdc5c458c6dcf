"""Deployable models: ONNX export checked against PyTorch, int8 quantization behind an accuracy gate, a model card.

``python export.py outputs/student_sst2 outputs/student_sst2_onnx --quantize int8 --dataset ../shared/data/sst2``
writes ``model.onnx`` (fp32), ``model_int8.onnx``, the tokenizer, ``config.json`` (labels), ``export_report.json``
and a ``README.md`` model card into a temporary folder beside the target and renames it into place only when every
check passed:

1. **Export** with PyTorch's own exporter, ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` + ONNX Script),
   with dynamic batch and sequence axes. Why this one:

   * the legacy TorchScript exporter (``dynamo=False``) *traces* the model, and transformers v5 builds the attention
     mask with Python branches on tensor values (e.g. "is the mask all ones?"); the trace freezes the branch taken for
     the example input, so a model traced on an unpadded batch ignores padding later. Measured on a tiny BERT: max
     abs logit difference 0.03 on padded batches (dynamo exporter: 2e-8);
   * ``optimum-onnx`` (0.1.0) requires ``transformers<4.58`` and this project needs transformers v5, so it cannot be
     installed beside it; ``torch.onnx`` adds only ``onnxscript`` to what PyTorch already ships.

2. **Verify** fp32 ONNX Runtime against PyTorch on the validation examples (padded batches of several sizes and
   lengths): the max abs logit difference must be <= 1e-4, else the export is refused.
3. **Quantize** (``--quantize int8``) with ONNX Runtime dynamic quantization (``quantize_dynamic``: int8 weights,
   activations quantized per call, no calibration data). All the operator types ORT's dynamic quantizer handles are
   quantized, including the embedding ``Gather`` (the word-embedding matrix is most of a small student's weights:
   11.7 M of 15.6 M parameters for a 2-layer, 384-wide BERT with a 30k vocabulary).
   ``--quantize int8-static`` instead calibrates activation ranges on ``--calibration-samples`` training examples
   (``quantize_static``, QDQ format); it is an option, not the default (see the README for how the two measured).
4. **Gate:** fp32 and int8 accuracy on the validation split, in padded batches and one example at a time (int8
   results depend on the batch: dynamic quantization scales span the batch, static ones see padding); the int8 model
   is refused (non-zero exit, nothing written or replaced) when it loses more than ``--max-drop`` points either way.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import shutil
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.errors import ProblemsError
from common.hub import hub_offline_reason
from helper.bench.data import eval_order, pre_batch
from helper.bench.flags import add_data_arguments, data_options, parse_quietly
from helper.bench.models import TOKENIZER_FILES, model_input_names, weights_size_mb
from helper.bench.runtime import (
    missing_onnx_modules,
    onnx_missing_message,
    onnx_size_mb,
    ort_session,
    run_session,
)
from helper.checkpoint import atomic_replace
from helper.model_card import CardInfo, hub_base_model, read_card_info, write_model_card

FP32_FILE, INT8_FILE = "model.onnx", "model_int8.onnx"
REPORT_FILE = "export_report.json"
#: Largest accepted max abs logit difference between fp32 ONNX Runtime and PyTorch.
FP32_TOLERANCE = 1e-4
QUANTIZE_MODES = ("none", "int8", "int8-static")
#: How each quantization mode is described in the report and the card.
QUANTIZE_METHODS = {
    "int8": "quantize_dynamic: int8 weights (QInt8) of all operators ORT supports incl. the embedding Gather, "
    "activations quantized at run time",
    "int8-static": "quantize_static (QDQ): int8 weights, uint8 activations with ranges calibrated (MinMax) on "
    "training examples",
}
OPSET = 18


class ExportError(ProblemsError):
    """Bad export input (model folder, output folder, settings, data): every problem found, in one message."""

    headline = "{n} problem(s) found before exporting; nothing was written"


class ExportRefused(RuntimeError):  # noqa: N818 (a refusal, not a crash)
    """The export ran but failed a check (fp32 mismatch or the int8 accuracy gate); nothing was written."""


# ---------------------------------------------------------------------------------------------------- export
@contextlib.contextmanager
def _quiet() -> Any:
    """Hide the exporter's and quantizer's progress prints, warnings and log lines (errors still raise)."""
    root = logging.getLogger()
    torch_onnx = logging.getLogger("torch.onnx")
    levels = root.level, torch_onnx.level
    root.setLevel(logging.ERROR)
    torch_onnx.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(levels[0])
        torch_onnx.setLevel(levels[1])


class _LogitsOnly(torch.nn.Module):
    """Wraps a classifier so the graph has named token inputs and one ``logits`` output."""

    def __init__(self, model: torch.nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self.model(**{k: v for k, v in given.items() if k in self.names}).logits


def export_onnx(model: torch.nn.Module, tokenizer: Any, path: str | Path, opset: int = OPSET) -> list[str]:
    """Export ``model`` (eval mode) to ``path`` with dynamic batch and sequence axes; returns the input names.

    Uses ``torch.onnx.export(..., dynamo=True)`` (see the module docstring for why), then ONNX Script's graph
    optimisation; the model is saved as one file.
    """
    model = model.eval()
    names = model_input_names(model, tokenizer)
    sample = tokenizer(
        ["an example sentence for the export", "a shorter one"], padding=True, return_tensors="pt"
    )  # batch 2 with padding, so neither axis is specialised to 1 and the mask path is the general one
    if names[0] != "input_ids":
        raise ValueError(f"the model and tokenizer share the inputs {names}; expected input_ids among them")
    kwargs = {k: sample[k] for k in names}
    batch = torch.export.Dim("batch")
    max_pos = getattr(model.config, "max_position_embeddings", None)
    seq = torch.export.Dim("sequence", max=max_pos) if isinstance(max_pos, int) and max_pos > 2 else None
    seq = seq or torch.export.Dim("sequence")
    shapes = {k: {0: batch, 1: seq} for k in names}
    with _quiet():
        program = torch.onnx.export(
            _LogitsOnly(model, names).eval(),
            (),
            kwargs=kwargs,
            dynamo=True,
            input_names=names,
            output_names=["logits"],
            dynamic_shapes=shapes,
            opset_version=opset,
            optimize=True,
            verbose=False,
        )
        program.save(str(path), external_data=False)
    return names


def quantize_static_int8(src: str | Path, dst: str | Path, calibration: Sequence[dict[str, np.ndarray]]) -> None:
    """Static int8 quantization (QDQ format) with activation ranges calibrated on ``calibration`` inputs (batch-1
    dicts of int64 arrays). The graph is pre-processed (ONNX shape inference, ORT graph optimisation) first."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    pre = Path(dst).with_name(Path(dst).stem + ".pre.onnx")
    try:
        with _quiet():
            # symbolic shape inference does not complete on the dynamo exporter's graphs; ONNX's own is enough here
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre),
                str(dst),
                _Reader(),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
    finally:
        pre.unlink(missing_ok=True)
        for extra in Path(dst).parent.glob("*.onnx.data"):  # calibration may leave augmented-model data behind
            extra.unlink(missing_ok=True)


def quantize_int8(src: str | Path, dst: str | Path) -> None:
    """Dynamic int8 quantization with ONNX Runtime: int8 weights of every operator type ORT's dynamic quantizer
    supports (``MatMul``, the embedding ``Gather``, ...), activations quantized at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


# ---------------------------------------------------------------------------------------------------- data
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


def load_batches(
    tokenizer: Any,
    names: Sequence[str],
    dataset: Any,
    subset: str | None,
    split: str,
    text_fields: str | list[str] | None,
    label_field: str | None,
    label_names: list[str] | None,
    max_length: int,
    max_samples: int | None,
    batch_size: int,
    calibration_samples: int = 0,
) -> tuple[Batches | None, list[str]]:
    """Load ``split`` through ``ClfDataModule`` (so fields, labels and held-out validation match training), tokenize
    it with ``tokenizer`` and pad it into batches; with ``calibration_samples``, also that many shuffled training
    examples (never the validation ones) as batch-1 calibration inputs. Returns the batches (None on problems) and
    the problems."""
    from common.hub import HubUnavailableError
    from data.data_module import ClfDataModule
    from data.sources import DataError, load_source

    shown = str(dataset) if isinstance(dataset, (str, Path)) else type(dataset).__name__
    try:
        raw = load_source(dataset, subset)
        if split != "validation" and split not in raw:
            return None, [f"--split={split!r} not found in dataset {shown!r}; available splits: {list(raw)}"]
        dm = ClfDataModule(
            raw,
            tokenizer=None,
            text_fields=text_fields,
            label_field=label_field,
            label_names=label_names,
            val_split=split,
            max_length=max_length,
            max_eval_samples=max_samples,
        )
    except DataError as err:
        return None, [f"--dataset={shown!r}: {p}" for p in err.problems]
    except HubUnavailableError as err:
        return None, [f"--dataset={shown!r}: {err}"]
    ds = dm.raw["validation"]
    if len(ds) == 0:
        return None, [f"split {split!r} of dataset {shown!r} is empty; expected at least one example"]
    labels = np.asarray([int(v) for v in ds[dm.label_field]])
    enc = tokenizer(*[list(ds[f]) for f in dm.text_fields], truncation=True, max_length=dm.max_length)
    order = eval_order([len(ids) for ids in enc["input_ids"]])
    batches = pre_batch(tokenizer, enc, names, order, batch_size, torch.device("cpu"))
    calibration = []
    if calibration_samples:
        train = dm.raw["train"].shuffle(seed=0)
        train = train.select(range(min(calibration_samples, len(train))))
        cal = tokenizer(*[list(train[f]) for f in dm.text_fields], truncation=True, max_length=dm.max_length)
        calibration = [{k: np.asarray([cal[k][i]], dtype=np.int64) for k in names} for i in range(len(train))]
    singles = [{k: np.asarray([enc[k][i]], dtype=np.int64) for k in names} for i in order]  # batch 1, no padding
    return Batches(batches, labels[order], shown, split, list(dm.label_names), calibration, singles), []


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of argmax predictions equal to the labels."""
    return float((logits.argmax(axis=-1) == labels).mean())


def accuracy_drop_points(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy points lost by ``candidate`` logits against ``reference`` logits (negative: gained).

    Computed from the counts of correct predictions, so that e.g. 98 vs 96 correct of 200 is exactly 1.0 (the
    difference of the two accuracies, 0.49 - 0.48, is 1.0000000000000009 points and would fail a gate of 1.0).
    """
    correct = [int((x.argmax(axis=-1) == labels).sum()) for x in (reference, candidate)]
    return 100 * (correct[0] - correct[1]) / len(labels)


def macro_f1(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Macro-averaged F1 over ``num_classes`` classes (a class with no support and no prediction scores 0)."""
    preds = logits.argmax(axis=-1)
    scores = []
    for c in range(num_classes):
        tp = int(((preds == c) & (labels == c)).sum())
        fp_fn = int(((preds == c) != (labels == c)).sum())
        scores.append(2 * tp / (2 * tp + fp_fn) if tp + fp_fn else 0.0)
    return float(np.mean(scores))


# ---------------------------------------------------------------------------------------------------- checks
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


# ---------------------------------------------------------------------------------------------------- the export
@dataclass
class ExportResult:
    """What an export measured and wrote (also saved as ``export_report.json`` and in the model card)."""

    out_dir: str
    files: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


def _card_info(source: Path, model: Any, report: dict[str, Any], name: str) -> CardInfo:
    info = read_card_info(source)
    if info is None:  # a folder not written by this project: what the config says
        cfg = model.config
        info = CardInfo(
            name=source.name,
            labels=[str(cfg.id2label.get(i, f"LABEL_{i}")) for i in range(cfg.num_labels)],
            base_model=hub_base_model(getattr(cfg, "_name_or_path", None)),
            params=sum(p.numel() for p in model.parameters()),
            size_mb=weights_size_mb(source),
            architecture=_architecture(cfg),
        )
    info.name = name
    info.base_model = info.base_model or hub_base_model(str(source))
    info.pytorch_source = str(source)
    info.onnx = report
    if not info.metrics and report.get("pytorch_accuracy") is not None:
        info.metrics = {"accuracy": report["pytorch_accuracy"], "f1_macro": report["pytorch_f1_macro"]}
        info.metrics_source = "measured by export.py"
        info.dataset, info.split = report["dataset"], report["split"]
    return info


def _architecture(cfg: Any) -> str:
    layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layers", None)
    hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "dim", None)
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_heads", None)
    return f"{cfg.model_type}: {layers} layers, hidden {hidden}, {heads} heads"


def export_model(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    dataset: Any = "demo",
    subset: str | None = None,
    split: str = "validation",
    text_fields: str | list[str] | None = None,
    label_field: str | None = None,
    label_names: list[str] | None = None,
    max_length: int = 128,
    max_samples: int | None = None,
    batch_size: int = 32,
    quantize: str = "none",
    calibration_samples: int = 256,
    max_drop: float = 1.0,
    overwrite: bool = False,
    threads: int | None = None,
    opset: int = OPSET,
    push_to_hub: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export a trained classifier folder to ONNX, verify it, optionally quantize it behind the accuracy gate.

    Every input is checked before any work, and all problems are raised together. The output is built in a
    temporary folder beside ``out_dir`` and renamed into place only when every check passed, so a refused export
    leaves a previous one untouched.

    Args:
        model_dir: A ``*ForSequenceClassification`` folder with its tokenizer (teacher or student).
        out_dir: Folder to write (``model.onnx``, ``model_int8.onnx``, tokenizer, config, report, card).
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
        overwrite: Replace an existing export at ``out_dir``.
        threads: torch and ONNX Runtime intra-op threads for the checks (default: their own choice).
        opset: ONNX opset.
        push_to_hub: Upload the finished folder to this Hub repository (``user/name``).
        progress: Called with short progress messages.

    Raises:
        ExportError: Bad input (nothing done).
        ExportRefused: The fp32 graph disagrees with PyTorch, or int8 loses more than ``max_drop`` (nothing written).
    """
    say = progress or (lambda msg: None)
    problems: list[str] = []
    missing = missing_onnx_modules()
    if missing:
        problems.append(onnx_missing_message(missing))
    if quantize not in QUANTIZE_MODES:
        problems.append(f"--quantize={quantize!r} is not supported; expected one of {list(QUANTIZE_MODES)}")
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or not math.isfinite(max_drop):
        problems.append(f"--max-drop={max_drop!r}: expected a finite number of accuracy points (e.g. 1.0)")
    for name, value in (
        ("batch-size", batch_size),
        ("max-length", max_length),
        ("max-samples", max_samples),
        ("calibration-samples", calibration_samples),
    ):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            problems.append(f"--{name}={value!r}: expected a positive integer")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        problems.append(f"--threads={threads!r}: expected a positive integer")
    problems += check_output(out_dir, overwrite)
    if push_to_hub is not None:
        reason = hub_offline_reason()
        if reason is not None:
            problems.append(
                f"--push-to-hub={push_to_hub!r}: the Hugging Face Hub is unreachable ({reason}); export without "
                "--push-to-hub and upload the folder later with huggingface_hub.upload_folder"
            )
    source, folder_problems = check_model_folder(model_dir)
    problems += folder_problems
    tokenizer = model = batches = None
    if source is not None and not folder_problems:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as err:
            problems.append(f"model={str(model_dir)!r}: its tokenizer could not be loaded: {err}")
        if tokenizer is not None:
            model = AutoModelForSequenceClassification.from_pretrained(source).eval()
            if tokenizer.pad_token is None and tokenizer.eos_token is not None:
                tokenizer.pad_token = tokenizer.eos_token
            names = model_input_names(model, tokenizer)
            batches, data_problems = load_batches(
                tokenizer, names, dataset, subset, split, text_fields, label_field, label_names, max_length,
                max_samples, batch_size, calibration_samples if quantize == "int8-static" else 0,
            )  # fmt: skip
            problems += data_problems
            if batches is not None and len(batches.label_names) != model.config.num_labels:
                problems.append(
                    f"model={str(model_dir)!r} has num_labels={model.config.num_labels} but the data has "
                    f"{len(batches.label_names)} classes {batches.label_names}; expected the same label count"
                )
    if problems:
        raise ExportError(problems)
    assert model is not None and tokenizer is not None and batches is not None and source is not None

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        examples = len(batches.labels)
        say(f"exporting {source} to ONNX (torch.onnx, dynamo exporter, opset {opset})")
        started = time.perf_counter()
        names = export_onnx(model, tokenizer, tmp / FP32_FILE, opset)
        say(f"  exported in {time.perf_counter() - started:.1f} s; PyTorch on {examples} {split} examples")
        with torch.inference_mode():
            ref = np.concatenate([model(**b).logits.float().numpy() for b in batches.inputs])
        fp32 = ort_session(tmp / FP32_FILE, threads)
        say("  ONNX Runtime fp32 on the same batches")
        got = np.concatenate([run_session(fp32, b) for b in batches.inputs])
        diff = float(np.abs(got - ref).max())
        num_classes = len(batches.label_names)
        report: dict[str, Any] = {
            "exporter": "torch.onnx (dynamo=True)",
            "opset": opset,
            "inputs": names,
            "source": str(source),
            "dataset": batches.dataset,
            "split": split,
            "examples": examples,
            "pytorch_size_mb": weights_size_mb(Path(source)),
            "pytorch_accuracy": accuracy(ref, batches.labels),
            "pytorch_f1_macro": macro_f1(ref, batches.labels, num_classes),
            "fp32": {
                "file": FP32_FILE,
                "size_mb": onnx_size_mb(tmp / FP32_FILE),
                "accuracy": accuracy(got, batches.labels),
                "f1_macro": macro_f1(got, batches.labels, num_classes),
                "max_abs_diff": diff,
            },
            "max_drop": max_drop,
            "tolerance": FP32_TOLERANCE,
        }
        say(f"  fp32: max |logit difference| vs PyTorch {diff:.2e}, accuracy {100 * report['fp32']['accuracy']:.2f}")
        if not diff <= FP32_TOLERANCE:
            raise ExportRefused(
                f"fp32 ONNX logits differ from PyTorch by up to {diff:.3g} on {examples} {split} examples; expected "
                f"<= {FP32_TOLERANCE:g}. Nothing was written to {str(out)!r}"
            )
        if quantize in ("int8", "int8-static"):
            if quantize == "int8":
                say("  quantizing to int8 (ONNX Runtime dynamic quantization, MatMul and embedding Gather)")
                quantize_int8(tmp / FP32_FILE, tmp / INT8_FILE)
            else:
                say(f"  quantizing to int8 (static, QDQ; calibrated on {len(batches.calibration)} training examples)")
                quantize_static_int8(tmp / FP32_FILE, tmp / INT8_FILE, batches.calibration)
            int8 = ort_session(tmp / INT8_FILE, threads)
            q = np.concatenate([run_session(int8, b) for b in batches.inputs])
            # int8 results depend on the batch (dynamic quantization scales span it; static ones see padding), so
            # the gate also runs every example alone, as a server at batch 1 does, and takes the larger loss
            say(f"  int8 and fp32 at batch 1 (no padding) on {examples} examples")
            q1 = np.concatenate([run_session(int8, x) for x in batches.singles])
            got1 = np.concatenate([run_session(fp32, x) for x in batches.singles])
            drops = {
                "padded": accuracy_drop_points(got, q, batches.labels),
                "batch1": accuracy_drop_points(got1, q1, batches.labels),
            }
            drop = max(drops.values())
            report["int8"] = {
                "file": INT8_FILE,
                "method": QUANTIZE_METHODS[quantize],
                "mode": quantize,
                "size_mb": onnx_size_mb(tmp / INT8_FILE),
                "accuracy": accuracy(q, batches.labels),
                "f1_macro": macro_f1(q, batches.labels, num_classes),
                "accuracy_batch1": accuracy(q1, batches.labels),
                "fp32_accuracy_batch1": accuracy(got1, batches.labels),
                "max_abs_diff": float(np.abs(q - ref).max()),
                "drop_points_padded": drops["padded"],
                "drop_points_batch1": drops["batch1"],
                "drop_points": drop,
            }
            say(
                f"  int8: {report['int8']['size_mb']:.1f} MB, accuracy {100 * report['int8']['accuracy']:.2f} in "
                f"padded batches of {batch_size} ({drops['padded']:+.2f} points lost), "
                f"{100 * report['int8']['accuracy_batch1']:.2f} at batch 1 ({drops['batch1']:+.2f}); the gate allows "
                f"{max_drop}"
            )
            if drop > max_drop:
                raise ExportRefused(
                    f"int8 model refused by the accuracy gate: it loses {drop:.2f} accuracy points against fp32 "
                    f"(padded batches: {100 * report['fp32']['accuracy']:.2f} -> {100 * report['int8']['accuracy']:.2f}"
                    f"; batch 1: {100 * report['int8']['fp32_accuracy_batch1']:.2f} -> "
                    f"{100 * report['int8']['accuracy_batch1']:.2f}; {examples} {split} examples of "
                    f"{batches.dataset}); --max-drop allows {max_drop}. Nothing was written to "
                    f"{str(out)!r}; export without --quantize, or raise --max-drop if that loss is acceptable"
                )
        tokenizer.save_pretrained(tmp)
        model.config.save_pretrained(tmp)
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        write_model_card(tmp, _card_info(Path(source), model, report, out.name))
        for path in tmp.iterdir():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        atomic_replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(previous_threads)
    files = {p.name: p.stat().st_size / 1e6 for p in sorted(out.iterdir()) if p.suffix == ".onnx"}
    if push_to_hub is not None:
        push_folder(out, push_to_hub)
    return ExportResult(str(out), files, report)


def push_folder(folder: str | Path, repo_id: str) -> str:
    """Upload a model folder to the Hub repository ``repo_id`` (created if needed); returns its URL.

    Fails fast with :class:`common.hub.HubUnavailableError` when the Hub cannot be reached.
    """
    from huggingface_hub import HfApi

    from common.hub import require_hub

    require_hub("repository", repo_id, "Upload the folder later with huggingface_hub.upload_folder.")
    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message="Upload from transformer-distiller")
    return f"https://huggingface.co/{repo_id}"


# ---------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``export.py``."""
    p = argparse.ArgumentParser(
        description="Export a trained classifier to ONNX (checked against PyTorch), optionally int8-quantized "
        "behind an accuracy gate, with a model card.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("model", help="trained model folder with its tokenizer (e.g. outputs/student_ms)")
    p.add_argument("out", help="output folder (model.onnx, model_int8.onnx, tokenizer, config, README.md)")
    p.add_argument(
        "--quantize", default="none", help=f"one of {list(QUANTIZE_MODES)} (int8: dynamic; int8-static: calibrated)"
    )
    p.add_argument("--calibration-samples", type=int, default=256, help="training examples calibrating int8-static")
    p.add_argument("--max-drop", type=float, default=1.0, help="accuracy points int8 may lose against fp32")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export")
    add_data_arguments(p, "data to verify on: 'demo', a data folder, a file, a Hub name", "split to verify and gate on")
    p.add_argument("--max-length", type=int, default=128, help="truncation length in tokens")
    p.add_argument("--max-samples", type=int, default=None, help="use the first N examples of the split")
    p.add_argument("--batch-size", type=int, default=32, help="batch size of the verification passes")
    p.add_argument("--threads", type=int, default=None, help="torch / ONNX Runtime intra-op threads")
    p.add_argument("--opset", type=int, default=OPSET, help="ONNX opset")
    p.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="upload the export to this Hub repository")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``export.py``; returns 0 on success, 2 on bad input, 3 when a check refused the export."""
    args = parse_quietly(build_parser(), argv)
    try:
        result = export_model(
            args.model,
            args.out,
            dataset=args.dataset,
            **data_options(args),
            max_length=args.max_length,
            max_samples=args.max_samples,
            batch_size=args.batch_size,
            quantize=args.quantize,
            calibration_samples=args.calibration_samples,
            max_drop=args.max_drop,
            overwrite=args.overwrite,
            threads=args.threads,
            opset=args.opset,
            push_to_hub=args.push_to_hub,
            progress=lambda msg: print(msg, file=sys.stderr, flush=True),
        )
    except ExportError as err:
        print(f"export.py: error: {err}", file=sys.stderr)
        return 2
    except ExportRefused as err:
        print(f"export.py: refused: {err}", file=sys.stderr)
        return 3
    print(summary_table(result))
    return 0


def summary_table(result: ExportResult) -> str:
    """A Markdown table of the export's files, sizes, accuracies and logit differences."""
    r = result.report
    lines = [
        f"Export of {r['source']} -> {result.out_dir}: {r['examples']} {r['split']} examples of {r['dataset']}",
        "",
        "| model | size (MB) | accuracy (%) | macro F1 (%) | max abs logit diff vs PyTorch |",
        "|---|---|---|---|---|",
        f"| PyTorch fp32 | {r['pytorch_size_mb'] or float('nan'):.1f} | {100 * r['pytorch_accuracy']:.2f} | "
        f"{100 * r['pytorch_f1_macro']:.2f} | – |",
    ]
    for key in ("fp32", "int8"):
        if key in r:
            e = r[key]
            lines.append(
                f"| ONNX {key} ({e['file']}) | {e['size_mb']:.1f} | {100 * e['accuracy']:.2f} | "
                f"{100 * e['f1_macro']:.2f} | {e['max_abs_diff']:.2e} |"
            )
    if "int8" in r:
        e = r["int8"]
        lines += [
            "",
            f"At batch 1 (no padding): fp32 {100 * e['fp32_accuracy_batch1']:.2f} %, "
            f"int8 {100 * e['accuracy_batch1']:.2f} %.",
            f"int8 accuracy gate: lost {e['drop_points_padded']:.2f} points in padded batches, "
            f"{e['drop_points_batch1']:.2f} at batch 1 (allowed {r['max_drop']}).",
        ]
    return "\n".join(lines)
