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

Transfer-set variants (the data module's transfer set, as ``distillation_ms.py`` builds it: transfer rows carry no
label, the cross-entropy skips them, the teacher labels each row once through its logit store):

* ``transfer_kd``: ``logit_kd`` on the labelled rows plus the unlabelled text of ``--unlabeled`` and/or, with
  ``--max-train-samples``, the training rows left out of the labelled sample (``--rest-as-unlabeled``).
* ``transfer_mix``: ``mix`` on the same transfer set (the teacher runs in every step).
* ``aug_transfer``: ``logit_kd`` with ``--augment-copies`` word-replacement copies of the labelled rows as transfer
  rows (``data.augment``); unlike ``aug_kd`` the copies get no hard label, only the teacher's logits.

Every variant trains for the same number of optimizer steps: ``--steps``, else ``--epochs`` passes over the labelled
rows. ``--seeds`` repeats every variant per seed (data order, dropout, augmentation choices) and reports mean ± std.
With ``--test-split`` (a labelled test split, e.g. TweetEval's) every final model is also evaluated on it.
``--labelling-check`` measures the transfer set's labelling pass against the teacher's plain inference on the same
rows, and checks that a second pass labels 0 rows.

``--save-dir`` keeps each variant's final student as a Hugging Face folder (for ``benchmark.py``); ``--results``
writes the table as JSON after every variant, so a long run's finished variants survive an interruption.

Prints a Markdown table of validation (and test) accuracy / macro F1 of the final model of each run, wall time and
samples/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torchmetrics.functional.classification import multiclass_f1_score
from transformers import DataCollatorWithPadding

from benchmarks.clocks import TrainClock
from benchmarks.pieces import step_trainer
from data.augment import Augment
from data.data_module import MODEL_INPUTS, ClfDataModule
from data.teacher_copies import augment_with_teacher
from data.teacher_store import label_rows
from helper.distiller import BaseDistiller, InterDistiller, PredDistiller, make_student
from helper.finetuner import ClfFinetune
from helper.models import load_classifier

INTER = ["AttnMiniLM", "ValMiniLM", "HidnTinyBERT"]
VARIANTS = (
    "alone",
    "logit_kd",
    "mix",
    "two_step",
    "aug_kd",
    "logit_kd_nocache",
    "inter_kd",
    "transfer_kd",
    "transfer_mix",
    "aug_transfer",
)
TRANSFER = ("transfer_kd", "transfer_mix")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True, help="fine-tuned teacher folder")
    p.add_argument("--dataset", required=True, help="data source (folder, 'demo', Hub name)")
    p.add_argument("--label-names", nargs="+")
    p.add_argument("--student-layers", nargs="+", type=int, default=[0, 5])
    p.add_argument(
        "--variants",
        nargs="*",
        choices=VARIANTS,
        default=list(VARIANTS[:4]),
        help="give none (a bare --variants) to run only --labelling-check",
    )
    p.add_argument("--epochs", type=float, default=1.0, help="passes over the labelled training rows")
    p.add_argument("--steps", type=int, help="optimizer steps of every variant (default: from --epochs)")
    p.add_argument("--max-train-samples", type=int, help="a seeded sample of this many labelled training rows")
    p.add_argument("--sample-seed", type=int, help="seed of that sample (default: each run's seed)")
    p.add_argument("--test-split", help="a labelled test split to evaluate every final model on (e.g. test)")
    p.add_argument("--unlabeled", help="transfer_*: unlabelled text (any data source), labelled by the teacher")
    p.add_argument("--max-unlabeled-samples", type=int, help="transfer_*: a seeded sample of the unlabelled rows")
    p.add_argument(
        "--rest-as-unlabeled",
        action="store_true",
        help="transfer_*: the training rows left out by --max-train-samples join the transfer set, labels dropped",
    )
    p.add_argument("--labelling-check", action="store_true", help="time the transfer set's labelling pass first")
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
    p.add_argument(
        "--seeds", type=int, nargs="+", help="run every variant with each seed; mean ± std (default: --seed)"
    )
    p.add_argument("--max-length", type=int, default=66)
    p.add_argument("--save-dir", type=Path, help="save each variant's final student to SAVE_DIR/<variant>")
    p.add_argument("--results", type=Path, help="write the results as JSON here (updated after each variant)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = p.parse_args(argv)
    args.seeds = args.seeds or [args.seed]
    if args.save_dir is not None:
        taken = [v for v in args.variants if (args.save_dir / v).exists()]
        if taken:
            p.error(f"--save-dir {args.save_dir}: {taken} already exist there; expected a new or empty folder")
    wants_transfer = [v for v in args.variants if v in TRANSFER] or (
        ["--labelling-check"] if args.labelling_check else []
    )
    if wants_transfer and args.unlabeled is None and not args.rest_as_unlabeled:
        p.error(f"{wants_transfer} need a transfer set: --unlabeled SOURCE and/or --rest-as-unlabeled")
    if args.rest_as_unlabeled and args.max_train_samples is None:
        p.error("--rest-as-unlabeled needs --max-train-samples (the size of the labelled sample)")
    if args.steps is not None and args.steps < 1:
        p.error(f"--steps {args.steps}: expected a positive number of optimizer steps")
    return args


def fit(module: pl.LightningModule, dm: ClfDataModule, steps: int, clock: TrainClock) -> dict[str, float]:
    """Train for ``steps`` optimizer steps, validate (and test, when the data has a test split) once at the end, return
    the final metrics.

    A distiller's forward hooks are removed afterwards, so the shared teacher carries none into the next variant.
    """
    step_trainer(steps, [clock]).fit(module, dm)
    evaluator = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    metrics = dict(evaluator.validate(module, dm, verbose=False)[0])
    if "test" in dm.raw:
        metrics.update(evaluator.test(module, dm, verbose=False)[0])
    if hasattr(module, "remove_taps"):
        module.remove_taps()
    return {k: float(v) for k, v in metrics.items()}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pl.seed_everything(args.seeds[0])
    teacher = load_classifier(args.teacher, require_head=True)
    rows: list[dict] = []
    check = None
    for seed in args.seeds:
        common = data_options(args, seed)
        dm = ClfDataModule(args.dataset, **common)
        steps = args.steps or int(args.epochs * dm.steps_per_epoch())
        if args.labelling_check and check is None:
            check = labelling_check(teacher, transfer_module(args, common), args.batch_size * 8)
        for variant in args.variants:
            pl.seed_everything(seed)
            clock, start = TrainClock(), time.perf_counter()
            metrics, student, used = run_variant(variant, args, teacher, dm, common, steps, clock)
            rows.append(
                {
                    "variant": variant,
                    "seed": seed,
                    "metrics": metrics,
                    "wall_s": time.perf_counter() - start,
                    "samples_per_s": clock.samples_per_second,
                    "train_rows": used.train_rows(),
                }
            )
            test = f" test_acc={100 * metrics['test_acc']:.2f}" if "test_acc" in metrics else ""
            print(f"[{variant} seed {seed}] val_acc={100 * metrics['val_acc']:.2f}{test}", flush=True)
            if args.save_dir is not None:
                folder = args.save_dir / variant if len(args.seeds) == 1 else args.save_dir / variant / f"seed{seed}"
                save_student(student, dm, folder)
            if args.results is not None:
                write_results(args, rows, check)

    teacher_scores = {split: free_eval(teacher, dm, split) for split in ("validation", "test") if split in dm.raw}
    if args.results is not None:
        write_results(args, rows, check, teacher_scores)
    print(
        f"\nTask {args.dataset} | labelled train rows {len(dm.raw['train'])} | validation {len(dm.raw['validation'])}"
        + (f" | test {len(dm.raw['test'])}" if "test" in dm.raw else "")
        + f" | {steps} steps of batch {args.batch_size} | student = teacher layers {args.student_layers} | lr "
        f"{args.lr} | alpha {args.alpha} | T {args.temperature} | threads {torch.get_num_threads()} | seeds "
        f"{args.seeds}"
    )
    if check is not None:
        print(check["summary"])
    print(report_table(rows, teacher_scores))
    print(f"\ncommand: python {' '.join(sys.argv)}")


def data_options(args: argparse.Namespace, seed: int) -> dict:
    """The data-module options every variant of one seed shares (the labelled rows, tokenization, batches)."""
    return dict(
        tokenizer=args.teacher,
        label_names=args.label_names,
        max_length=args.max_length,
        batch_size=args.batch_size,
        max_train_samples=args.max_train_samples,
        sample_seed=args.sample_seed,
        test_split=args.test_split,
        seed=seed,
    )


def transfer_module(args: argparse.Namespace, common: dict, augment: Augment | None = None) -> ClfDataModule:
    """The data module with a transfer set: ``--unlabeled`` / ``--rest-as-unlabeled`` rows, or augmented copies."""
    if augment is not None:
        return ClfDataModule(args.dataset, **common, augment=augment)
    return ClfDataModule(
        args.dataset,
        **common,
        unlabeled=args.unlabeled,
        max_unlabeled_samples=args.max_unlabeled_samples,
        rest_as_unlabeled=args.rest_as_unlabeled,
    )


def run_variant(
    variant: str,
    args: argparse.Namespace,
    teacher: torch.nn.Module,
    dm: ClfDataModule,
    common: dict,
    steps: int,
    clock: TrainClock,
) -> tuple[dict[str, float], torch.nn.Module, ClfDataModule]:
    """Train one variant from a fresh copy of the student; its final metrics, its student and the data it used."""
    student = make_student({"layers": args.student_layers}, teacher, dm)
    kd = dict(alpha=args.alpha, temperature=args.temperature, lr=args.lr)
    if variant == "alone":
        return fit(ClfFinetune(student, dm, lr=args.lr), dm, steps, clock), student, dm
    if variant in ("logit_kd", "logit_kd_nocache"):
        cache = variant == "logit_kd"
        module = BaseDistiller(teacher, student, ["LogitKD"], dm, cache_teacher_outputs=cache, **kd)
        return fit(module, dm, steps, clock), student, dm
    if variant == "mix":
        return fit(BaseDistiller(teacher, student, [*INTER, "LogitKD"], dm, **kd), dm, steps, clock), student, dm
    if variant in ("two_step", "inter_kd"):
        step1 = InterDistiller(teacher, student, INTER, dm, lr=args.lr)
        fit(step1, dm, steps // 2, clock)
        if variant == "two_step":
            step2 = PredDistiller(teacher, step1.student, ["LogitKD"], dm, **{**kd, "lr": args.head_lr})
        else:
            step2 = BaseDistiller(teacher, step1.student, ["LogitKD"], dm, **kd)
        return fit(step2, dm, steps - steps // 2, clock), step2.student, dm
    if variant in TRANSFER or variant == "aug_transfer":
        augment = None
        if variant == "aug_transfer":
            augment = Augment(copies=args.augment_copies, min_words=args.augment_min_words, seed=common["seed"])
        tdm = transfer_module(args, common, augment)
        adaptors = ["LogitKD"] if variant != "transfer_mix" else [*INTER, "LogitKD"]
        module = BaseDistiller(teacher, student, adaptors, tdm, **kd)
        return fit(module, tdm, steps, clock), student, tdm
    # aug_kd: the copies carry the teacher's predicted class as a hard label (the recipe before transfer sets)
    augmented = augment_with_teacher(
        dm, teacher, copies=args.augment_copies, seed=common["seed"], min_words=args.augment_min_words
    )
    adm = ClfDataModule(augmented, **{**common, "max_train_samples": None, "test_split": None})
    if "test" in dm.raw:
        adm.raw["test"] = dm.raw["test"]
    # cache the teacher's logits only when the budget passes over the whole enlarged set at least once
    cache = steps * args.batch_size >= len(augmented["train"])
    module = BaseDistiller(teacher, student, ["LogitKD"], adm, cache_teacher_outputs=cache, **kd)
    return fit(module, adm, steps, clock), student, adm


@torch.inference_mode()
def labelling_check(teacher: torch.nn.Module, tdm: ClfDataModule, batch_size: int) -> dict:
    """The transfer set's labelling pass against the teacher's plain inference on the same rows, in a fresh store.

    Plain inference: the tokenized training rows (labelled and transfer, read into memory beforehand) through the
    teacher in eval mode, in batches of ``batch_size`` padded by the tokenizer's collator, in data order and,
    separately, longest first, logits brought back to the CPU; on the GPU when there is one. The labelling
    pass: :func:`data.data_module.label_rows` on the same rows in an empty store (digests, lookup, the teacher on
    every distinct row, the store write), then again (every row read back, none labelled).
    """
    tdm.prepare_transfer(teacher)
    tdm.setup()
    rows = tdm.tokenized["train"]
    home = teacher.device
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    teacher.eval().to(device)
    collate = DataCollatorWithPadding(tdm.tokenizer)
    lengths = tdm.lengths("train")
    columns = rows.with_format(None).select_columns([c for c in MODEL_INPUTS if c in rows.column_names])[:]
    examples = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    plain = {}
    for name, order in (
        ("data order", list(range(len(rows)))),
        ("longest first", sorted(range(len(rows)), key=lambda i: -lengths[i])),
    ):
        start = time.perf_counter()
        for first in range(0, len(order), batch_size):
            batch = collate([examples[i] for i in order[first : first + batch_size]])
            teacher(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
        plain[name] = len(rows) / (time.perf_counter() - start)
    previous = os.environ.get("DISTILLER_CACHE")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["DISTILLER_CACHE"] = cache
        try:
            start = time.perf_counter()
            pad = tdm.tokenizer.pad_token_id or 0
            _, first = label_rows(teacher, rows, batch_size, pad, device=device, progress=False)
            labelling = len(rows) / (time.perf_counter() - start)
            _, second = label_rows(teacher, rows, batch_size, pad, device=device, progress=False)
        finally:
            teacher.to(home)
            if previous is None:
                os.environ.pop("DISTILLER_CACHE", None)
            else:
                os.environ["DISTILLER_CACHE"] = previous
    summary = (
        f"Labelling check on {device.type} ({tdm.describe_train_rows()}; batch {batch_size}): plain inference "
        f"{plain['data order']:,.0f} rows/s in data order, {plain['longest first']:,.0f} rows/s longest first; "
        f"labelling pass {labelling:,.0f} rows/s end to end ({first.labelled:,} distinct rows labelled) = "
        f"{labelling / plain['data order']:.2f} x / {labelling / plain['longest first']:.2f} x plain; "
        f"second pass labelled {second.labelled} rows, read {second.from_store:,} from the store"
    )
    return {
        "plain_rows_per_s": plain,
        "labelling_rows_per_s": labelling,
        "labelled_first": first.labelled,
        "labelled_second": second.labelled,
        "from_store_second": second.from_store,
        "summary": summary,
    }


def aggregate(values: list[float]) -> str:
    """``mean ± std`` in percent (the std of several seeds; the value alone for one)."""
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def report_table(rows: list[dict], teacher_scores: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one line per variant (mean ± std over seeds), the teacher first."""
    has_test = "test" in teacher_scores or any("test_acc" in r["metrics"] for r in rows)
    keys = [("val_acc", "val accuracy"), ("val_f1", "val macro F1")]
    if has_test:
        keys += [("test_acc", "test accuracy"), ("test_f1", "test macro F1")]
    header = ["variant", "seeds", *(k[1] for k in keys), "train rows (labelled + transfer)", "wall (min)", "samples/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    teacher = teacher_scores.get("validation", {})
    test = teacher_scores.get("test", {})
    cells = [f"{100 * teacher.get('acc', 0):.2f}", f"{100 * teacher.get('f1', 0):.2f}"]
    if has_test:
        cells += [f"{100 * test.get('acc', 0):.2f}", f"{100 * test.get('f1', 0):.2f}"]
    lines.append("| teacher | – | " + " | ".join(cells) + " | – | – | – |")
    for variant in dict.fromkeys(r["variant"] for r in rows):
        runs = [r for r in rows if r["variant"] == variant]
        cells = [aggregate([r["metrics"][k] for r in runs]) if k in runs[0]["metrics"] else "–" for k, _ in keys]
        used = runs[0]["train_rows"]
        wall = statistics.mean(r["wall_s"] for r in runs) / 60
        speed = statistics.mean(r["samples_per_s"] for r in runs)
        lines.append(
            f"| {variant} | {len(runs)} | " + " | ".join(cells) + f" | {used['labeled']:,} + {used['transfer']:,} | "
            f"{wall:.1f} | {speed:.1f} |"
        )
    return "\n".join(lines)


def save_student(model: torch.nn.Module, dm: ClfDataModule, folder: Path) -> None:
    """Save a trained student with the data's tokenizer as a Hugging Face folder."""
    model.save_pretrained(folder)
    dm.tokenizer.save_pretrained(folder)


def write_results(
    args: argparse.Namespace,
    rows: list[dict],
    check: dict | None = None,
    teacher_scores: dict[str, dict[str, float]] | None = None,
) -> None:
    """Write the finished runs, each variant's mean over seeds and the run's settings as JSON (replaced atomically)."""
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    variants = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        runs = [r for r in rows if r["variant"] == variant]
        means = {
            k: statistics.mean(r["metrics"][k] for r in runs)
            for k in ("val_acc", "val_f1", "test_acc", "test_f1")
            if k in runs[0]["metrics"]
        }
        variants[variant] = {
            **means,
            "seeds": [r["seed"] for r in runs],
            "per_seed": {str(r["seed"]): {k: r["metrics"][k] for k in means} for r in runs},
            "train_rows": runs[0]["train_rows"],
            "wall_min": statistics.mean(r["wall_s"] for r in runs) / 60,
            "train_samples_per_s": statistics.mean(r["samples_per_s"] for r in runs),
        }
    out = {"settings": settings, "threads": torch.get_num_threads(), "variants": variants}
    if teacher_scores:
        out["teacher"] = teacher_scores
    if check is not None:
        out["labelling_check"] = check
    args.results.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.results.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2))
    tmp.replace(args.results)


@torch.inference_mode()
def free_eval(model: torch.nn.Module, dm: ClfDataModule, split: str = "validation") -> dict[str, float]:
    """Accuracy and macro F1 of a model on a split of the data, without training."""
    model.eval()
    preds, labels = [], []
    loader = dm.val_dataloader() if split == "validation" else dm.test_dataloader()
    for batch in loader:
        labels.append(batch.pop("labels"))
        preds.append(model(**batch).logits.argmax(-1))
    pred, gold = torch.cat(preds), torch.cat(labels)
    f1 = multiclass_f1_score(pred, gold, num_classes=dm.num_labels, average="macro")
    return {"acc": (pred == gold).float().mean().item(), "f1": f1.item()}


if __name__ == "__main__":
    main()
