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
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helper.cli import run  # noqa: E402
from helper.finetuner import ClfFinetune  # noqa: E402


class TrainClock(pl.Callback):
    """Counts training samples and the time spent in training batches."""

    def __init__(self) -> None:
        self.samples = 0
        self.seconds = 0.0
        self._start = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: dict, idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, out: object, batch: dict, idx: int
    ) -> None:
        self.seconds += time.perf_counter() - self._start
        self.samples += len(batch["labels"])


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
        f"{clock.samples / max(clock.seconds, 1e-9):.1f} | {100 * val['val_acc']:.2f} | {100 * val['val_f1']:.2f} |"
    )
    print(f"\nbest checkpoint: {cli.trainer.checkpoint_callback.best_model_path}")
    print(f"command: python {' '.join(sys.argv)}  (cpu count {os.cpu_count()})")


if __name__ == "__main__":
    main()
