"""The command-line layer: LightningCLI with the project's defaults, links and output handling.

Every training script is ``run_script("<name>")``: :data:`SCRIPTS`, the one table of scripts, names its
LightningModule, its default YAML under ``configs/`` and the model argument the tokenizer follows, and :func:`run`
does the rest. The YAML (``model:``, ``data:``, ``trainer:``) fully describes the run, any key can be overridden on
the command line (``--model.lr 1e-4``), ``--config`` picks another YAML, and the resolved configuration is saved
next to the run's logs.

After fitting, when the data has a labelled test split (``data.test_split``), the best checkpoint is evaluated on it
(``test_acc``, ``test_f1``, and for distillers the teacher's ``teacher_test_*``), logged, and printed in a final
summary; ``--test_after_fit false`` (or ``test_after_fit: false`` in the YAML) skips it.
"""

from __future__ import annotations

import netrc
import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import WeightAveraging
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from data.data_module import ClfDataModule
from helper.checkpoint import claim_folders
from helper.distiller import BaseDistiller, InterDistiller, PredDistiller
from helper.finetuner import ClfFinetune

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Validation metrics shown in the final summary (when logged).
#: The metrics of the summary, of every problem type (single-label: accuracy, macro F1; multi-label: also micro F1,
#: macro AUROC and AP; regression: Pearson, Spearman, MSE), for the student and the teacher; shown when logged.
SUMMARY_METRICS = ("acc", "f1", "f1_micro", "auroc", "ap", "pearson", "spearman", "mse")
SUMMARY_VAL_KEYS = tuple(f"{who}val_{m}" for who in ("", "teacher_") for m in SUMMARY_METRICS)
SUMMARY_TEST_KEYS = tuple(f"{who}test_{m}" for who in ("", "teacher_") for m in SUMMARY_METRICS)


@dataclass(frozen=True)
class Script:
    """A training script (``<name>.py`` at the top level).

    Attributes:
        module: The LightningModule it trains.
        config: Its default YAML under ``configs/``.
        tokenizer_from: The model argument whose value is the tokenizer source (linked to ``data.tokenizer``).
    """

    module: type[pl.LightningModule]
    config: str
    tokenizer_from: str


#: Script name (the file stem of the top-level script) -> what it runs. The config test and ``hpo.py`` read it.
SCRIPTS: dict[str, Script] = {
    "finetune": Script(ClfFinetune, "finetune.yaml", "model.model"),
    "distillation_ms": Script(BaseDistiller, "distillation_ms.yaml", "model.teacher"),
    "distillation_ts_1st": Script(InterDistiller, "distillation_ts_1st.yaml", "model.teacher"),
    "distillation_ts_2nd": Script(PredDistiller, "distillation_ts_2nd.yaml", "model.teacher"),
}
#: Config-name prefixes of the other YAMLs of a script (its dataset variants and recipes), besides its own name.
CONFIG_PREFIXES = {"distillation_": "distillation_ms"}  # the mix-step recipes: distillation_sst2.yaml, ...


def script_of_config(config: str | Path) -> str | None:
    """The script a YAML under ``configs/`` belongs to, by the longest matching file-name prefix (None: no script).

    ``finetune_sst2.yaml`` belongs to ``finetune``, ``distillation_ts_1st.yaml`` to ``distillation_ts_1st``, and the
    other ``distillation_*.yaml`` (the mix-step recipes) to ``distillation_ms``.
    """
    stem = Path(config).stem
    prefixes = {**{name: name for name in SCRIPTS}, **CONFIG_PREFIXES}
    matches = [prefix for prefix in prefixes if stem.startswith(prefix)]
    return prefixes[max(matches, key=len)] if matches else None


def wandb_has_credentials() -> bool:
    """Whether wandb can log online: an API key in the environment or a netrc entry written by ``wandb login``."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_offline_without_credentials() -> None:
    """wandb logs offline (sync later with ``wandb sync``) when no credentials are configured and no mode is set."""
    if "WANDB_MODE" not in os.environ and not wandb_has_credentials():
        os.environ["WANDB_MODE"] = "offline"


class DistillerCLI(LightningCLI):
    """LightningCLI that links the data module into the model and the model's tokenizer into the data module."""

    #: ``(source, target)`` links applied when parsing (source value copied to target).
    parse_links: Sequence[tuple[str, str]] = ()
    #: Where the run's folders are held against other runs (None: not held); :func:`run` gives one per run.
    claims: ExitStack | None = None

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """The model receives the instantiated data module (labels, tokenizer); the tokenizer follows the model."""
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="Checkpoint to resume from (e.g. runs/<job>/checkpoints/last.ckpt), or 'last'.",
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After fitting, evaluate the best checkpoint on the data's labelled test split (data.test_split) "
            "and print test_acc/test_f1 in the final summary; false skips it.",
        )
        parser.link_arguments("data", "model.dm", apply_on="instantiate")
        for source, target in self.parse_links:
            parser.link_arguments(source, target)

    def before_instantiate_classes(self) -> None:
        """Name and hold the run's folders before anything is built; wandb logs offline without credentials.

        Checkpoint folders left unset follow the export (:func:`name_checkpoint_folders`). The folders (see
        :func:`run_folders`) are held in :attr:`claims` (released when :func:`run` returns or fails); rank 0 holds
        them: DDP's other ranks start as copies of this process and write through it.
        """
        trainer = self.config.get("trainer") or {}
        name_checkpoint_folders(trainer.get("callbacks"), trainer.get("default_root_dir"))
        if self.claims is not None and rank_zero_only.rank == 0:
            self.claims.enter_context(claim_folders(run_folders(trainer.get("callbacks"))))
        wandb_offline_without_credentials()


