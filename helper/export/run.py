"""The export itself: check the inputs, export and verify fp32, quantize behind the accuracy gate, write the folder
(tokenizer, config, report, model card) beside the target and rename it into place; optionally upload it."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import helper.export.convert as convert
from helper.bench.metrics import quality_metrics
from helper.bench.models import weights_size_mb
from helper.bench.runtime import onnx_size_mb, ort_session, run_session
from helper.checkpoint import atomic_replace
from helper.export.convert import FP32_FILE, INT8_FILE, QUANTIZE_METHODS
from helper.export.inputs import Batches, ExportOptions, ExportRefused, Inputs, check_inputs
from helper.model_card import CardInfo, hub_base_model, read_card_info, write_model_card

REPORT_FILE = "export_report.json"
#: Largest accepted max abs logit difference between fp32 ONNX Runtime and PyTorch.
FP32_TOLERANCE = 1e-4


@dataclass
class ExportResult:
    """What an export measured and wrote (also saved as ``export_report.json`` and in the model card)."""

    out_dir: str
    files: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


def accuracy_drop_points(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy points lost by ``candidate`` logits against ``reference`` logits (negative: gained).

    Computed from the counts of correct predictions, so that e.g. 98 vs 96 correct of 200 is exactly 1.0 (the
    difference of the two accuracies, 0.49 - 0.48, is 1.0000000000000009 points and would fail a gate of 1.0).
    """
    correct = [int((x.argmax(axis=-1) == labels).sum()) for x in (reference, candidate)]
    return 100 * (correct[0] - correct[1]) / len(labels)


def scores(logits: np.ndarray, batches: Batches) -> dict[str, float]:
    """Accuracy and macro F1 of ``logits`` on the batches' labels, from the torchmetrics collection the Lightning
    modules log (:func:`helper.bench.metrics.quality_metrics`), so an export's numbers and ``val_acc``/``val_f1``
    agree."""
    measured = quality_metrics(torch.from_numpy(logits), torch.from_numpy(batches.labels), batches.label_names)
    return {"accuracy": measured["accuracy"], "f1_macro": measured["f1_macro"]}


