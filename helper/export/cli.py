"""``export.py``'s command line: the flags, the exit codes and the summary table."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from helper.bench.flags import add_data_arguments, data_options, parse_quietly
from helper.export.convert import OPSET, QUANTIZE_MODES
from helper.export.inputs import ExportError, ExportRefused
from helper.export.run import ExportResult, export_model


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
    data = data_options(args)  # the data flags as the loader takes them (a single text field as a string)
    settings = {k: v for k, v in vars(args).items() if k not in ("model", "out", *data)}
    try:
        result = export_model(
            args.model, args.out, **settings, **data, progress=lambda msg: print(msg, file=sys.stderr, flush=True)
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
