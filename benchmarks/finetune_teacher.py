"""Benchmark teacher fine-tuning: wall time, training samples/s and validation quality of one finetune.py run.

Usage (from the repository root; SST-2 from ../shared/data)::

    python benchmarks/finetune_teacher.py --config configs/finetune_sst2.yaml [any finetune.py overrides]

Prints a Markdown table. Training throughput counts only training batches (validation time excluded); wall time is
the whole ``trainer.fit`` including validation and checkpointing.
"""

from __future__ import annotations

import os
import sys
import time

import torch

from benchmarks.clocks import TrainClock
from helper.cli import run
from helper.finetuner import ClfFinetune


def main() -> None:
    clock = TrainClock()
    start = time.perf_counter()
    cli = run(ClfFinetune, "finetune_sst2.yaml", extra_callbacks=[clock])
    wall = time.perf_counter() - start
    val = cli.trainer.validate(cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)[0]
    print("\n| model | train examples | epochs | threads | wall time | train samples/s | best val acc | val macro F1 |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {cli.config.model.model} | {len(cli.datamodule.raw['train'])} | "
        f"{cli.trainer.current_epoch} | {torch.get_num_threads()} | {wall / 60:.1f} min | "
        f"{clock.samples_per_second:.1f} | {100 * val['val_acc']:.2f} | {100 * val['val_f1']:.2f} |"
    )
    print(f"\nbest checkpoint: {cli.trainer.checkpoint_callback.best_model_path}")
    print(f"command: python {' '.join(sys.argv)}  (cpu count {os.cpu_count()})")


if __name__ == "__main__":
    main()
