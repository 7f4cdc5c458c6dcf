"""Compare distillation recipes on one task: same teacher, student initialisation, data and step budget for all.

Usage (from the repository root)::

    python benchmarks/distill_compare.py --teacher outputs/teacher_sst2 --dataset ../shared/data/sst2 \
        --label-names negative positive --student-layers 0 5 --epochs 1 --max-train-samples 8000 \
        --variants alone logit_kd mix two_step

Variants (a fresh copy of the same student for each):

* ``alone``: the student fine-tuned with cross-entropy only (no teacher).
* ``logit_kd``: ``alpha * CE + LogitKD`` (Hinton et al., 2015) at temperature ``--temperature``.
* ``mix``: ``alpha * CE + AttnMiniLM + ValMiniLM + HidnTinyBERT + LogitKD`` in one step.
* ``two_step``: ``InterDistiller`` (AttnMiniLM + ValMiniLM + HidnTinyBERT) for half the steps, then
  ``PredDistiller`` (``alpha * CE + LogitKD``, head only) for the other half.
* ``inter_kd``: ``InterDistiller`` (the same intermediate adaptors) for half the steps, then ``logit_kd`` on the whole
  student for the other half (TinyBERT's order, with the second stage training every layer instead of the head only).
* ``aug_kd``: ``logit_kd`` on the training set extended with teacher-labelled word-replacement copies
  (:mod:`data.augment`); the epoch budget counts passes over the original data.
* ``logit_kd_nocache``: ``logit_kd`` with the teacher-logit cache turned off (the teacher runs in every step); with
  the same seed it should reach the accuracy of ``logit_kd``.

``--save-dir`` keeps each variant's final student as a Hugging Face folder (for ``benchmark.py``); ``--results``
writes the table as JSON after every variant, so a long run's finished variants survive an interruption.

Prints a Markdown table of validation accuracy / macro F1 (the final model of each run), wall time and samples/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import TrainClock, step_trainer  # noqa: E402
from data.data_module import ClfDataModule  # noqa: E402
from helper.distiller import BaseDistiller, InterDistiller, PredDistiller, make_student  # noqa: E402
from helper.finetuner import ClfFinetune  # noqa: E402
from helper.models import load_classifier  # noqa: E402

INTER = ["AttnMiniLM", "ValMiniLM", "HidnTinyBERT"]
VARIANTS = ("alone", "logit_kd", "mix", "two_step", "aug_kd", "logit_kd_nocache", "inter_kd")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True, help="fine-tuned teacher folder")
    p.add_argument("--dataset", required=True, help="data source (folder, 'demo', Hub name)")
    p.add_argument("--label-names", nargs="+")
    p.add_argument("--student-layers", nargs="+", type=int, default=[0, 5])
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS[:4]))
    p.add_argument("--epochs", type=float, default=1.0, help="passes over the (original) training data")
    p.add_argument("--max-train-samples", type=int)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--head-lr", type=float, default=1e-3, help="learning rate of two-step's step 2 (head only)")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--augment-copies", type=int, default=4, help="aug_kd: word-replacement copies per example")
    p.add_argument(
        "--augment-min-words", type=int, default=0, help="aug_kd: copy only examples of at least this many words"
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-length", type=int, default=66)
    p.add_argument("--save-dir", type=Path, help="save each variant's final student to SAVE_DIR/<variant>")
    p.add_argument("--results", type=Path, help="write the results as JSON here (updated after each variant)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.save_dir is not None:
        taken = [v for v in args.variants if (args.save_dir / v).exists()]
        if taken:
            p.error(f"--save-dir {args.save_dir}: {taken} already exist there; expected a new or empty folder")
    return args


def fit(module: pl.LightningModule, dm: ClfDataModule, steps: int, clock: TrainClock) -> dict[str, float]:
    """Train for ``steps`` optimizer steps, validate once at the end, return the final metrics.

    A distiller's forward hooks are removed afterwards, so the shared teacher carries none into the next variant.
    """
    step_trainer(steps, [clock]).fit(module, dm)
    evaluator = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    metrics = evaluator.validate(module, dm, verbose=False)[0]
    if hasattr(module, "remove_taps"):
        module.remove_taps()
    return metrics


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pl.seed_everything(args.seed)
    teacher = load_classifier(args.teacher, require_head=True)
    common = dict(
        tokenizer=args.teacher,
        label_names=args.label_names,
        max_length=args.max_length,
        batch_size=args.batch_size,
        max_train_samples=args.max_train_samples,
        seed=args.seed,
    )
    dm = ClfDataModule(args.dataset, **common)
    steps = int(args.epochs * dm.steps_per_epoch())
    spec = {"layers": args.student_layers}
    kd = dict(alpha=args.alpha, temperature=args.temperature, lr=args.lr)
    rows = []
    for variant in args.variants:
        pl.seed_everything(args.seed)
        student = make_student(spec, teacher, dm)
        clock, start = TrainClock(), time.perf_counter()
        if variant == "alone":
            metrics = fit(ClfFinetune(student, dm, lr=args.lr), dm, steps, clock)
        elif variant in ("logit_kd", "logit_kd_nocache"):
            cache = variant == "logit_kd"
            module = BaseDistiller(teacher, student, ["LogitKD"], dm, cache_teacher_outputs=cache, **kd)
            metrics = fit(module, dm, steps, clock)
        elif variant == "mix":
            metrics = fit(BaseDistiller(teacher, student, [*INTER, "LogitKD"], dm, **kd), dm, steps, clock)
        elif variant in ("two_step", "inter_kd"):
            step1 = InterDistiller(teacher, student, INTER, dm, lr=args.lr)
            fit(step1, dm, steps // 2, clock)
            if variant == "two_step":
                step2 = PredDistiller(teacher, step1.student, ["LogitKD"], dm, **{**kd, "lr": args.head_lr})
            else:
                step2 = BaseDistiller(teacher, step1.student, ["LogitKD"], dm, **kd)
            metrics = fit(step2, dm, steps - steps // 2, clock)
            student = step2.student
        else:  # aug_kd
            from data.augment import augment_with_teacher

            augmented = augment_with_teacher(
                dm, teacher, copies=args.augment_copies, seed=args.seed, min_words=args.augment_min_words
            )
            adm = ClfDataModule(augmented, **{**common, "max_train_samples": None})
            # cache the teacher's logits only when the budget passes over the whole enlarged set at least once
            cache = steps * args.batch_size >= len(augmented["train"])
            module = BaseDistiller(teacher, student, ["LogitKD"], adm, cache_teacher_outputs=cache, **kd)
            metrics = fit(module, adm, steps, clock)
        rows.append((variant, metrics, time.perf_counter() - start, clock.samples_per_second))
        print(f"[{variant}] val_acc={100 * metrics['val_acc']:.2f}", flush=True)
        if args.save_dir is not None:
            save_student(student, dm, args.save_dir / variant)
        if args.results is not None:
            write_results(args, rows)

    teacher_val = fit_free_eval(teacher, dm)
    print(
        f"\nTask {args.dataset} | train examples {len(dm.raw['train'])} | validation {len(dm.raw['validation'])} | "
        f"{steps} steps of batch {args.batch_size} ({args.epochs} epoch(s)) | student = teacher layers "
        f"{args.student_layers} | lr {args.lr} | alpha {args.alpha} | T {args.temperature} | "
        f"threads {torch.get_num_threads()} | seed {args.seed}"
    )
    print(f"Teacher validation accuracy: {100 * teacher_val:.2f}\n")
    print("| variant | val accuracy | val macro F1 | wall time (min) | train samples/s |")
    print("|---|---|---|---|---|")
    for variant, metrics, wall, speed in rows:
        print(
            f"| {variant} | {100 * metrics['val_acc']:.2f} | {100 * metrics['val_f1']:.2f} | {wall / 60:.1f} | "
            f"{speed:.1f} |"
        )
    print(f"\ncommand: python {' '.join(sys.argv)}")


def save_student(model: torch.nn.Module, dm: ClfDataModule, folder: Path) -> None:
    """Save a trained student with the data's tokenizer as a Hugging Face folder."""
    model.save_pretrained(folder)
    dm.tokenizer.save_pretrained(folder)


def write_results(args: argparse.Namespace, rows: list[tuple[str, dict, float, float]]) -> None:
    """Write the finished variants and the run's settings as JSON (replaced atomically)."""
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    out = {
        "settings": settings,
        "threads": torch.get_num_threads(),
        "variants": {
            v: {
                "val_acc": float(m["val_acc"]),
                "val_f1": float(m["val_f1"]),
                "wall_min": wall / 60,
                "train_samples_per_s": speed,
            }
            for v, m, wall, speed in rows
        },
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.results.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2))
    tmp.replace(args.results)


@torch.inference_mode()
def fit_free_eval(model: torch.nn.Module, dm: ClfDataModule) -> float:
    """Validation accuracy of a model without training."""
    model.eval()
    correct = total = 0
    for batch in dm.val_dataloader():
        labels = batch.pop("labels")
        correct += (model(**batch).logits.argmax(-1) == labels).sum().item()
        total += len(labels)
    return correct / total


if __name__ == "__main__":
    main()