def run(
    model_class: type[pl.LightningModule],
    default_config: str,
    tokenizer_from: str = "model.model",
    args: Sequence[str] | None = None,
    extra_callbacks: Sequence[pl.Callback] = (),
) -> DistillerCLI:
    """Parse the command line (defaults from ``default_config``), build everything, validate, and fit.

    Args:
        model_class: The LightningModule to train.
        default_config: YAML under ``configs/`` used when ``--config`` is not given.
        tokenizer_from: Model argument whose value is the tokenizer source (linked to ``data.tokenizer``).
        args: Command-line arguments (default: ``sys.argv[1:]``).
        extra_callbacks: Callbacks added to those of the config (e.g. a benchmark's clock).

    Returns:
        The CLI object, holding ``trainer``, ``model`` and ``datamodule`` after fitting.
    """
    argv = list(sys.argv[1:] if args is None else args)
    has_config = any(a == "--config" or a.startswith("--config=") for a in argv)
    with ExitStack() as claims:
        links = ((tokenizer_from, "data.tokenizer"),)
        cli_class = type("CLI", (DistillerCLI,), {"parse_links": links, "claims": claims})
        cli = cli_class(
            model_class,
            ClfDataModule,
            run=False,
            args=args,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,  # the modules own their AdamW and warm-up schedule (model.lr etc.)
            trainer_defaults={"callbacks": list(extra_callbacks)} if extra_callbacks else None,
            parser_kwargs={
                "default_config_files": [] if has_config else [str(REPO_ROOT / "configs" / default_config)],
                "allow_abbrev": False,  # a mistyped key such as --trainer.max_epoch must fail, not match max_epochs
            },
        )
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.get("ckpt_path"))
        if cli.trainer.interrupted:  # Ctrl-C during fit: no test, no summary (Lightning already reported it)
            return cli
        validation = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k in SUMMARY_VAL_KEYS}
        test_metrics, test_note = evaluate_test_split(
            cli.trainer, cli.model, cli.datamodule, cli.config.get("test_after_fit")
        )
    if cli.trainer.is_global_zero:
        print(final_summary(cli.trainer, validation, test_metrics, test_note), flush=True)
    return cli


#: Callbacks (by class name) that write into a folder of their ``dirpath``: checkpoints and the model export.
FOLDER_CALLBACKS = ("ModelCheckpoint", "HgExport")


def _class_name(callback: Any) -> str:
    class_path = getattr(callback, "class_path", None)
    return class_path.rsplit(".", 1)[-1] if isinstance(class_path, str) else ""


def name_checkpoint_folders(callbacks: Sequence[Any] | None, root: str | None) -> None:
    """Give each ``ModelCheckpoint`` without a ``dirpath`` the folder ``<root>/checkpoints/<export folder name>``.

    The shipped configs leave ``dirpath`` unset, so the one flag that names a run's model
    (``--trainer.callbacks.dirpath outputs/student_s43``, the export, the last callback) also gives it checkpoints
    of its own (``runs/<job>/checkpoints/student_s43``): runs of one config at once (seeds, a student-alone
    baseline) never share a checkpoint folder. The parsed config is updated in place, so the configuration saved
    beside the run shows the folder. Without an export (``HgExport``) Lightning's default stays.

    Args:
        callbacks: The parsed ``trainer.callbacks`` (``class_path`` / ``init_args`` entries).
        root: ``trainer.default_root_dir`` (None: the working directory).
    """
    exports = [c.init_args.get("dirpath") for c in callbacks or [] if _class_name(c) == "HgExport"]
    if not exports or not exports[-1]:
        return
    folder = Path(root or ".") / "checkpoints" / Path(exports[-1]).name
    for callback in callbacks:
        if _class_name(callback) == "ModelCheckpoint" and not callback.init_args.get("dirpath"):
            callback.init_args.dirpath = str(folder)


def run_folders(callbacks: Sequence[Any] | None) -> dict[str, str]:
    """The folders the configured callbacks write to, keyed by the config entry that sets each one.

    Args:
        callbacks: The parsed ``trainer.callbacks`` (``class_path`` / ``init_args`` entries; callbacks given as
            objects are skipped).

    Returns:
        ``{"trainer.callbacks[<i>] (<class>) dirpath": folder}`` for each checkpoint or export callback with a
        ``dirpath`` (a ModelCheckpoint without one writes into the logger's own, per-run, folder).
    """
    folders = {}
    for i, callback in enumerate(callbacks or []):
        if _class_name(callback) not in FOLDER_CALLBACKS:
            continue
        dirpath = callback.init_args.get("dirpath") if getattr(callback, "init_args", None) is not None else None
        if dirpath:
            folders[f"trainer.callbacks[{i}] ({_class_name(callback)}) dirpath"] = str(dirpath)
    return folders


