"""Test helpers: eager tiny BERTs and :class:`~adaptors.base.Taps` built from their Hugging Face outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformers import BertForSequenceClassification

from adaptors import ModelDims, Taps
from tests.tiny import make_batch, pad_batch, tiny_bert  # noqa: F401 (re-exported for the adaptor tests)

#: Layer mapping used throughout: teacher layers 1 and 3 (0-based) -> student layers 0 and 1.
TEACHER_LAYERS = [1, 3]
STUDENT_LAYERS = [0, 1]


def eager_bert(layers: int, hidden: int, heads: int, seed: int, num_labels: int = 2) -> BertForSequenceClassification:
    """A tiny random BERT classifier using the eager attention implementation (so attentions are returned)."""
    model = tiny_bert(layers=layers, hidden=hidden, heads=heads, num_labels=num_labels, seed=seed)
    model.set_attn_implementation("eager")
    return model


def dims(model: BertForSequenceClassification) -> ModelDims:
    return ModelDims.from_config(model.config)


@dataclass
class Run:
    """Taps of one forward pass plus the raw model outputs the references use."""

    taps: Taps
    attentions: list[Tensor]  # eager attention probabilities of the mapped layers, each (B, heads, T, T)
    outputs: Any


def run_model(model: BertForSequenceClassification, batch: dict[str, Tensor], layer_ids: list[int]) -> Run:
    """Forward ``batch`` and build taps for the mapped encoder layers ``layer_ids`` (0-based).

    hidden = hidden_states[i + 1], embeddings = hidden_states[0], and queries/keys/values = the layer's self-attention
    Linear applied to its input hidden_states[i], reshaped to (B, heads, T, d_head).
    """
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        output_attentions=True,
        output_hidden_states=True,
    )
    hs = out.hidden_states
    heads = model.config.num_attention_heads
    proj: dict[str, list[Tensor]] = {"query": [], "key": [], "value": []}
    for i in layer_ids:
        self_attn = model.bert.encoder.layer[i].attention.self
        for name in proj:
            x = getattr(self_attn, name)(hs[i])
            b, t, h = x.shape
            proj[name].append(x.view(b, t, heads, h // heads).transpose(1, 2))
    taps = Taps(
        attention_mask=batch["attention_mask"],
        logits=out.logits,
        embeddings=hs[0],
        hidden=torch.stack([hs[i + 1] for i in layer_ids]),
        queries=torch.stack(proj["query"]),
        keys=torch.stack(proj["key"]),
        values=torch.stack(proj["value"]),
    )
    return Run(taps=taps, attentions=[out.attentions[i] for i in layer_ids], outputs=out)


def to_double(taps: Taps) -> Taps:
    """A float64 copy of ``taps`` (the adaptors keep float64 as is), for tight comparisons with the references."""
    return Taps(**{k: v if v is None or not v.is_floating_point() else v.double() for k, v in vars(taps).items()})
