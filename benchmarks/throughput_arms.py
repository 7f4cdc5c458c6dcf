"""The configurations ``throughput.py`` times (its *arms*): the shared bench, the step arms, the cache build, the
end-to-end framework runs, the derived rows, the tracked ratios and the header of the report."""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import logging
import os
import platform
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import transformers
from transformers import PreTrainedModel

from benchmarks.clocks import LightningClock, Settings, window_sample
from benchmarks.eager_taps import eager_copy, eager_distill, use_attention_capture
from benchmarks.hf_recipe import hf_recipe_train
from benchmarks.interleave import Arm, Floor, Sample, per_round
from benchmarks.memory_meter import MemoryMeter
from benchmarks.pieces import Batch, step_trainer
from benchmarks.step_loops import (
    Step,
    distiller_params,
    distiller_step,
    make_optimizer,
    recipe_step,
    step_arm,
    student_ce_step,
    teacher_forward_step,
)
from benchmarks.throughput_report import Row, amortised_row
from data.data_module import TEACHER_LOGITS, ClfDataModule
from helper.distiller import BaseDistiller
from helper.models import load_classifier, student_from_layers

INTER = ("AttnMiniLM", "ValMiniLM", "HidnTinyBERT")


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
    return window_sample(clock.window, shapes, meter), f"threads seen in the loop: {sorted(clock.window.threads)}"
