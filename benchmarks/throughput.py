"""Training throughput of our distillation steps against a conventional HF ``Trainer`` KD recipe, in one run.

Usage (from the repository root)::

    python benchmarks/throughput.py --dataset ../shared/data/sst2 --batch-size 32 --rounds 5 --steps 100 --threads 2

**Interleaved rounds.** Every configuration (an *arm*: a step loop, the cache build, a framework run) is built first
and warmed up once (``--warmup`` untimed steps each); then ``--rounds`` rounds each run every arm once, in the same
order (A B C … A B C …), ``--round-warmup`` untimed steps and then ``--steps`` timed steps on the *same* batches. On a
machine whose speed drifts over minutes (a shared virtual machine, other jobs), configurations timed one after the
other compare the machine's state as much as the code; within a round they run seconds apart. Every figure is the
median over the rounds with its min–max, and every tracked ratio is computed *inside* each round and reported as
the median of those per-round ratios, with their min–max and how many rounds met the floor; a floor PASSes only
when the median meets it (:mod:`benchmarks.interleave`). Threads are fixed (``--threads``) and enforced again
inside the framework loops; the load average at the start and end is printed, since other jobs on the cores make
every row slower (and noisier) alike. On such a machine ``--timer cpu`` times with the process's CPU time instead of
the wall clock (with ``--threads 1`` it is the single thread's compute time, without the time other processes held
the core; CPU runs only). The HF ``Trainer`` arm needs ``accelerate`` (left out, with a note, when it is
missing). ``--skip-e2e`` leaves out both framework arms.

Teacher: ``--teacher`` (default the packaged MiniLM, ``minilm``: 6 layers, a new 2-class head; the weights do not
matter for speed). Student: its layers ``--student-layers`` (default 0 and 5). ``BaseDistiller`` weighs LogitKD by
its adaptor weight (1) where the recipe uses ``1 - alpha``; the cost of a step is the same.

**Step rows** all run the identical pre-collated batches, already on the device: the first
``max(warmup, round_warmup) + steps`` length-grouped training batches of :class:`~data.data_module.ClfDataModule`
(seeded), the leading ones untimed, the last ``steps`` timed in every round, in a plain Python loop (no Lightning or
HF ``Trainer`` overhead). A training step is forward(s) + loss + backward + AdamW step + ``zero_grad``; every arm
has its own fresh student and AdamW with the project's parameter groups (:func:`helper.training.adamw_with_warmup`),
kept across the rounds:

* ``teacher forward``: ``teacher(**inputs)`` in eval mode under ``torch.inference_mode`` (no step).
* ``student step (CE)``: the student alone with cross-entropy.
* ``recipe step``: the conventional KD recipe's loss (:func:`recipe_loss`, the same function the
  :class:`KDRecipeTrainer` below uses), teacher under ``no_grad``.
* ``logit KD``: ``BaseDistiller(teacher, student, ["LogitKD"], alpha, temperature)`` through its own
  ``distill`` + ``_total``, without the teacher-logit cache (teacher forward every step) and with it (batches carry
  ``teacher_logits`` from :meth:`ClfDataModule.add_teacher_logits`). The one-time cache build (all splits, into a
  fresh temporary cache folder so nothing is read from disk) is timed once before the rounds (with
  ``--cache-every-round``, an arm of its own, rebuilt afresh in every round), and amortised over 1 and 3 epochs of
  the training data with each round's cached speed: ``k·N / (cache_time + k·N / cached_speed)``.
* ``mix-step (hooks)``: AttnMiniLM + ValMiniLM + HidnTinyBERT + LogitKD, taps captured by the distiller's forward
  hooks (models keep SDPA attention).
* ``mix-step (attention capture)``: the same, with queries/keys/values recorded inside the models' attention
  function (:class:`helper.taps.ModelTaps` with ``capture="attention"``: a function registered in transformers'
  ``AttentionInterface`` that records the mapped layers' inputs and runs SDPA for every layer).
* ``mix-step (eager outputs)``: the same adaptors and layer maps fed the conventional way: models switched to
  ``attn_implementation="eager"``, ``output_attentions=True, output_hidden_states=True``, and the q/k/v of each
  needed layer recomputed by its own ``nn.Linear`` on the layer input (:func:`eager_distill`).

**End-to-end rows** include data loading and each framework's loop; every round runs a whole loop with a fresh student
(timed from the end of step ``warmup`` to the end of step ``warmup + steps``; setup, warm-up and teardown excluded):

* ``Lightning fit, logit KD + cache``: ``pl.Trainer.fit`` of the cached logit-KD distiller on the data module's
  length-grouped batches (no logger, checkpointing or validation), plus its amortisation over 3 epochs.
* ``HF Trainer.train, recipe``: :class:`KDRecipeTrainer` (a ``transformers.Trainer`` subclass whose ``compute_loss``
  is ``alpha·CE + (1-alpha)·T²·KL(softmax(t/T) ‖ softmax(s/T))``) with ``max_steps``, on its default random batches
  (``DataCollatorWithPadding``), its default optimizer (fused AdamW) and gradient clipping, no logging, saving or
  evaluation.

Memory: on CUDA, ``torch.cuda.max_memory_allocated`` during each segment of an arm (its warm-up, each round) and the
segment's excess over the allocation at its start (Δ); the table shows the highest of each over the segments. On
CPU, the process's peak resident set size during the segment (Linux ``VmHWM`` after resetting it via
``/proc/self/clear_refs``; elsewhere the lifetime ``ru_maxrss``) and its excess over the RSS at the segment's start;
freed heap is returned to the OS first (``malloc_trim``) so the segments do not inherit each other's peaks. Δ is the
memory the arm's steps needed on top of what was already loaded (activations, gradients; the optimizer state,
allocated in the warm-up). All arms' models stay loaded for the whole run, so peaks include them.

Prints a header, a Markdown table (median and min–max over rounds) and the tracked ratios with PASS/FAIL against
their floors.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import gc
import importlib.util
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
from dataclasses import asdict, dataclass, field
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
from benchmarks.interleave import (  # noqa: E402
    Arm,
    Floor,
    Sample,
    Spread,
    per_round,
    run_rounds,
    stderr_progress,
    time_loop,
)
from data.data_module import TEACHER_LOGITS, ClfDataModule, model_inputs  # noqa: E402
from helper.distiller import BaseDistiller  # noqa: E402
from helper.models import load_classifier, student_from_layers  # noqa: E402
from helper.taps import ARCHITECTURES, ModelTaps  # noqa: E402
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
class Row:
    """One row of the table: a configuration's per-round samples, or a figure derived from other rows per round.

    Attributes:
        key: Short identifier used by the ratios and the JSON output.
        label: The config column.
        samples: One :class:`~benchmarks.interleave.Sample` per round (empty for a skipped row).
        note: Extra information printed under the table.
        warmup_peak_mb: Peak memory of the one-time warm-up segment (it allocates the optimizer state), or None.
        warmup_delta_mb: That segment's peak above its start, or None.
    """

    key: str
    label: str
    samples: list[Sample] = field(default_factory=list)
    note: str = ""
    warmup_peak_mb: float | None = None
    warmup_delta_mb: float | None = None

    @property
    def speed(self) -> Spread:
        """Samples/s over the rounds."""
        return Spread.of([s.samples_per_s for s in self.samples])

    @property
    def ms(self) -> Spread:
        """Milliseconds per step over the rounds (empty for rows without steps)."""
        return Spread.of([s.ms_per_step for s in self.samples])

    def per_round_speed(self) -> list[float | None]:
        """Samples/s of each round."""
        return [s.samples_per_s for s in self.samples]

    def per_round_ms(self) -> list[float | None]:
        """Milliseconds per step of each round."""
        return [s.ms_per_step for s in self.samples]

    def _max(self, values: list[float | None]) -> float | None:
        finite = [v for v in values if v is not None]
        return max(finite) if finite else None

    @property
    def peak_mb(self) -> float | None:
        """Highest peak memory over the warm-up and every round's segment."""
        return self._max([self.warmup_peak_mb, *(s.peak_mb for s in self.samples)])

    @property
    def delta_mb(self) -> float | None:
        """Largest excess of a segment's peak over the segment's start (the warm-up includes the optimizer state)."""
        return self._max([self.warmup_delta_mb, *(s.delta_mb for s in self.samples)])

    @property
    def padded_length(self) -> float | None:
        """Mean padded sequence length of the timed batches (over the rounds), or None."""
        lengths = [s.padded_length for s in self.samples if s.padded_length is not None]
        return sum(lengths) / len(lengths) if lengths else None


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


