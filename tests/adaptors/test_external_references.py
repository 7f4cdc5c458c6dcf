"""Adaptors against the published loss definitions of TextBrewer, TinyBERT and Patient-KD, with the scale factors of
the README's table.

Each reference below is written here from the definition (TextBrewer's documented ``losses`` functions, Yang et al.
2020, arXiv:2002.12620; TinyBERT's ``soft_cross_entropy``; PKD's normalised-[CLS] MSE), in its own way: attention
scores get the additive ``-10000`` padding mask the models add, padding is excluded by multiplying with the mask, and
each function handles one mapped layer, the way those toolkits call it once per layer pair and *sum* the results.
They share no code with the adaptors. ``M`` is the number of mapped layers, ``h`` the number of heads, ``C`` the
number of classes, ``d`` the teacher's hidden size.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from adaptors import AttnCE, AttnTinyBERT, HidnCos, HidnPKD, HidnTinyBERT, LogitCE, LogitKD
from tests.adaptors.helpers import to_double


def _scores_with_mask(q: Tensor, k: Tensor, mask: Tensor) -> Tensor:
    """Attention scores as BERT computes them before softmax: QKᵀ/√d plus -10000 on padded keys; (B, h, T, T)."""
    return q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + (1.0 - mask[:, None, None, :].to(q.dtype)) * -10000.0


# ------------------------------------------------------------------------- TextBrewer definitions (one layer pair)
def tb_att_mse(att_s: Tensor, att_t: Tensor, mask: Tensor) -> Tensor:
    """att_mse_loss with mask: squared error on valid (query, key) pairs, summed over heads, / Σ_b n_b²."""
    m = mask.to(att_s.dtype)
    pair = m[:, None, :, None] * m[:, None, None, :]
    return ((att_s - att_t) ** 2 * pair).sum() / (m.sum(1) ** 2).sum()


def tb_att_ce(att_s: Tensor, att_t: Tensor, mask: Tensor) -> Tensor:
    """att_ce_loss with mask: -Σ_j softmax(A_t) log softmax(A_s) over valid keys, mean over valid (head, query)."""
    m = mask.to(att_s.dtype)
    per_query = -(F.softmax(att_t, -1) * F.log_softmax(att_s, -1) * m[:, None, None, :]).sum(-1)  # (B, h, T)
    per_query = per_query * m[:, None, :]
    return per_query.sum() / (m.sum() * att_s.shape[1])


def tb_hid_mse(h_s: Tensor, h_t: Tensor, mask: Tensor) -> Tensor:
    """hid_mse_loss with mask: squared error over valid tokens / (valid tokens × hidden size)."""
    m = mask.to(h_s.dtype)
    return ((h_s - h_t) ** 2 * m[..., None]).sum() / (m.sum() * h_s.shape[-1])


def tb_cos(h_s: Tensor, h_t: Tensor, mask: Tensor) -> Tensor:
    """cos_loss with mask: cosine embedding loss with target 1 (1 - cos) averaged over valid tokens."""
    keep = mask.bool()
    s, t = h_s[keep], h_t[keep]
    return F.cosine_embedding_loss(s, t, torch.ones(s.shape[0], dtype=s.dtype))


def tb_pkd(h_s: Tensor, h_t: Tensor) -> Tensor:
    """pkd_loss: squared distance of the L2-normalised position-0 states, summed over features, mean over batch."""
    s, t = h_s[:, 0], h_t[:, 0]
    return ((s / s.norm(dim=1, keepdim=True) - t / t.norm(dim=1, keepdim=True)) ** 2).sum(-1).mean()


def tb_kd_ce(z_s: Tensor, z_t: Tensor, temperature: float) -> Tensor:
    """kd_ce_loss: -Σ_c softmax(z_t/T) log softmax(z_s/T), mean over the batch (no T² factor)."""
    return -(F.softmax(z_t / temperature, -1) * F.log_softmax(z_s / temperature, -1)).sum(-1).mean()


# ------------------------------------------------------------------------- the official TinyBERT and PKD scales
def tinybert_soft_cross_entropy(z_s: Tensor, z_t: Tensor) -> Tensor:
    """TinyBERT's prediction loss: (-softmax(z_t) · log_softmax(z_s)).mean() over batch *and* classes."""
    return (-F.softmax(z_t, -1) * F.log_softmax(z_s, -1)).mean()


def pkd_official(h_s: Tensor, h_t: Tensor) -> Tensor:
    """PKD's patient loss for one layer: MSE (mean over features and batch) of the normalised [CLS] states."""
    s, t = h_s[:, 0], h_t[:, 0]
    return F.mse_loss(s / s.norm(dim=1, keepdim=True), t / t.norm(dim=1, keepdim=True))


