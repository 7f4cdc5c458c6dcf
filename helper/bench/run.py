"""One benchmark run: every input checked first, then models loaded, timed in interleaved latency rounds, and run over
the whole split for throughput and quality; results written and logged when asked."""

from __future__ import annotations

import gc
import math
import os
import platform
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from data.data_module import ClfDataModule
from data.labels import MULTI_LABEL
from data.sources import DataSource
from helper.bench.data import (
    EvalData,
    encode,
    eval_order,
    load_eval_data,
    median_length_indices,
    pre_batch,
    tokenizer_fingerprint,
)
from helper.bench.metrics import quality_metrics
from helper.bench.metrics import tune_threshold as tune_threshold_on
from helper.bench.models import Runner, inspect_models, load_runner
from helper.bench.report import log_to_wandb, write_results
from helper.bench.settings import BenchmarkError, check_settings, resolve_device
from helper.bench.timing import latency_calls, latency_stats, measure_throughput, time_rounds


def _logits(runner: Runner, data: EvalData, settings: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """A model's logits and the labels of a split, pre-tokenized, at ``batch_size``, longest first (untimed)."""
    encoded = encode(runner.spec.tokenizer, data)
    order = eval_order([len(ids) for ids in encoded["input_ids"]])
    batches = pre_batch(runner.spec.tokenizer, encoded, runner.keys, order, settings["batch_size"], settings["device"])
    with torch.inference_mode():
        logits = torch.cat([runner.run(runner.prepare(b)).float().cpu() for b in batches])
    return logits, torch.tensor([data.labels[i] for i in order])


def _throughput_and_quality(
    runner: Runner,
    data: EvalData,
    encoded: dict[str, list[list[int]]],
    settings: dict[str, Any],
    threshold: float = 0.5,
) -> dict[str, Any]:
    """The whole split at ``batch_size``, longest first: samples per second of model time, and the quality metrics
    (multi-label: at ``threshold``)."""
    device: torch.device = settings["device"]
    batch_size, include_tok = settings["batch_size"], settings["include_tokenization"]
    tok = runner.spec.tokenizer
    lengths = [len(ids) for ids in encoded["input_ids"]]
    order = eval_order(lengths)
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
        **quality_metrics(logits, labels, data.label_names, data.problem_type, threshold),
    }


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
    threshold: float = 0.5,
    tune_threshold: bool = False,
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
        threshold: Multi-label decision threshold on the sigmoid scores (F1 and subset accuracy).
        tune_threshold: Multi-label: pick every model's threshold on the ``validation`` split (the best macro F1 of
            0.05, 0.10, ..., 0.95; :func:`helper.bench.metrics.tune_threshold`) and report ``split`` with it; the
            chosen value is the ``threshold`` column. ``split`` must then be another split (e.g. ``test``).
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
    val_data = None
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 < threshold < 1:
        problems.append(f"threshold (--threshold)={threshold!r}: expected a number in (0, 1)")
    if tune_threshold and data is not None:
        if data.problem_type != MULTI_LABEL:
            problems.append(
                f"tune_threshold (--tune-threshold): the data are {data.problem_type!r}; a decision threshold is "
                f"tuned for {MULTI_LABEL!r} data only (lists of labels per example)"
            )
        elif split == "validation":
            problems.append(
                "tune_threshold (--tune-threshold) picks the threshold on the validation split, so reporting "
                "--split validation would measure on the examples it was tuned on; expected another split (e.g. test)"
            )
        else:
            val_data, val_problems = load_eval_data(
                dm_or_dataset, "validation", subset, text_fields, label_field, label_names, None, max_length
            )
            problems += [f"tune_threshold (--tune-threshold): {p}" for p in val_problems]
    effective_length = data.max_length if data is not None else max_length
    expected_names = data.label_names if data is not None else label_names  # check models even when data failed
    specs, model_problems = inspect_models(models, names, expected_names, tokenizer, effective_length)
    problems += model_problems
    shown = [spec.name for spec in specs]
    if ratio_to is not None and not model_problems and ratio_to not in shown:
        problems.append(f"ratio_to={ratio_to!r} is not one of the model names {shown}; expected one of them")
    if any(spec.onnx_file for spec in specs) and device != "cpu" and resolve_device(device).type != "cpu":
        problems.append(
            f"device={device!r}: ONNX models run on the CPU here (ONNX Runtime's CPU provider); expected --device cpu "
            "when an ONNX model is compared"
        )
    if problems:
        raise BenchmarkError(problems)
    assert data is not None

    dev = resolve_device(device)
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
            chosen = threshold
            if val_data is not None:
                if progress is not None:
                    progress(f"threshold: {spec.name} on the {len(val_data)} validation examples")
                chosen = tune_threshold_on(*_logits(runner, val_data, settings))
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
                    **_throughput_and_quality(runner, data, encodings[key], settings, chosen),
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
