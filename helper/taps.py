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

Supported families are listed in :data:`ARCHITECTURES`, a small map of module paths keyed on
``config.model_type``.

Example:
    >>> taps = ModelTaps(student, needs={"hidden", "queries", "keys"}, layers=[0, 1])
    >>> logits = student(**batch).logits
    >>> captured = taps.pop()  # {"hidden": {0: ..., 1: ...}, "queries": {...}, "keys": {...}}
    >>> taps.remove()
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from numbers import Integral
from types import TracebackType
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = [
    "ARCHITECTURES",
    "MODEL_OUTPUT_NAMES",
    "PER_LAYER_TAP_NAMES",
    "TAP_NAMES",
    "ArchitectureNames",
    "ModelTaps",
    "UnsupportedArchitectureError",
]

TAP_NAMES = frozenset({"embeddings", "hidden", "queries", "keys", "values"})
"""Names :class:`ModelTaps` can record."""

PER_LAYER_TAP_NAMES = frozenset({"hidden", "queries", "keys", "values"})
"""Tap names recorded once per selected encoder layer (as ``{layer_index: Tensor}``)."""

MODEL_OUTPUT_NAMES = frozenset({"logits"})
"""Names that come from the model's output rather than from a hook; accepted in ``needs`` and ignored."""

_PROJECTION_TAPS = {"queries": "query", "keys": "key", "values": "value"}

_Hook = Callable[[nn.Module, Any, Any], None]


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


_BERT_LAYOUT = ArchitectureNames(
    embeddings="embeddings",
    layers="encoder.layer",
    query="attention.self.query",
    key="attention.self.key",
    value="attention.self.value",
)

ARCHITECTURES: dict[str, ArchitectureNames] = {
    "bert": _BERT_LAYOUT,
    "roberta": _BERT_LAYOUT,
    "xlm-roberta": _BERT_LAYOUT,
    "electra": ArchitectureNames(
        embeddings="embeddings",
        layers="encoder.layer",
        query="attention.self.query",
        key="attention.self.key",
        value="attention.self.value",
        embeddings_project="embeddings_project",
    ),
    "distilbert": ArchitectureNames(
        embeddings="embeddings",
        layers="transformer.layer",
        query="attention.q_lin",
        key="attention.k_lin",
        value="attention.v_lin",
    ),
}
"""Module layout per ``config.model_type``. Add an entry to support another family with the same tensor semantics."""


def _supported() -> str:
    return ", ".join(sorted(ARCHITECTURES))


def _first_tensor(output: Any) -> torch.Tensor:
    """The tensor a module returned: layers return a tensor in transformers 5.x and a tuple in 4.x."""
    if isinstance(output, (tuple, list)):
        return output[0]
    return output


