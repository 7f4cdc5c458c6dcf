"""Pieces shared by the fine-tuning and distillation LightningModules: optimizer, schedule, metrics, validation."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
from torchmetrics.wrappers import ClasswiseWrapper
from transformers import get_linear_schedule_with_warmup

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "LayerNorm.bias")


def check_hparams(lr: float, weight_decay: float, warmup_ratio: float, extra: Sequence[str] = ()) -> None:
    """Validate optimisation settings; every problem is reported at once.

    Raises:
        ValueError: Listing each bad field with its value and the expected range.
    """
    problems = list(extra)
    if not isinstance(lr, (int, float)) or lr <= 0:
        problems.append(f"lr={lr!r}: expected a number > 0")
    if not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        problems.append(f"weight_decay={weight_decay!r}: expected a number >= 0")
    if not isinstance(warmup_ratio, (int, float)) or not 0 <= warmup_ratio < 1:
        problems.append(f"warmup_ratio={warmup_ratio!r}: expected a number in [0, 1)")
    if problems:
        raise ValueError("invalid settings:\n" + "\n".join(f"- {p}" for p in problems))


def adamw_with_warmup(
    named_params: Iterable[tuple[str, nn.Parameter]],
    lr: float,
    weight_decay: float,
    warmup_ratio: float,
    total_steps: int,
) -> dict:
    """AdamW (no weight decay on biases and LayerNorm weights) with linear warm-up then linear decay to zero.

    Args:
        named_params: Trainable parameters with their names.
        lr: Peak learning rate.
        weight_decay: Decoupled weight decay for the other parameters.
        warmup_ratio: Fraction of ``total_steps`` spent warming up.
        total_steps: Optimizer steps of the whole run (use ``trainer.estimated_stepping_batches``).

    Returns:
        Lightning's ``configure_optimizers`` dictionary, scheduler stepping every optimizer step.
    """
    decay, no_decay = [], []
    for name, param in named_params:
        if param.requires_grad:
            (no_decay if any(k in name for k in NO_DECAY) or param.ndim < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)
    total_steps = max(int(total_steps), 1)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total_steps), total_steps)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def classification_metrics(label_names: Sequence[str], prefix: str) -> MetricCollection:
    """Accuracy, macro F1 and per-class F1 for ``len(label_names)`` classes (2..N), logged as ``{prefix}acc`` etc."""
    num_classes = len(label_names)
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes=num_classes, average="micro"),
            "f1": MulticlassF1Score(num_classes=num_classes, average="macro"),
            "f1_class": ClasswiseWrapper(
                MulticlassF1Score(num_classes=num_classes, average=None),
                labels=[str(n).replace(" ", "_") for n in label_names],
                prefix="f1_",
            ),
        },
        prefix=prefix,
        compute_groups=False,  # per-class and macro F1 would share state and warn on every compute
    )


def flatten_metrics(values: dict) -> dict[str, torch.Tensor]:
    """Flatten the nested dict that a ``ClasswiseWrapper`` inside a collection returns."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten_metrics(value))
        else:
            flat[key] = value
    return flat


def rng_states() -> dict:
    """The random states that training consumes (Python, NumPy, torch CPU and CUDA), to store in a checkpoint."""
    import random

    import numpy as np

    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Restore what :func:`rng_states` saved, so a resumed run draws the same dropout masks as an uninterrupted one."""
    import random

    import numpy as np

    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ResumableRandomState:
    """Mixin for LightningModules: random states travel with checkpoints and are restored just before the first
    training batch after a resume.

    Restoring later than ``on_load_checkpoint`` matters: creating the sanity-check and training iterators draws from
    the global torch generator, which an uninterrupted run did before its checkpoint was taken.
    """

    _pending_rng_states: dict | None = None

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Keep the saved random states until training restarts."""
        self._pending_rng_states = checkpoint.get("rng_states")

    def on_train_batch_start(self, batch: object, batch_idx: int) -> None:
        """Restore the saved random states before the first step after a resume."""
        if self._pending_rng_states is not None:
            set_rng_states(self._pending_rng_states)
            self._pending_rng_states = None