def _verify_fp32(
    tmp: Path, inputs: Inputs, options: ExportOptions, say: Callable[[str], None]
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Export fp32 into ``tmp`` and compare ONNX Runtime with PyTorch on the batches.

    Returns:
        The report so far, PyTorch's logits and ONNX Runtime's fp32 logits (batches in order).

    Raises:
        ExportRefused: The logits differ by more than :data:`FP32_TOLERANCE`.
    """
    batches, examples, split = inputs.batches, len(inputs.batches.labels), options.split
    say(f"exporting {inputs.source} to ONNX (torch.onnx, dynamo exporter, opset {options.opset})")
    started = time.perf_counter()
    names = convert.export_onnx(inputs.model, inputs.tokenizer, tmp / FP32_FILE, options.opset)
    say(f"  exported in {time.perf_counter() - started:.1f} s; PyTorch on {examples} {split} examples")
    with torch.inference_mode():
        ref = np.concatenate([inputs.model(**b).logits.float().numpy() for b in batches.inputs])
    say("  ONNX Runtime fp32 on the same batches")
    got = np.concatenate([run_session(ort_session(tmp / FP32_FILE, options.threads), b) for b in batches.inputs])
    diff = float(np.abs(got - ref).max())
    pytorch, fp32 = scores(ref, batches), scores(got, batches)
    report: dict[str, Any] = {
        "exporter": "torch.onnx (dynamo=True)",
        "opset": options.opset,
        "inputs": names,
        "source": inputs.source,
        "dataset": batches.dataset,
        "split": split,
        "examples": examples,
        "pytorch_size_mb": weights_size_mb(Path(inputs.source)),
        "pytorch_accuracy": pytorch["accuracy"],
        "pytorch_f1_macro": pytorch["f1_macro"],
        "fp32": {"file": FP32_FILE, "size_mb": onnx_size_mb(tmp / FP32_FILE), **fp32, "max_abs_diff": diff},
        "max_drop": options.max_drop,
        "tolerance": FP32_TOLERANCE,
    }
    say(f"  fp32: max |logit difference| vs PyTorch {diff:.2e}, accuracy {100 * fp32['accuracy']:.2f}")
    if not diff <= FP32_TOLERANCE:
        raise ExportRefused(
            f"fp32 ONNX logits differ from PyTorch by up to {diff:.3g} on {examples} {split} examples; expected "
            f"<= {FP32_TOLERANCE:g}"
        )
    return report, ref, got


def _gate_int8(tmp: Path, inputs: Inputs, options: ExportOptions, fp32_run: tuple, say: Callable[[str], None]) -> None:
    """Quantize into ``tmp`` and add the int8 results to the report (``fp32_run``: what :func:`_verify_fp32` returned).

    int8 results depend on the batch (dynamic quantization scales span it; static ones see padding), so the gate also
    runs every example alone, as a server at batch 1 does, and takes the larger loss.

    Raises:
        ExportRefused: int8 loses more than ``options.max_drop`` accuracy points against fp32.
    """
    report, ref, got = fp32_run
    batches, labels = inputs.batches, inputs.batches.labels
    if options.quantize == "int8":
        say("  quantizing to int8 (ONNX Runtime dynamic quantization, MatMul and embedding Gather)")
        convert.quantize_int8(tmp / FP32_FILE, tmp / INT8_FILE)
    else:
        say(f"  quantizing to int8 (static, QDQ; calibrated on {len(batches.calibration)} training examples)")
        convert.quantize_static_int8(tmp / FP32_FILE, tmp / INT8_FILE, batches.calibration)
    fp32, int8 = (ort_session(tmp / f, options.threads) for f in (FP32_FILE, INT8_FILE))
    q = np.concatenate([run_session(int8, b) for b in batches.inputs])
    say(f"  int8 and fp32 at batch 1 (no padding) on {len(labels)} examples")
    q1 = np.concatenate([run_session(int8, x) for x in batches.singles])
    got1 = np.concatenate([run_session(fp32, x) for x in batches.singles])
    drops = {"padded": accuracy_drop_points(got, q, labels), "batch1": accuracy_drop_points(got1, q1, labels)}
    e = report["int8"] = {
        "file": INT8_FILE,
        "method": QUANTIZE_METHODS[options.quantize],
        "mode": options.quantize,
        "size_mb": onnx_size_mb(tmp / INT8_FILE),
        **scores(q, batches),
        "accuracy_batch1": scores(q1, batches)["accuracy"],
        "fp32_accuracy_batch1": scores(got1, batches)["accuracy"],
        "max_abs_diff": float(np.abs(q - ref).max()),
        "drop_points_padded": drops["padded"],
        "drop_points_batch1": drops["batch1"],
        "drop_points": max(drops.values()),
    }
    say(
        f"  int8: {e['size_mb']:.1f} MB, accuracy {100 * e['accuracy']:.2f} in padded batches of "
        f"{options.batch_size} ({drops['padded']:+.2f} points lost), {100 * e['accuracy_batch1']:.2f} at batch 1 "
        f"({drops['batch1']:+.2f}); the gate allows {options.max_drop}"
    )
    if e["drop_points"] > options.max_drop:
        raise ExportRefused(
            f"int8 model refused by the accuracy gate: it loses {e['drop_points']:.2f} accuracy points against fp32 "
            f"(padded batches: {100 * report['fp32']['accuracy']:.2f} -> {100 * e['accuracy']:.2f}; batch 1: "
            f"{100 * e['fp32_accuracy_batch1']:.2f} -> {100 * e['accuracy_batch1']:.2f}; {len(labels)} "
            f"{options.split} examples of {batches.dataset}); --max-drop allows {options.max_drop}. Export without "
            "--quantize, or raise --max-drop if that loss is acceptable"
        )


def export_model(
    model_dir: str | Path, out_dir: str | Path, *, progress: Callable[[str], None] | None = None, **settings: Any
) -> ExportResult:
    """Export a trained classifier folder to ONNX, verify it, optionally quantize it behind the accuracy gate.

    Every input is checked before any work, and all problems are raised together. The output is built in a
    temporary folder beside ``out_dir`` and renamed into place only when every check passed, so a refused export
    leaves a previous one untouched.

    Args:
        model_dir: A ``*ForSequenceClassification`` folder with its tokenizer (teacher or student).
        out_dir: Folder to write (``model.onnx``, ``model_int8.onnx``, tokenizer, config, report, card).
        progress: Called with short progress messages.
        **settings: The fields of :class:`~helper.export.inputs.ExportOptions` (``dataset``, ``split``,
            ``quantize``, ``max_drop``, ``threads``, ...).

    Raises:
        ExportError: Bad input (nothing done).
        ExportRefused: The fp32 graph disagrees with PyTorch, or int8 loses more than ``max_drop`` (nothing written).
        TypeError: A setting that is not a field of ``ExportOptions``.
    """
    say = progress or (lambda msg: None)
    options = ExportOptions(**settings)
    inputs = check_inputs(model_dir, out_dir, options)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    previous_threads = torch.get_num_threads()
    if options.threads:
        torch.set_num_threads(options.threads)
    try:
        fp32_run = _verify_fp32(tmp, inputs, options, say)
        if options.quantize in ("int8", "int8-static"):
            _gate_int8(tmp, inputs, options, fp32_run, say)
        report = fp32_run[0]
        inputs.tokenizer.save_pretrained(tmp)
        inputs.model.config.save_pretrained(tmp)
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        write_model_card(tmp, _card_info(Path(inputs.source), inputs.model, report, out.name))
        for path in tmp.iterdir():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        atomic_replace(tmp, out)
    except ExportRefused as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportRefused(f"{err}. Nothing was written to {str(out)!r}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(previous_threads)
    files = {p.name: p.stat().st_size / 1e6 for p in sorted(out.iterdir()) if p.suffix == ".onnx"}
    if options.push_to_hub is not None:
        push_folder(out, options.push_to_hub)
    return ExportResult(str(out), files, report)


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
