"""Registry, lookup and the spec builder."""

from __future__ import annotations

import re

import pytest
import torch
import yaml

import adaptors
from adaptors import (
    ADAPTORS,
    Adaptor,
    HidnTinyBERT,
    LogitKD,
    ModelDims,
    UnknownAdaptorError,
    build_adaptors,
    get_adaptor,
    register,
)
from adaptors import registry as registry_module

T = ModelDims(hidden_size=64, num_heads=4, num_layers=4, num_labels=2)
S = ModelDims(hidden_size=32, num_heads=2, num_layers=2, num_labels=2)

EXPECTED_ATTRS = {
    # name: (needs, kind, default_layers)
    "LogitKD": ({"logits"}, "logit", None),
    "LogitCE": ({"logits"}, "logit", None),
    "LogitMSE": ({"logits"}, "logit", None),
    "LogitBinaryKD": ({"logits"}, "logit", None),
    "LogitBCE": ({"logits"}, "logit", None),
    "AttnTinyBERT": ({"queries", "keys"}, "inter", "uniform"),
    "AttnMiniLM": ({"queries", "keys"}, "inter", "last"),
    "ValMiniLM": ({"values"}, "inter", "last"),
    "HidnTinyBERT": ({"hidden"}, "inter", "uniform"),
    "EmbdTinyBERT": ({"embeddings"}, "inter", None),
    "HidnPKD": ({"hidden"}, "inter", "uniform_but_last"),
    "HidnCos": ({"hidden"}, "inter", "last"),
    "AttnCE": ({"queries", "keys"}, "inter", "uniform"),
    "RelMiniLMv2": ({"queries", "keys", "values"}, "inter", "last"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_ATTRS))
def test_registered_class_attributes(name):
    cls = ADAPTORS[name]
    needs, kind, default_layers = EXPECTED_ATTRS[name]
    assert cls.name == name == cls.__name__
    assert cls.needs == frozenset(needs) and isinstance(cls.needs, frozenset)
    assert (cls.kind, cls.default_layers) == (kind, default_layers)
    assert get_adaptor(name) is cls
    assert "arXiv:" in cls.__doc__ and "20" in cls.__doc__  # cites its paper


def test_registry_holds_exactly_the_builtins():
    assert sorted(ADAPTORS) == sorted(EXPECTED_ATTRS)
    assert adaptors.ADAPTORS is registry_module.ADAPTORS


@pytest.mark.parametrize(
    "typo, suggestion",
    [
        ("LogitKd", "LogitKD"),
        ("logitkd", "LogitKD"),
        ("AttnMiniLm", "AttnMiniLM"),
        ("HidnTinyBert", "HidnTinyBERT"),
        ("ValMinLM", "ValMiniLM"),
    ],
)
def test_unknown_name_lists_valid_names_and_suggests(typo, suggestion):
    with pytest.raises(KeyError) as info:
        get_adaptor(typo)
    assert isinstance(info.value, ValueError) and isinstance(info.value, UnknownAdaptorError)
    msg = str(info.value)
    assert f"did you mean {suggestion!r}" in msg
    assert ", ".join(sorted(ADAPTORS)) in msg


def test_unknown_name_without_close_match():
    with pytest.raises(ValueError, match=r"unknown adaptor 'Zzzzz'; valid adaptors: AttnCE, AttnMiniLM, ") as info:
        get_adaptor("Zzzzz")
    assert "did you mean" not in str(info.value)


def test_register_rejects_duplicates_and_bad_classes(monkeypatch):
    monkeypatch.setattr(registry_module, "ADAPTORS", dict(ADAPTORS))
    with pytest.raises(ValueError, match="'LogitKD' is already registered by adaptors.logits.LogitKD"):

        @register
        class LogitKD(Adaptor):  # noqa: F811 - same name on purpose
            needs = frozenset({"logits"})
            kind = "logit"

    with pytest.raises(TypeError, match="expects an Adaptor subclass"):
        register(dict)

    with pytest.raises(ValueError, match=r"needs must be.*kind must be one of.*default_layers must be one of"):

        @register
        class Broken(Adaptor):
            needs = frozenset({"attentions"})
            kind = "middle"
            default_layers = "all"

    @register
    class MyLoss(Adaptor):
        needs = frozenset({"hidden"})
        default_layers = "last"

    assert registry_module.ADAPTORS["MyLoss"] is MyLoss and MyLoss.name == "MyLoss"
    assert "MyLoss" not in ADAPTORS  # the real registry is untouched


def _summary(built):
    return [(type(a).__name__, a.weight) for a in built]


