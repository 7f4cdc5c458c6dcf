"""Hidden-state adaptors against loop references, with and without the learned projection."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adaptors import EmbdTinyBERT, HidnPKD, HidnTinyBERT, ModelDims, Taps
from tests.adaptors import reference as ref


@pytest.mark.parametrize("student", ["narrow", "wide"])
def test_hidn_tinybert_matches_reference(request, teacher_run, t_dims, student):
    s_run = request.getfixturevalue("student_run" if student == "narrow" else "wide_student_run")
    s_dims = request.getfixturevalue("s_dims" if student == "narrow" else "wide_dims")
    adaptor = HidnTinyBERT(t_dims, s_dims)
    t, s = teacher_run.taps, s_run.taps
    with torch.no_grad():
        loss = adaptor(t, s)
    expected = ref.hidden_mse(t.hidden, s.hidden, t.attention_mask, proj=adaptor.proj)
    assert expected > 0
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("student", ["narrow", "wide"])
def test_embd_tinybert_matches_reference(request, teacher_run, t_dims, student):
    s_run = request.getfixturevalue("student_run" if student == "narrow" else "wide_student_run")
    s_dims = request.getfixturevalue("s_dims" if student == "narrow" else "wide_dims")
    adaptor = EmbdTinyBERT(t_dims, s_dims)
    t, s = teacher_run.taps, s_run.taps
    with torch.no_grad():
        loss = adaptor(t, s)
    expected = ref.hidden_mse(t.embeddings[None], s.embeddings[None], t.attention_mask, proj=adaptor.proj)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("student", ["narrow", "wide"])
def test_hidn_pkd_matches_reference(request, teacher_run, t_dims, student):
    s_run = request.getfixturevalue("student_run" if student == "narrow" else "wide_student_run")
    s_dims = request.getfixturevalue("s_dims" if student == "narrow" else "wide_dims")
    adaptor = HidnPKD(t_dims, s_dims)
    t, s = teacher_run.taps, s_run.taps
    with torch.no_grad():
        loss = adaptor(t, s)
    expected = ref.pkd(t.hidden, s.hidden, proj=adaptor.proj)
    assert expected > 0
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("cls", [HidnTinyBERT, EmbdTinyBERT, HidnPKD])
def test_projection_only_when_widths_differ(cls, t_dims, s_dims, wide_dims):
    narrow = cls(t_dims, s_dims)
    assert isinstance(narrow.proj, nn.Linear)
    assert (narrow.proj.in_features, narrow.proj.out_features) == (32, 64)
    assert cls(t_dims, wide_dims).proj is None
    assert cls(t_dims, wide_dims, projection=False).proj is None
    assert sum(p.numel() for p in cls(t_dims, wide_dims).parameters()) == 0


@pytest.mark.parametrize("cls", [HidnTinyBERT, EmbdTinyBERT, HidnPKD])
def test_projection_false_with_different_widths_rejected(cls, t_dims, s_dims):
    with pytest.raises(
        ValueError, match=r"student hidden_size=32 differs from teacher hidden_size=64.*projection=False"
    ):
        cls(t_dims, s_dims, projection=False)
    with pytest.raises(ValueError, match=r"projection must be True or False, got 'always'"):
        cls(t_dims, s_dims, projection="always")


def test_projection_is_not_part_of_the_student(student_model, t_dims, s_dims):
    adaptor = HidnTinyBERT(t_dims, s_dims)
    student_params = {id(p) for p in student_model.parameters()}
    assert all(id(p) not in student_params for p in adaptor.parameters())
    assert not any("proj" in name for name, _ in student_model.named_parameters())


def test_hidden_mse_hand_values_and_normalisation():
    d = ModelDims(2, 1, 1, 2)
    mask = torch.tensor([[1, 1, 0]])
    h_t = torch.zeros(1, 1, 3, 2)
    h_s = torch.tensor([[[[1.0, 1.0], [3.0, -1.0], [100.0, 100.0]]]])
    # valid tokens: (1 + 1) + (9 + 1) = 12 over 2 tokens x 2 features
    loss = HidnTinyBERT(d, d)(Taps(mask, hidden=h_t), Taps(mask, hidden=h_s))
    assert loss.item() == pytest.approx(12 / 4)


def test_pkd_hand_values():
    d = ModelDims(2, 1, 1, 2)
    mask = torch.ones(2, 2)
    h_t = torch.tensor([[[[3.0, 0.0], [9.0, 9.0]], [[0.0, 2.0], [9.0, 9.0]]]])  # CLS: (1, 0) and (0, 1) normalised
    h_s = torch.tensor([[[[0.0, 5.0], [1.0, 1.0]], [[0.0, 0.5], [1.0, 1.0]]]])  # CLS: (0, 1) and (0, 1)
    loss = HidnPKD(d, d)(Taps(mask, hidden=h_t), Taps(mask, hidden=h_s))
    assert loss.item() == pytest.approx((2.0 + 0.0) / 2)
