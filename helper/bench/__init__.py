"""Compare fine-tuned classifiers (a teacher and its students, PyTorch or ONNX): size, batch-1 latency, throughput and
quality on one split (``python benchmark.py ...``; the flags in :func:`~helper.bench.main.build_parser`).

Modules, each importing only those above it: :mod:`~helper.bench.runtime` (ONNX Runtime sessions and ONNX file
facts, shared with :mod:`helper.export`), :mod:`~helper.bench.settings` (the error type, numeric settings, device),
:mod:`~helper.bench.data` (the split, tokenized once per tokenizer, latency examples and throughput batches),
:mod:`~helper.bench.models` (checking and loading the models), :mod:`~helper.bench.metrics` (quality, with the
metrics the training modules log), :mod:`~helper.bench.timing` (interleaved latency rounds, throughput),
:mod:`~helper.bench.plot` and :mod:`~helper.bench.report` (table, CSV/JSON, plot, wandb), :mod:`~helper.bench.run`
(:func:`run_benchmark`), :mod:`~helper.bench.flags` (the data flags and parsing, shared with ``export.py``) and
:mod:`~helper.bench.main` (the command line).
"""

from helper.bench.data import EvalData, encode, eval_order, load_eval_data, median_length_indices, pre_batch
from helper.bench.main import build_parser, main
from helper.bench.metrics import quality_metrics
from helper.bench.models import ModelSpec, Runner, inspect_models, load_runner, onnx_model_file, weights_size_mb
from helper.bench.plot import label_heights, plot_accuracy_vs_latency
from helper.bench.report import log_to_wandb, markdown_report, metric_columns, table_columns, write_results
from helper.bench.run import device_name, run_benchmark
from helper.bench.settings import BenchmarkError, check_settings
from helper.bench.timing import latency_calls, latency_stats, measure_throughput, time_rounds

__all__ = [
    "BenchmarkError",
    "EvalData",
    "ModelSpec",
    "Runner",
    "build_parser",
    "check_settings",
    "device_name",
    "encode",
    "eval_order",
    "inspect_models",
    "label_heights",
    "latency_calls",
    "latency_stats",
    "load_eval_data",
    "load_runner",
    "log_to_wandb",
    "main",
    "markdown_report",
    "measure_throughput",
    "median_length_indices",
    "metric_columns",
    "onnx_model_file",
    "plot_accuracy_vs_latency",
    "pre_batch",
    "quality_metrics",
    "run_benchmark",
    "table_columns",
    "time_rounds",
    "weights_size_mb",
    "write_results",
]