def test_single_name_and_list_of_names():
    assert _summary(build_adaptors("LogitKD", T, S)) == [("LogitKD", 1.0)]
    built = build_adaptors(["AttnMiniLM", "ValMiniLM", "LogitMSE"], T, S)
    assert _summary(built) == [("AttnMiniLM", 1.0), ("ValMiniLM", 1.0), ("LogitMSE", 1.0)]


def test_name_weight_pairs():
    built = build_adaptors([["LogitKD", 0.5], ("HidnTinyBERT", 1)], T, S)
    assert _summary(built) == [("LogitKD", 0.5), ("HidnTinyBERT", 1.0)]
    assert _summary(build_adaptors(("LogitKD", 0.5), T, S)) == [("LogitKD", 0.5)]
    built = build_adaptors([("LogitKD", 0.5, {"temperature": 2}), ("AttnMiniLM", {"relation_heads": 2})], T, S)
    assert built[0].temperature == 2.0 and built[1].num_relation_heads == 2
    (kd,) = build_adaptors(["LogitKD", {"temperature": 3}], T, S)  # a bare (name, options) pair
    assert kd.temperature == 3.0
    # ...but a name followed by a {name: options} entry is a list of two entries
    assert _summary(build_adaptors(["LogitKD", {"ValMiniLM": 0.5}], T, S)) == [("LogitKD", 1.0), ("ValMiniLM", 0.5)]


def test_dicts_with_name():
    built = build_adaptors(
        [{"name": "LogitKD", "weight": 0.5, "temperature": 4}, {"name": "HidnTinyBERT", "layers": [[0, 1], [1, 3]]}],
        T,
        S,
    )
    assert _summary(built) == [("LogitKD", 0.5), ("HidnTinyBERT", 1.0)]
    assert built[0].temperature == 4.0
    assert built[1].layers == [[0, 1], [1, 3]]
    assert _summary(build_adaptors({"name": "LogitCE", "weight": 2}, T, S)) == [("LogitCE", 2.0)]


def test_mapping_form():
    built = build_adaptors(
        {"LogitKD": 0.5, "AttnMiniLM": {"weight": 1.0, "relation_heads": 4}, "ValMiniLM": None}, T, S
    )
    assert _summary(built) == [("LogitKD", 0.5), ("AttnMiniLM", 1.0), ("ValMiniLM", 1.0)]
    assert built[1].relation_heads == 4


def test_yaml_config_forms():
    text = """
    a: [LogitKD, AttnMiniLM]
    b:
      - [LogitKD, 0.5]
      - {name: HidnTinyBERT, layers: [[0, 1], [1, 3]]}
      - EmbdTinyBERT: {weight: 0.1}
    c:
      LogitKD: 0.5
      AttnMiniLM: {weight: 1.0, relation_heads: 4}
    """
    cfg = yaml.safe_load(text)
    assert _summary(build_adaptors(cfg["a"], T, S)) == [("LogitKD", 1.0), ("AttnMiniLM", 1.0)]
    built = build_adaptors(cfg["b"], T, S)
    assert _summary(built) == [("LogitKD", 0.5), ("HidnTinyBERT", 1.0), ("EmbdTinyBERT", 0.1)]
    assert built[1].layers == [[0, 1], [1, 3]]
    assert _summary(build_adaptors(cfg["c"], T, S)) == [("LogitKD", 0.5), ("AttnMiniLM", 1.0)]


def test_instances_pass_through():
    kd = LogitKD(T, S, weight=0.3)
    built = build_adaptors([kd, "HidnTinyBERT"], T, S)
    assert built[0] is kd and isinstance(built[1], HidnTinyBERT)
    assert build_adaptors(kd, T, S)[0] is kd


def test_instance_built_for_other_models_is_rejected():
    with pytest.raises(ValueError, match="LogitKD instance was built for student"):
        build_adaptors([LogitKD(T, T)], T, S)


def test_empty_spec():
    assert build_adaptors(None, T, S) == []
    assert build_adaptors([], T, S) == []
    assert build_adaptors({}, T, S) == []


def test_defaults_only_where_accepted_and_not_set():
    built = build_adaptors(
        ["LogitKD", {"name": "LogitCE", "temperature": 2.0}, "AttnMiniLM", "HidnTinyBERT"],
        T,
        S,
        defaults={"temperature": 4.0, "layers": "last", "projection": True},
    )
    kd, ce, attn, hidn = built
    assert kd.temperature == 4.0  # filled in
    assert ce.temperature == 2.0  # the user's value wins
    assert not hasattr(attn, "temperature")  # not accepted by AttnMiniLM: skipped, no error
    assert attn.layers == "last" and hidn.layers == "last"
    assert kd.layers is None  # logit adaptors use no layers, so the default does not apply
    assert hidn.projection is True


