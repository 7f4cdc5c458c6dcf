"""Logit adaptors for multi-label (one sigmoid per label) and regression teachers: values against loop references,
zero loss for a copy, padding invariance, float32 under bf16 autocast, and the problem-type checks."""

from __future__ import annotations

import math

import pytest
import torch

from adaptors import ADAPTORS, LogitBCE, LogitBinaryKD, LogitMSE, ModelDims, Taps, build_adaptors, logit_adaptors_for

MULTI = ModelDims(8, 2, 1, 3, "multi_label_classification")
SINGLE = ModelDims(8, 2, 1, 3)
REGRESSION = ModelDims(8, 2, 1, 1, "regression")


def _taps(logits: torch.Tensor, columns: int = 4) -> Taps:
    return Taps(torch.ones(len(logits), columns, dtype=torch.long), logits=logits)


def _binary_kl(p: float, q: float) -> float:
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_binary_kd_is_the_t2_scaled_binary_kl_averaged_over_labels(temperature: float) -> None:
    z_t = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    z_s = torch.tensor([[0.0, 1.0, 0.5], [1.0, -1.0, 0.0]])
    expected = (
        temperature**2
        * sum(
            _binary_kl(_sigmoid(a / temperature), _sigmoid(b / temperature))
            for a, b in zip(z_t.flatten().tolist(), z_s.flatten().tolist(), strict=True)
        )
        / z_t.numel()
    )
    loss = LogitBinaryKD(MULTI, MULTI, temperature=temperature)(_taps(z_t), _taps(z_s))
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(expected, rel=1e-5)
    assert LogitBinaryKD(MULTI, MULTI)(_taps(z_t), _taps(z_t.clone())).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_soft_bce_is_binary_kd_over_t2_plus_the_teacher_entropy(temperature: float) -> None:
    z_t = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]], dtype=torch.float64)
    z_s = torch.tensor([[0.0, 1.0, 0.5], [1.0, -1.0, 0.0]], dtype=torch.float64)
    p = [_sigmoid(a / temperature) for a in z_t.flatten().tolist()]
    q = [_sigmoid(b / temperature) for b in z_s.flatten().tolist()]
    expected = -sum(pi * math.log(qi) + (1 - pi) * math.log(1 - qi) for pi, qi in zip(p, q, strict=True)) / len(p)
    loss = LogitBCE(MULTI, MULTI, temperature=temperature)(_taps(z_t), _taps(z_s)).item()
    assert loss == pytest.approx(expected, rel=1e-9)
    entropy = -sum(pi * math.log(pi) + (1 - pi) * math.log(1 - pi) for pi in p) / len(p)
    kd = LogitBinaryKD(MULTI, MULTI, temperature=temperature)(_taps(z_t), _taps(z_s)).item()
    assert loss == pytest.approx(kd / temperature**2 + entropy, rel=1e-9)
    scaled = LogitBCE(MULTI, MULTI, temperature=temperature, t2_scaling=True)(_taps(z_t), _taps(z_s)).item()
    assert scaled == pytest.approx(loss * temperature**2, rel=1e-9)


def test_extreme_logits_stay_finite_and_gradients_reach_the_student_only() -> None:
    z_t = torch.tensor([[60.0, -60.0, 0.0]])
    z_s = torch.tensor([[-60.0, 60.0, 0.0]], requires_grad=True)
    for cls in (LogitBinaryKD, LogitBCE, LogitMSE):
        loss = cls(MULTI, MULTI, temperature=1.0)(_taps(z_t), _taps(z_s))
        assert math.isfinite(loss.item()), cls.name
        (grad,) = torch.autograd.grad(loss, z_s)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, cls.name


def test_padding_and_bf16_autocast_do_not_change_the_loss() -> None:
    z_t, z_s = torch.randn(4, 3), torch.randn(4, 3)
    for cls in (LogitBinaryKD, LogitBCE):
        adaptor = cls(MULTI, MULTI, temperature=2.0)
        plain = adaptor(_taps(z_t), _taps(z_s))
        assert adaptor(_taps(z_t, columns=9), _taps(z_s, columns=9)).item() == plain.item()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = adaptor(_taps(z_t.bfloat16()), _taps(z_s.bfloat16()))
        assert mixed.dtype == torch.float32
        bf16 = adaptor(_taps(z_t.bfloat16().float()), _taps(z_s.bfloat16().float()))
        assert mixed.item() == pytest.approx(bf16.item(), rel=1e-6)


def test_each_adaptor_accepts_only_its_problem_types() -> None:
    assert logit_adaptors_for("multi_label_classification") == ["LogitBCE", "LogitBinaryKD", "LogitMSE"]
    assert logit_adaptors_for("single_label_classification") == ["LogitCE", "LogitKD", "LogitMSE"]
    assert logit_adaptors_for("regression") == ["LogitMSE"]
    with pytest.raises(ValueError) as info:
        build_adaptors(["LogitBinaryKD", "LogitBCE", "LogitKD"], SINGLE, SINGLE)
    msg = str(info.value)
    assert (
        "(2 problems)" in msg
        and msg.count("expected one of the adaptors for single_label_classification: LogitCE, LogitKD, LogitMSE") == 2
    )
    with pytest.raises(ValueError, match="teacher has problem_type='multi_label_classification' but student has"):
        LogitMSE(MULTI, SINGLE)
    with pytest.raises(ValueError, match="after_softmax=True compares softmax distributions"):
        LogitMSE(MULTI, MULTI, after_softmax=True)
    z_t, z_s = torch.tensor([[0.5], [2.0]]), torch.tensor([[1.5], [2.0]])
    assert LogitMSE(REGRESSION, REGRESSION)(_taps(z_t), _taps(z_s)).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="problem_type must be one of"):
        ModelDims(8, 2, 1, 3, "multilabel")
    assert ModelDims.from_config({"hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1, "num_labels": 1})
    assert all(getattr(ADAPTORS[n], "problem_types", None) for n in logit_adaptors_for("regression"))
