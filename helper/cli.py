"""The command-line layer: LightningCLI with the project's defaults, links and output handling.

Every script is ``run(ModuleClass, "configs/<name>.yaml")``: the YAML (``model:``, ``data:``, ``trainer:``) fully
describes the run, any key can be overridden on the command line (``--model.lr 1e-4``), ``--config`` picks another
YAML, and the resolved configuration is saved next to the run's logs.
"""

from __future__ import annotations

import netrc
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from data.data_module import ClfDataModule

REPO_ROOT = Path(__file__).resolve().parents[1]


def wandb_has_credentials() -> bool:
    """Whether wandb can log online: an API key in the environment or a netrc entry written by ``wandb login``."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class DistillerCLI(LightningCLI):
    """LightningCLI that links the data module into the model and the model's tokenizer into the data module."""

    #: ``(source, target)`` links applied when parsing (source value copied to target).
    parse_links: Sequence[tuple[str, str]] = ()

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """The model receives the instantiated data module (labels, tokenizer); the tokenizer follows the model."""
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="Checkpoint to resume from (e.g. runs/<job>/checkpoints/last.ckpt), or 'last'.",
        )
        parser.link_arguments("data", "model.dm", apply_on="instantiate")
        for source, target in self.parse_links:
            parser.link_arguments(source, target)

    def before_instantiate_classes(self) -> None:
        """wandb logs offline (sync later with ``wandb sync``) when no credentials are configured."""
        if "WANDB_MODE" not in os.environ and not wandb_has_credentials():
            os.environ["WANDB_MODE"] = "offline"


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
    cli_class = type("CLI", (DistillerCLI,), {"parse_links": ((tokenizer_from, "data.tokenizer"),)})
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
    return cli
