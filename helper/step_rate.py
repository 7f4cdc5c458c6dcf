"""A callback that prints the training throughput (samples/s of the training steps alone) when fitting ends.

Add it from the command line, e.g. to compare a run from precomputed teacher outputs with the student alone:
``python distillation_ms.py ... --trainer.callbacks+=helper.step_rate.StepRate``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info


class StepRate(pl.Callback):
    """Time every training batch (forward, backward, optimizer step; not validation or data setup) and print
    ``training steps: N steps, M samples in S s: X samples/s, Y steps/s`` at the end of fitting.

    Attributes:
        seconds: Wall time spent in training batches.
        samples: Training samples seen (rows of the batches, this process).
        steps: Training batches run.
    """

    def __init__(self) -> None:
        self.seconds, self.samples, self.steps = 0.0, 0, 0
        self._start: float | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        """Start the clock of one step."""
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        """Stop the clock and count the batch's rows."""
        if self._start is None:
            return
        self.seconds += time.perf_counter() - self._start
        self.samples += len(batch["labels"]) if isinstance(batch, Mapping) and "labels" in batch else 0
        self.steps += 1
        self._start = None

    @property
    def samples_per_second(self) -> float:
        """Training samples per second of step time."""
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """The line printed at the end of fitting."""
        return (
            f"training steps: {self.steps:,} steps, {self.samples:,} samples in {self.seconds:.1f} s: "
            f"{self.samples_per_second:.1f} samples/s, {self.steps / max(self.seconds, 1e-9):.2f} steps/s"
        )

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Print the throughput."""
        rank_zero_info(self.summary())