@pytest.fixture
def pair(teacher_run, student4_run):
    """float64 taps: teacher 4 heads/width 64, student 4 heads/width 32, 2 mapped layers, 3 right-padded examples."""
    return to_double(teacher_run.taps), to_double(student4_run.taps)


def test_attn_tinybert_is_textbrewer_att_mse_over_heads_and_layers(pair, t_dims, s4_dims):
    t, s = pair
    mask = t.attention_mask
    scores_s = [_scores_with_mask(s.queries[m], s.keys[m], mask) for m in range(2)]
    scores_t = [_scores_with_mask(t.queries[m], t.keys[m], mask) for m in range(2)]
    per_layer = [tb_att_mse(scores_s[m], scores_t[m], mask) for m in range(2)]
    heads, layers = 4, 2
    ours = AttnTinyBERT(t_dims, s4_dims)(t, s)
    assert (ours * heads * layers).item() == pytest.approx(sum(per_layer).item(), rel=1e-10)


def test_attn_ce_is_textbrewer_att_ce_averaged_over_layers(pair, t_dims, s4_dims):
    t, s = pair
    mask = t.attention_mask
    scores_s = [_scores_with_mask(s.queries[m], s.keys[m], mask) for m in range(2)]
    scores_t = [_scores_with_mask(t.queries[m], t.keys[m], mask) for m in range(2)]
    per_layer = [tb_att_ce(scores_s[m], scores_t[m], mask) for m in range(2)]
    assert (AttnCE(t_dims, s4_dims)(t, s) * 2).item() == pytest.approx(sum(per_layer).item(), rel=1e-10)


def test_hidn_tinybert_is_textbrewer_hid_mse_averaged_over_layers(teacher_run, wide_student_run, t_dims, wide_dims):
    t, s = to_double(teacher_run.taps), to_double(wide_student_run.taps)  # equal widths: no projection
    per_layer = [tb_hid_mse(s.hidden[m], t.hidden[m], t.attention_mask) for m in range(2)]
    assert (HidnTinyBERT(t_dims, wide_dims)(t, s) * 2).item() == pytest.approx(sum(per_layer).item(), rel=1e-10)


def test_hidn_cos_is_textbrewer_cos_loss_averaged_over_layers(teacher_run, wide_student_run, t_dims, wide_dims):
    t, s = to_double(teacher_run.taps), to_double(wide_student_run.taps)
    per_layer = [tb_cos(s.hidden[m], t.hidden[m], t.attention_mask) for m in range(2)]
    assert (HidnCos(t_dims, wide_dims)(t, s) * 2).item() == pytest.approx(sum(per_layer).item(), rel=1e-10)


def test_hidn_pkd_is_textbrewer_pkd_loss_and_d_times_pkds_mse(teacher_run, wide_student_run, t_dims, wide_dims):
    t, s = to_double(teacher_run.taps), to_double(wide_student_run.taps)
    ours = HidnPKD(t_dims, wide_dims)(t, s)
    assert (ours * 2).item() == pytest.approx(sum(tb_pkd(s.hidden[m], t.hidden[m]) for m in range(2)).item(), rel=1e-10)
    # PKD's own code averages over the d features: weight = beta / d reproduces beta x PKD's loss.
    d = t_dims.hidden_size
    official = sum(pkd_official(s.hidden[m], t.hidden[m]) for m in range(2)) / 2
    assert ours.item() == pytest.approx(d * official.item(), rel=1e-10)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_logit_ce_is_textbrewer_kd_ce_loss(pair, t_dims, s4_dims, temperature):
    t, s = pair
    ours = LogitCE(t_dims, s4_dims, temperature=temperature)(t, s)
    assert ours.item() == pytest.approx(tb_kd_ce(s.logits, t.logits, temperature).item(), rel=1e-10)
    scaled = LogitCE(t_dims, s4_dims, temperature=temperature, t2_scaling=True)(t, s)
    assert scaled.item() == pytest.approx(temperature**2 * ours.item(), rel=1e-10)


def test_logit_ce_is_c_times_tinyberts_soft_cross_entropy(pair, t_dims, s4_dims):
    t, s = pair
    classes = t.logits.shape[1]
    ours = LogitCE(t_dims, s4_dims, temperature=1.0)(t, s)
    assert ours.item() == pytest.approx(classes * tinybert_soft_cross_entropy(s.logits, t.logits).item(), rel=1e-10)


def test_logit_kd_differs_from_kd_ce_by_the_teacher_entropy_times_t2(pair, t_dims, s4_dims):
    t, s = pair
    temperature = 2.0
    p_t = F.softmax(t.logits / temperature, -1)
    entropy = -(p_t * p_t.log()).sum(-1).mean()
    expected = temperature**2 * (tb_kd_ce(s.logits, t.logits, temperature) - entropy)
    assert LogitKD(t_dims, s4_dims, temperature=temperature)(t, s).item() == pytest.approx(expected.item(), rel=1e-9)
