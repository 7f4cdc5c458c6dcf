"""Training steps on fixed batches in a plain Python loop (no framework), and the interleaved arm that times them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from benchmarks.clocks import Settings
from benchmarks.hf_recipe import recipe_loss
from benchmarks.interleave import Arm, Sample, time_loop
from benchmarks.memory_meter import MemoryMeter
from benchmarks.pieces import Batch
from benchmarks.throughput_report import Row
from data.data_module import model_inputs
from helper.distiller import BaseDistiller
from helper.training import adamw_with_warmup

Step = Callable[[Batch], Any]


def step_arm(
    key: str,
    label: str,
    step: Step,
    warm: list[Batch],
    round_warm: list[Batch],
    timed: list[Batch],
    settings: Settings,
    rows: dict[str, Row],
) -> Arm:
    """An interleaved arm that runs ``step`` on fixed batches.

    Warm-up (once, before the first round): ``step`` on every batch of ``warm``. Each round: ``step`` on the batches
    of ``round_warm`` untimed (the other arms ran in between: caches and freed memory come back), then timed over
    ``timed``. Memory is metered over each segment (see :class:`MemoryMeter`).

    Args:
        key: Row key.
        label: Row label.
        step: One training step (or forward pass) on one batch.
        warm: Untimed batches of the one-time warm-up.
        round_warm: Untimed batches at the start of every round.
        timed: The batches every round times.
        settings: Device settings (synchronisation).
        rows: Where the arm's :class:`Row` is created (with the warm-up segment's memory).

    Returns:
        The arm.
    """
    row = rows.setdefault(key, Row(key, label))
    padded = sum(b["input_ids"].shape[1] for b in timed) / max(len(timed), 1)
    size = sum(len(b["labels"]) for b in timed)

    def warmup() -> None:
        meter = MemoryMeter(settings.device)
        meter.start()
        for batch in warm:
            step(batch)
        settings.sync()
        row.warmup_peak_mb, row.warmup_delta_mb = meter.stop()

    def measure() -> Sample:
        meter = MemoryMeter(settings.device)
        meter.start()
        for batch in round_warm:
            step(batch)
        seconds = time_loop(step, timed, clock=settings.now, sync=settings.sync)
        peak, delta = meter.stop()
        return Sample(seconds, size, len(timed), peak, delta, padded)

    return Arm(key, label, measure, warmup if warm else None)


def make_optimizer(named_params: Any, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """The distillers' AdamW (same parameter groups as ``configure_optimizers``), at a constant learning rate."""
    return adamw_with_warmup(list(named_params), lr, weight_decay, warmup_ratio=0.0, total_steps=1)["optimizer"]


def distiller_params(distiller: BaseDistiller) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters ``BaseDistiller.configure_optimizers`` trains (student and adaptor projections)."""
    return [*distiller.student.named_parameters(), *distiller.adaptors.named_parameters(prefix="adaptors")]


def teacher_forward_step(teacher: PreTrainedModel, settings: Settings) -> Step:
    """Inference only: the teacher's logits under ``inference_mode`` in eval mode."""
    teacher.eval()

    def step(batch: Batch) -> torch.Tensor:
        with torch.inference_mode(), settings.autocast():
            return teacher(**model_inputs(batch)).logits

    return step


def student_ce_step(student: PreTrainedModel, optimizer: torch.optim.Optimizer, settings: Settings) -> Step:
    """The student alone: cross-entropy, backward, AdamW step."""
    student.train()

    def step(batch: Batch) -> None:
        with settings.autocast():
            loss = F.cross_entropy(student(**model_inputs(batch)).logits, batch["labels"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def recipe_step(
    student: PreTrainedModel,
    teacher: PreTrainedModel,
    optimizer: torch.optim.Optimizer,
    alpha: float,
    temperature: float,
    settings: Settings,
) -> Step:
    """The recipe's ``compute_loss`` + backward + AdamW step on a fixed batch."""
    student.train()
    teacher.eval()

    def step(batch: Batch) -> None:
        inputs = {**model_inputs(batch), "labels": batch["labels"]}
        with settings.autocast():
            loss, _ = recipe_loss(student, teacher, inputs, alpha, temperature)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def distiller_step(
    distiller: BaseDistiller, optimizer: torch.optim.Optimizer, settings: Settings, distill: Callable | None = None
) -> Step:
    """One ``BaseDistiller`` training step without Lightning: ``distill`` + ``total_loss`` + backward + AdamW step.

    Args:
        distiller: The distiller (its ``use_teacher_cache`` decides whether cached teacher logits are used).
        optimizer: AdamW over :func:`distiller_params`.
        settings: Device settings.
        distill: Replacement for ``distiller.distill`` (e.g. :func:`benchmarks.eager_taps.eager_distill`), same
            signature.
    """
    distiller.train()
    run = distill or distiller.distill

    def step(batch: Batch) -> None:
        with settings.autocast():
            losses, s_logits, _ = run(batch)
            loss = distiller.total_loss(losses, s_logits, batch["labels"])["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step