def _config_int(config: Any, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise UnsupportedArchitectureError(f"the model config defines none of {', '.join(names)}")


class ModelTaps:
    """Forward hooks recording embeddings, per-layer hidden states and attention projections of an encoder.

    Hooks are registered only for what ``needs`` asks: ``{"hidden"}`` puts one hook on each selected encoder layer and
    none on the attention projections. Two more hooks on the base model (a pre-hook and an always-called post-hook)
    reset the record at the start of each forward pass and mark when the pass is over, so that layers re-run outside
    the model's forward (e.g. the recomputation of gradient checkpointing during backward) record nothing.

    Captured tensors are the module outputs themselves (or views of them): they keep their autograd graph when the
    forward ran with gradients (a student), and have none under ``torch.no_grad()`` (a teacher).

    Attributes:
        model: The model passed in.
        base_model: The encoder the hooks are on (``model.base_model``).
        model_type: ``config.model_type``.
        needs: The tap names recorded (``needs`` minus the ignored :data:`MODEL_OUTPUT_NAMES`).
        layers: The encoder layers recorded for the per-layer taps, sorted.
        num_layers: Number of encoder layers of the model.
        num_heads: Number of attention heads per layer.
        hidden_size: Width of the hidden states (also of the ``"embeddings"`` tap).
    """

    def __init__(self, model: nn.Module, needs: Iterable[str], layers: Iterable[int] | None = None) -> None:
        """Registers the hooks.

        Args:
            model: A Hugging Face ``*ForSequenceClassification`` model, or its base model (``BertModel``, ...).
            needs: Tap names to record, a subset of :data:`TAP_NAMES`; names in :data:`MODEL_OUTPUT_NAMES` (such as
                ``"logits"``) are ignored. A single string is read as one name.
            layers: 0-based encoder layers to record the per-layer taps for; ``None`` records all layers.

        Raises:
            ValueError: On unknown tap names, or layer indices that are not integers in ``0..num_layers-1``.
            UnsupportedArchitectureError: When the model family is not in :data:`ARCHITECTURES` or a module the map
                names is missing.
        """
        self.needs = self._validate_needs(needs)
        self.model = model
        self.base_model, self.model_type, names = self._resolve_architecture(model)
        config = model.config
        self.num_heads = _config_int(config, "num_attention_heads", "n_heads")
        self.hidden_size = _config_int(config, "hidden_size", "dim")

        layer_list = self._submodule(self.base_model, names.layers, "encoder layers")
        self._layer_modules = list(layer_list)
        self.num_layers = len(self._layer_modules)
        self.layers = self._validate_layers(layers, self.num_layers)

        self._handles: list[RemovableHandle] = []
        self._record: dict[str, Any] = {}
        self._expected: set[tuple[str, int | None]] = set()
        self._active = False
        self._register(names)

    # ------------------------------------------------------------------ validation and resolution

    @staticmethod
    def _validate_needs(needs: Iterable[str]) -> frozenset[str]:
        names = {needs} if isinstance(needs, str) else set(needs)
        unknown = [name for name in names if name not in TAP_NAMES and name not in MODEL_OUTPUT_NAMES]
        if unknown:
            shown = ", ".join(sorted(repr(name) for name in unknown))
            raise ValueError(
                f"unknown tap name(s) {shown}; ModelTaps records {sorted(TAP_NAMES)} "
                f"(and ignores {sorted(MODEL_OUTPUT_NAMES)}, which come from the model output)"
            )
        return frozenset(names & TAP_NAMES)

    @staticmethod
    def _validate_layers(layers: Iterable[int] | None, num_layers: int) -> tuple[int, ...]:
        if layers is None:
            return tuple(range(num_layers))
        if isinstance(layers, Integral) and not isinstance(layers, bool):
            layers = [int(layers)]
        problems = []
        valid: set[int] = set()
        for index in layers:
            if isinstance(index, bool) or not isinstance(index, Integral):
                problems.append(f"{index!r} is not an integer")
            elif not 0 <= index < num_layers:
                problems.append(f"{index} is out of range")
            else:
                valid.add(int(index))
        if problems:
            raise ValueError(
                f"invalid layer index: {'; '.join(problems)}; the model has {num_layers} encoder layers, "
                f"valid indices are 0..{num_layers - 1}"
            )
        return tuple(sorted(valid))

    @staticmethod
    def _resolve_architecture(model: nn.Module) -> tuple[nn.Module, str, ArchitectureNames]:
        cls_name = type(model).__name__
        config = getattr(model, "config", None)
        model_type = getattr(config, "model_type", None)
        if not model_type:
            raise UnsupportedArchitectureError(
                f"{cls_name} has no config.model_type, so ModelTaps cannot tell its module layout; "
                f"pass a Hugging Face model of a supported family ({_supported()})"
            )
        base = getattr(model, "base_model", model)
        names = ARCHITECTURES.get(model_type)
        if names is None:
            missing = [
                path for path in (_BERT_LAYOUT.embeddings, _BERT_LAYOUT.layers) if ModelTaps._find(base, path) is None
            ]
            detail = (
                f"its base model {type(base).__name__} has no {' / '.join(repr(p) for p in missing)} module"
                if missing
                else f"its base model {type(base).__name__} looks BERT-like; add ARCHITECTURES[{model_type!r}] if its "
                "layers, embeddings and q/k/v projections have BERT's semantics"
            )
            raise UnsupportedArchitectureError(
                f"{cls_name} (model_type={model_type!r}) is not supported by ModelTaps: no module map for "
                f"model_type {model_type!r} and {detail}. Supported model types: {_supported()}"
            )
        return base, model_type, names

    @staticmethod
    def _find(root: nn.Module, path: str) -> nn.Module | None:
        try:
            return root.get_submodule(path)
        except AttributeError:
            return None

    def _submodule(self, root: nn.Module, path: str, what: str, where: str = "") -> nn.Module:
        module = self._find(root, path)
        if module is None:
            prefix = f"{where}." if where else ""
            raise UnsupportedArchitectureError(
                f"{type(self.model).__name__} (model_type={self.model_type!r}): expected the {what} at "
                f"{type(self.base_model).__name__}.{prefix}{path}, which is missing. ModelTaps supports the model "
                f"types {_supported()} with their standard Hugging Face module layout"
            )
        return module

    # ------------------------------------------------------------------ hooks

    def _register(self, names: ArchitectureNames) -> None:
        to_hook: list[tuple[nn.Module, _Hook]] = []
        if "embeddings" in self.needs:
            module = None
            if names.embeddings_project is not None:
                module = self._find(self.base_model, names.embeddings_project)
            if module is None:
                module = self._submodule(self.base_model, names.embeddings, "embeddings")
            to_hook.append((module, self._make_hook("embeddings", None)))
            self._expected.add(("embeddings", None))

        for index in self.layers:
            layer = self._layer_modules[index]
            where = f"{names.layers}.{index}"
            if "hidden" in self.needs:
                to_hook.append((layer, self._make_hook("hidden", index)))
                self._expected.add(("hidden", index))
            for tap, attr in _PROJECTION_TAPS.items():
                if tap in self.needs:
                    path = getattr(names, attr)
                    projection = self._submodule(layer, path, f"{attr} projection", where)
                    to_hook.append((projection, self._make_hook(tap, index)))
                    self._expected.add((tap, index))

        if not to_hook:
            return
        # All modules are resolved before any hook is registered, so a failure above leaves the model untouched.
        self._handles.append(self.base_model.register_forward_pre_hook(self._begin_forward))
        self._handles.append(self.base_model.register_forward_hook(self._end_forward, always_call=True))
        for module, hook in to_hook:
            self._handles.append(module.register_forward_hook(hook))

    def _begin_forward(self, module: nn.Module, args: Any) -> None:
        self._record = {}
        self._active = True

    def _end_forward(self, module: nn.Module, args: Any, output: Any) -> None:
        self._active = False

    def _make_hook(self, tap: str, index: int | None) -> _Hook:
        if tap == "embeddings":

            def record_embeddings(module: nn.Module, args: Any, output: Any) -> None:
                if self._active:
                    self._record["embeddings"] = _first_tensor(output)

            return record_embeddings

        if tap == "hidden":

            def record_hidden(module: nn.Module, args: Any, output: Any) -> None:
                if self._active:
                    self._record.setdefault("hidden", {})[index] = _first_tensor(output)

            return record_hidden

        heads = self.num_heads

        def record_projection(module: nn.Module, args: Any, output: Any) -> None:
            if self._active:
                projected = _first_tensor(output)
                # (B, T, heads * d) -> (B, heads, T, d); reshape returns a view for the contiguous Linear output.
                split = projected.reshape(*projected.shape[:-1], heads, projected.shape[-1] // heads)
                self._record.setdefault(tap, {})[index] = split.transpose(-3, -2)

        return record_projection

    # ------------------------------------------------------------------ public API

    @property
    def num_hooks(self) -> int:
        """Number of hooks currently registered by this object (0 after :meth:`remove`)."""
        return len(self._handles)

    def pop(self) -> dict[str, Any]:
        """Returns what the last forward pass recorded, and clears the record.

        Returns:
            One entry per requested tap name: ``"embeddings"`` maps to a ``(B, T, H)`` tensor; ``"hidden"``,
            ``"queries"``, ``"keys"`` and ``"values"`` map to ``{layer_index: tensor}`` dicts (sorted by layer), with
            hidden states ``(B, T, H)`` and projections ``(B, heads, T, head_dim)``. When nothing was requested
            (e.g. ``needs={"logits"}``, or ``layers=[]`` with only per-layer taps) the dicts are empty and no
            forward pass is needed.

        Raises:
            RuntimeError: If nothing was recorded since the last :meth:`pop` (no forward pass ran, or hooks were
                removed before it), or if the record is incomplete (the forward pass failed part-way).
        """
        result: dict[str, Any] = {name: {} for name in sorted(self.needs & PER_LAYER_TAP_NAMES)}
        if not self._expected:
            return result
        record, self._record = self._record, {}
        if not record:
            raise RuntimeError(
                "ModelTaps.pop(): nothing was recorded; run a forward pass of the model (with the hooks in place) "
                "before each pop()"
            )
        missing = [
            name if index is None else f"{name}[{index}]"
            for name, index in sorted(self._expected, key=lambda item: (item[0], -1 if item[1] is None else item[1]))
            if (name not in record if index is None else index not in record.get(name, {}))
        ]
        if missing:
            raise RuntimeError(f"ModelTaps.pop(): the last forward pass recorded no {', '.join(missing)}")
        for name, value in record.items():
            result[name] = value if name == "embeddings" else dict(sorted(value.items()))
        return result

    def remove(self) -> None:
        """Removes all hooks from the model. Idempotent; what was already recorded can still be popped."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._active = False

    def __enter__(self) -> "ModelTaps":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.remove()

    def __repr__(self) -> str:
        return (
            f"ModelTaps({type(self.model).__name__}, model_type={self.model_type!r}, needs={sorted(self.needs)}, "
            f"layers={list(self.layers)}, hooks={self.num_hooks})"
        )
