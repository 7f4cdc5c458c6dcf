"""Command-line pieces shared by ``benchmark.py`` and ``export.py``: the flags that choose the data, and parsing."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any


def add_data_arguments(parser: argparse.ArgumentParser, dataset_help: str, split_help: str) -> None:
    """Add ``--dataset``, ``--subset``, ``--split``, ``--label-names``, ``--text-fields`` and ``--label-field``.

    Args:
        parser: The parser to add them to.
        dataset_help: Help text of ``--dataset``.
        split_help: Help text of ``--split`` (what the split is used for).
    """
    parser.add_argument("--dataset", default="demo", help=dataset_help)
    parser.add_argument("--subset", default=None, help="Hub dataset configuration, e.g. sst2 for glue")
    parser.add_argument("--split", default="validation", help=split_help)
    parser.add_argument("--label-names", nargs="+", default=None, help="class names in label order")
    parser.add_argument("--text-fields", nargs="+", default=None, help="text column(s), one or a pair")
    parser.add_argument("--label-field", default=None, help="label column")


def data_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments that the flags of :func:`add_data_arguments` give (all but ``--dataset``); a single
    ``--text-fields`` value is passed as a string."""
    fields = args.text_fields
    return {
        "subset": args.subset,
        "split": args.split,
        "text_fields": fields[0] if fields and len(fields) == 1 else fields,
        "label_field": args.label_field,
        "label_names": args.label_names,
    }


def parse_quietly(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; then keep stderr to the tool's own progress lines (no tokenizer fork warnings, no Hugging Face
    progress bars)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parser.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return args
