"""Properties every adaptor must have: zero loss for a copied teacher, padding invariance, correct gradients."""

from __future__ import annotations

import copy

import pytest
import torch

from adaptors import ADAPTORS, Taps
from tests.adaptors.helpers import STUDENT_LAYERS, TEACHER_LAYERS, dims, eager_bert, pad_batch, run_model

# AttnTinyBERT and AttnCE need the teacher's head count; every other adaptor is tested on the 2-head student.
EQUAL_HEADS = ("AttnTinyBERT", "AttnCE")
STUDENT_OF = {name: ("student4" if name in EQUAL_HEADS else "student") for name in ADAPTORS}
STUDENT_SHAPE = {"student": (2, 32, 2, 1), "student4": (2, 32, 4, 2)}  # layers, hidden, heads, seed

# Which student parameter must receive gradient from each tap (layer indices are student layers 0 and 1).
PARAM_OF_TAP = {
    "logits": "classifier.weight",
    "embeddings": "bert.embeddings.word_embeddings.weight",
    "hidden": "bert.encoder.layer.1.output.dense.weight",
    "queries": "bert.encoder.layer.0.attention.self.query.weight",
    "keys": "bert.encoder.layer.0.attention.self.key.weight",
    "values": "bert.encoder.layer.0.attention.self.value.weight",
}

# Adaptors for single-label logits (and every intermediate one); the multi-label ones: test_multilabel_logits.py.
ALL = sorted(
    n
    for n, c in ADAPTORS.items()
    if "single_label_classification" in getattr(c, "problem_types", "single_label_classification")
)


def test_all_adaptors_are_covered():
    assert ALL == sorted(
        [
            "LogitKD",
            "LogitCE",
            "LogitMSE",
            "AttnTinyBERT",
            "AttnMiniLM",
            "ValMiniLM",
            "HidnTinyBERT",
            "EmbdTinyBERT",
            "HidnPKD",
            "HidnCos",
            "AttnCE",
            "RelMiniLMv2",
        ]
    )


def _entropy(logits: torch.Tensor) -> float:
    p = torch.softmax(logits.double(), dim=-1)
    return -(p * p.log()).sum(-1).mean().item()


def _attention_entropy(attentions: list[torch.Tensor], attention_mask: torch.Tensor) -> float:
    """Entropy of the eager attention rows of valid queries, averaged over valid queries, heads and layers."""
    valid = attention_mask.bool()
    rows = [-(a.double() * a.double().clamp_min(1e-300).log()).sum(-1) for a in attentions]  # (B, h, T) each
    return torch.stack([r.permute(0, 2, 1)[valid].mean() for r in rows]).mean().item()


@pytest.mark.parametrize("name", ALL)
def test_zero_loss_for_a_copy_of_the_teacher(name, teacher_model, teacher_run, t_dims, batch):
    copy_model = copy.deepcopy(teacher_model)
    with torch.no_grad():
        copy_run = run_model(copy_model, batch, TEACHER_LAYERS)
    adaptor = ADAPTORS[name](t_dims, t_dims)
    assert not list(adaptor.parameters())  # equal widths: no projection
    loss = adaptor(teacher_run.taps, copy_run.taps).item()
    if name == "LogitCE":  # soft cross-entropy bottoms out at the teacher's entropy, not 0
        loss -= _entropy(teacher_run.taps.logits)
    if name == "AttnCE":  # so does the attention cross-entropy: the teacher's mean attention entropy
        loss -= _attention_entropy(teacher_run.attentions, batch["attention_mask"])
    assert loss == pytest.approx(0.0, abs=1e-6)


def _pair(request, name):
    key = STUDENT_OF[name]
    return request.getfixturevalue(f"{key}_model"), request.getfixturevalue(f"{key}_run")


@pytest.mark.parametrize("name", ALL)
def test_extra_padding_columns_do_not_change_the_loss(request, name, teacher_model, teacher_run, batch):
    student_model, _ = _pair(request, name)
    # float64 models, so that the check is not blurred by float32 rounding (LogitKD of close distributions).
    teacher64, student64 = copy.deepcopy(teacher_model).double(), copy.deepcopy(student_model).double()
    adaptor = ADAPTORS[name](dims(teacher_model), dims(student_model)).double()
    padded = pad_batch(batch, extra=5)
    padded_more = pad_batch(padded, extra=2)
    padded_more["attention_mask"][0, 5:] = 0  # and cut the first example: its loss changes, proving padding counts
    padded_more["input_ids"][0, 5:] = 0
    with torch.no_grad():
        losses = [
            adaptor(run_model(teacher64, b, TEACHER_LAYERS).taps, run_model(student64, b, STUDENT_LAYERS).taps).item()
            for b in (batch, padded, padded_more)
        ]
    assert losses[0] > 0
    assert losses[1] == pytest.approx(losses[0], rel=1e-9, abs=1e-15)
    assert losses[2] != pytest.approx(losses[0], rel=1e-6)


