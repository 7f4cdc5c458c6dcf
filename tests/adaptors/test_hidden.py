"""Hidden-state adaptors against loop references, with and without the learned projection."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adaptors import EmbdTinyBERT, HidnCos, HidnPKD, HidnTinyBERT, ModelDims, Taps, first_valid_position
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


@pytest.mark.parametrize("cls", [HidnTinyBERT, EmbdTinyBERT, HidnPKD, HidnCos])
def test_projection_only_when_widths_differ(cls, t_dims, s_dims, wide_dims):
    narrow = cls(t_dims, s_dims)
    assert isinstance(narrow.proj, nn.Linear)
    assert (narrow.proj.in_features, narrow.proj.out_features) == (32, 64)
    assert cls(t_dims, wide_dims).proj is None
    assert cls(t_dims, wide_dims, projection=False).proj is None
    assert sum(p.numel() for p in cls(t_dims, wide_dims).parameters()) == 0


@pytest.mark.parametrize("cls", [HidnTinyBERT, EmbdTinyBERT, HidnPKD, HidnCos])
def test_projection_false_with_different_widths_rejected(cls, t_dims, s_dims):
    with pytest.raises(
        ValueError, match=r"student hidden_size=32 differs from teacher hidden_size=64.*projection=False"
    ):
        cls(t_dims, s_dims, projection=False)
    with pytest.raises(ValueError, match=r"projection must be True or False, got 'always'"):
        cls(t_dims, s_dims, projection="always")


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


@pytest.mark.parametrize("student", ["narrow", "wide"])
def test_hidn_cos_matches_reference(request, teacher_run, t_dims, student):
    s_run = request.getfixturevalue("student_run" if student == "narrow" else "wide_student_run")
    s_dims = request.getfixturevalue("s_dims" if student == "narrow" else "wide_dims")
    adaptor = HidnCos(t_dims, s_dims)
    t, s = teacher_run.taps, s_run.taps
    with torch.no_grad():
        loss = adaptor(t, s)
    expected = ref.cosine(t.hidden, s.hidden, t.attention_mask, proj=adaptor.proj)
    assert expected > 0
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_hidn_cos_ignores_the_scale_of_the_states(teacher_run, wide_student_run, t_dims, wide_dims):
    t, s = teacher_run.taps, wide_student_run.taps
    scaled = Taps(attention_mask=s.attention_mask, hidden=s.hidden * 7.5)
    adaptor = HidnCos(t_dims, wide_dims)
    assert adaptor(t, scaled).item() == pytest.approx(adaptor(t, s).item(), rel=1e-5)


def _left_padded(taps: Taps, lengths: list[int]) -> Taps:
    """The same examples with their tokens moved to the right end (left padding), padded slots filled with noise."""
    b, t = taps.attention_mask.shape
    mask = torch.zeros_like(taps.attention_mask)
    hidden = torch.randn(taps.hidden.shape, generator=torch.Generator().manual_seed(5)) * 100
    for i, n in enumerate(lengths):
        mask[i, t - n :] = 1
        hidden[:, i, t - n :] = taps.hidden[:, i, :n]
    return Taps(attention_mask=mask, hidden=hidden)


def test_hidn_pkd_reads_cls_at_the_first_valid_position(teacher_run, student_run, t_dims, s_dims, batch):
    """Left padding puts [CLS] after the pads: the loss must equal the right-padded one, read at each [CLS]."""
    lengths = batch["attention_mask"].sum(1).tolist()
    adaptor = HidnPKD(t_dims, s_dims)
    t, s = teacher_run.taps, student_run.taps
    left_t, left_s = _left_padded(t, lengths), _left_padded(s, lengths)
    with torch.no_grad():
        right, left = adaptor(t, s).item(), adaptor(left_t, left_s).item()
    starts = [batch["attention_mask"].shape[1] - n for n in lengths]
    assert starts != [0, 0, 0]
    assert left == pytest.approx(ref.pkd_at(left_t.hidden, left_s.hidden, starts, proj=adaptor.proj), rel=1e-5)
    assert left == pytest.approx(right, rel=1e-5)
    assert ref.pkd_at(left_t.hidden, left_s.hidden, [0, 0, 0], proj=adaptor.proj) != pytest.approx(right, rel=1e-3)


def test_first_valid_position():
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 0]])
    assert first_valid_position(mask).tolist() == [0, 2, 1, 0]
