"""ModelDims, Taps and the Adaptor base class (construction checks and tap validation)."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, DistilBertConfig, ElectraConfig, RobertaConfig

from adaptors import Adaptor, HidnTinyBERT, LogitKD, ModelDims, Taps

DIMS = ModelDims(hidden_size=64, num_heads=4, num_layers=4, num_labels=2)


@pytest.mark.parametrize(
    "config",
    [
        BertConfig(hidden_size=48, num_attention_heads=6, num_hidden_layers=3, num_labels=5),
        RobertaConfig(hidden_size=48, num_attention_heads=6, num_hidden_layers=3, num_labels=5),
        ElectraConfig(hidden_size=48, num_attention_heads=6, num_hidden_layers=3, num_labels=5, embedding_size=16),
        DistilBertConfig(dim=48, n_heads=6, n_layers=3, hidden_dim=96, num_labels=5),
    ],
    ids=["bert", "roberta", "electra", "distilbert"],
)
def test_model_dims_from_config(config):
    assert ModelDims.from_config(config) == ModelDims(hidden_size=48, num_heads=6, num_layers=3, num_labels=5)


def test_model_dims_from_mapping_and_head_dim():
    d = ModelDims.from_config({"dim": 48, "n_heads": 6, "n_layers": 3, "id2label": {0: "a", 1: "b", 2: "c"}})
    assert d == ModelDims(48, 6, 3, 3)
    assert d.head_dim == 8


def test_model_dims_errors():
    with pytest.raises(ValueError, match="hidden_size"):
        ModelDims.from_config({"num_attention_heads": 2, "num_hidden_layers": 2, "num_labels": 2})
    with pytest.raises(ValueError, match=r"num_heads.*0"):
        ModelDims(hidden_size=64, num_heads=0, num_layers=2, num_labels=2)
    with pytest.raises(ValueError, match="not divisible"):
        ModelDims(hidden_size=64, num_heads=5, num_layers=2, num_labels=2)


@pytest.mark.parametrize("weight", [-0.5, float("nan"), float("inf"), "1", True, None])
def test_weight_must_be_non_negative_number(weight):
    with pytest.raises(ValueError, match=r"weight.*>= 0") as info:
        LogitKD(DIMS, DIMS, weight=weight)
    assert repr(weight) in str(info.value)


def test_weight_and_layers_are_stored():
    a = HidnTinyBERT(DIMS, DIMS, weight=0, layers=[[0, 1], [1, 3]])
    assert a.weight == 0.0 and isinstance(a.weight, float)
    assert a.layers == [[0, 1], [1, 3]]
    assert HidnTinyBERT(DIMS, DIMS).layers is None


def test_layers_rejected_for_adaptors_without_layers():
    with pytest.raises(ValueError, match=r"LogitKD: layers must be None.*'last'"):
        LogitKD(DIMS, DIMS, layers="last")


def test_dims_type_checked():
    with pytest.raises(TypeError, match="teacher must be a ModelDims"):
        LogitKD({"hidden_size": 64}, DIMS)


def test_subclass_name_is_class_name_and_forward_requires_compute_loss():
    class MyAdaptor(Adaptor):
        needs = frozenset({"logits"})

    assert MyAdaptor.name == "MyAdaptor"
    mask = torch.ones(2, 3)
    with pytest.raises(NotImplementedError):
        MyAdaptor(DIMS, DIMS)(Taps(mask, logits=torch.zeros(2, 2)), Taps(mask, logits=torch.zeros(2, 2)))


def test_taps_detach():
    x = torch.ones(2, 3, requires_grad=True)
    taps = Taps(attention_mask=torch.ones(2, 3), logits=x * 2).detach()
    assert not taps.logits.requires_grad and taps.hidden is None


def _hidden_taps(m=2, b=2, t=5, h=64, mask=None):
    mask = torch.ones(b, t, dtype=torch.long) if mask is None else mask
    return Taps(attention_mask=mask, hidden=torch.randn(m, b, t, h))


def test_missing_tap_is_reported():
    a = HidnTinyBERT(DIMS, DIMS)
    with pytest.raises(ValueError, match="HidnTinyBERT needs the student tap 'hidden'"):
        a(_hidden_taps(), Taps(attention_mask=torch.ones(2, 5)))


def test_shape_mismatches_are_reported():
    a = HidnTinyBERT(DIMS, DIMS)
    with pytest.raises(ValueError, match="differ on axis M"):
        a(_hidden_taps(m=2), _hidden_taps(m=3))
    with pytest.raises(ValueError, match=r"hidden must be \(M, B, T, H\)"):
        a(_hidden_taps(), Taps(torch.ones(2, 5), hidden=torch.randn(2, 5, 64)))
    with pytest.raises(ValueError, match="positions but attention_mask has"):
        a(_hidden_taps(), _hidden_taps(mask=torch.ones(2, 6)))
    with pytest.raises(ValueError, match="width 32, but the student's hidden_size is 64"):
        a(_hidden_taps(), _hidden_taps(h=32))
    other = torch.ones(2, 5, dtype=torch.long)
    other[0, 3:] = 0
    with pytest.raises(ValueError, match="attention masks differ"):
        a(_hidden_taps(), _hidden_taps(mask=other))


def test_logit_count_mismatch_is_reported():
    a = LogitKD(DIMS, DIMS)
    mask = torch.ones(2, 3)
    with pytest.raises(ValueError, match="differ on axis C"):
        a(Taps(mask, logits=torch.zeros(2, 2)), Taps(mask, logits=torch.zeros(2, 3)))