def amortised_row(key: str, label: str, num_samples: int, epochs: float, cache: Row, cached: Row) -> Row:
    """Per round, the amortised speed from that round's cache build and that round's cached training speed.

    A cache built once (one sample) is used with every round's speed.
    """
    builds = [s.seconds for s in cache.samples]
    if len(builds) == 1:
        builds = builds * len(cached.samples)
    rates = per_round(
        lambda seconds, speed: amortised_speed(num_samples, epochs, seconds, speed), builds, cached.per_round_speed()
    )
    return Row(key, label, [Sample(0.0, 0, rate=float("nan") if r is None else r) for r in rates])


# ---------------------------------------------------------------------------------------------------- timing


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
    """One ``BaseDistiller`` training step without Lightning: ``distill`` + ``_total`` + backward + AdamW step.

    Args:
        distiller: The distiller (its ``use_teacher_cache`` decides whether cached teacher logits are used).
        optimizer: AdamW over :func:`distiller_params`.
        settings: Device settings.
        distill: Replacement for ``distiller.distill`` (e.g. :func:`eager_distill`), same signature.
    """
    distiller.train()
    run = distill or distiller.distill

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
    """``BaseDistiller.distill`` with taps built from eager outputs instead of the forward hooks.

    Call :meth:`BaseDistiller.remove_taps` first, so the hooks do not also record. Same return value as ``distill``.
    """
    inputs = model_inputs(batch)
    with torch.no_grad():
        t_logits, t_raw = eager_raw(distiller.teacher, inputs, needed_taps(distiller, "teacher"))
    s_logits, s_raw = eager_raw(distiller.student, inputs, needed_taps(distiller, "student"))
    losses = distiller.adaptor_losses(t_raw, t_logits, s_raw, s_logits, batch["attention_mask"])
    return losses, s_logits, t_logits


