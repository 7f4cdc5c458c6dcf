"""Teacher-labelled data augmentation by word replacement, in the spirit of TinyBERT's task-specific augmentation.

TinyBERT (Jiao et al., 2020, arXiv:1909.10351, Sec. 3.3) enlarges the task data by replacing words with similar
words and lets the teacher supervise the new examples. Here the similar words come from the teacher itself: the
nearest neighbours (cosine similarity) of a word in the teacher's input word-embedding table, restricted to whole-word
vocabulary entries. Each augmented copy replaces every eligible word with probability ``p``, and its label is the
teacher's prediction (the distiller's logit adaptors then use the teacher's full distribution at training time).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from data.data_module import ClfDataModule, teacher_logits

_WORD = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)


def neighbour_table(
    tokenizer: PreTrainedTokenizerBase, embeddings: torch.Tensor, words: Iterable[str], k: int = 10
) -> dict[str, list[str]]:
    """The ``k`` nearest whole-word vocabulary entries of each word that is itself a single vocabulary entry.

    Args:
        tokenizer: The teacher's tokenizer (its vocabulary indexes ``embeddings``).
        embeddings: The teacher's input word embeddings, ``(vocab_size, hidden)``.
        words: Words to find neighbours for (others are skipped).
        k: Neighbours per word.

    Returns:
        ``{word: [neighbour, ...]}`` for the words found in the vocabulary.
    """
    vocab = tokenizer.get_vocab()
    special = set(tokenizer.all_special_tokens)
    candidates = sorted(i for t, i in vocab.items() if t.isalpha() and t not in special and not t.startswith("##"))
    queries = sorted({w for w in words if w.isalpha() and w in vocab})
    if not queries or not candidates:
        return {}
    id_to_token = {i: t for t, i in vocab.items()}
    cand = F.normalize(embeddings[candidates].float(), dim=-1)
    table = {}
    for start in range(0, len(queries), 1024):
        chunk = queries[start : start + 1024]
        q = F.normalize(embeddings[[vocab[w] for w in chunk]].float(), dim=-1)
        sims = q @ cand.T
        top = sims.topk(min(k + 1, len(candidates)), dim=-1).indices
        for word, row in zip(chunk, top.tolist(), strict=True):
            table[word] = [id_to_token[candidates[j]] for j in row if id_to_token[candidates[j]] != word][:k]
    return table


def replace_words(text: str, table: dict[str, list[str]], p: float, rng: random.Random, lower: bool) -> str:
    """One augmented copy of ``text``: each word with neighbours is replaced with probability ``p``."""
    out = []
    for token in text.split():
        head, word, tail = _WORD.match(token).groups()  # punctuation around a word is kept: "film." -> "movie."
        options = table.get(word.lower() if lower else word)
        out.append(head + rng.choice(options) + tail if options and rng.random() < p else token)
    return " ".join(out)


def teacher_labels(
    teacher: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list, max_length: int, batch_size: int = 128
) -> list[int]:
    """The teacher's predicted class for each text (or text pair).

    The texts are tokenized as :class:`ClfDataModule` tokenizes them and their logits go through
    :func:`data.data_module.teacher_logits`, so a data module that later holds the same texts (an augmented training
    set) reads them from the teacher's store instead of running the teacher again.
    """
    if not texts:
        return []
    columns = [list(c) for c in zip(*texts, strict=True)] if isinstance(texts[0], tuple) else [texts]
    enc = tokenizer(*columns, truncation=True, max_length=max_length)
    rows = Dataset.from_dict({k: enc[k] for k in ("input_ids", "token_type_ids") if k in enc})
    return teacher_logits(teacher, rows, batch_size, tokenizer.pad_token_id or 0).argmax(-1).tolist()


def augment_with_teacher(
    dm: ClfDataModule,
    teacher: PreTrainedModel,
    copies: int = 4,
    p: float = 0.3,
    k: int = 10,
    seed: int = 42,
    min_words: int = 0,
) -> DatasetDict:
    """The data module's training split plus ``copies`` teacher-labelled word-replacement copies of its examples.

    ``min_words`` restricts the copies to examples of at least that many words (all text fields together), for data
    whose training texts are shorter than those it is evaluated on (GLUE SST-2 trains on phrases of 9.4 words on
    average and validates on sentences of 19.5). On SST-2 it did not help: 8 copies of the examples of >= 15 words cost
    0.81 points at one epoch (README, "Distillation recipes on the full SST-2 training set").

    Args:
        dm: Source data (its text fields, label names, tokenizer and max length are used).
        teacher: Fine-tuned teacher that labels the copies and provides the embedding neighbours.
        copies: Augmented copies per training example.
        p: Probability of replacing each eligible word.
        k: Nearest neighbours considered per word.
        seed: Seed of the replacement choices.
        min_words: Copy only examples with at least this many words (0: every example).

    Returns:
        A ``DatasetDict`` (``train`` = originals + copies, ``validation`` unchanged) with the data module's fields.

    Raises:
        ValueError: ``copies < 1``, ``p`` outside (0, 1], ``k < 1``, ``min_words < 0`` or no example long enough.
    """
    problems = []
    if copies < 1:
        problems.append(f"copies={copies}: expected >= 1")
    if not 0 < p <= 1:
        problems.append(f"p={p}: expected a probability in (0, 1]")
    if k < 1:
        problems.append(f"k={k}: expected >= 1")
    if min_words < 0:
        problems.append(f"min_words={min_words}: expected >= 0")
    if teacher.config.num_labels != dm.num_labels:
        problems.append(f"teacher num_labels={teacher.config.num_labels}: expected the data's {dm.num_labels} classes")
    if problems:
        raise ValueError("; ".join(problems))
    tokenizer = dm.tokenizer
    lower = tokenizer("A")["input_ids"] == tokenizer("a")["input_ids"]  # an uncased vocabulary
    train = dm.raw["train"]
    fields, label_field = dm.text_fields, dm.label_field
    sources = [row for row in train if sum(len(row[f].split()) for f in fields) >= min_words]
    if not sources:
        raise ValueError(f"min_words={min_words}: no training example has that many words; expected a smaller value")
    words = {_WORD.match(w).group(2) for f in fields for text in train[f] for w in text.split()}
    words = {w.lower() for w in words} if lower else words
    table = neighbour_table(tokenizer, teacher.get_input_embeddings().weight.detach(), words, k)
    rng = random.Random(seed)
    new = {f: [] for f in fields}
    for _ in range(copies):
        for row in sources:
            for f in fields:
                new[f].append(replace_words(row[f], table, p, rng, lower))
    texts = new[fields[0]] if len(fields) == 1 else list(zip(*(new[f] for f in fields), strict=True))
    labels = teacher_labels(teacher, tokenizer, texts, dm.max_length)
    features = Features({**{f: Value("string") for f in fields}, label_field: ClassLabel(names=dm.label_names)})
    original = {f: list(train[f]) for f in fields}
    merged = {f: original[f] + new[f] for f in fields}
    merged[label_field] = list(train[label_field]) + labels
    val = dm.raw["validation"]
    validation = {f: list(val[f]) for f in fields} | {label_field: list(val[label_field])}
    return DatasetDict(
        train=Dataset.from_dict(merged, features=features), validation=Dataset.from_dict(validation, features=features)
    )
