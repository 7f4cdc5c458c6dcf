"""Where the tapped tensors live in each supported encoder family, and the names of the taps.

:data:`ARCHITECTURES` maps ``config.model_type`` to the dotted paths of the embedding module, the encoder layers and the
query/key/value projections; :func:`resolve_architecture` finds a model's entry and explains a refusal.
"""

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from adaptors.base import TAP_NAMES as ADAPTOR_TAP_NAMES

MODEL_OUTPUT_NAMES = frozenset({"logits"})
"""Names that come from the model's output rather than from a hook; accepted in ``needs`` and ignored."""

TAP_NAMES = ADAPTOR_TAP_NAMES - MODEL_OUTPUT_NAMES
"""Names :class:`~helper.taps.ModelTaps` can record: what an adaptor may need (:data:`adaptors.TAP_NAMES`) but the
model output."""

PER_LAYER_TAP_NAMES = TAP_NAMES - {"embeddings"}
"""Tap names recorded once per selected encoder layer (as ``{layer_index: Tensor}``)."""

PROJECTION_TAPS = {"queries": "query", "keys": "key", "values": "value"}
"""The projection taps and the :class:`ArchitectureNames` field that locates each."""


class UnsupportedArchitectureError(ValueError):
    """The model is not one of the encoder families whose module layout :class:`ModelTaps` knows."""


@dataclass(frozen=True)
class ArchitectureNames:
    """Where the tapped submodules live in one model family, as dotted paths.

    Attributes:
        embeddings: Path of the embedding module, relative to the base model.
        layers: Path of the ``nn.ModuleList`` of encoder layers, relative to the base model.
        query: Path of the query ``nn.Linear``, relative to one encoder layer.
        key: Path of the key ``nn.Linear``, relative to one encoder layer.
        value: Path of the value ``nn.Linear``, relative to one encoder layer.
        embeddings_project: Optional path (relative to the base model) of a projection applied to the embedding output
            before the encoder (ELECTRA's ``embeddings_project``, present only when ``embedding_size != hidden_size``).
            When the module exists, its output is the ``"embeddings"`` tap.
    """

    embeddings: str
    layers: str
    query: str
    key: str
    value: str
    embeddings_project: str | None = None


BERT_LAYOUT = ArchitectureNames(
    embeddings="embeddings",
    layers="encoder.layer",
    query="attention.self.query",
    key="attention.self.key",
    value="attention.self.value",
)

ARCHITECTURES: dict[str, ArchitectureNames] = {
    "bert": BERT_LAYOUT,
    "roberta": BERT_LAYOUT,
    "camembert": BERT_LAYOUT,  # RoBERTa's layout (CamembertModel is a RobertaModel)
    "xlm-roberta": BERT_LAYOUT,
    "electra": replace(BERT_LAYOUT, embeddings_project="embeddings_project"),
    "distilbert": ArchitectureNames(
        embeddings="embeddings",
        layers="transformer.layer",
        query="attention.q_lin",
        key="attention.k_lin",
        value="attention.v_lin",
    ),
}
"""Module layout per ``config.model_type``. Add an entry to support another family with the same tensor semantics
(absolute position embeddings; attention computed from the q/k projection outputs as they are). Never add rotary or
relative-position families: their q/k are captured before the rotation, or without the relative score terms."""


def supported() -> str:
    """The supported model types, comma-separated."""
    return ", ".join(sorted(ARCHITECTURES))


def first_tensor(output: Any) -> torch.Tensor:
    """The tensor a module returned: layers return a tensor in transformers 5.x and a tuple in 4.x."""
    if isinstance(output, (tuple, list)):
        return output[0]
    return output


def config_int(config: Any, *names: str) -> int:
    """The first of the config attributes ``names`` that holds an integer."""
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise UnsupportedArchitectureError(f"the model config defines none of {', '.join(names)}")


def find_submodule(root: nn.Module, path: str) -> nn.Module | None:
    """The submodule of ``root`` at the dotted ``path``, or None."""
    try:
        return root.get_submodule(path)
    except AttributeError:
        return None


def resolve_architecture(model: nn.Module) -> tuple[nn.Module, str, ArchitectureNames]:
    """The base model (the encoder the hooks go on), the model type and its layout.

    Raises:
        UnsupportedArchitectureError: No ``config.model_type``, or a type missing from :data:`ARCHITECTURES` (with
            why it may or may not be added).
    """
    cls_name = type(model).__name__
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if not model_type:
        raise UnsupportedArchitectureError(
            f"{cls_name} has no config.model_type, so ModelTaps cannot tell its module layout; "
            f"pass a Hugging Face model of a supported family ({supported()})"
        )
    base = getattr(model, "base_model", model)
    names = ARCHITECTURES.get(model_type)
    if names is None:
        missing = [path for path in (BERT_LAYOUT.embeddings, BERT_LAYOUT.layers) if find_submodule(base, path) is None]
        detail = (
            f"its base model {type(base).__name__} has no {' / '.join(repr(p) for p in missing)} module"
            if missing
            else f"its base model {type(base).__name__} looks BERT-like; ARCHITECTURES[{model_type!r}] can be "
            "added only if it uses absolute position embeddings and its attention is exactly "
            "softmax(Q Kᵀ/√d + mask) of the q/k projection outputs. Rotary or relative-position models "
            "(RoFormer, ModernBERT, DeBERTa, position_embedding_type='relative_key') must not be added: their "
            "q/k are captured before the rotation or without the relative terms, so attention recomputed from "
            "the taps would silently be wrong"
        )
        raise UnsupportedArchitectureError(
            f"{cls_name} (model_type={model_type!r}) is not supported by ModelTaps: no module map for "
            f"model_type {model_type!r} and {detail}. Supported model types: {supported()}"
        )
    return base, model_type, names