def use_attention_capture(distiller: BaseDistiller) -> None:
    """Swap the distiller's taps for ones that take q/k/v from the attention function (``capture="attention"``).

    Same tap names and layers as :meth:`BaseDistiller._make_taps`; embeddings and hidden states still come from
    forward hooks.
    """
    for side, model in (("t_taps", distiller.teacher), ("s_taps", distiller.student)):
        taps = getattr(distiller, side)
        if taps is None:
            continue
        taps.remove()
        setattr(distiller, side, ModelTaps(model, taps.needs, taps.layers, capture="attention"))


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


def _window_sample(window: _Window, shapes: list[tuple[int, int]], meter: MemoryMeter) -> Sample:
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


def lightning_fit(
    distiller: BaseDistiller, dm: ClfDataModule, args: argparse.Namespace, settings: Settings
) -> tuple[Sample, str]:
    """``pl.Trainer.fit`` of ``distiller`` for ``warmup + steps`` steps on the data module's batches, timed.

    Returns:
        The timed window and a note (the thread counts seen in the loop).
    """
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
    return _window_sample(clock.window, shapes, meter), f"threads seen in the loop: {sorted(clock.window.threads)}"


def hf_recipe_train(
    student: PreTrainedModel,
    teacher: PreTrainedModel,
    dm: ClfDataModule,
    args: argparse.Namespace,
    settings: Settings,
) -> tuple[Sample, str]:
    """``KDRecipeTrainer.train()`` for ``warmup + steps`` steps on random batches of the same training data, timed.

    Returns:
        The timed window and a note (threads seen in the loop, the HF-reported speed of the whole ``train()``).

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
    sample = _window_sample(clock.window, trainer.batch_shapes, meter)
    reported = output.metrics.get("train_samples_per_second")
    note = (
        f"threads seen in the loop: {sorted(clock.window.threads)}; HF-reported train_samples_per_second (whole "
        f"train(), setup and warm-up included): {reported}"
    )
    return sample, note


# ---------------------------------------------------------------------------------------------------- driver


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="../shared/data/sst2", help="data source (folder, file, 'demo', Hub name)")
    p.add_argument("--teacher", default="minilm", help="teacher: alias, folder or Hub name (a new head if needed)")
    p.add_argument("--tokenizer", help="tokenizer (default: the teacher's)")
    p.add_argument("--student-layers", nargs="+", type=int, default=[0, 5], help="teacher layers kept in the student")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds: every configuration is timed once per round"
    )
    p.add_argument("--steps", type=int, default=100, help="timed steps per configuration per round")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps per configuration, once before round 1")
    p.add_argument(
        "--round-warmup", type=int, default=1, help="untimed steps per configuration at the start of every round"
    )
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads value (fixed for all rows)")
    p.add_argument("--max-train-samples", type=int, help="seeded subset of the training data (N)")
    p.add_argument("--max-length", type=int, default=128, help="truncation length in tokens")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16: autocast for every row")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--timer",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (a machine shared with other jobs; CPU runs only)",
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--skip-e2e", action="store_true", help="leave out the Lightning and HF Trainer runs")
    p.add_argument(
        "--cache-every-round",
        action="store_true",
        help="rebuild (and time) the teacher-logit cache in every round instead of once before the rounds",
    )
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    problems = [
        f"--{name.replace('_', '-')}={getattr(args, name)}: expected {want}"
        for name, want, ok in (
            ("rounds", "an integer >= 1", args.rounds >= 1),
            ("steps", "an integer >= 1", args.steps >= 1),
            ("warmup", "an integer >= 0", args.warmup >= 0),
            ("round_warmup", "an integer >= 0", args.round_warmup >= 0),
            ("threads", "an integer >= 1", args.threads >= 1),
            ("batch_size", "an integer >= 1", args.batch_size >= 1),
        )
        if not ok
    ]
    if args.device == "cuda" and not torch.cuda.is_available():
        problems.append("--device=cuda: no CUDA device is available")
    if args.timer == "cpu" and (args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())):
        problems.append(f"--timer=cpu with --device={args.device}: CPU time misses GPU work; expected --timer wall")
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
    """Everything the arms share: options, device settings, data, teacher, and the rows.

    Attributes:
        args: Command-line options.
        settings: Device settings.
        dm: The data module (length-grouped batches, teacher-logit cache).
        teacher: The teacher, frozen, on the device.
        rows: Rows by key, in table order.
        load: ``os.getloadavg()`` at the start of the measurement (None where unavailable).
    """

    args: argparse.Namespace
    settings: Settings
    dm: ClfDataModule
    teacher: PreTrainedModel
    rows: dict[str, Row] = field(default_factory=dict)
    load: tuple[float, float, float] | None = None

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

    def get(self, key: str) -> Row | None:
        """The row with this key, if it was measured."""
        return self.rows.get(key)

    @property
    def num_train(self) -> int:
        """Training examples per epoch (``N``)."""
        return len(self.dm.raw["train"])


def setup_bench(args: argparse.Namespace) -> Bench:
    """Fix the threads and seed, pick the device, load the data and the teacher."""
    torch.set_num_threads(args.threads)
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    settings = Settings(
        torch.device("cuda" if use_cuda else "cpu"),
        bf16=args.precision == "bf16",
        threads=args.threads,
        timer=args.timer,
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
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return Bench(args, settings, dm, teacher, load=load)


def build_teacher_cache(bench: Bench) -> Sample:
    """Build the teacher-logit cache of every split afresh (empty temporary store) and time it.

    The data module skips a rebuild for a teacher it has already labelled, so the record of that is dropped first:
    every call really runs the teacher over all splits.
    """
    dm, settings = bench.dm, bench.settings
    count = sum(len(split) for split in dm.raw.values())
    vars(dm).pop("_teacher_key", None)  # ClfDataModule.add_teacher_logits returns early for a known teacher
    meter = MemoryMeter(settings.device)
    with fresh_teacher_cache():
        meter.start()
        settings.sync()
        start = settings.now()
        with settings.autocast():
            dm.add_teacher_logits(bench.teacher)
        settings.sync()
        seconds = settings.now() - start
        peak, delta = meter.stop()
    return Sample(seconds, count, 0, peak, delta)


def step_arms(bench: Bench) -> list[Arm]:
    """The step arms, all on the same pre-collated batches (with and without cached teacher logits)."""
    a, settings, rows = bench.args, bench.settings, bench.rows
    split = max(a.warmup, a.round_warmup)
    cached = fixed_batches(bench.dm, split + a.steps, settings.device)
    plain = without_cache(cached)

    def arm(key: str, label: str, step: Step, with_cache: bool = False) -> Arm:
        batches = cached if with_cache else plain
        warm, round_warm, timed = batches[: a.warmup], batches[: a.round_warmup], batches[split:]
        return step_arm(key, label, step, warm, round_warm, timed, settings, rows)

    arms = [arm("teacher_fwd", "teacher forward (inference_mode, eval)", teacher_forward_step(bench.teacher, settings))]

    model = bench.student()
    step = student_ce_step(model, bench.optimizer(model.named_parameters()), settings)
    arms.append(arm("student_ce", "student step alone (CE)", step))

    model = bench.student()
    opt = bench.optimizer(model.named_parameters())
    step = recipe_step(model, bench.teacher, opt, a.alpha, a.temperature, settings)
    arms.append(arm("recipe_step", "recipe step: α·CE + (1-α)·T²·KL, teacher no_grad", step))

    for key, label, use_cache in (
        ("kd_nocache", "logit KD (BaseDistiller), no cache", False),
        ("kd_cache", "logit KD (BaseDistiller), cached teacher logits", True),
    ):
        distiller = bench.distiller(["LogitKD"], cache_teacher_outputs=use_cache)
        distiller.use_teacher_cache = use_cache  # what setup() decides when a Lightning Trainer runs it
        step = distiller_step(distiller, bench.optimizer(distiller_params(distiller)), settings)
        arms.append(arm(key, label, step, with_cache=use_cache))

    mix = [*INTER, "LogitKD"]
    # The hooks arm gets its own teacher copy: its taps stay on it for the whole interleaved run.
    distiller = bench.distiller(mix, teacher=copy.deepcopy(bench.teacher))
    step = distiller_step(distiller, bench.optimizer(distiller_params(distiller)), settings)
    arms.append(arm("mix_hooks", "mix-step (hooks): " + " + ".join(mix), step))

    distiller = bench.distiller(mix, teacher=copy.deepcopy(bench.teacher))
    use_attention_capture(distiller)
    step = distiller_step(distiller, bench.optimizer(distiller_params(distiller)), settings)
    arms.append(arm("mix_attn", "mix-step (q/k/v from the attention function, capture='attention')", step))

    distiller = bench.distiller(mix, teacher=eager_copy(bench.teacher))
    distiller.remove_taps()  # taps come from the eager outputs only

    def distill(batch: Batch, distiller: BaseDistiller = distiller) -> tuple[dict, torch.Tensor, torch.Tensor]:
        return eager_distill(distiller, batch)

    step = distiller_step(distiller, bench.optimizer(distiller_params(distiller)), settings, distill=distill)
    arms.append(arm("mix_eager", "mix-step (eager output_attentions/hidden_states)", step))
    return arms


def cache_row(bench: Bench) -> Row:
    """The table row of the one-time teacher-logit cache build."""
    count = sum(len(split) for split in bench.dm.raw.values())
    label = f"teacher-logit cache build (one-time cost, {count} examples, all splits), s"
    return bench.rows.setdefault("cache_build", Row("cache_build", label))


def cache_arm(bench: Bench) -> Arm:
    """The one-time teacher-logit cache build as an arm: rebuilt afresh (and timed) in every round."""
    row = cache_row(bench)
    return Arm("cache_build", row.label, lambda: build_teacher_cache(bench))


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


def end_to_end_arms(bench: Bench) -> list[Arm]:
    """Lightning ``fit`` of cached logit KD (length-grouped) and the recipe's HF ``Trainer.train`` (random batches).

    Each round runs a whole framework loop with a fresh student (``warmup`` untimed steps, then ``steps`` timed).
    The HF arm is left out, with a skipped row, when ``accelerate`` is missing.
    """
    a, settings, rows = bench.args, bench.settings, bench.rows
    pl_row = rows.setdefault("pl_kd_cache", Row("pl_kd_cache", "Lightning fit: logit KD + cache, length-grouped"))

    def measure_pl() -> Sample:
        with quiet_frameworks():
            distiller = bench.distiller(["LogitKD"], cache_teacher_outputs=True)
            sample, note = lightning_fit(distiller, bench.dm, a, settings)
        torch.set_num_threads(a.threads)
        pl_row.note = note if distiller.use_teacher_cache else note + "; WARNING: the teacher-logit cache was not used"
        return sample

    arms = [Arm("pl_kd_cache", pl_row.label, measure_pl)]
    if importlib.util.find_spec("accelerate") is None:
        rows["hf_recipe"] = Row(
            "hf_recipe", "HF Trainer.train: recipe (skipped)", note="skipped: transformers.Trainer needs accelerate"
        )
        return arms
    hf_row = rows.setdefault("hf_recipe", Row("hf_recipe", "HF Trainer.train: recipe, random batches"))

    def measure_hf() -> Sample:
        with quiet_frameworks():
            sample, hf_row.note = hf_recipe_train(bench.student(), bench.teacher, bench.dm, a, settings)
        torch.set_num_threads(a.threads)
        return sample

    arms.append(Arm("hf_recipe", hf_row.label, measure_hf))
    return arms


def derived_rows(bench: Bench) -> None:
    """Amortised speeds, per round, from that round's cache build and cached training speed."""
    rows, n = bench.rows, bench.num_train
    cache = rows["cache_build"]
    derived: dict[str, Row] = {}
    for epochs in (1, 3):
        label = f"logit KD + cache, amortised over {epochs} epoch(s) of N={n} (incl. cache build)"
        derived[f"kd_cache_amort{epochs}"] = amortised_row(
            f"kd_cache_amort{epochs}", label, n, epochs, cache, rows["kd_cache"]
        )
    if "pl_kd_cache" in rows:
        label = f"Lightning fit: logit KD + cache, amortised over 3 epochs of N={n} (incl. cache build)"
        derived["pl_kd_cache_amort3"] = amortised_row("pl_kd_cache_amort3", label, n, 3, cache, rows["pl_kd_cache"])
    order = [
        "cache_build", "teacher_fwd", "student_ce", "recipe_step", "kd_nocache", "kd_cache", "kd_cache_amort1",
        "kd_cache_amort3", "mix_hooks", "mix_attn", "mix_eager", "pl_kd_cache", "pl_kd_cache_amort3", "hf_recipe",
    ]  # fmt: skip
    merged = {**rows, **derived}
    bench.rows = {k: merged[k] for k in order if k in merged} | {k: v for k, v in merged.items() if k not in order}