def run_script(name: str, args: Sequence[str] | None = None) -> DistillerCLI:
    """Run the script ``name`` of :data:`SCRIPTS` (what ``python <name>.py`` does); see :func:`run`."""
    script = SCRIPTS[name]
    return run(script.module, script.config, tokenizer_from=script.tokenizer_from, args=args)


def labelled_test_split(dm: ClfDataModule) -> str | None:
    """Why the data module has no labelled test split to evaluate, or None when it has one."""
    if "test" not in dm.raw:
        return "none (set data.test_split to evaluate the best checkpoint on labelled test data)"
    labels = dm.raw["test"][dm.label_field]
    if all(v == -1 for v in labels):
        return f"{dm.test_split!r} has no labels (all -1), not evaluated"
    return None


def evaluate_test_split(
    trainer: pl.Trainer, model: pl.LightningModule, dm: ClfDataModule, enabled: bool | None = True
) -> tuple[dict[str, float] | None, str]:
    """Evaluate the best checkpoint of a finished fit on the labelled test split, if there is one and it is wanted.

    The best checkpoint is the one the run's ``ModelCheckpoint`` chose (its monitored metric); without a checkpoint
    callback, or before any checkpoint was written, the weights at the end of training are evaluated. With a weight
    averaging callback (e.g. ``EMAWeightAveraging``) the checkpoint's averaged weights are evaluated: the ones its
    validation scored and the export holds (the callback, left in place, would load the raw weights beside them).

    Args:
        trainer: The trainer that ran ``fit``.
        model: The fitted module (it needs a ``test_step``).
        dm: The data module.
        enabled: False skips the evaluation (``--test_after_fit false``).

    Returns:
        The logged test metrics (None when not evaluated) and a line saying what was evaluated, or why not.
    """
    if enabled is False:
        return None, "skipped (test_after_fit: false)"
    missing = labelled_test_split(dm)
    if missing is not None:
        return None, missing
    # The first ModelCheckpoint is the monitored one (the configs add a second one that only keeps last.ckpt); its
    # path is given explicitly, as "best" would make Lightning warn about the several checkpoint callbacks.
    callback = trainer.checkpoint_callback
    best = getattr(callback, "best_model_path", "") if callback is not None else ""
    ckpt_path = best or None
    # weights_only=False: the checkpoint is the one this run has just written (it holds the random states).
    callbacks = trainer.callbacks
    trainer.callbacks = [c for c in callbacks if not isinstance(c, WeightAveraging)]
    try:
        results = trainer.test(model, datamodule=dm, ckpt_path=ckpt_path, verbose=False, weights_only=False)
    finally:
        trainer.callbacks = callbacks
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    source = f"best checkpoint {best}" if best else "weights at the end of training (no checkpoint was saved)"
    return metrics, f"{dm.test_split!r}, {len(dm.raw['test'])} examples, {source}"


def _value(metric: Any) -> str:
    return f"{float(metric):.4f}"


def final_summary(
    trainer: pl.Trainer, validation: dict[str, float], test_metrics: dict[str, float] | None, test_note: str
) -> str:
    """The lines printed when a script ends: best checkpoint, last validation metrics, test metrics.

    Args:
        trainer: The trainer that ran ``fit``.
        validation: Validation metrics of the last epoch (read before ``test`` replaces the trainer's metrics).
        test_metrics: What :func:`evaluate_test_split` returned.
        test_note: Its description of the evaluated split, or why none was evaluated.
    """
    lines = ["", "Summary"]
    callback = trainer.checkpoint_callback
    best = getattr(callback, "best_model_path", "") if callback is not None else ""
    if best:
        score = getattr(callback, "best_model_score", None)
        monitor = getattr(callback, "monitor", None)
        scored = f" ({monitor} {_value(score)})" if monitor and score is not None else ""
        lines.append(f"  best checkpoint  {best}{scored}")
    # Lightning versions last.ckpt (last-v1.ckpt, ...) when the folder already holds one from an earlier run, so the
    # file to resume this run from is named here rather than guessed from the folder.
    last = next((c.last_model_path for c in trainer.checkpoint_callbacks if getattr(c, "last_model_path", "")), "")
    if last:
        lines.append(f"  last checkpoint  {last}  (to resume this run: --ckpt_path {last})")
    rows = [(k, validation[k]) for k in SUMMARY_VAL_KEYS if k in validation]
    lines += [f"  {k:<16} {_value(v)}  (last validation)" for k, v in rows]
    lines.append(f"  test split       {test_note}")
    if test_metrics:
        lines += [f"  {k:<16} {_value(test_metrics[k])}" for k in SUMMARY_TEST_KEYS if k in test_metrics]
    return "\n".join(lines)
