"""Tests for helper.taps: hook-based capture of embeddings, hidden states and q/k/v on real tiny HF encoders."""

import copy
import math
from collections.abc import Callable

import pytest
import torch
from torch import nn
from transformers import (
    CamembertConfig,
    CamembertForSequenceClassification,
    Data2VecTextConfig,
    Data2VecTextForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    PreTrainedModel,
    RobertaConfig,
    RobertaForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)

from helper.taps import (
    ATTENTION_CAPTURE,
    PER_LAYER_TAP_NAMES,
    TAP_NAMES,
    ModelTaps,
    UnsupportedArchitectureError,
)
from helper.taps.layouts import first_tensor
from tests.tiny import tiny_bert

LAYERS, HIDDEN, HEADS = 3, 32, 4
SMALL = {"hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "intermediate_size": 64}


def _bert() -> PreTrainedModel:
    return tiny_bert(layers=LAYERS, hidden=HIDDEN, heads=HEADS, seed=3)


def _roberta() -> PreTrainedModel:
    torch.manual_seed(4)
    config = RobertaConfig(vocab_size=2000, max_position_embeddings=40, **SMALL)
    return RobertaForSequenceClassification(config).eval()


def _xlm_roberta() -> PreTrainedModel:
    torch.manual_seed(5)
    config = XLMRobertaConfig(vocab_size=2000, max_position_embeddings=40, **SMALL)
    return XLMRobertaForSequenceClassification(config).eval()


def _electra() -> PreTrainedModel:
    torch.manual_seed(6)
    # embedding_size != hidden_size: ELECTRA then projects the embeddings with `embeddings_project`.
    config = ElectraConfig(vocab_size=2000, embedding_size=16, max_position_embeddings=40, **SMALL)
    model = ElectraForSequenceClassification(config).eval()
    assert hasattr(model.electra, "embeddings_project")
    return model


def _distilbert() -> PreTrainedModel:
    torch.manual_seed(7)
    config = DistilBertConfig(
        vocab_size=2000, dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=64, max_position_embeddings=40
    )
    return DistilBertForSequenceClassification(config).eval()


# model factory, path of the encoder layers (from the base model), path of q/k/v inside a layer
FAMILIES: dict[str, tuple[Callable[[], PreTrainedModel], str, tuple[str, str, str]]] = {
    "bert": (_bert, "encoder.layer", ("attention.self.query", "attention.self.key", "attention.self.value")),
    "roberta": (_roberta, "encoder.layer", ("attention.self.query", "attention.self.key", "attention.self.value")),
    "xlm-roberta": (
        _xlm_roberta,
        "encoder.layer",
        ("attention.self.query", "attention.self.key", "attention.self.value"),
    ),
    "electra": (_electra, "encoder.layer", ("attention.self.query", "attention.self.key", "attention.self.value")),
    "distilbert": (_distilbert, "transformer.layer", ("attention.q_lin", "attention.k_lin", "attention.v_lin")),
}


def _inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def _hook_counts(model: nn.Module) -> dict[str, int]:
    return {name: len(module._forward_hooks) + len(module._forward_pre_hooks) for name, module in model.named_modules()}


def _hook_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in after if after[name] != before[name]}


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.view(*x.shape[:-1], heads, -1).transpose(1, 2)