def tracked_ratios(bench: Bench) -> list[Floor]:
    """The ratios the project tracks, each computed in every round, with their floors."""
    rows = bench.rows

    def ms(key: str) -> list[float | None] | None:
        row = rows.get(key)
        return row.per_round_ms() if row is not None and row.samples else None

    def speed(key: str) -> list[float | None] | None:
        row = rows.get(key)
        return row.per_round_speed() if row is not None and row.samples else None

    def ratio(num: list | None, den: list | None) -> list[float | None]:
        return [] if num is None or den is None else per_round(lambda x, y: x / y, num, den)

    teacher, student = ms("teacher_fwd"), ms("student_ce")
    parts = None if teacher is None or student is None else per_round(lambda x, y: x + y, teacher, student)
    cuda = bench.settings.device.type == "cuda"
    return [
        Floor(
            "logit KD (cache, over 3 epochs, Lightning end-to-end) / recipe (HF Trainer end-to-end) samples/s",
            ">=",
            2.0,
            ratio(speed("pl_kd_cache_amort3"), speed("hf_recipe")),
        ),
        Floor("cached logit-KD step / student step time", "<=", 1.05, ratio(ms("kd_cache"), student)),
        Floor(
            "logit-KD step without cache / (teacher forward + student step) time",
            "<=",
            1.1,
            ratio(ms("kd_nocache"), parts),
        ),
        Floor("mix-step (hooks) / logit-KD step (no cache) time", "<=", 1.25, ratio(ms("mix_hooks"), ms("kd_nocache"))),
        Floor(
            "mix-step (hooks) / eager-fed mix-step time",
            "<=",
            round(1 / 1.15, 3) if cuda else 1.0,
            ratio(ms("mix_hooks"), ms("mix_eager")),
            note="CUDA: hooks ≥ 1.15× faster" if cuda else "CPU: hooks no slower",
        ),
        Floor(
            "mix-step (attention capture) / eager-fed mix-step time",
            "<=",
            round(1 / 1.15, 3) if cuda else 1.0,
            ratio(ms("mix_attn"), ms("mix_eager")),
        ),
    ]


