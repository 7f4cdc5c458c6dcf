"""Training throughput of our distillation steps against a conventional HF ``Trainer`` KD recipe, in one run.

Usage (from the repository root)::

    python benchmarks/throughput.py --dataset ../shared/data/sst2 --batch-size 32 --steps 100 --warmup 10 --threads 2

Run it on an otherwise idle machine: when other jobs share the cores, ``--threads`` above the free core count makes
every row many times slower and the ratios meaningless. The HF ``Trainer`` row needs ``accelerate`` (the row is
skipped with a note when it is missing). ``--skip-e2e`` leaves out both framework runs.

Teacher: ``--teacher`` (default the packaged MiniLM, ``minilm``: 6 layers, a new 2-class head; the weights do not
matter for speed). Student: its layers ``--student-layers`` (default 0 and 5). ``BaseDistiller`` weighs LogitKD by
its adaptor weight (1) where the recipe uses ``1 - alpha``; the cost of a step is the same.

**Step rows** all run the identical pre-collated batches, already on the device: the first ``warmup + steps``
length-grouped training batches of :class:`~data.data_module.ClfDataModule` (seeded), ``warmup`` untimed, then
``steps`` timed, in a plain Python loop (no Lightning or HF ``Trainer`` overhead). A training step is forward(s) +
loss + backward + AdamW step + ``zero_grad``, with a fresh student and the project's AdamW parameter groups
(:func:`helper.training.adamw_with_warmup`) for every row:

* ``teacher forward``: ``teacher(**inputs)`` in eval mode under ``torch.inference_mode`` (no step).
* ``student step (CE)``: the student alone with cross-entropy.
* ``recipe step``: the conventional KD recipe's loss (:func:`recipe_loss`, the same function the
  :class:`KDRecipeTrainer` below uses), teacher under ``no_grad``.
* ``logit KD``: ``BaseDistiller(teacher, student, ["LogitKD"], alpha, temperature)`` through its own
  ``_distill`` + ``_total``, without the teacher-logit cache (teacher forward every step) and with it (batches carry
  ``teacher_logits`` from :meth:`ClfDataModule.add_teacher_logits`). The one-time cache build (all splits, into a
  fresh temporary cache folder so nothing is read from disk) is reported on its own, and amortised over 1 and 3
  epochs of the training data: ``k·N / (cache_time + k·N / cached_speed)``.
* ``mix-step (hooks)``: AttnMiniLM + ValMiniLM + HidnTinyBERT + LogitKD, taps captured by the distiller's forward
  hooks (models keep SDPA attention).
* ``mix-step (eager outputs)``: the same adaptors and layer maps fed the conventional way: models switched to
  ``attn_implementation="eager"``, ``output_attentions=True, output_hidden_states=True``, and the q/k/v of each
  needed layer recomputed by its own ``nn.Linear`` on the layer input (:func:`eager_distill`).

**End-to-end rows** include data loading and each framework's loop (timed from the end of step ``warmup`` to the end
of step ``warmup + steps``; setup, warm-up and teardown excluded):

* ``Lightning fit, logit KD + cache``: ``pl.Trainer.fit`` of the cached logit-KD distiller on the data module's
  length-grouped batches (no logger, checkpointing or validation), plus its amortisation over 3 epochs.
* ``HF Trainer.train, recipe``: :class:`KDRecipeTrainer` (a ``transformers.Trainer`` subclass whose ``compute_loss``
  is ``alpha·CE + (1-alpha)·T²·KL(softmax(t/T) ‖ softmax(s/T))``) with ``max_steps``, on its default random batches
  (``DataCollatorWithPadding``), its default optimizer (fused AdamW) and gradient clipping, no logging, saving or
  evaluation.

Memory: on CUDA, ``torch.cuda.max_memory_allocated`` during the row (peak) and its excess over the allocation at the
row's start (Δ). On CPU, the process's peak resident set size during the row (Linux ``VmHWM`` after resetting it via
``/proc/self/clear_refs``; elsewhere the lifetime ``ru_maxrss``) and its excess over the RSS at the row's start; freed
heap is returned to the OS first (``malloc_trim``) so the rows do not inherit each other's peaks. Δ is the memory the
row's steps needed on top of the models already loaded (activations, gradients, optimizer state).

Prints a header, a Markdown table and the tracked ratios with PASS/FAIL against their floors.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import gc
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import transformers
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import step_trainer  # noqa: E402
from data.data_module import TEACHER_LOGITS, ClfDataModule, model_inputs  # noqa: E402
from helper.distiller import BaseDistiller  # noqa: E402
from helper.models import load_classifier, student_from_layers  # noqa: E402
from helper.taps import ARCHITECTURES  # noqa: E402
from helper.training import adamw_with_warmup  # noqa: E402

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

INTER = ("AttnMiniLM", "ValMiniLM", "HidnTinyBERT")
Batch = dict[str, torch.Tensor]
Step = Callable[[Batch], Any]


# ---------------------------------------------------------------------------------------------------- settings


@dataclass
class Settings:
    """Where and how every row runs.

    Attributes:
        device: The device the models and batches live on.
        bf16: Run forwards and losses under ``torch.autocast(dtype=torch.bfloat16)``.
        threads: ``torch.set_num_threads`` value, enforced again inside the framework loops.
    """

    device: torch.device
    bf16: bool = False
    threads: int = 1

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of a forward pass (a no-op in fp32)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def sync(self) -> None:
        """Wait for queued device work (CUDA) so that ``perf_counter`` brackets it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


