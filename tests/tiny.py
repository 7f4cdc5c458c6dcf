"""Test helpers, imported by the tests as a library: tiny random BERT models, batches, and the shared data sets.

Fixtures live in ``conftest.py`` (pytest finds them); the builders live here, once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from transformers import BertConfig, BertForSequenceClassification

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT.parent / "shared" / "data").resolve()
#: Cache folders the tests' code writes to; ``conftest.py`` points each into the session's temporary folder, and
#: :func:`subprocess_env` hands them on to subprocesses.
CACHE_VARIABLES = ("DISTILLER_CACHE", "HF_DATASETS_CACHE", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR")


@contextmanager
def single_thread() -> Iterator[None]:
    """torch on one intra-op thread inside the block, the earlier setting restored after it.

    Tiny tensors on a busy 2-core machine: with several threads each op can wait milliseconds for one, which makes the
    tiny-model tests many times slower than on a single thread.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def tiny_bert(
    layers: int = 4,
    hidden: int = 64,
    heads: int = 4,
    num_labels: int = 2,
    seed: int = 0,
    vocab_size: int = 30522,
    dropout: float = 0.1,
) -> BertForSequenceClassification:
    """A small random BERT classifier (BERT-uncased vocabulary size so the MiniLM tokenizer fits it)."""
    torch.manual_seed(seed)
    config = BertConfig(
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config).eval()


def save_tiny_model(folder: Path, tokenizer: str | Path, label_names: list[str] | None = None, **config: Any) -> Path:
    """Save :func:`tiny_bert` (``config``: its arguments) with the tokenizer of ``tokenizer`` (a folder, e.g. the
    packaged MiniLM) as a model folder, the way a fine-tuned teacher is saved; returns ``folder``.

    Args:
        folder: Where to save.
        tokenizer: Folder of the tokenizer to save beside the model.
        label_names: Class names, saved as the config's ``id2label`` (default: ``LABEL_i``).
        **config: Arguments of :func:`tiny_bert`.
    """
    from transformers import AutoTokenizer

    model = tiny_bert(**config)
    if label_names is not None:
        model.config.id2label = dict(enumerate(label_names))
        model.config.label2id = {name: i for i, name in enumerate(label_names)}
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer).save_pretrained(folder)
    return folder


def quick_trainer(**kwargs: Any) -> pl.Trainer:
    """A CPU Trainer for tests: 2 steps, 1 validation batch, no sanity check, no logger, progress bar, summary or
    checkpoint (each can be overridden in ``kwargs``)."""
    options = {
        "accelerator": "cpu",
        "max_steps": 2,
        "limit_val_batches": 1,
        "num_sanity_val_steps": 0,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
    }
    return pl.Trainer(**{**options, **kwargs})


def make_batch(lengths: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    """A right-padded batch of random token ids (1000..1999) with the given lengths ([CLS] ... [SEP]), labels 0."""
    g = torch.Generator().manual_seed(seed)
    t = max(lengths)
    input_ids = torch.zeros(len(lengths), t, dtype=torch.long)
    attention_mask = torch.zeros(len(lengths), t, dtype=torch.long)
    for i, n in enumerate(lengths):
        input_ids[i, :n] = torch.randint(1000, 2000, (n,), generator=g)
        input_ids[i, 0] = 101
        input_ids[i, n - 1] = 102
        attention_mask[i, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": torch.zeros(len(lengths)).long()}


def pad_batch(batch: dict[str, torch.Tensor], extra: int) -> dict[str, torch.Tensor]:
    """The same examples with ``extra`` more padding columns on every per-token tensor (pad id, mask, segment 0)."""
    return {k: v if v.ndim == 1 else torch.nn.functional.pad(v, (0, extra)) for k, v in batch.items()}


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess a test starts: this process's environment *as it is now* (so it carries the
    session's cache folders from ``conftest.py`` and any variable a test set), offline, without wandb, plus ``extra``.

    Build it at each call, never once at import: a copy taken at import misses the cache folders and writes to
    ``~/.cache``.
    """
    offline = {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    return {**os.environ, **offline, **extra}


def shared_data(name: str) -> Path:
    """Path of a data set under ``../shared/data``.

    Outside CI a missing folder skips the test; with ``CI=true`` (CI always places ``../shared`` beside the checkout)
    it fails, so an end-to-end test can never pass in CI by skipping.
    """
    path = SHARED_DATA / name
    if not path.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{path} not found: CI must place ../shared beside the checkout")
        pytest.skip(f"{path} not found (CI places ../shared beside the checkout)")
    return path
