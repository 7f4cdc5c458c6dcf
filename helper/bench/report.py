"""Reporting the rows: column order, the Markdown table, ``results.csv`` / ``results.json`` with the plot, and a
``wandb.Table`` (offline when no credentials are set up; ``WANDB_MODE`` is respected). Quality values are stored as
fractions and shown as percentages."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from helper.bench.plot import plot_accuracy_vs_latency

CSV_NAME, JSON_NAME, PLOT_NAME = "results.csv", "results.json", "accuracy_vs_latency.png"


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


def metric_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Quality keys present in the rows, in report order (accuracy, macro F1, then binary, multi-label or regression
    ones, then per-class F1)."""
    keys = [k for k in FIXED_METRICS if any(k in r for r in rows)]
    per_class = [k for k in rows[0] if k.startswith("f1_") and k not in FIXED_METRICS] if rows else []
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
    "f1_micro": "micro F1 (%)",
    "precision": "precision (%)",
    "recall": "recall (%)",
    "roc_auc": "ROC-AUC (%)",
    "auroc_macro": "macro ROC-AUC (%)",
    "ap_macro": "macro AP (%)",
    "threshold": "threshold",
    "pearson": "Pearson r",
    "spearman": "Spearman rho",
    "mse": "MSE",
}
#: Quality keys shown in the table, in this order (multi-label ``accuracy`` is subset accuracy).
FIXED_METRICS = (
    "accuracy",
    "f1_macro",
    "f1_micro",
    "precision",
    "recall",
    "roc_auc",
    "auroc_macro",
    "ap_macro",
    "threshold",
    "pearson",
    "spearman",
    "mse",
)
#: Quality keys that are not fractions shown as percentages.
_PLAIN = ("threshold", "pearson", "spearman", "mse")


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
        ] + [_fmt(r.get(k) if k in _PLAIN or r.get(k) is None else 100 * r[k], 2) for k in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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
