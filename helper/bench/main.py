"""The ``benchmark.py`` command line: parse the flags, run the benchmark, print the Markdown report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from helper.bench.flags import add_data_arguments, data_options, parse_quietly
from helper.bench.report import CSV_NAME, JSON_NAME, PLOT_NAME, markdown_report
from helper.bench.run import run_benchmark
from helper.bench.settings import BenchmarkError


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
    add_data_arguments(p, "'demo', a data folder, a file, or a Hub name", "split to evaluate on")
    p.add_argument("--names", nargs="+", default=None, help="display names, one per model")
    p.add_argument("--batch-size", type=int, default=64, help="batch size of the throughput pass")
    p.add_argument("--latency-runs", type=int, default=100, help="timed batch-1 runs per model and round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds (A B C ... A B C ...)")
    p.add_argument("--ratio-to", default=None, help="display name of the model latency ratios refer to (default first)")
    p.add_argument("--warmup", type=int, default=10, help="untimed batch-1 runs before timing")
    p.add_argument("--threshold", type=float, default=0.5, help="multi-label decision threshold on sigmoid scores")
    p.add_argument(
        "--tune-threshold",
        action="store_true",
        help="multi-label: pick each model's threshold on the validation split (best macro F1) and report --split "
        "with it",
    )
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
    args = parse_quietly(build_parser(), argv)
    options = {**vars(args), **data_options(args)}  # every other flag is named after a run_benchmark parameter
    models, dataset = options.pop("models"), options.pop("dataset")
    try:
        rows = run_benchmark(models, dataset, **options, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    except BenchmarkError as err:
        print(f"benchmark.py: error: {err}", file=sys.stderr)
        return 2
    print(markdown_report(rows))
    out = Path(args.output_dir)
    print(f"\nwrote {out / CSV_NAME}, {out / JSON_NAME}, {out / PLOT_NAME}", file=sys.stderr)
    return 0