# ---------------------------------------------------------------------------------------------- per-family correctness


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_captures_match_hf_outputs_and_eager_attention(family: str, tiny_batch: dict[str, torch.Tensor]) -> None:
    factory, layers_path, qkv_paths = FAMILIES[family]
    model = factory()
    assert model.config.model_type == family
    # transformers 5.x builds these models with SDPA by default; the hooks must work with it.
    assert model.config._attn_implementation == "sdpa"
    inputs = _inputs(tiny_batch)

    with torch.no_grad():
        reference = model(**inputs, output_hidden_states=True)
        eager = copy.deepcopy(model)
        eager.set_attn_implementation("eager")
        assert eager.config._attn_implementation == "eager"
        eager_attentions = eager(**inputs, output_attentions=True).attentions

    with ModelTaps(model, needs=TAP_NAMES | {"logits"}) as taps:
        assert (taps.num_layers, taps.num_heads, taps.hidden_size) == (LAYERS, HEADS, HIDDEN)
        with torch.no_grad():
            tapped = model(**inputs)
        record = taps.pop()
    assert model.config._attn_implementation == "sdpa"

    # Hooks do not change the model's outputs.
    assert torch.equal(tapped.logits, reference.logits)
    assert set(record) == TAP_NAMES

    hidden_states = reference.hidden_states
    assert len(hidden_states) == LAYERS + 1
    assert record["embeddings"].shape == (3, 10, HIDDEN)
    assert torch.equal(record["embeddings"], hidden_states[0])
    assert list(record["hidden"]) == list(range(LAYERS))
    for i in range(LAYERS):
        assert torch.equal(record["hidden"][i], hidden_states[i + 1])

    mask = inputs["attention_mask"]
    additive = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    valid_rows = mask.bool()
    head_dim = HIDDEN // HEADS
    layer_modules = model.base_model.get_submodule(layers_path)
    for i in range(LAYERS):
        q, k, v = record["queries"][i], record["keys"][i], record["values"][i]
        for t in (q, k, v):
            assert t.shape == (3, HEADS, 10, head_dim)
        # The projections are the q/k/v Linear outputs (bias included) applied to the layer input.
        with torch.no_grad():
            for captured, path in zip((q, k, v), qkv_paths, strict=True):
                linear = layer_modules[i].get_submodule(path)
                expected = _split_heads(linear(hidden_states[i]), HEADS)
                torch.testing.assert_close(captured, expected, rtol=0, atol=1e-6)
        # softmax(Q Kᵀ / sqrt(d) + mask) reproduces eager attention probabilities on valid query rows.
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_dim) + additive, dim=-1)
        eager_probs = eager_attentions[i]
        assert eager_probs.shape == probs.shape
        for b in range(mask.shape[0]):
            torch.testing.assert_close(
                probs[b][:, valid_rows[b]], eager_probs[b][:, valid_rows[b]], rtol=1e-5, atol=1e-6
            )
        # Sanity: masked keys get no probability, so the comparison above is not vacuous.
        assert probs[1][:, :, ~valid_rows[1]].abs().max() == 0
        assert probs[1][:, valid_rows[1]].sum(-1).sub(1).abs().max() < 1e-5


def test_electra_embeddings_are_the_projected_embeddings(tiny_batch: dict[str, torch.Tensor]) -> None:
    model = _electra()
    with ModelTaps(model, needs={"embeddings"}) as taps, torch.no_grad():
        model(**_inputs(tiny_batch))
        embeddings = taps.pop()["embeddings"]
        raw = model.electra.embeddings(input_ids=tiny_batch["input_ids"])
    assert raw.shape[-1] == 16
    assert embeddings.shape[-1] == HIDDEN
    torch.testing.assert_close(embeddings, model.electra.embeddings_project(raw), rtol=0, atol=0)


def test_electra_without_projection_uses_embedding_output(tiny_batch: dict[str, torch.Tensor]) -> None:
    torch.manual_seed(0)
    model = ElectraForSequenceClassification(
        ElectraConfig(vocab_size=2000, embedding_size=HIDDEN, max_position_embeddings=40, **SMALL)
    ).eval()
    assert not hasattr(model.electra, "embeddings_project")
    with ModelTaps(model, needs={"embeddings"}) as taps, torch.no_grad():
        out = model(**_inputs(tiny_batch), output_hidden_states=True)
        assert torch.equal(taps.pop()["embeddings"], out.hidden_states[0])


def test_base_model_can_be_tapped_directly(tiny_batch: dict[str, torch.Tensor]) -> None:
    model = _bert()
    with ModelTaps(model.bert, needs={"hidden"}, layers=[2]) as taps, torch.no_grad():
        out = model.bert(**_inputs(tiny_batch))
        assert torch.equal(taps.pop()["hidden"][2], out.last_hidden_state)


