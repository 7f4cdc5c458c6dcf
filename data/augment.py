"""Teacher-labelled data augmentation by word replacement, in the spirit of TinyBERT's task-specific augmentation.

TinyBERT (Jiao et al., 2020, arXiv:1909.10351, Sec. 3.3) enlarges the task data by replacing words with similar
words and lets the teacher supervise the new examples. Here the similar words come from the teacher itself: the
nearest neighbours (cosine similarity) of a word in the teacher's input word-embedding table, restricted to whole-word
vocabulary entries. Each augmented copy replaces every eligible word with probability ``p``. In a transfer set
(``data.augment``) the copies carry no label: the teacher labels them with its logits before training, like unlabelled
text. :mod:`data.teacher_copies` keeps the older recipe that gives each copy the teacher's top class as a hard label.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from data.sources import is_int, is_number, settings_problems

_WORD = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)


@dataclass
class Augment:
    """Word-replacement augmentation of the training rows, as a transfer set (``data.augment``).

    Each labelled training example (with ``rows: all``, each transfer row as well) of at least ``min_words`` words gets
    ``copies`` copies in which every word that has neighbours in the teacher's word-embedding table is replaced with
    probability ``p`` by one of its ``k`` nearest whole-word neighbours. The copies carry no label: the teacher labels
    them (its logits, through the teacher store).

    Attributes:
        copies: Copies per labelled training example (>= 1).
        p: Probability of replacing each eligible word, in (0, 1].
        k: Nearest neighbours considered per word (>= 1).
        min_words: Copy only examples of at least this many words, all text fields together (>= 0; 0: all).
        seed: Seed of the replacement choices.
        rows: Which rows are copied: ``labeled`` (the labelled training rows) or ``all`` (those and the transfer rows
            of ``unlabeled`` and ``rest_as_unlabeled``: more inputs for the teacher to label where labels are few).
    """

    copies: int = 4
    p: float = 0.3
    k: int = 10
    min_words: int = 0
    seed: int = 42
    rows: str = "labeled"


#: The values of :attr:`Augment.rows`.
AUGMENT_ROWS = ("labeled", "all")


def augment_problems(augment: Augment, field: str | None = "augment") -> list[str]:
    """Every out-of-range or mistyped value of an :class:`Augment` (an empty list when it is fine).

    Args:
        augment: The settings.
        field: Prefix of the names in the messages (``augment`` gives ``augment.copies (--data.augment.copies)``;
            None gives plain ``copies``, for function arguments).
    """
    checks = (
        ("copies", is_int(augment.copies) and augment.copies >= 1, "an integer >= 1"),
        ("p", is_number(augment.p) and 0 < augment.p <= 1, "a probability in (0, 1]"),
        ("k", is_int(augment.k) and augment.k >= 1, "an integer >= 1"),
        ("min_words", is_int(augment.min_words) and augment.min_words >= 0, "an integer >= 0"),
        ("seed", is_int(augment.seed), "an integer"),
        ("rows", augment.rows in AUGMENT_ROWS, f"one of {list(AUGMENT_ROWS)}"),
    )
    return settings_problems(augment, checks, field)


def words_per_row(rows: Dataset, fields: list[str]) -> list[int]:
    """Word count of every row, all text fields together (what ``min_words`` compares with)."""
    columns = [rows[f] for f in fields]
    return [sum(len(text.split()) for text in texts) for texts in zip(*columns, strict=True)]


def word_replacement_copies(
    rows: Dataset,
    fields: list[str],
    tokenizer: PreTrainedTokenizerBase,
    embeddings: torch.Tensor,
    augment: Augment,
) -> dict[str, list[str]]:
    """``augment.copies`` word-replacement copies of the rows with at least ``augment.min_words`` words.

    Args:
        rows: Source rows (their text fields are read).
        fields: The text fields.
        tokenizer: The teacher's tokenizer (its vocabulary indexes ``embeddings``).
        embeddings: The teacher's input word embeddings, ``(vocab_size, hidden)``.
        augment: The settings (checked by :func:`augment_problems` beforehand).

    Returns:
        ``{field: texts}``: the copies, copy 1 of every source row, then copy 2, and so on.
    """
    lower = tokenizer("A")["input_ids"] == tokenizer("a")["input_ids"]  # an uncased vocabulary
    counts = words_per_row(rows, fields)
    columns = {f: list(rows[f]) for f in fields}  # read once (indexing a column reads from Arrow each time)
    sources = [i for i, n in enumerate(counts) if n >= augment.min_words]
    words = {_WORD.match(w).group(2) for f in fields for text in columns[f] for w in text.split()}
    words = {w.lower() for w in words} if lower else words
    table = neighbour_table(tokenizer, embeddings, words, augment.k)
    rng = random.Random(augment.seed)
    new: dict[str, list[str]] = {f: [] for f in fields}
    for _ in range(augment.copies):
        for i in sources:
            for f in fields:
                new[f].append(replace_words(columns[f][i], table, augment.p, rng, lower))
    return new


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
