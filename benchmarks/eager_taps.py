"""Taps fed the conventional way (eager attention, ``output_attentions``/``output_hidden_states``) and the switch to
taps captured inside the attention function, for comparing them with the distiller's forward hooks."""

from __future__ import annotations

import copy
from typing import Any

import torch
from transformers import PreTrainedModel

from benchmarks.pieces import Batch
from data.data_module import model_inputs
from helper.distiller import BaseDistiller
from helper.taps import ARCHITECTURES, ModelTaps


def needed_taps(distiller: BaseDistiller, role: str) -> dict[str, set[int]]:
    """Which encoder layers each tap is needed for, over all of the distiller's adaptors.

    Args:
        distiller: The distiller.
        role: ``"teacher"`` or ``"student"``.

    Returns:
        ``{tap: {layer, ...}}`` for the intermediate taps (``"embeddings"`` maps to an empty set).
    """
    side = 1 if role == "teacher" else 0  # layer maps hold (student_layer, teacher_layer) pairs
    out: dict[str, set[int]] = {}
    for adaptor, layer_map in zip(distiller.adaptors, distiller.layer_maps, strict=True):
        for tap in adaptor.needs - {"logits"}:
            out.setdefault(tap, set()).update(pair[side] for pair in layer_map)
    return out


def eager_raw(model: PreTrainedModel, inputs: Batch, needs: dict[str, set[int]]) -> tuple[torch.Tensor, dict]:
    """Logits and taps of one forward pass the conventional way: from the model's eager outputs.

    ``output_attentions=True, output_hidden_states=True``; ``embeddings`` = ``hidden_states[0]``, ``hidden[i]`` =
    ``hidden_states[i + 1]``, and queries/keys/values of layer ``i`` = that layer's own ``nn.Linear`` applied to its
    input ``hidden_states[i]``, reshaped to ``(B, heads, T, d_head)``. Only the (tap, layer) pairs in ``needs`` are
    computed. Module paths come from :data:`helper.taps.ARCHITECTURES`.

    Args:
        model: A classifier with eager attention.
        inputs: Model inputs.
        needs: Output of :func:`needed_taps`.

    Returns:
        The logits and a ``ModelTaps.pop()``-style dict (per-layer taps as ``{layer: tensor}``).
    """
    out = model(**inputs, output_attentions=True, output_hidden_states=True)
    states = out.hidden_states
    names = ARCHITECTURES[model.config.model_type]
    layers = model.base_model.get_submodule(names.layers)
    heads = model.config.num_attention_heads
    raw: dict[str, Any] = {}
    if "embeddings" in needs:
        raw["embeddings"] = states[0]
    if "hidden" in needs:
        raw["hidden"] = {i: states[i + 1] for i in sorted(needs["hidden"])}
    for tap, attr in (("queries", "query"), ("keys", "key"), ("values", "value")):
        for i in sorted(needs.get(tap, ())):
            x = layers[i].get_submodule(getattr(names, attr))(states[i])
            b, t, width = x.shape
            raw.setdefault(tap, {})[i] = x.view(b, t, heads, width // heads).transpose(1, 2)
    return out.logits, raw


def eager_distill(distiller: BaseDistiller, batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """``BaseDistiller.distill`` with taps built from eager outputs instead of the forward hooks.

    Call :meth:`BaseDistiller.remove_taps` first, so the hooks do not also record. Same return value as ``distill``.
    """
    inputs = model_inputs(batch)
    with torch.no_grad():
        t_logits, t_raw = eager_raw(distiller.teacher, inputs, needed_taps(distiller, "teacher"))
    s_logits, s_raw = eager_raw(distiller.student, inputs, needed_taps(distiller, "student"))
    losses = distiller.adaptor_losses(t_raw, t_logits, s_raw, s_logits, batch["attention_mask"])
    return losses, s_logits, t_logits


def use_attention_capture(distiller: BaseDistiller) -> None:
    """Swap the distiller's taps for ones that take q/k/v from the attention function (``capture="attention"``).

    Same tap names and layers as :meth:`BaseDistiller._make_taps`; embeddings and hidden states still come from
    forward hooks.
    """
    for side, model in (("t_taps", distiller.teacher), ("s_taps", distiller.student)):
        taps = getattr(distiller, side)
        if taps is None:
            continue
        taps.remove()
        setattr(distiller, side, ModelTaps(model, taps.needs, taps.layers, capture="attention"))


def eager_copy(model: PreTrainedModel) -> PreTrainedModel:
    """A deep copy of ``model`` switched to eager attention (the original keeps its implementation)."""
    clone = copy.deepcopy(model)
    clone.set_attn_implementation("eager")
    return clone
