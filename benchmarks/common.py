"""Pieces shared by the benchmark scripts."""

from __future__ import annotations

import time
from typing import Any

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


def step_trainer(max_steps: int, callbacks: list[pl.Callback], **kwargs: Any) -> pl.Trainer:
    """A ``pl.Trainer`` that trains for ``max_steps`` optimizer steps and does nothing else: no logger, checkpoints,
    progress bar, model summary or validation. ``kwargs`` add Trainer options (accelerator, precision, ...)."""
    return pl.Trainer(
        max_steps=max_steps,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=callbacks,
        **kwargs,
    )