# Axes of B and T in each tap, for overwriting padded positions.
BT_AXES = {"embeddings": (0, 1), "hidden": (1, 2), "queries": (1, 3), "keys": (1, 3), "values": (1, 3)}


def _garbage_in_padding(taps: Taps, seed: int) -> Taps:
    g = torch.Generator().manual_seed(seed)
    pad = ~taps.attention_mask.bool()
    out = {}
    for k, v in vars(taps).items():
        if k in BT_AXES and v is not None:
            shape = [1] * v.dim()
            shape[BT_AXES[k][0]], shape[BT_AXES[k][1]] = pad.shape
            noise = torch.randn(v.shape, generator=g) * 1e4
            v = torch.where(pad.view(shape), noise, v)
        out[k] = v
    return Taps(**out)


# Logit adaptors read no per-token tap, so there is no padded position to perturb: padding invariance of their
# inputs is covered by test_extra_padding_columns_do_not_change_the_loss.
TOKEN_LEVEL = [name for name in ALL if ADAPTORS[name].kind == "inter"]


def test_token_level_adaptors_are_exactly_those_reading_per_token_taps():
    assert TOKEN_LEVEL and all(ADAPTORS[n].needs <= set(BT_AXES) for n in TOKEN_LEVEL)
    assert all(ADAPTORS[n].needs == {"logits"} for n in ALL if n not in TOKEN_LEVEL)


@pytest.mark.parametrize("name", TOKEN_LEVEL)
def test_values_at_padded_positions_are_ignored(request, name, teacher_model, teacher_run):
    student_model, student_run = _pair(request, name)
    adaptor = ADAPTORS[name](dims(teacher_model), dims(student_model))
    dirty_t, dirty_s = _garbage_in_padding(teacher_run.taps, 0), _garbage_in_padding(student_run.taps, 1)
    for tap in adaptor.needs:  # the perturbation really reaches every tap the adaptor reads
        assert not torch.equal(getattr(dirty_t, tap), getattr(teacher_run.taps, tap)), tap
        assert not torch.equal(getattr(dirty_s, tap), getattr(student_run.taps, tap)), tap
    with torch.no_grad():
        clean = adaptor(teacher_run.taps, student_run.taps)
        dirty = adaptor(dirty_t, dirty_s)
    assert dirty.item() == pytest.approx(clean.item(), rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("name", ALL)
def test_weight_is_not_applied_by_forward(request, name, teacher_run, t_dims):
    student_model, student_run = _pair(request, name)
    cls = ADAPTORS[name]
    torch.manual_seed(0)
    a = cls(t_dims, dims(student_model), weight=0.25)
    torch.manual_seed(0)
    b = cls(t_dims, dims(student_model), weight=1.0)
    with torch.no_grad():
        assert a(teacher_run.taps, student_run.taps).item() == b(teacher_run.taps, student_run.taps).item()


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_student_and_projection_but_not_teacher(name, teacher_model, teacher_run, t_dims, batch):
    layers, hidden, heads, seed = STUDENT_SHAPE[STUDENT_OF[name]]
    student = eager_bert(layers=layers, hidden=hidden, heads=heads, seed=seed)
    adaptor = ADAPTORS[name](t_dims, dims(student))
    # Teacher taps computed *with* autograd through a trainable copy of the teacher, so that gradient could reach
    # the teacher's weights if an adaptor failed to treat the teacher's taps as constants.
    teacher = copy.deepcopy(teacher_model).requires_grad_(True)
    teacher_taps = run_model(teacher, batch, TEACHER_LAYERS).taps
    assert all(v is None or not v.is_floating_point() or v.requires_grad for v in vars(teacher_taps).values())
    loss = adaptor(teacher_taps, run_model(student, batch, STUDENT_LAYERS).taps)
    assert loss.dim() == 0 and loss.requires_grad
    loss.backward()

    params = dict(student.named_parameters())
    for tap in adaptor.needs:
        grad = params[PARAM_OF_TAP[tap]].grad
        assert grad is not None and grad.abs().sum() > 0, f"no gradient on the student through {tap}"
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in student.parameters())
    for pname, p in adaptor.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient on adaptor parameter {pname}"
    if name in ("HidnTinyBERT", "EmbdTinyBERT", "HidnPKD", "HidnCos"):
        assert adaptor.proj is not None  # 32 -> 64
    assert all(p.grad is None for p in teacher.parameters()), "gradient reached the teacher"