def test_projections_are_views_of_the_linear_output(tiny_batch: dict[str, torch.Tensor]) -> None:
    model = _bert()
    raw: dict[str, torch.Tensor] = {}
    query = model.bert.encoder.layer[1].attention.self.query
    handle = query.register_forward_hook(lambda module, args, output: raw.setdefault("q", output))
    with ModelTaps(model, needs={"queries"}, layers=[1]) as taps, torch.no_grad():
        model(**_inputs(tiny_batch))
        q = taps.pop()["queries"][1]
    handle.remove()
    assert q._is_view()
    assert q.untyped_storage().data_ptr() == raw["q"].untyped_storage().data_ptr()
    assert torch.equal(q, raw["q"].view(3, 10, HEADS, HIDDEN // HEADS).transpose(1, 2))


def test_layer_subset_and_logits_only(tiny_batch: dict[str, torch.Tensor]) -> None:
    model = _bert()
    with ModelTaps(model, needs=["hidden", "keys"], layers=(2, 0, 2)) as taps, torch.no_grad():
        assert taps.layers == (0, 2)
        model(**_inputs(tiny_batch))
        record = taps.pop()
    assert set(record) == {"hidden", "keys"}
    assert list(record["hidden"]) == [0, 2]
    assert list(record["keys"]) == [0, 2]

    logits_only = ModelTaps(model, needs={"logits"})
    assert logits_only.num_hooks == 0
    assert logits_only.pop() == {}


# ---------------------------------------------------------------------------------------------------- hook bookkeeping


def test_only_requested_hooks_are_registered_and_removed() -> None:
    model = _bert()
    before = _hook_counts(model)

    taps = ModelTaps(model, needs={"hidden"}, layers=[1])
    delta = _hook_delta(before, _hook_counts(model))
    # One hook on the tapped layer, plus the pre/post pair on the base model that delimits a forward pass.
    assert delta == {"bert.encoder.layer.1": 1, "bert": 2}
    assert taps.num_hooks == 3
    taps.remove()
    assert _hook_counts(model) == before
    assert taps.num_hooks == 0
    taps.remove()  # idempotent

    with ModelTaps(model, needs={"queries", "values", "embeddings"}, layers=[0, 2]) as taps:
        delta = _hook_delta(before, _hook_counts(model))
        assert delta == {
            "bert": 2,
            "bert.embeddings": 1,
            "bert.encoder.layer.0.attention.self.query": 1,
            "bert.encoder.layer.0.attention.self.value": 1,
            "bert.encoder.layer.2.attention.self.query": 1,
            "bert.encoder.layer.2.attention.self.value": 1,
        }
    assert _hook_counts(model) == before

    with ModelTaps(model, needs=TAP_NAMES):
        delta = _hook_delta(before, _hook_counts(model))
        assert sum(delta.values()) == 2 + 1 + LAYERS * 4
        for i in range(LAYERS):
            assert delta[f"bert.encoder.layer.{i}"] == 1
            for proj in ("query", "key", "value"):
                assert delta[f"bert.encoder.layer.{i}.attention.self.{proj}"] == 1
    assert _hook_counts(model) == before


def test_no_recording_after_remove(tiny_batch: dict[str, torch.Tensor]) -> None:
    model = _bert()
    with ModelTaps(model, needs={"hidden"}) as taps:
        pass
    with torch.no_grad():
        model(**_inputs(tiny_batch))
    with pytest.raises(RuntimeError, match="nothing was recorded"):
        taps.pop()


def test_pop_clears_and_keeps_only_the_last_forward(tiny_batch: dict[str, torch.Tensor]) -> None:
    model = _bert()
    inputs = _inputs(tiny_batch)
    other = {"input_ids": inputs["input_ids"][:2, :5], "attention_mask": inputs["attention_mask"][:2, :5]}
    with ModelTaps(model, needs={"hidden", "embeddings"}) as taps, torch.no_grad():
        with pytest.raises(RuntimeError, match="nothing was recorded"):
            taps.pop()
        model(**inputs)
        out = model(**other, output_hidden_states=True)
        record = taps.pop()
        assert record["embeddings"].shape == (2, 5, HIDDEN)
        assert torch.equal(record["hidden"][LAYERS - 1], out.hidden_states[-1])
        with pytest.raises(RuntimeError, match="nothing was recorded"):
            taps.pop()


def test_pop_reports_an_incomplete_record(tiny_batch: dict[str, torch.Tensor]) -> None:
    model = _bert()

    def fail(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        raise RuntimeError("boom")

    with ModelTaps(model, needs={"hidden"}) as taps, torch.no_grad():
        model(**_inputs(tiny_batch))  # a complete pass, not popped: its tensors must not fill the gaps below
        handle = model.bert.encoder.layer[1].register_forward_hook(fail)
        with pytest.raises(RuntimeError, match="boom"):
            model(**_inputs(tiny_batch))
        handle.remove()
        # Layer 1's output was recorded (our hook ran before the failing one); layer 2 never ran.
        with pytest.raises(RuntimeError, match=r"recorded no hidden\[2\]$"):
            taps.pop()


def test_first_tensor_handles_tensor_and_tuple_layer_outputs() -> None:
    x = torch.zeros(2)
    assert first_tensor(x) is x
    assert first_tensor((x, None)) is x


# ------------------------------------------------------------------------------------------------------------ autograd


def test_gradients_flow_through_student_captures(tiny_batch: dict[str, torch.Tensor]) -> None:
    student = _bert().train()
    with ModelTaps(student, needs={"hidden", "queries", "embeddings"}) as taps:
        student(**_inputs(tiny_batch))
        record = taps.pop()
    assert all(t.requires_grad for t in record["hidden"].values())
    loss = record["hidden"][0].pow(2).mean() + record["queries"][2].pow(2).mean()
    loss.backward()
    layer0 = student.bert.encoder.layer[0]
    assert layer0.output.dense.weight.grad is not None and layer0.output.dense.weight.grad.abs().sum() > 0
    query2 = student.bert.encoder.layer[2].attention.self.query.weight.grad
    assert query2 is not None and query2.abs().sum() > 0
    assert student.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    # Nothing past the captured tensors gets gradient: the classifier did not take part in the loss.
    assert student.classifier.weight.grad is None


def test_teacher_captures_under_no_grad_have_no_graph(tiny_teacher: nn.Module, tiny_batch) -> None:
    with ModelTaps(tiny_teacher, needs={"hidden", "values"}, layers=[3]) as taps, torch.no_grad():
        tiny_teacher(**_inputs(tiny_batch))
        record = taps.pop()
    assert not record["hidden"][3].requires_grad and record["hidden"][3].grad_fn is None
    assert not record["values"][3].requires_grad


def test_gradient_checkpointing_recompute_is_not_recorded(tiny_batch: dict[str, torch.Tensor]) -> None:
    student = _bert()
    student.activation_checkpointing_enable()  # v5 name of gradient_checkpointing_enable
    student.train()
    calls: list[int] = []
    query = student.bert.encoder.layer[0].attention.self.query
    handle = query.register_forward_hook(lambda module, args, output: calls.append(1))
    with ModelTaps(student, needs={"queries", "hidden"}) as taps:
        student(**_inputs(tiny_batch))
        record = taps.pop()
        assert len(calls) == 1
        record["queries"][0].pow(2).mean().backward()
        assert len(calls) == 2  # the backward pass re-ran layer 0 ...
        with pytest.raises(RuntimeError, match="nothing was recorded"):
            taps.pop()  # ... without recording anything
    handle.remove()
    assert query.weight.grad is not None and query.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------------- validation


def test_unsupported_architecture_names_the_problem() -> None:
    torch.manual_seed(0)
    gpt2 = GPT2ForSequenceClassification(GPT2Config(vocab_size=100, n_embd=16, n_layer=1, n_head=2, n_positions=16))
    before = _hook_counts(gpt2)
    with pytest.raises(UnsupportedArchitectureError) as info:
        ModelTaps(gpt2, needs={"hidden"})
    message = str(info.value)
    for part in ("GPT2ForSequenceClassification", "'gpt2'", "'embeddings'", "'encoder.layer'", "bert", "distilbert"):
        assert part in message
    assert isinstance(info.value, ValueError)
    assert _hook_counts(gpt2) == before

    with pytest.raises(UnsupportedArchitectureError, match="no config.model_type"):
        ModelTaps(nn.Linear(2, 2), needs={"hidden"})


def test_unmapped_bert_like_family_is_refused_with_a_hint() -> None:
    torch.manual_seed(0)
    config = Data2VecTextConfig(vocab_size=100, max_position_embeddings=40, **SMALL)
    model = Data2VecTextForSequenceClassification(config)
    with pytest.raises(UnsupportedArchitectureError) as info:
        ModelTaps(model, needs={"hidden"})
    message = str(info.value)
    assert "'data2vec-text'" in message and "looks BERT-like" in message and "ARCHITECTURES['data2vec-text']" in message
    assert "only if it uses absolute position embeddings" in message and "must not be added" in message


def test_camembert_has_robertas_layout() -> None:
    torch.manual_seed(0)
    model = CamembertForSequenceClassification(CamembertConfig(vocab_size=100, max_position_embeddings=40, **SMALL))
    with ModelTaps(model, needs={"hidden", "queries"}, layers=[1]) as taps:
        model(input_ids=torch.tensor([[0, 5, 6, 2]]))
        captured = taps.pop()
    assert captured["hidden"][1].shape == (1, 4, HIDDEN)
    assert captured["queries"][1].shape == (1, HEADS, 4, HIDDEN // HEADS)


def test_missing_submodule_of_a_known_family_is_named_and_nothing_is_hooked() -> None:
    model = _bert()
    model.bert.encoder.layer[1].attention.self = nn.Identity()
    before = _hook_counts(model)
    with pytest.raises(UnsupportedArchitectureError, match=r"BertModel\.encoder\.layer\.1\.attention\.self\.query"):
        ModelTaps(model, needs={"hidden", "queries"})
    assert _hook_counts(model) == before
    # Taps that do not need the missing module still work.
    ModelTaps(model, needs={"hidden"}).remove()


@pytest.mark.parametrize("layers", [[0, 4], [-1], [7]])
def test_out_of_range_layers(tiny_teacher: nn.Module, layers: list[int]) -> None:
    bad = layers[-1]
    with pytest.raises(ValueError, match=rf"{bad} is out of range.*4 encoder layers.*0\.\.3"):
        ModelTaps(tiny_teacher, needs={"hidden"}, layers=layers)


def test_non_integer_layers(tiny_teacher: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"'1' is not an integer.*True is not an integer"):
        ModelTaps(tiny_teacher, needs={"hidden"}, layers=["1", True])


def test_unknown_tap_names(tiny_teacher: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"'attentions', 'hiden'.*embeddings") as info:
        ModelTaps(tiny_teacher, needs={"hiden", "attentions", "logits"})
    assert not isinstance(info.value, UnsupportedArchitectureError)
    assert _hook_counts(tiny_teacher) == {name: 0 for name, _ in tiny_teacher.named_modules()}


def test_single_string_need_is_one_name(tiny_teacher: nn.Module) -> None:
    with ModelTaps(tiny_teacher, needs="hidden") as taps:
        assert taps.needs == frozenset({"hidden"})


# ---------------------------------------------------------------------------------------------- capture="attention"

QKV = {"queries", "keys", "values"}


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_attention_capture_records_what_the_hooks_record(
    family: str, implementation: str, tiny_batch: dict[str, torch.Tensor]
) -> None:
    model = FAMILIES[family][0]()
    model.set_attn_implementation(implementation)
    inputs = _inputs(tiny_batch)
    assert not inputs["attention_mask"].all()  # padding is part of the comparison
    with ModelTaps(model, needs=TAP_NAMES, layers=[0, 2]) as taps, torch.no_grad():
        want_logits = model(**inputs).logits
        want = taps.pop()
    with ModelTaps(model, needs=TAP_NAMES, layers=[0, 2], capture="attention") as taps, torch.no_grad():
        assert model.config._attn_implementation == ATTENTION_CAPTURE[implementation]
        got_logits = model(**inputs).logits
        got = taps.pop()
    assert model.config._attn_implementation == implementation  # restored by remove()
    assert torch.equal(got_logits, want_logits)  # the same kernel ran
    assert set(got) == set(want) == TAP_NAMES
    assert torch.equal(got["embeddings"], want["embeddings"])
    for name in PER_LAYER_TAP_NAMES:
        assert list(got[name]) == [0, 2]
        for i in (0, 2):
            assert torch.equal(got[name][i], want[name][i]), (name, i)


def test_attention_capture_registers_no_projection_hooks_and_shares_the_switch(tiny_batch) -> None:
    model = _bert()
    before = _hook_counts(model)
    first = ModelTaps(model, needs=QKV, layers=[1], capture="attention")
    assert sum(_hook_delta(before, _hook_counts(model)).values()) == 2  # begin/end of the forward pass only
    assert first.num_hooks == 3  # ... plus one attention recorder
    second = ModelTaps(model, needs={"queries"}, layers=[0, 1], capture="attention")
    with torch.no_grad():
        model(**_inputs(tiny_batch))
    assert list(first.pop()["keys"]) == [1] and list(second.pop()["queries"]) == [0, 1]
    first.remove()
    assert model.config._attn_implementation == ATTENTION_CAPTURE["sdpa"]  # the second still needs it
    with torch.no_grad():
        model(**_inputs(tiny_batch))
    assert list(second.pop()["queries"]) == [0, 1]
    second.remove()
    second.remove()  # idempotent
    assert model.config._attn_implementation == "sdpa" and _hook_counts(model) == before and second.num_hooks == 0


def test_attention_capture_rejects_what_it_cannot_wrap(tiny_teacher: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"capture='projections': expected one of \['hooks', 'attention'\]"):
        ModelTaps(tiny_teacher, needs=QKV, capture="projections")
    tiny_teacher.config._attn_implementation = "flex_attention"
    before = _hook_counts(tiny_teacher)
    with pytest.raises(UnsupportedArchitectureError, match="'flex_attention'.*capture='hooks'"):
        ModelTaps(tiny_teacher, needs=QKV, capture="attention")
    assert _hook_counts(tiny_teacher) == before and tiny_teacher.config._attn_implementation == "flex_attention"
    # Without q/k/v there is nothing to take from the attention function, whatever the implementation.
    with ModelTaps(tiny_teacher, needs={"hidden"}, capture="attention") as taps:
        assert taps.num_hooks == 2 + 4  # begin/end and one per layer of the 4-layer teacher


def test_attention_capture_follows_gradients_and_skips_checkpoint_recompute(tiny_batch) -> None:
    model = _bert().train()
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    model.activation_checkpointing_enable()  # v5 name of gradient_checkpointing_enable
    with ModelTaps(model, needs=QKV, layers=[1], capture="attention") as taps:
        model(**_inputs(tiny_batch))
        record = taps.pop()
        record["queries"][1].sum().backward()  # recomputes layer 1 during backward
        assert taps._record == {}
    assert model.bert.encoder.layer[1].attention.self.query.weight.grad is not None


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_adaptor_losses_equal_with_hooks_and_attention_capture(
    implementation: str, tiny_batch: dict[str, torch.Tensor]
) -> None:
    from helper.distiller import BaseDistiller

    mix = ["AttnMiniLM", "ValMiniLM", "AttnTinyBERT", "HidnTinyBERT", "EmbdTinyBERT", "LogitKD"]
    teacher = tiny_bert(layers=4, heads=4, seed=0)
    student = tiny_bert(layers=2, hidden=32, heads=4, seed=1)
    for model in (teacher, student):
        model.set_attn_implementation(implementation)
    batch = {**tiny_batch, "labels": torch.tensor([0, 1, 1])}
    hooks = BaseDistiller(teacher, student, mix).eval()
    want, want_logits, _ = hooks.distill(batch)
    hooks.remove_taps()

    capture = BaseDistiller(teacher, student, mix).eval()
    capture.adaptors.load_state_dict(hooks.adaptors.state_dict())
    capture.remove_taps()
    needs = set().union(*(a.needs for a in capture.adaptors)) - {"logits"}
    t_layers = sorted({t for m in capture.layer_maps for _, t in m})
    s_layers = sorted({s for m in capture.layer_maps for s, _ in m})
    capture.t_taps = ModelTaps(teacher, needs, t_layers, capture="attention")
    capture.s_taps = ModelTaps(student, needs, s_layers, capture="attention")
    got, got_logits, _ = capture.distill(batch)
    capture.remove_taps()

    assert set(got) == set(want) == set(mix)
    for name in mix:
        assert torch.isfinite(got[name]) and got[name] > 0, name
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0, msg=name)
    torch.testing.assert_close(got_logits, want_logits, rtol=0, atol=0)
    assert teacher.config._attn_implementation == student.config._attn_implementation == implementation
