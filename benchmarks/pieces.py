"""Pieces shared by the benchmark scripts."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

Batch = dict[str, torch.Tensor]


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
