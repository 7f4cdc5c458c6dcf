"""Attention adaptors against loop references; MiniLM is checked against the model's own eager attentions."""

from __future__ import annotations

import pytest
import torch

from adaptors import AttnMiniLM, AttnTinyBERT, ModelDims, Taps, ValMiniLM, default_relation_heads, split_relation_heads
from tests.adaptors import reference as ref
from tests.adaptors.helpers import to_double


def test_attn_tinybert_matches_reference(teacher_run, student4_run, t_dims, s4_dims):
    t, s = teacher_run.taps, student4_run.taps
    loss = AttnTinyBERT(t_dims, s4_dims)(t, s)
    expected = ref.attn_tinybert(t.queries, t.keys, s.queries, s.keys, t.attention_mask)
    assert expected > 0
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_attn_tinybert_requires_equal_head_counts(t_dims, s_dims):
    with pytest.raises(ValueError, match="teacher has num_heads=4 but student has num_heads=2"):
        AttnTinyBERT(t_dims, s_dims)


def test_attn_minilm_matches_eager_attentions(teacher_run, student4_run, t_dims, s4_dims):
    """softmax(QKᵀ/√d + mask) from the taps must reproduce what the model itself computes."""
    t, s = teacher_run.taps, student4_run.taps
    adaptor = AttnMiniLM(t_dims, s4_dims)
    assert adaptor.num_relation_heads is None  # equal head counts -> per-head MiniLM
    loss = adaptor(t, s)
    expected = ref.kl_from_probabilities(teacher_run.attentions, student4_run.attentions, t.attention_mask)
    assert expected > 0
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def test_val_minilm_matches_reference(teacher_run, student4_run, t_dims, s4_dims):
    t, s = to_double(teacher_run.taps), to_double(student4_run.taps)
    loss = ValMiniLM(t_dims, s4_dims)(t, s)
    expected = ref.relation_kl(t.values, t.values, s.values, s.values, t.attention_mask, relation_heads=4)
    assert expected > 0
    assert loss.item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("cls", [AttnMiniLM, ValMiniLM])
@pytest.mark.parametrize("relation_heads", [None, 1, 2, 8])
def test_relation_heads_with_different_head_counts(teacher_run, student_run, t_dims, s_dims, cls, relation_heads):
    """Teacher 4 heads/width 64 vs student 2 heads/width 32 (MiniLMv2 relation heads)."""
    t, s = to_double(teacher_run.taps), to_double(student_run.taps)
    adaptor = cls(t_dims, s_dims, relation_heads=relation_heads)
    r = adaptor.num_relation_heads
    assert r == (4 if relation_heads is None else relation_heads)
    a, b = ("queries", "keys") if cls is AttnMiniLM else ("values", "values")
    expected = ref.relation_kl(
        getattr(t, a), getattr(t, b), getattr(s, a), getattr(s, b), t.attention_mask, relation_heads=r
    )
    assert expected > 0
    assert adaptor(t, s).item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("cls", [AttnMiniLM, ValMiniLM])
def test_relation_heads_equal_per_head_loss_when_r_is_head_count(teacher_run, student4_run, t_dims, s4_dims, cls):
    t, s = teacher_run.taps, student4_run.taps
    per_head = cls(t_dims, s4_dims)(t, s)
    relation = cls(t_dims, s4_dims, relation_heads=4)
    assert relation.num_relation_heads == 4
    assert relation(t, s).item() == pytest.approx(per_head.item(), rel=1e-6)
    assert cls(t_dims, s4_dims, relation_heads=2)(t, s).item() != pytest.approx(per_head.item(), rel=1e-3)


def test_split_relation_heads_is_concat_then_split():
    x = torch.randn(2, 3, 4, 5, 6)  # (M, B, heads, T, d)
    y = split_relation_heads(x, 3)
    assert y.shape == (2, 3, 3, 5, 8)
    full = torch.cat([x[:, :, h] for h in range(4)], dim=-1)  # (M, B, T, 24)
    for r in range(3):
        torch.testing.assert_close(y[:, :, r], full[..., r * 8 : (r + 1) * 8])
    torch.testing.assert_close(split_relation_heads(x, 4), x)


@pytest.mark.parametrize(
    "teacher, student, expected",
    [
        ((64, 4), (32, 2), 4),
        ((768, 12), (384, 6), 12),
        ((768, 12), (384, 12), 12),
        ((60, 6), (32, 4), 4),  # 6 does not divide 32, 4 divides 60
        ((768, 12), (320, 5), 8),  # neither 12 nor 5 divides both: largest divisor of gcd=64 that is <= 12
    ],
)
def test_default_relation_heads_rule(teacher, student, expected):
    t = ModelDims(teacher[0], teacher[1], 2, 2)
    s = ModelDims(student[0], student[1], 2, 2)
    assert default_relation_heads(t, s) == expected
    assert AttnMiniLM(t, s).num_relation_heads == (expected if teacher[1] != student[1] else None)


@pytest.mark.parametrize("cls", [AttnMiniLM, ValMiniLM])
def test_relation_heads_validation(t_dims, s_dims, cls):
    with pytest.raises(ValueError, match=r"relation_heads=3 must divide both hidden sizes \(teacher 64, student 32\)"):
        cls(t_dims, s_dims, relation_heads=3)
    for bad in (0, -2, 2.0, "4", True):
        with pytest.raises(ValueError, match=rf"relation_heads must be a positive int or None, got {bad!r}"):
            cls(t_dims, s_dims, relation_heads=bad)


def _qkv_taps(mask: torch.Tensor, m=2, heads=4, d=16, scale=1.0, seed=0) -> Taps:
    g = torch.Generator().manual_seed(seed)
    b, t = mask.shape
    q, k, v = (torch.randn(m, b, heads, t, d, generator=g) * scale for _ in range(3))
    return Taps(attention_mask=mask, queries=q, keys=k, values=v)


@pytest.mark.parametrize("cls", [AttnMiniLM, ValMiniLM, AttnTinyBERT])
def test_extreme_scores_and_empty_examples_stay_finite(cls):
    d = ModelDims(64, 4, 2, 2)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]])  # one example is all padding
    t = _qkv_taps(mask, scale=300.0, seed=0)
    s = _qkv_taps(mask, scale=300.0, seed=1)
    for name in ("queries", "keys", "values"):
        getattr(s, name).requires_grad_(True)
    loss = cls(d, d)(t, s)
    loss.backward()
    assert torch.isfinite(loss)
    for name in cls.needs:
        grad = getattr(s, name).grad
        assert grad is not None and torch.isfinite(grad).all()
        assert grad[:, 1].abs().sum() == 0  # the empty example contributes nothing


@pytest.mark.parametrize("cls", [AttnMiniLM, ValMiniLM, AttnTinyBERT])
def test_per_head_losses_need_matching_tap_heads(cls):
    d = ModelDims(64, 4, 2, 2)
    mask = torch.ones(2, 5)
    with pytest.raises(ValueError, match=r"heads|width"):
        cls(d, d)(_qkv_taps(mask), _qkv_taps(mask, heads=2, d=32))