def _load_text(load: tuple[float, float, float] | None) -> str:
    return "n/a" if load is None else " ".join(f"{x:.2f}" for x in load)


def header(bench: Bench) -> dict[str, Any]:
    """What the numbers depend on: data, sizes, rounds, threads, machine load, versions, hardware."""
    a, device, teacher = bench.args, bench.settings.device, bench.teacher
    fixed = bench.get("teacher_fwd")
    return {
        "dataset": str(a.dataset),
        "train examples (N)": bench.num_train,
        "batch size": a.batch_size,
        "rounds": a.rounds,
        "timed steps per configuration per round": a.steps,
        "warm-up steps (once per configuration / at each round's start)": f"{a.warmup} / {a.round_warmup}",
        "threads": torch.get_num_threads(),
        "timer": "process CPU time (time.process_time)" if a.timer == "cpu" else "wall clock (time.perf_counter)",
        "precision": a.precision,
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "pytorch_lightning": pl.__version__,
        "CPU": f"{cpu_model()} ({os.cpu_count()} logical CPUs)",
        "load average (1/5/15 min) at start": _load_text(bench.load),
        "load average (1/5/15 min) at end": _load_text(os.getloadavg() if hasattr(os, "getloadavg") else None),
        "teacher": f"{a.teacher} ({teacher.config.num_hidden_layers} layers, {teacher.config._attn_implementation})",
        "student layers": a.student_layers,
        "alpha / T": f"{a.alpha} / {a.temperature}",
        "max length": a.max_length,
        "mean padded length of the fixed batches": round(fixed.padded_length or 0, 1) if fixed else "n/a",
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build every arm, measure them in interleaved rounds, derive the amortised rows and the ratios.

    Returns:
        ``{"header": {...}, "rows": [Row, ...], "floors": [Floor, ...], "memory": str}``.
    """
    bench = setup_bench(args)
    stderr_progress("building the teacher-logit cache (timed once; the cached batches need it)")
    first = build_teacher_cache(bench)
    arms = step_arms(bench)
    if args.cache_every_round:
        arms.insert(0, cache_arm(bench))
    else:
        row = cache_row(bench)
        row.samples = [first]
        row.note = "built once before the rounds (--cache-every-round rebuilds it in each round)"
    if not args.skip_e2e:
        arms += end_to_end_arms(bench)
    run_rounds_into(bench, arms)
    derived_rows(bench)
    memory = MemoryMeter(bench.settings.device).kind
    return {
        "header": header(bench),
        "rows": list(bench.rows.values()),
        "floors": tracked_ratios(bench),
        "memory": memory,
    }


def run_rounds_into(bench: Bench, arms: list[Arm]) -> None:
    """Run the interleaved rounds and store each arm's samples in its row."""
    torch.set_num_threads(bench.args.threads)
    samples = run_rounds(arms, bench.args.rounds, progress=stderr_progress)
    for arm in arms:
        bench.rows.setdefault(arm.key, Row(arm.key, arm.label)).samples = samples[arm.key]


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None or value != value else f"{value:,.{digits}f}"


def format_report(report: dict[str, Any]) -> str:
    """The header, the Markdown table (medians over rounds, min–max in brackets), notes and the ratio lines."""
    lines = [f"# Training throughput, interleaved rounds ({time.strftime('%Y-%m-%d %H:%M')})", ""]
    lines += [f"- {k}: {v}" for k, v in report["header"].items()]
    lines += [
        "",
        "| config | samples/s, median (min–max) | ms/step, median (min–max) | peak mem MB | Δ mem MB |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        if r.key == "cache_build":
            seconds = Spread.of([s.seconds for s in r.samples])
            speed = f"{seconds.text(2)} s" if r.samples else "skipped"
            lines.append(f"| {r.label} | {speed} | — | {_fmt(r.peak_mb, 0)} | {_fmt(r.delta_mb, 0)} |")
            continue
        speed = r.speed.text() if r.samples else "skipped"
        lines.append(f"| {r.label} | {speed} | {r.ms.text()} | {_fmt(r.peak_mb, 0)} | {_fmt(r.delta_mb, 0)} |")
    lines += [
        "",
        f"Memory: {report['memory']}, highest over the one-time warm-up and every round (peak), and the largest excess "
        "of a segment's peak over its start (Δ), MiB.",
        "Step rows: identical pre-collated batches on the device, plain Python loop, every configuration once per "
        "round (A B C … A B C …); end-to-end rows include data loading and each framework's loop.",
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
    lines += ["", "Ratios (computed in each round; median over rounds, min–max, and how many rounds hold the floor):"]
    lines += [f.line() for f in report["floors"]]
    return "\n".join(lines)


def _json_row(row: Row) -> dict[str, Any]:
    def clean(value: float | None) -> float | None:
        return None if value is None or value != value else value

    return {
        "key": row.key,
        "label": row.label,
        "note": row.note,
        "samples_per_s": {"median": row.speed.median, "min": row.speed.low, "max": row.speed.high},
        "ms_per_step": {"median": row.ms.median, "min": row.ms.low, "max": row.ms.high},
        "peak_mb": row.peak_mb,
        "delta_mb": row.delta_mb,
        "rounds": [
            {**asdict(s), "samples_per_s": clean(s.samples_per_s), "ms_per_step": s.ms_per_step} for s in row.samples
        ],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the report, optionally write JSON (atomically); returns the report."""
    args = parse_args(argv)
    report = run(args)
    print(format_report(report))
    print(f"\ncommand: python {' '.join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])}")
    if args.json is not None:
        payload = {
            "header": report["header"],
            "memory": report["memory"],
            "rows": [_json_row(r) for r in report["rows"]],
            "floors": [
                {
                    "name": f.name,
                    "op": f.op,
                    "bound": f.bound,
                    "per_round": f.values,
                    "median": f.value,
                    "min": f.spread.low,
                    "max": f.spread.high,
                    "rounds_agreeing": f.agreed,
                    "rounds": f.spread.n,
                    "verdict": f.verdict,
                }
                for f in report["floors"]
            ],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2, default=str))
        os.replace(tmp, args.json)
    return report


if __name__ == "__main__":
    main()
