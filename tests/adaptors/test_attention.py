"""Attention adaptors against loop references; MiniLM is checked against the model's own eager attentions."""

from __future__ import annotations

import pytest
import torch

from adaptors import (
    AttnCE,
    AttnMiniLM,
    AttnTinyBERT,
    ModelDims,
    RelMiniLMv2,
    Taps,
    ValMiniLM,
    default_relation_heads,
    split_relation_heads,
)
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


# ------------------------------------------------------------------------------------------- MiniLMv2 and attn CE
@pytest.mark.parametrize("relations", [["qq", "kk", "vv"], ["qq"], ["kk"], ["vv", "qq"]])
@pytest.mark.parametrize("relation_heads", [None, 2, 8])
def test_rel_minilmv2_sums_the_chosen_relations(teacher_run, student_run, t_dims, s_dims, relations, relation_heads):
    """Teacher 4 heads/width 64, student 2 heads/width 32: each relation against the loop reference, summed."""
    t, s = to_double(teacher_run.taps), to_double(student_run.taps)
    adaptor = RelMiniLMv2(t_dims, s_dims, relations=relations, relation_heads=relation_heads)
    r = adaptor.num_relation_heads
    assert r == (default_relation_heads(t_dims, s_dims) if relation_heads is None else relation_heads)
    taps = {"qq": "queries", "kk": "keys", "vv": "values"}
    expected = sum(
        ref.relation_kl(getattr(t, taps[x]), getattr(t, taps[x]), getattr(s, taps[x]), getattr(s, taps[x]),
                        t.attention_mask, relation_heads=r)
        for x in relations
    )  # fmt: skip
    assert expected > 0
    assert adaptor(t, s).item() == pytest.approx(expected, rel=1e-9)
    assert adaptor.needs == {taps[x] for x in relations}


def test_rel_minilmv2_uses_relation_heads_even_with_equal_head_counts(teacher_run, student4_run, t_dims, s4_dims):
    """MiniLMv2 always re-splits into relation heads; its vv relation equals ValMiniLM with the same heads."""
    t, s = to_double(teacher_run.taps), to_double(student4_run.taps)
    v2 = RelMiniLMv2(t_dims, s4_dims, relations=["vv"], relation_heads=8)
    assert v2(t, s).item() == pytest.approx(ValMiniLM(t_dims, s4_dims, relation_heads=8)(t, s).item(), rel=1e-12)
    assert RelMiniLMv2(t_dims, s4_dims).num_relation_heads == 4


def test_rel_minilmv2_teacher_layer_sets_the_map(t_dims, s_dims):
    adaptor = RelMiniLMv2(t_dims, s_dims, teacher_layer=2)
    assert adaptor.layers == [[1, 2]]  # last student layer <- teacher layer 2
    assert RelMiniLMv2(t_dims, s_dims).layers is None  # default "last"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"relations": []}, "relations must be a non-empty list"),
        ({"relations": "qq"}, "relations must be a non-empty list"),
        ({"relations": ["qk"]}, "relations has unknown entries ['qk']; valid relations: ['kk', 'qq', 'vv']"),
        ({"relations": ["qq", "qq"]}, "repeated"),
        ({"teacher_layer": 4}, "teacher_layer must be an int in 0..3"),
        ({"teacher_layer": 1, "layers": "last"}, "give teacher_layer or layers, not both"),
        ({"relation_heads": 3}, "relation_heads=3 must divide both hidden sizes"),
    ],
)
def test_rel_minilmv2_bad_options(t_dims, s_dims, options, expected):
    with pytest.raises(ValueError) as info:
        RelMiniLMv2(t_dims, s_dims, **options)
    assert expected in str(info.value) and "RelMiniLMv2" in str(info.value)


def test_attn_ce_matches_eager_attentions(teacher_run, student4_run, t_dims, s4_dims):
    t, s = teacher_run.taps, student4_run.taps
    loss = AttnCE(t_dims, s4_dims)(t, s)
    expected = ref.ce_from_probabilities(teacher_run.attentions, student4_run.attentions, t.attention_mask)
    assert expected > 0
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def test_attn_ce_is_minilm_kl_plus_the_teacher_entropy(teacher_run, student4_run, t_dims, s4_dims):
    """Same gradients as AttnMiniLM: the difference is the teacher's entropy, which does not depend on the student."""
    t, s = to_double(teacher_run.taps), to_double(student4_run.taps)
    ce, kl = AttnCE(t_dims, s4_dims)(t, s), AttnMiniLM(t_dims, s4_dims)(t, s)
    self_ce = AttnCE(t_dims, t_dims)(t, t)
    assert (ce - kl).item() == pytest.approx(self_ce.item(), rel=1e-9)


def test_attn_ce_requires_equal_head_counts(t_dims, s_dims):
    with pytest.raises(ValueError, match="AttnCE: teacher has num_heads=4 but student has num_heads=2"):
        AttnCE(t_dims, s_dims)
