"""Pieces shared by the benchmark scripts."""

from __future__ import annotations

import time

import pytorch_lightning as pl


class TrainClock(pl.Callback):
    """Counts training samples and the time spent in training batches (validation and checkpointing excluded)."""

    def __init__(self) -> None:
        self.samples = 0
        self.seconds = 0.0
        self._start = 0.0

    @property
    def samples_per_second(self) -> float:
        """Training throughput measured so far."""
        return self.samples / max(self.seconds, 1e-9)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: dict, idx: int) -> None:
        """Start timing a batch."""
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, out: object, batch: dict, idx: int
    ) -> None:
        """Add the batch's time and size."""
        self.seconds += time.perf_counter() - self._start
        self.samples += len(batch["labels"])
