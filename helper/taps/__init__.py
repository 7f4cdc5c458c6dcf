"""Capture the intermediate tensors distillation losses need, with forward hooks and nothing patched.

:class:`ModelTaps` registers ``register_forward_hook`` hooks on a Hugging Face encoder's own submodules and records,
for each forward pass:

* ``"embeddings"``: the embedding-layer output, i.e. the input of encoder layer 0 (``output_hidden_states[0]``);
* ``"hidden"``: the output of encoder layer ``i`` (``output_hidden_states[i + 1]``);
* ``"queries"`` / ``"keys"`` / ``"values"``: the self-attention projections of layer ``i`` (the ``nn.Linear`` outputs,
  bias included), reshaped to ``(batch, heads, seq, head_dim)``.

Because the hooks only read module outputs, the model keeps whatever attention implementation it was built with
(SDPA by default in transformers 5.x, flash attention, ...); ``attn_implementation="eager"`` is not needed, and the
model's outputs are bit-identical with and without the hooks. Attention probabilities, when a loss needs them, are
recomputed from the captured queries and keys (``softmax(Q Kᵀ / sqrt(d) + mask)``).

``capture="attention"`` takes the queries, keys and values instead from inside the model's attention function:
transformers 5.x models call their attention through the ``AttentionInterface`` registry
(``config._attn_implementation``), so :class:`ModelTaps` registers a function there (under
:data:`ATTENTION_CAPTURE`'s names, with the matching mask function) that records the tensors the mapped layers hand
to attention, already shaped ``(batch, heads, seq, head_dim)``, and runs the kernel the model used before (SDPA or
eager) for every layer. While the taps are in place ``config._attn_implementation`` names that function;
:meth:`ModelTaps.remove` restores the original. Outputs stay bit-identical. Nothing in transformers is patched.

Supported families are listed in :data:`ARCHITECTURES`, a small map of module paths keyed on
``config.model_type``.

Example:
    >>> taps = ModelTaps(student, needs={"hidden", "queries", "keys"}, layers=[0, 1])
    >>> logits = student(**batch).logits
    >>> captured = taps.pop()  # {"hidden": {0: ..., 1: ...}, "queries": {...}, "keys": {...}}
    >>> taps.remove()

The modules: :mod:`~helper.taps.layouts` (tap names, module paths per family, :class:`UnsupportedArchitectureError`),
:mod:`~helper.taps.attention_capture` (the recording attention function) and :mod:`~helper.taps.model_taps`
(:class:`ModelTaps`).
"""

from helper.taps.attention_capture import ATTENTION_CAPTURE, CAPTURE_MODES
from helper.taps.layouts import (
    ARCHITECTURES,
    MODEL_OUTPUT_NAMES,
    PER_LAYER_TAP_NAMES,
    TAP_NAMES,
    ArchitectureNames,
    UnsupportedArchitectureError,
)
from helper.taps.model_taps import ModelTaps

__all__ = [
    "ARCHITECTURES",
    "ATTENTION_CAPTURE",
    "CAPTURE_MODES",
    "MODEL_OUTPUT_NAMES",
    "PER_LAYER_TAP_NAMES",
    "TAP_NAMES",
    "ArchitectureNames",
    "ModelTaps",
    "UnsupportedArchitectureError",
]