def test_all_problems_reported_at_once():
    spec = [
        "LogitKd",  # unknown, close to LogitKD
        {"name": "LogitKD", "weight": -1, "temperature": 0},  # bad weight and bad option together
        {"name": "HidnTinyBERT", "projection": False},  # widths differ
        {"name": "HidnPKD", "temprature": 2},  # unknown option key
        {"name": "AttnMiniLM", "relation_heads": 3},  # does not divide 64 / 32
        "AttnTinyBERT",  # head counts differ
        "AttnMiniLM",  # duplicate
        42,  # not an entry at all
        ("ValMiniLM", "heavy"),  # not a weight
    ]
    with pytest.raises(ValueError) as info:
        build_adaptors(spec, T, S)
    msg = str(info.value)
    expected_fragments = [
        "spec[0]: unknown adaptor 'LogitKd' (did you mean 'LogitKD'?)",
        "spec[1]: LogitKD: weight must be a finite number >= 0, got -1",
        "spec[1]: LogitKD: temperature must be a finite number > 0, got 0",
        "spec[2]: HidnTinyBERT: student hidden_size=32 differs from teacher hidden_size=64",
        "spec[3]: HidnPKD has no option 'temprature'; accepted options: layers, projection, weight",
        "spec[4]: AttnMiniLM: relation_heads=3 must divide both hidden sizes (teacher 64, student 32)",
        "spec[5]: AttnTinyBERT: teacher has num_heads=4 but student has num_heads=2",
        "spec[6]: duplicate adaptor 'AttnMiniLM' (already given at spec[4])",
        "spec[7]: expected an adaptor name",
        "spec[8]: expected (name, weight), (name, options) or (name, weight, options), got ('ValMiniLM', 'heavy')",
    ]
    for fragment in expected_fragments:
        assert fragment in msg, f"missing {fragment!r} in:\n{msg}"
    assert msg.startswith(f"invalid adaptor spec ({len(expected_fragments)} problems)")
    assert len(re.findall(r"^  - ", msg, flags=re.M)) == len(expected_fragments)


def test_unknown_option_suggests_close_key():
    with pytest.raises(ValueError, match=r"LogitKD has no option 'temprature' \(did you mean 'temperature'\?\)"):
        build_adaptors({"LogitKD": {"temprature": 4}}, T, S)


def test_unknown_option_lists_accepted_options():
    with pytest.raises(
        ValueError, match=r"AttnMiniLM has no option 'heads'; accepted options: layers, relation_heads, weight"
    ):
        build_adaptors({"AttnMiniLM": {"heads": 4}}, T, S)
    with pytest.raises(ValueError, match=r"LogitKD has no option 'layers'; accepted options: temperature, weight"):
        build_adaptors({"name": "LogitKD", "layers": "last"}, T, S)


def test_duplicates_across_forms():
    with pytest.raises(ValueError, match=r"duplicate adaptor 'LogitKD'"):
        build_adaptors([LogitKD(T, S), ("LogitKD", 0.5)], T, S)


def test_bad_spec_types():
    with pytest.raises(ValueError, match=r"spec: expected an adaptor name, a list"):
        build_adaptors(3.5, T, S)
    with pytest.raises(ValueError, match=r"a mapping entry needs a 'name' key"):
        build_adaptors([{"LogitKD": 1, "ValMiniLM": 2}], T, S)
    with pytest.raises(ValueError, match=r"weight given twice"):
        build_adaptors([("LogitKD", 0.5, {"weight": 1})], T, S)
    with pytest.raises(ValueError, match=r"conflicting names 'LogitKD' and name='LogitCE'"):
        build_adaptors({"LogitKD": {"name": "LogitCE"}}, T, S)
    with pytest.raises(ValueError, match=r"expected a weight \(number\), a mapping of options or None for 'LogitKD'"):
        build_adaptors({"LogitKD": True}, T, S)
    with pytest.raises(ValueError, match=r"defaults: expected a mapping"):
        build_adaptors("LogitKD", T, S, defaults=[("temperature", 4)])
    with pytest.raises(TypeError, match="teacher must be a ModelDims"):
        build_adaptors("LogitKD", {"hidden_size": 64}, S)


def test_built_adaptors_are_modules_with_projection_params():
    built = build_adaptors(["HidnTinyBERT", "LogitKD"], T, S)
    assert [n for n, _ in built[0].named_parameters()] == ["proj.weight", "proj.bias"]
    assert "weight=1.0" in repr(built[0]) and "projection=True" in repr(built[0])
    assert all(isinstance(a, torch.nn.Module) for a in built)