# ---------------------------------------------------------------------------------------------------- memory


def _status_kb(name: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or None off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_rss_peak() -> bool:
    """Reset the kernel's peak-RSS counter (``VmHWM``) to the current RSS; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _malloc_trim() -> None:
    """Give freed heap memory back to the OS (glibc), so RSS reflects what is live; best effort."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _maxrss_mb() -> float:
    """Lifetime peak RSS of the process from ``getrusage`` (kB on Linux, bytes on macOS)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value / (1024 * 1024) if sys.platform == "darwin" else value / 1024


class MemoryMeter:
    """Peak memory of one row: CUDA allocator peak, or the process's peak RSS on CPU (see the module docstring).

    Args:
        device: The row's device.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._hwm = device.type != "cuda" and os.access("/proc/self/clear_refs", os.W_OK)
        if device.type == "cuda":
            self.kind = "CUDA max_memory_allocated"
        else:
            self.kind = "peak process RSS (VmHWM)" if self._hwm else "lifetime peak process RSS (ru_maxrss)"
        self._baseline = 0.0

    def start(self) -> None:
        """Reset the peak counter and note the memory in use now."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device) / 2**20
            return
        _malloc_trim()
        if self._hwm and not (_reset_rss_peak() and _status_kb("VmHWM") is not None):
            self._hwm = False
            self.kind = "lifetime peak process RSS (ru_maxrss)"
        rss = _status_kb("VmRSS")
        self._baseline = rss / 1024 if rss is not None else _maxrss_mb()

    def stop(self) -> tuple[float, float]:
        """Peak memory since :meth:`start` and its excess over the memory in use at the start, both in MiB."""
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            hwm = _status_kb("VmHWM") if self._hwm else None
            peak = hwm / 1024 if hwm is not None else _maxrss_mb()
        return peak, max(peak - self._baseline, 0.0)


# ---------------------------------------------------------------------------------------------------- results


@dataclass
class Result:
    """One row of the table.

    Attributes:
        key: Short identifier used by the ratios and the JSON output.
        label: The config column.
        samples: Examples processed in the timed window.
        seconds: Length of the timed window.
        steps: Optimizer steps (or forward passes) in the window; 0 when a per-step time makes no sense.
        peak_mb: Peak memory during the row (see :class:`MemoryMeter`), or None.
        delta_mb: Peak memory above the row's starting point, or None.
        padded_length: Mean padded sequence length of the timed batches, or None.
        note: Extra information printed under the table.
        rate: A derived samples/s (amortised rows) that replaces ``samples / seconds``.
    """

    key: str
    label: str
    samples: float
    seconds: float
    steps: int = 0
    peak_mb: float | None = None
    delta_mb: float | None = None
    padded_length: float | None = None
    note: str = ""
    rate: float | None = None

    @property
    def samples_per_s(self) -> float:
        """Throughput over the timed window (or the derived ``rate``); NaN for a skipped row."""
        if self.rate is not None:
            return self.rate
        return self.samples / self.seconds if self.seconds > 0 else float("nan")

    @property
    def ms_per_step(self) -> float | None:
        """Mean wall time of one step, or None for rows without steps."""
        return 1000 * self.seconds / self.steps if self.steps else None


def amortised_speed(num_samples: int, epochs: float, cache_seconds: float, cached_speed: float) -> float:
    """Samples/s over ``epochs`` passes when a one-time cache build precedes training.

    Args:
        num_samples: Training examples per epoch (``N``).
        epochs: Passes over the data (``k``).
        cache_seconds: One-time cost of building the teacher-logit cache.
        cached_speed: Training samples/s once the cache exists.

    Returns:
        ``k·N / (cache_seconds + k·N / cached_speed)``.
    """
    work = epochs * num_samples
    return work / (cache_seconds + work / cached_speed)


@dataclass
class Floor:
    """A tracked ratio and the bound it must respect.

    Attributes:
        name: What the ratio compares.
        op: ``">="`` or ``"<="``.
        bound: The floor.
        value: The measured ratio (None when an input row is missing).
    """

    name: str
    op: str
    bound: float
    value: float | None = None

    @property
    def verdict(self) -> str:
        """``PASS``, ``FAIL``, or ``n/a`` when the ratio could not be measured."""
        if self.value is None or self.value != self.value:
            return "n/a"
        ok = self.value >= self.bound if self.op == ">=" else self.value <= self.bound
        return "PASS" if ok else "FAIL"

    def line(self) -> str:
        """One printed line: ``name = value (floor op bound): verdict``."""
        shown = "n/a" if self.value is None else f"{self.value:.3f}"
        symbol = "≥" if self.op == ">=" else "≤"
        return f"- {self.name} = {shown} (floor {symbol} {self.bound:g}): {self.verdict}"


# ---------------------------------------------------------------------------------------------------- timing


def time_steps(
    key: str, label: str, step: Step, batches: list[Batch], warmup: int, settings: Settings, note: str = ""
) -> Result:
    """Run ``step`` on ``batches[:warmup]`` untimed, then time it over ``batches[warmup:]``.

    Args:
        key: Result key.
        label: Result label.
        step: One training step (or forward pass) on one batch.
        batches: Pre-collated batches on the device.
        warmup: Untimed leading batches.
        settings: Device settings (synchronisation).
        note: Extra information for the report.

    Returns:
        The timed window's samples, seconds and memory.
    """
    meter = MemoryMeter(settings.device)
    meter.start()
    for batch in batches[:warmup]:
        step(batch)
    timed = batches[warmup:]
    settings.sync()
    start = time.perf_counter()
    for batch in timed:
        step(batch)
    settings.sync()
    seconds = time.perf_counter() - start
    peak, delta = meter.stop()
    return Result(
        key,
        label,
        samples=sum(len(b["labels"]) for b in timed),
        seconds=seconds,
        steps=len(timed),
        peak_mb=peak,
        delta_mb=delta,
        padded_length=sum(b["input_ids"].shape[1] for b in timed) / max(len(timed), 1),
        note=note,
    )


def make_optimizer(named_params: Any, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """The distillers' AdamW (same parameter groups as ``configure_optimizers``), at a constant learning rate."""
    return adamw_with_warmup(list(named_params), lr, weight_decay, warmup_ratio=0.0, total_steps=1)["optimizer"]


def distiller_params(distiller: BaseDistiller) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters ``BaseDistiller.configure_optimizers`` trains (student and adaptor projections)."""
    return [*distiller.student.named_parameters(), *distiller.adaptors.named_parameters(prefix="adaptors")]


# ---------------------------------------------------------------------------------------------------- the steps


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


def recipe_loss(
    student: torch.nn.Module, teacher: torch.nn.Module, inputs: Batch, alpha: float, temperature: float
) -> tuple[torch.Tensor, Any]:
    """The conventional KD recipe's loss: ``alpha·CE + (1-alpha)·T²·KL(softmax(t/T) ‖ softmax(s/T))``.

    The student computes its own cross-entropy from ``labels`` (Hugging Face style); the teacher runs under
    ``no_grad``; the KL is summed over classes and averaged over the batch.

    Args:
        student: The student classifier (trainable).
        teacher: The teacher classifier (eval mode).
        inputs: Model inputs with ``labels``.
        alpha: Weight of the hard-label cross-entropy.
        temperature: Softmax temperature ``T``.

    Returns:
        The loss and the student's outputs.
    """
    outputs = student(**inputs)
    with torch.no_grad():
        t_logits = teacher(**{k: v for k, v in inputs.items() if k != "labels"}).logits
    log_p_s = F.log_softmax(outputs.logits.float() / temperature, dim=-1)
    p_t = F.softmax(t_logits.float() / temperature, dim=-1)
    kd = F.kl_div(log_p_s, p_t, reduction="batchmean") * temperature**2
    return alpha * outputs.loss + (1 - alpha) * kd, outputs


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
    """One ``BaseDistiller`` training step without Lightning: ``_distill`` + ``_total`` + backward + AdamW step.

    Args:
        distiller: The distiller (its ``use_teacher_cache`` decides whether cached teacher logits are used).
        optimizer: AdamW over :func:`distiller_params`.
        settings: Device settings.
        distill: Replacement for ``distiller._distill`` (e.g. :func:`eager_distill`), same signature.
    """
    distiller.train()
    run = distill or distiller._distill

    def step(batch: Batch) -> None:
        with settings.autocast():
            losses, s_logits, _ = run(batch)
            loss = distiller._total(losses, s_logits, batch["labels"])["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


# ---------------------------------------------------------------------------------------------------- eager-fed taps


def needed_taps(distiller: BaseDistiller, role: str) -> dict[str, set[int]]:
    """Which encoder layers each tap is needed for, over all of the distiller's adaptors.

    Args:
        distiller: The distiller.
        role: ``"teacher"`` or ``"student"``.

    Returns:
        ``{tap: {layer, ...}}`` for the intermediate taps (``"embeddings"`` maps to an empty set).
    """
    side = 1 if role == "teacher" else 0  # layer maps hold (student_layer, teacher_layer) pairs
    out: dict[str, set[int]] = {}
    for adaptor, layer_map in zip(distiller.adaptors, distiller.layer_maps, strict=True):
        for tap in adaptor.needs - {"logits"}:
            out.setdefault(tap, set()).update(pair[side] for pair in layer_map)
    return out


def eager_raw(model: PreTrainedModel, inputs: Batch, needs: dict[str, set[int]]) -> tuple[torch.Tensor, dict]:
    """Logits and taps of one forward pass the conventional way: from the model's eager outputs.

    ``output_attentions=True, output_hidden_states=True``; ``embeddings`` = ``hidden_states[0]``, ``hidden[i]`` =
    ``hidden_states[i + 1]``, and queries/keys/values of layer ``i`` = that layer's own ``nn.Linear`` applied to its
    input ``hidden_states[i]``, reshaped to ``(B, heads, T, d_head)``. Only the (tap, layer) pairs in ``needs`` are
    computed. Module paths come from :data:`helper.taps.ARCHITECTURES`.

    Args:
        model: A classifier with eager attention.
        inputs: Model inputs.
        needs: Output of :func:`needed_taps`.

    Returns:
        The logits and a ``ModelTaps.pop()``-style dict (per-layer taps as ``{layer: tensor}``).
    """
    out = model(**inputs, output_attentions=True, output_hidden_states=True)
    states = out.hidden_states
    names = ARCHITECTURES[model.config.model_type]
    layers = model.base_model.get_submodule(names.layers)
    heads = model.config.num_attention_heads
    raw: dict[str, Any] = {}
    if "embeddings" in needs:
        raw["embeddings"] = states[0]
    if "hidden" in needs:
        raw["hidden"] = {i: states[i + 1] for i in sorted(needs["hidden"])}
    for tap, attr in (("queries", "query"), ("keys", "key"), ("values", "value")):
        for i in sorted(needs.get(tap, ())):
            x = layers[i].get_submodule(getattr(names, attr))(states[i])
            b, t, width = x.shape
            raw.setdefault(tap, {})[i] = x.view(b, t, heads, width // heads).transpose(1, 2)
    return out.logits, raw


def eager_distill(distiller: BaseDistiller, batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """``BaseDistiller._distill`` with taps built from eager outputs instead of the forward hooks.

    Call :meth:`BaseDistiller.remove_taps` first, so the hooks do not also record. Same return value as ``_distill``.
    """
    inputs = model_inputs(batch)
    with torch.no_grad():
        t_logits, t_raw = eager_raw(distiller.teacher, inputs, needed_taps(distiller, "teacher"))
    s_logits, s_raw = eager_raw(distiller.student, inputs, needed_taps(distiller, "student"))
    losses = distiller.adaptor_losses(t_raw, t_logits, s_raw, s_logits, batch["attention_mask"])
    return losses, s_logits, t_logits


def eager_copy(model: PreTrainedModel) -> PreTrainedModel:
    """A deep copy of ``model`` switched to eager attention (the original keeps its implementation)."""
    clone = copy.deepcopy(model)
    clone.set_attn_implementation("eager")
    return clone


# ---------------------------------------------------------------------------------------------------- end to end


class _Window:
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
            self.start = time.perf_counter()

    def end_step(self) -> None:
        """Called at the end of every optimizer step."""
        self.done += 1
        self.threads.add(torch.get_num_threads())
        if self.done == self.warmup:
            self.settings.sync()
            self.start = time.perf_counter()
        elif self.done == self.warmup + self.steps:
            self.settings.sync()
            self.end = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Length of the window; raises if the loop stopped early."""
        if self.start is None or self.end is None:
            raise RuntimeError(f"the training loop ran {self.done} of {self.warmup + self.steps} steps")
        return self.end - self.start


class LightningClock(pl.Callback):
    """Times ``steps`` training batches after ``warmup`` and records their sizes and padded lengths."""

    def __init__(self, warmup: int, steps: int, settings: Settings) -> None:
        self.window = _Window(warmup, steps, settings)
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


class KDRecipeTrainer(Trainer):
    """The conventional KD recipe: a ``transformers.Trainer`` whose ``compute_loss`` adds a soft-target KL term.

    Args:
        *args: ``Trainer`` arguments (the student is ``model``).
        teacher: The teacher classifier, already on the training device.
        alpha: Weight of the hard-label cross-entropy.
        temperature: Softmax temperature.
        **kwargs: ``Trainer`` keyword arguments.
    """

    def __init__(self, *args: Any, teacher: PreTrainedModel, alpha: float, temperature: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = teacher.eval()
        self.alpha = alpha
        self.temperature = temperature
        self.batch_shapes: list[tuple[int, int]] = []  # benchmark bookkeeping: (batch size, padded length) per call

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """``alpha·CE + (1-alpha)·T²·KL`` (see :func:`recipe_loss`)."""
        self.batch_shapes.append(tuple(inputs["input_ids"].shape))
        loss, outputs = recipe_loss(model, self.teacher, inputs, self.alpha, self.temperature)
        return (loss, outputs) if return_outputs else loss


class HFClock(TrainerCallback):
    """The HF ``Trainer`` counterpart of :class:`LightningClock` (batch shapes come from ``KDRecipeTrainer``)."""

    def __init__(self, warmup: int, steps: int, settings: Settings) -> None:
        self.window = _Window(warmup, steps, settings)

    def on_train_begin(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:  # noqa: D102
        torch.set_num_threads(self.window.settings.threads)

    def on_step_begin(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:  # noqa: D102
        self.window.begin_step()

    def on_step_end(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:  # noqa: D102
        self.window.end_step()


def _window_result(key: str, label: str, window: _Window, shapes: list[tuple[int, int]], meter: MemoryMeter) -> Result:
    timed = shapes[window.warmup : window.warmup + window.steps]
    peak, delta = meter.stop()
    return Result(
        key,
        label,
        samples=sum(b for b, _ in timed),
        seconds=window.seconds,
        steps=len(timed),
        peak_mb=peak,
        delta_mb=delta,
        padded_length=sum(t for _, t in timed) / max(len(timed), 1),
        note=f"threads seen in the loop: {sorted(window.threads)}",
    )


def lightning_fit(distiller: BaseDistiller, dm: ClfDataModule, args: argparse.Namespace, settings: Settings) -> Result:
    """``pl.Trainer.fit`` of ``distiller`` for ``warmup + steps`` steps on the data module's batches, timed."""
    clock = LightningClock(args.warmup, args.steps, settings)
    trainer = step_trainer(
        args.warmup + args.steps,
        [clock],
        accelerator="gpu" if settings.device.type == "cuda" else "cpu",
        devices=1,
        precision="bf16-mixed" if settings.bf16 else "32-true",
    )
    meter = MemoryMeter(settings.device)
    meter.start()
    trainer.fit(distiller, datamodule=dm)
    shapes = list(zip(clock.sizes, clock.lengths, strict=True))
    return _window_result("pl_kd_cache", "Lightning fit: logit KD + cache, length-grouped", clock.window, shapes, meter)


def hf_recipe_train(
    student: PreTrainedModel,
    teacher: PreTrainedModel,
    dm: ClfDataModule,
    args: argparse.Namespace,
    settings: Settings,
) -> Result:
    """``KDRecipeTrainer.train()`` for ``warmup + steps`` steps on random batches of the same training data, timed.

    Raises:
        ImportError: When ``accelerate`` (required by ``transformers.Trainer``) is missing.
    """
    train = dm.tokenized["train"]
    if TEACHER_LOGITS in train.column_names:
        train = train.remove_columns(TEACHER_LOGITS)
    clock = HFClock(args.warmup, args.steps, settings)
    with tempfile.TemporaryDirectory(prefix="hf-recipe-") as out_dir:
        training_args = TrainingArguments(
            output_dir=out_dir,
            max_steps=args.warmup + args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=args.lr,
            weight_decay=args.weight_decay,
            bf16=settings.bf16,
            use_cpu=settings.device.type == "cpu",
            seed=args.seed,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            eval_strategy="no",
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = KDRecipeTrainer(
            model=student,
            args=training_args,
            train_dataset=train.with_format(None),
            processing_class=dm.tokenizer,
            callbacks=[clock],
            teacher=teacher,
            alpha=args.alpha,
            temperature=args.temperature,
        )
        trainer.remove_callback(PrinterCallback)  # it would print the final metrics dict
        meter = MemoryMeter(settings.device)
        meter.start()
        output = trainer.train()
    result = _window_result(
        "hf_recipe", "HF Trainer.train: recipe, random batches", clock.window, trainer.batch_shapes, meter
    )
    reported = output.metrics.get("train_samples_per_second")
    result.note += f"; HF-reported train_samples_per_second (whole train(), setup and warm-up included): {reported}"
    return result


# ---------------------------------------------------------------------------------------------------- driver


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="../shared/data/sst2", help="data source (folder, file, 'demo', Hub name)")
    p.add_argument("--teacher", default="minilm", help="teacher: alias, folder or Hub name (a new head if needed)")
    p.add_argument("--tokenizer", help="tokenizer (default: the teacher's)")
    p.add_argument("--student-layers", nargs="+", type=int, default=[0, 5], help="teacher layers kept in the student")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=100, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before each row's timed steps")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads value (fixed for all rows)")
    p.add_argument("--max-train-samples", type=int, help="seeded subset of the training data (N)")
    p.add_argument("--max-length", type=int, default=128, help="truncation length in tokens")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16: autocast for every row")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--skip-e2e", action="store_true", help="leave out the Lightning and HF Trainer runs")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    problems = [
        f"--{name.replace('_', '-')}={getattr(args, name)}: expected {want}"
        for name, want, ok in (
            ("steps", "an integer >= 1", args.steps >= 1),
            ("warmup", "an integer >= 0", args.warmup >= 0),
            ("threads", "an integer >= 1", args.threads >= 1),
            ("batch_size", "an integer >= 1", args.batch_size >= 1),
        )
        if not ok
    ]
    if args.device == "cuda" and not torch.cuda.is_available():
        problems.append("--device=cuda: no CUDA device is available")
    if problems:
        p.error("; ".join(problems))
    return args


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``, else ``platform.processor()``)."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@contextlib.contextmanager
def fresh_teacher_cache() -> Iterator[Path]:
    """Point ``$DISTILLER_CACHE`` at an empty temporary folder, so the cache build really computes."""
    old = os.environ.get("DISTILLER_CACHE")
    with tempfile.TemporaryDirectory(prefix="throughput-cache-") as folder:
        os.environ["DISTILLER_CACHE"] = folder
        try:
            yield Path(folder)
        finally:
            if old is None:
                os.environ.pop("DISTILLER_CACHE", None)
            else:
                os.environ["DISTILLER_CACHE"] = old


def fixed_batches(dm: ClfDataModule, count: int, device: torch.device) -> list[Batch]:
    """The first ``count`` training batches (length-grouped, seeded; epochs repeated if needed), on ``device``."""
    out: list[Batch] = []
    while len(out) < count:
        for batch in dm.train_dataloader():
            out.append({k: v.to(device) for k, v in batch.items()})
            if len(out) == count:
                break
    return out


def without_cache(batches: list[Batch]) -> list[Batch]:
    """The same batches without their ``teacher_logits``."""
    return [{k: v for k, v in b.items() if k != TEACHER_LOGITS} for b in batches]


@dataclass
class Bench:
    """Everything the rows share: options, device settings, data, teacher, and the results so far.

    Attributes:
        args: Command-line options.
        settings: Device settings.
        dm: The data module (length-grouped batches, teacher-logit cache).
        teacher: The teacher, frozen, on the device.
        rows: Results in table order.
    """

    args: argparse.Namespace
    settings: Settings
    dm: ClfDataModule
    teacher: PreTrainedModel
    rows: list[Result]

    def student(self, eager: bool = False) -> PreTrainedModel:
        """A fresh student (the teacher's ``--student-layers``), seeded, on the device."""
        torch.manual_seed(self.args.seed)
        model = student_from_layers(self.teacher, self.args.student_layers).to(self.settings.device)
        if eager:
            model.set_attn_implementation("eager")
        return model

    def distiller(self, adaptors: list[str], teacher: PreTrainedModel | None = None, **kwargs: Any) -> BaseDistiller:
        """A ``BaseDistiller`` on the shared (or the given) teacher and a fresh student."""
        a = self.args
        teacher = teacher if teacher is not None else self.teacher
        student = self.student(eager=teacher.config._attn_implementation == "eager")
        return BaseDistiller(
            teacher, student, adaptors, self.dm, alpha=a.alpha, temperature=a.temperature, lr=a.lr,
            weight_decay=a.weight_decay, **kwargs,
        )  # fmt: skip

    def optimizer(self, named_params: Any) -> torch.optim.Optimizer:
        """AdamW with the project's parameter groups."""
        return make_optimizer(named_params, self.args.lr, self.args.weight_decay)

    def add(self, result: Result) -> Result:
        """Record a row (and show progress on stderr)."""
        self.rows.append(result)
        print(f"[{result.key}] {result.samples_per_s:.1f} samples/s", file=sys.stderr, flush=True)
        return result

    def get(self, key: str) -> Result | None:
        """The row with this key, if it was measured."""
        return next((r for r in self.rows if r.key == key), None)

    def timed(self, key: str, label: str, step: Step, batches: list[Batch]) -> Result:
        """Time ``step`` over the fixed batches and record the row."""
        return self.add(time_steps(key, label, step, batches, self.args.warmup, self.settings))


def setup_bench(args: argparse.Namespace) -> Bench:
    """Fix the threads and seed, pick the device, load the data and the teacher."""
    torch.set_num_threads(args.threads)
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    settings = Settings(
        torch.device("cuda" if use_cuda else "cpu"), bf16=args.precision == "bf16", threads=args.threads
    )
    pl.seed_everything(args.seed, verbose=False)
    dm = ClfDataModule(
        args.dataset,
        tokenizer=args.tokenizer or args.teacher,
        batch_size=args.batch_size,
        max_train_samples=args.max_train_samples,
        max_length=args.max_length,
        group_by_length=True,
        seed=args.seed,
    )
    dm.setup()
    teacher = load_classifier(args.teacher, num_labels=dm.num_labels)
    teacher = teacher.to(settings.device).eval().requires_grad_(False)
    return Bench(args, settings, dm, teacher, [])


def measure_cache_build(bench: Bench) -> float:
    """Build the teacher-logit cache once, afresh, and record its cost; returns the seconds it took."""
    dm, settings = bench.dm, bench.settings
    count = sum(len(split) for split in dm.raw.values())
    meter = MemoryMeter(settings.device)
    with fresh_teacher_cache():
        meter.start()
        settings.sync()
        start = time.perf_counter()
        with settings.autocast():
            dm.add_teacher_logits(bench.teacher)
        settings.sync()
        seconds = time.perf_counter() - start
        peak, delta = meter.stop()
    label = f"teacher-logit cache build (one-time: {seconds:.2f} s for {count} examples, all splits)"
    bench.add(Result("cache_build", label, count, seconds, 0, peak, delta))
    return seconds


def measure_steps(bench: Bench, cache_seconds: float) -> None:
    """The step rows, all on the same pre-collated batches."""
    a, settings = bench.args, bench.settings
    cached = fixed_batches(bench.dm, a.warmup + a.steps, settings.device)
    plain = without_cache(cached)
    num_train = len(bench.dm.raw["train"])

    bench.timed(
        "teacher_fwd", "teacher forward (inference_mode, eval)", teacher_forward_step(bench.teacher, settings), plain
    )

    model = bench.student()
    step = student_ce_step(model, bench.optimizer(model.named_parameters()), settings)
    bench.timed("student_ce", "student step alone (CE)", step, plain)

    model = bench.student()
    opt = bench.optimizer(model.named_parameters())
    step = recipe_step(model, bench.teacher, opt, a.alpha, a.temperature, settings)
    bench.timed("recipe_step", "recipe step: α·CE + (1-α)·T²·KL, teacher no_grad", step, plain)

    for key, label, use_cache, batches in (
        ("kd_nocache", "logit KD (BaseDistiller), no cache", False, plain),
        ("kd_cache", "logit KD (BaseDistiller), cached teacher logits", True, cached),
    ):
        distiller = bench.distiller(["LogitKD"], cache_teacher_outputs=use_cache)
        distiller.use_teacher_cache = use_cache  # what setup() decides when a Lightning Trainer runs it
        step = distiller_step(distiller, bench.optimizer(distiller_params(distiller)), settings)
        bench.timed(key, label, step, batches)
    for epochs in (1, 3):
        speed = amortised_speed(num_train, epochs, cache_seconds, bench.get("kd_cache").samples_per_s)
        label = f"logit KD + cache, amortised over {epochs} epoch(s) of N={num_train} (incl. cache build)"
        bench.add(Result(f"kd_cache_amort{epochs}", label, 0, 0.0, rate=speed))

    mix = [*INTER, "LogitKD"]
    distiller = bench.distiller(mix)
    step = distiller_step(distiller, bench.optimizer(distiller_params(distiller)), settings)
    bench.timed("mix_hooks", "mix-step (hooks): " + " + ".join(mix), step, plain)
    distiller.remove_taps()  # the teacher is shared with the other rows

    distiller = bench.distiller(mix, teacher=eager_copy(bench.teacher))
    distiller.remove_taps()  # taps come from the eager outputs only

    def distill(batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        return eager_distill(distiller, batch)

    step = distiller_step(distiller, bench.optimizer(distiller_params(distiller)), settings, distill=distill)
    bench.timed("mix_eager", "mix-step (eager output_attentions/hidden_states)", step, plain)


@contextlib.contextmanager
def quiet_frameworks() -> Iterator[None]:
    """Silence the frameworks' info messages and Lightning's advisory warnings (e.g. about DataLoader workers)."""
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning_fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"(pytorch_lightning|lightning_fabric)\b")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def measure_end_to_end(bench: Bench, cache_seconds: float) -> None:
    """Lightning ``fit`` of cached logit KD (length-grouped) and the recipe's HF ``Trainer.train`` (random batches)."""
    a = bench.args
    num_train = len(bench.dm.raw["train"])
    with quiet_frameworks():
        distiller = bench.distiller(["LogitKD"], cache_teacher_outputs=True)
        result = bench.add(lightning_fit(distiller, bench.dm, a, bench.settings))
        if not distiller.use_teacher_cache:
            result.note += "; WARNING: the teacher-logit cache was not used"
        speed = amortised_speed(num_train, 3, cache_seconds, result.samples_per_s)
        label = f"Lightning fit: logit KD + cache, amortised over 3 epochs of N={num_train} (incl. cache build)"
        bench.add(Result("pl_kd_cache_amort3", label, 0, 0.0, rate=speed))
        torch.set_num_threads(a.threads)
        try:
            bench.add(hf_recipe_train(bench.student(), bench.teacher, bench.dm, a, bench.settings))
        except ImportError as exc:
            print(f"HF Trainer run skipped: {exc}", file=sys.stderr)
            bench.rows.append(Result("hf_recipe", "HF Trainer.train: recipe (skipped)", 0, 0.0, note=f"skipped: {exc}"))
        torch.set_num_threads(a.threads)


def tracked_ratios(bench: Bench) -> list[Floor]:
    """The ratios the project tracks, with their floors."""

    def ms(key: str) -> float | None:
        row = bench.get(key)
        return row.ms_per_step if row is not None else None

    def speed(key: str) -> float | None:
        row = bench.get(key)
        return None if row is None or row.samples_per_s != row.samples_per_s else row.samples_per_s

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    parts = (ms("teacher_fwd"), ms("student_ce"))
    return [
        Floor(
            "logit KD (cache, over 3 epochs, Lightning end-to-end) / recipe (HF Trainer end-to-end) samples/s",
            ">=",
            2.0,
            ratio(speed("pl_kd_cache_amort3"), speed("hf_recipe")),
        ),
        Floor(
            "logit-KD step without cache / (teacher forward + student step) time",
            "<=",
            1.1,
            ratio(ms("kd_nocache"), None if None in parts else sum(parts)),
        ),
        Floor("mix-step (hooks) / logit-KD step (no cache) time", "<=", 1.25, ratio(ms("mix_hooks"), ms("kd_nocache"))),
        Floor("eager-fed mix-step / hooks mix-step time", ">=", 1.15, ratio(ms("mix_eager"), ms("mix_hooks"))),
    ]


def header(bench: Bench) -> dict[str, Any]:
    """What the numbers depend on: data, sizes, threads, versions, hardware."""
    a, device, teacher = bench.args, bench.settings.device, bench.teacher
    fixed = bench.get("teacher_fwd")
    return {
        "dataset": str(a.dataset),
        "train examples (N)": len(bench.dm.raw["train"]),
        "batch size": a.batch_size,
        "steps": a.steps,
        "warmup": a.warmup,
        "threads": torch.get_num_threads(),
        "precision": a.precision,
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "pytorch_lightning": pl.__version__,
        "CPU": f"{cpu_model()} ({os.cpu_count()} logical CPUs)",
        "load average at end": " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a",
        "teacher": f"{a.teacher} ({teacher.config.num_hidden_layers} layers, {teacher.config._attn_implementation})",
        "student layers": a.student_layers,
        "alpha / T": f"{a.alpha} / {a.temperature}",
        "max length": a.max_length,
        "mean padded length of the fixed batches": round(fixed.padded_length or 0, 1) if fixed else "n/a",
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every row and compute the ratios.

    Returns:
        ``{"header": {...}, "rows": [Result, ...], "floors": [Floor, ...], "memory": str}``.
    """
    bench = setup_bench(args)
    cache_seconds = measure_cache_build(bench)
    measure_steps(bench, cache_seconds)
    if not args.skip_e2e:
        measure_end_to_end(bench, cache_seconds)
    memory = MemoryMeter(bench.settings.device).kind
    return {"header": header(bench), "rows": bench.rows, "floors": tracked_ratios(bench), "memory": memory}


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None or value != value else f"{value:,.{digits}f}"


def format_report(report: dict[str, Any]) -> str:
    """The header, the Markdown table, notes and the ratio lines as text."""
    lines = [f"# Training throughput ({time.strftime('%Y-%m-%d %H:%M')})", ""]
    lines += [f"- {k}: {v}" for k, v in report["header"].items()]
    lines += [
        "",
        "| config | samples/s | ms/step | peak mem MB | Δ mem MB |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        speed = "skipped" if r.samples_per_s != r.samples_per_s else _fmt(r.samples_per_s)
        lines.append(f"| {r.label} | {speed} | {_fmt(r.ms_per_step)} | {_fmt(r.peak_mb, 0)} | {_fmt(r.delta_mb, 0)} |")
    lines += [
        "",
        f"Memory: {report['memory']} during the row (peak) and its excess over the row's start (Δ), MiB.",
        "Step rows: identical pre-collated batches on the device, plain Python loop; end-to-end rows include data "
        "loading and each framework's loop.",
    ]
    for r in report["rows"]:
        extra = (
            [f"mean padded length {r.padded_length:.1f}"]
            if r.padded_length and r.key.startswith(("pl_", "hf_"))
            else []
        )
        if r.note:
            extra.append(r.note)
        if extra:
            lines.append(f"- {r.key}: {'; '.join(extra)}")
    lines += ["", "Ratios:"]
    lines += [f.line() for f in report["floors"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the report, optionally write JSON; returns the report."""
    args = parse_args(argv)
    report = run(args)
    print(format_report(report))
    print(f"\ncommand: python {' '.join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])}")
    if args.json is not None:
        payload = {
            "header": report["header"],
            "memory": report["memory"],
            "rows": [
                {
                    **asdict(r),
                    "samples_per_s": speed if (speed := r.samples_per_s) == speed else None,
                    "ms_per_step": r.ms_per_step,
                }
                for r in report["rows"]
            ],
            "floors": [{**asdict(f), "verdict": f.verdict} for f in report["floors"]],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
