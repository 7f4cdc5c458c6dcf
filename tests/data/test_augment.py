"""Tests for data.augment: embedding neighbours and word replacement (hard-labelled copies: test_teacher_copies)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import BertTokenizer, PreTrainedTokenizerBase

from data.augment import neighbour_table, replace_words

FAKE_WORDS = ["good", "great", "fine", "nice", "bad", "awful", "film", "movie", "cat", "dog", "the", "café"]
FAKE_SPECIAL = "xspecial"  # an alphabetic special token: must never be offered as a neighbour
FAKE_OTHER = ["##ing", "##s", "123", "x1", "don't", FAKE_SPECIAL]
FAKE_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *FAKE_WORDS, *FAKE_OTHER]


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def fake_tok(tmp_path_factory: pytest.TempPathFactory) -> BertTokenizer:
    """A BertTokenizer over a tiny vocabulary with word pieces, numbers, punctuation and an alphabetic special."""
    path = Path(tmp_path_factory.mktemp("vocab")) / "vocab.txt"
    path.write_text("\n".join(FAKE_VOCAB) + "\n", encoding="utf-8")
    return BertTokenizer(str(path), additional_special_tokens=[FAKE_SPECIAL])


@pytest.fixture(scope="module")
def fake_emb(fake_tok: BertTokenizer) -> torch.Tensor:
    """Random embeddings where every ineligible entry points exactly in the direction of ``good``."""
    vocab = fake_tok.get_vocab()
    emb = torch.randn(len(vocab), 6, generator=torch.Generator().manual_seed(0))
    good = emb[vocab["good"]].clone()
    for i, token in enumerate(["[CLS]", "[SEP]", "[UNK]", *FAKE_OTHER]):
        emb[vocab[token]] = good * (i + 2)  # cosine 1 with "good": would top its list if not filtered out
    return emb


def eligible(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    special = set(tokenizer.all_special_tokens)
    return [t for t in tokenizer.get_vocab() if t.isalpha() and not t.startswith("##") and t not in special]


def direct_neighbours(tokenizer: PreTrainedTokenizerBase, emb: torch.Tensor, word: str, k: int) -> list[str]:
    """Reference: cosine similarity of ``word`` to every eligible entry, highest first."""
    vocab = tokenizer.get_vocab()
    others = [t for t in eligible(tokenizer) if t != word]
    sims = F.cosine_similarity(emb[vocab[word]][None], emb[[vocab[t] for t in others]], dim=-1)
    return [others[i] for i in sims.argsort(descending=True).tolist()[:k]]


# ---------------------------------------------------------------------------------------------- neighbour_table
def test_neighbours_match_direct_cosine_ranking(fake_tok: BertTokenizer, fake_emb: torch.Tensor) -> None:
    words = ["good", "film", "cat", "café", "the"]
    table = neighbour_table(fake_tok, fake_emb, words, k=4)
    assert sorted(table) == sorted(words)
    for word in words:
        assert table[word] == direct_neighbours(fake_tok, fake_emb, word, 4), word
        assert word not in table[word]
        assert all(n in FAKE_WORDS for n in table[word])  # no '##', specials, numbers or punctuation


def test_neighbours_are_in_decreasing_similarity(fake_tok: BertTokenizer, fake_emb: torch.Tensor) -> None:
    vocab = fake_tok.get_vocab()
    table = neighbour_table(fake_tok, fake_emb, ["dog"], k=6)
    sims = [F.cosine_similarity(fake_emb[vocab["dog"]], fake_emb[vocab[n]], dim=0).item() for n in table["dog"]]
    assert len(sims) == 6 and sims == sorted(sims, reverse=True)


def test_ineligible_entries_are_never_neighbours(fake_tok: BertTokenizer, fake_emb: torch.Tensor) -> None:
    # "good" has [CLS], '##ing', '123', "don't", the alphabetic special etc. at cosine 1 (see fake_emb)
    table = neighbour_table(fake_tok, fake_emb, ["good"], k=3)
    assert table["good"] == direct_neighbours(fake_tok, fake_emb, "good", 3)
    assert not set(table["good"]) & {"[CLS]", "[SEP]", "[UNK]", *FAKE_OTHER}


def test_k_caps_the_list_and_large_k_returns_every_other_word(fake_tok: BertTokenizer, fake_emb: torch.Tensor) -> None:
    assert [len(v) for v in neighbour_table(fake_tok, fake_emb, ["film", "cat"], k=1).values()] == [1, 1]
    table = neighbour_table(fake_tok, fake_emb, ["film"], k=100)
    assert sorted(table["film"]) == sorted(w for w in FAKE_WORDS if w != "film")


def test_words_not_in_vocab_or_not_alphabetic_are_skipped(fake_tok: BertTokenizer, fake_emb: torch.Tensor) -> None:
    table = neighbour_table(fake_tok, fake_emb, ["good", "zebra", "Good", "123", "##ing", "don't", "", "good"], k=2)
    assert list(table) == ["good"]
    assert neighbour_table(fake_tok, fake_emb, ["zebra", "123"], k=2) == {}


def test_neighbours_on_bert_vocab_across_query_chunks(tok: PreTrainedTokenizerBase) -> None:
    emb = torch.randn(len(tok), 8, generator=torch.Generator().manual_seed(1))
    words = sorted(eligible(tok))[:1100]  # more than one chunk of 1024 queries
    table = neighbour_table(tok, emb, [*words, "qqqzzzx", "[CLS]", "##ing"], k=3)
    assert sorted(table) == words
    for word in (words[0], words[1050], words[-1]):
        assert table[word] == direct_neighbours(tok, emb, word, 3)
    neighbours = {n for v in table.values() for n in v}
    assert all(n.isalpha() and not n.startswith("##") for n in neighbours)
    assert not neighbours & set(tok.all_special_tokens)


# ---------------------------------------------------------------------------------------------- replace_words
TABLE = {"good": ["great", "fine", "nice"], "film": ["movie", "picture"], "cat": ["dog"]}


def test_p_zero_returns_text_unchanged() -> None:
    text = "a good film about a cat , good"
    assert replace_words(text, TABLE, 0.0, random.Random(0), lower=True) == text


def test_p_one_replaces_every_word_with_neighbours() -> None:
    text = "a good film about a Cat and words without neighbours good"
    out = replace_words(text, TABLE, 1.0, random.Random(0), lower=True).split()
    for new, old in zip(out, text.split(), strict=True):
        if old.lower() in TABLE:
            assert new in TABLE[old.lower()]
        else:
            assert new == old


def test_case_handling_follows_lower_flag() -> None:
    assert replace_words("Good Film", TABLE, 1.0, random.Random(0), lower=False) == "Good Film"
    out = replace_words("Good Film", TABLE, 1.0, random.Random(0), lower=True).split()
    assert out[0] in TABLE["good"] and out[1] in TABLE["film"]


def test_intermediate_p_replaces_about_that_share() -> None:
    out = replace_words("good " * 2000, TABLE, 0.3, random.Random(0), lower=True).split()
    share = sum(w != "good" for w in out) / len(out)
    assert 0.25 < share < 0.35
    assert set(out) == {"good", *TABLE["good"]}  # every neighbour gets chosen


def test_replacement_is_seeded() -> None:
    text = " ".join(["good film cat"] * 10)
    a = replace_words(text, TABLE, 0.5, random.Random(3), lower=True)
    assert a == replace_words(text, TABLE, 0.5, random.Random(3), lower=True)
    assert a != replace_words(text, TABLE, 0.5, random.Random(4), lower=True)


def test_punctuation_around_words_is_kept_and_the_word_replaced() -> None:
    table = {"film": ["movie"], "great": ["superb"]}
    out = replace_words('A film. "Great," she said!', table, 1.0, random.Random(0), True)
    assert out == 'A movie. "superb," she said!'
