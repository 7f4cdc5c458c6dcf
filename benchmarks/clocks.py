"""Clocks of the benchmarks: the timer and device settings, and the callbacks that time Lightning and HF loops.

:class:`TrainClock` sums the time of every training batch (``distill_compare.py``, ``finetune_teacher.py``);
:class:`StepWindow` with :class:`LightningClock` / :class:`HFClock` times a fixed window of steps inside a framework's
loop (``throughput.py``).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from transformers import TrainerCallback, TrainingArguments

from benchmarks.interleave import Sample
from benchmarks.memory_meter import MemoryMeter
from benchmarks.pieces import Batch
from helper.step_rate import StepRate


@dataclass
class Settings:
    """Where and how every row runs.

    Attributes:
        device: The device the models and batches live on.
        bf16: Run forwards and losses under ``torch.autocast(dtype=torch.bfloat16)``.
        threads: ``torch.set_num_threads`` value, enforced again inside the framework loops.
        timer: ``"wall"`` (``time.perf_counter``) or ``"cpu"`` (``time.process_time``: CPU seconds of this process,
            all its threads; on a machine shared with other jobs it leaves out the time other processes held the
            cores, though not their effect on caches and memory bandwidth). CPU timing is for CPU runs only.
    """

    device: torch.device
    bf16: bool = False
    threads: int = 1
    timer: str = "wall"

    def now(self) -> float:
        """The current reading of the chosen timer, in seconds."""
        return time.process_time() if self.timer == "cpu" else time.perf_counter()

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of a forward pass (a no-op in fp32)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def sync(self) -> None:
        """Wait for queued device work (CUDA) so that the timer brackets it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class TrainClock(StepRate):
    """:class:`helper.step_rate.StepRate` without its end-of-fit line: the benchmarks print their own tables."""

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Print nothing."""


class StepWindow:
    """Timestamps of a framework's training loop: the window from the end of step ``warmup`` to step ``warmup+steps``.

    With ``warmup == 0`` the window starts at the beginning of the first step. The device is synchronised only at the
    window's two ends, so the loop's own host/device overlap is kept.
    """

    def __init__(self, warmup: int, steps: int, settings: Settings) -> None:
        self.warmup, self.steps, self.settings = warmup, steps, settings
        self.done = 0
        self.start: float | None = None
        self.end: float | None = None
        self.threads: set[int] = set()

    def begin_step(self) -> None:
        """Called at the start of every optimizer step."""
        if self.done == 0 and self.warmup == 0:
            self.settings.sync()
            self.start = self.settings.now()

    def end_step(self) -> None:
        """Called at the end of every optimizer step."""
        self.done += 1
        self.threads.add(torch.get_num_threads())
        if self.done == self.warmup:
            self.settings.sync()
            self.start = self.settings.now()
        elif self.done == self.warmup + self.steps:
            self.settings.sync()
            self.end = self.settings.now()

    @property
    def seconds(self) -> float:
        """Length of the window; raises if the loop stopped early."""
        if self.start is None or self.end is None:
            raise RuntimeError(f"the training loop ran {self.done} of {self.warmup + self.steps} steps")
        return self.end - self.start


class LightningClock(pl.Callback):
    """Times ``steps`` training batches after ``warmup`` and records their sizes and padded lengths."""

    def __init__(self, warmup: int, steps: int, settings: Settings) -> None:
        self.window = StepWindow(warmup, steps, settings)
        self.sizes: list[int] = []
        self.lengths: list[int] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        torch.set_num_threads(self.window.settings.threads)

    def on_train_batch_start(  # noqa: D102
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Batch, idx: int
    ) -> None:
        self.window.begin_step()

    def on_train_batch_end(  # noqa: D102
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Batch, idx: int
    ) -> None:
        self.window.end_step()
        self.sizes.append(len(batch["labels"]))
        self.lengths.append(batch["input_ids"].shape[1])


class HFClock(TrainerCallback):
    """The HF ``Trainer`` counterpart of :class:`LightningClock` (batch shapes come from ``KDRecipeTrainer``)."""

    def __init__(self, warmup: int, steps: int, settings: Settings) -> None:
        self.window = StepWindow(warmup, steps, settings)

    def on_train_begin(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:  # noqa: D102
        torch.set_num_threads(self.window.settings.threads)

    def on_step_begin(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:  # noqa: D102
        self.window.begin_step()

    def on_step_end(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:  # noqa: D102
        self.window.end_step()


def window_sample(window: StepWindow, shapes: list[tuple[int, int]], meter: MemoryMeter) -> Sample:
    """The timed window of a framework run as a :class:`Sample` (sizes and padded lengths of the timed steps)."""
    timed = shapes[window.warmup : window.warmup + window.steps]
    peak, delta = meter.stop()
    return Sample(
        seconds=window.seconds,
        samples=sum(b for b, _ in timed),
        steps=len(timed),
        peak_mb=peak,
        delta_mb=delta,
        padded_length=sum(t for _, t in timed) / max(len(timed), 1),
    )
