"""Logit adaptors against loop references computed from tiny BERT outputs."""

from __future__ import annotations

import math

import pytest
import torch

from adaptors import LogitCE, LogitKD, LogitMSE, ModelDims, Taps
from tests.adaptors import reference as ref
from tests.adaptors.helpers import to_double


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_logit_kd_matches_reference(teacher_run, student_run, t_dims, s_dims, temperature):
    a = LogitKD(t_dims, s_dims, temperature=temperature)
    expected = ref.logit_kd(teacher_run.taps.logits, student_run.taps.logits, temperature)
    assert expected > 0
    loss = a(teacher_run.taps, student_run.taps)
    assert loss.dim() == 0 and loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected, rel=5e-3)  # float32 cancellation: p_t and p_s are close
    loss64 = a(to_double(teacher_run.taps), to_double(student_run.taps))
    assert loss64.item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_logit_ce_matches_reference_and_is_unscaled(teacher_run, student_run, t_dims, s_dims, temperature):
    z_t, z_s = teacher_run.taps.logits, student_run.taps.logits
    loss = LogitCE(t_dims, s_dims, temperature=temperature)(teacher_run.taps, student_run.taps)
    assert loss.item() == pytest.approx(ref.logit_ce(z_t, z_s, temperature), rel=1e-5)
    scaled = LogitCE(t_dims, s_dims, temperature=temperature, t2_scaling=True)(teacher_run.taps, student_run.taps)
    assert scaled.item() == pytest.approx(loss.item() * temperature**2, rel=1e-5)
    # CE = KD / T² + H(p_t)
    kd = LogitKD(t_dims, s_dims, temperature=temperature)(teacher_run.taps, student_run.taps).item()
    p_t = torch.softmax(z_t.double() / temperature, dim=-1)
    entropy = -(p_t * p_t.log()).sum(-1).mean().item()
    assert loss.item() == pytest.approx(kd / temperature**2 + entropy, rel=1e-5)


def test_logit_mse_matches_reference(teacher_run, student_run, t_dims, s_dims):
    z_t, z_s = teacher_run.taps.logits, student_run.taps.logits
    raw = LogitMSE(t_dims, s_dims)(teacher_run.taps, student_run.taps)
    assert raw.item() == pytest.approx(ref.logit_mse(z_t, z_s), rel=1e-5)
    # The temperature only matters after the softmax.
    assert LogitMSE(t_dims, s_dims, temperature=7.0)(teacher_run.taps, student_run.taps).item() == raw.item()
    soft = LogitMSE(t_dims, s_dims, after_softmax=True, temperature=2.0)(teacher_run.taps, student_run.taps)
    assert soft.item() == pytest.approx(ref.logit_mse(z_t, z_s, after_softmax=True, temperature=2.0), rel=1e-5)


def test_logit_losses_on_hand_values():
    d = ModelDims(8, 2, 1, 3)
    mask = torch.ones(2, 1)
    z_t = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    z_s = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    t, s = Taps(mask, logits=z_t), Taps(mask, logits=z_s)
    assert LogitMSE(d, d)(t, s).item() == pytest.approx((4 + 1 + 1 + 1) / 6)
    p = torch.softmax(z_t, -1)
    q = torch.softmax(z_s, -1)
    kl = (p * (p / q).log()).sum(-1).mean().item()
    assert LogitKD(d, d)(t, s).item() == pytest.approx(kl, rel=1e-6)


def test_confident_teacher_gives_vanishing_gradient_after_softmax():
    """The documented caveat: MSE between probabilities barely moves a student facing a confident teacher."""
    d = ModelDims(8, 2, 1, 2)
    mask = torch.ones(1, 1)
    teacher = Taps(mask, logits=torch.tensor([[20.0, -20.0]]))
    grads = {}
    for after in (False, True):
        z_s = torch.tensor([[-20.0, 20.0]], requires_grad=True)
        LogitMSE(d, d, after_softmax=after)(teacher, Taps(mask, logits=z_s)).backward()
        grads[after] = z_s.grad.abs().max().item()
    assert grads[True] < 1e-10 < grads[False]


@pytest.mark.parametrize("cls", [LogitKD, LogitCE, LogitMSE])
@pytest.mark.parametrize("temperature", [0, -1.0, float("nan"), float("inf"), "4", None, True])
def test_temperature_validated(cls, temperature):
    d = ModelDims(8, 2, 1, 2)
    with pytest.raises(ValueError, match=rf"{cls.__name__}: temperature must be a finite number > 0") as info:
        cls(d, d, temperature=temperature)
    assert repr(temperature) in str(info.value)


@pytest.mark.parametrize("cls", [LogitKD, LogitCE, LogitMSE])
def test_label_count_mismatch_rejected(cls):
    with pytest.raises(ValueError, match="num_labels=3 but student has num_labels=2"):
        cls(ModelDims(8, 2, 1, 3), ModelDims(8, 2, 1, 2))


def test_bool_options_validated():
    d = ModelDims(8, 2, 1, 2)
    with pytest.raises(ValueError, match=r"after_softmax must be True or False, got 'yes'"):
        LogitMSE(d, d, after_softmax="yes")
    with pytest.raises(ValueError, match=r"t2_scaling must be True or False, got 1"):
        LogitCE(d, d, t2_scaling=1)


def test_half_precision_logits_are_upcast():
    d = ModelDims(8, 2, 1, 4)
    mask = torch.ones(3, 1)
    z_t, z_s = torch.randn(3, 4) * 5, torch.randn(3, 4) * 5
    full = LogitKD(d, d, temperature=2.0)(Taps(mask, logits=z_t), Taps(mask, logits=z_s))
    half = LogitKD(d, d, temperature=2.0)(Taps(mask, logits=z_t.bfloat16()), Taps(mask, logits=z_s.bfloat16()))
    assert half.dtype == torch.float32 and math.isclose(half.item(), full.item(), rel_tol=0.05)
