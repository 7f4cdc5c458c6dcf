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
"""

import sys
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
    "ATTENTION_CAPTURE",
    "CAPTURE_MODES",
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

CAPTURE_MODES = ("hooks", "attention")
"""How :class:`ModelTaps` records queries/keys/values: forward hooks on the projections, or the attention function."""

ATTENTION_CAPTURE = {"sdpa": "distiller_taps_sdpa", "eager": "distiller_taps_eager"}
"""Names under which the recording attention function is registered, by the kernel it runs (the model's own)."""

# id(attention module) -> recorders called with (query, key, value) (a recorder keeps its model, so the id, alive);
# id(config) -> [original implementation, number of ModelTaps using the switch, the config (keeps the id unique)]
_ATTENTION_RECORDERS: dict[int, list[Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]]] = {}
_SWITCHED_CONFIGS: dict[int, list[Any]] = {}
_KERNEL_OF = {name: kernel for kernel, name in ATTENTION_CAPTURE.items()}


def _eager_kernel(module: nn.Module) -> Callable[..., Any]:
    """The eager attention function of the module's own modeling file (each model family defines one)."""
    kernel = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if kernel is None:
        raise UnsupportedArchitectureError(
            f"{type(module).__name__} has no eager_attention_forward in {type(module).__module__}; "
            "use ModelTaps(..., capture='hooks')"
        )
    return kernel


def _recording_attention(kernel: str) -> Callable[..., Any]:
    """An ``AttentionInterface`` function: records q/k/v for tapped modules, then runs ``kernel`` (sdpa or eager)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    def attention(
        module: nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        for record in _ATTENTION_RECORDERS.get(id(module), ()):
            record(query, key, value)
        run = sdpa_attention_forward if kernel == "sdpa" else _eager_kernel(module)
        return run(module, query, key, value, attention_mask, **kwargs)

    return attention


def _register_attention_functions() -> None:
    """Register the recording attention functions and their mask functions with transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask, sdpa_mask

    masks = {"sdpa": sdpa_mask, "eager": eager_mask}
    for kernel, name in ATTENTION_CAPTURE.items():
        if name not in AttentionInterface._global_mapping:
            AttentionInterface.register(name, _recording_attention(kernel))
            AttentionMaskInterface.register(name, masks[kernel])


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
    "camembert": _BERT_LAYOUT,  # RoBERTa's layout (CamembertModel is a RobertaModel)
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
"""Module layout per ``config.model_type``. Add an entry to support another family with the same tensor semantics
(absolute position embeddings; attention computed from the q/k projection outputs as they are). Never add rotary or
relative-position families: their q/k are captured before the rotation, or without the relative score terms."""


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

    def __init__(
        self,
        model: nn.Module,
        needs: Iterable[str],
        layers: Iterable[int] | None = None,
        capture: str = "hooks",
    ) -> None:
        """Registers the hooks.

        Args:
            model: A Hugging Face ``*ForSequenceClassification`` model, or its base model (``BertModel``, ...).
            needs: Tap names to record, a subset of :data:`TAP_NAMES`; names in :data:`MODEL_OUTPUT_NAMES` (such as
                ``"logits"``) are ignored. A single string is read as one name.
            layers: 0-based encoder layers to record the per-layer taps for; ``None`` records all layers.
            capture: How queries/keys/values are recorded (one of :data:`CAPTURE_MODES`): ``"hooks"`` (forward hooks
                on the projections) or ``"attention"`` (from the model's attention function; needs a model whose
                ``config._attn_implementation`` is ``"sdpa"`` or ``"eager"``). Other taps always use hooks.

        Raises:
            ValueError: On unknown tap names, layer indices that are not integers in ``0..num_layers-1``, or an unknown
                ``capture``.
            UnsupportedArchitectureError: When the model family is not in :data:`ARCHITECTURES`, a module the map
                names is missing, or ``capture="attention"`` meets an attention implementation it cannot wrap.
        """
        if capture not in CAPTURE_MODES:
            raise ValueError(f"capture={capture!r}: expected one of {list(CAPTURE_MODES)}")
        self.capture = capture
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
        self._attention: list[tuple[int, Callable]] = []  # (id(attention module), recorder) while registered
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
                else f"its base model {type(base).__name__} looks BERT-like; ARCHITECTURES[{model_type!r}] can be "
                "added only if it uses absolute position embeddings and its attention is exactly "
                "softmax(Q Kᵀ/√d + mask) of the q/k projection outputs. Rotary or relative-position models "
                "(RoFormer, ModernBERT, DeBERTa, position_embedding_type='relative_key') must not be added: their "
                "q/k are captured before the rotation or without the relative terms, so attention recomputed from "
                "the taps would silently be wrong"
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

        projection_taps = [tap for tap in _PROJECTION_TAPS if tap in self.needs]
        recorders: list[tuple[nn.Module, Callable]] = []
        for index in self.layers:
            layer = self._layer_modules[index]
            where = f"{names.layers}.{index}"
            if "hidden" in self.needs:
                to_hook.append((layer, self._make_hook("hidden", index)))
                self._expected.add(("hidden", index))
            for tap in projection_taps:
                path = getattr(names, _PROJECTION_TAPS[tap])
                projection = self._submodule(layer, path, f"{_PROJECTION_TAPS[tap]} projection", where)
                if self.capture == "hooks":
                    to_hook.append((projection, self._make_hook(tap, index)))
                self._expected.add((tap, index))
            if projection_taps and self.capture == "attention":
                attention_path = names.query.rpartition(".")[0]
                attention = self._submodule(layer, attention_path, "attention module", where)
                recorders.append((attention, self._make_recorder(projection_taps, index)))

        if not to_hook and not recorders:
            return
        kernel = self._attention_kernel(recorders[0][0]) if recorders else None
        # All modules are resolved before any hook is registered, so a failure above leaves the model untouched.
        self._handles.append(self.base_model.register_forward_pre_hook(self._begin_forward))
        self._handles.append(self.base_model.register_forward_hook(self._end_forward, always_call=True))
        for module, hook in to_hook:
            self._handles.append(module.register_forward_hook(hook))
        if recorders:
            self._switch_attention(kernel)
            for module, recorder in recorders:
                _ATTENTION_RECORDERS.setdefault(id(module), []).append(recorder)
                self._attention.append((id(module), recorder))

    def _attention_kernel(self, attention: nn.Module) -> str:
        """The kernel the recording attention function must run: the model's current implementation."""
        config = self.model.config
        current = config._attn_implementation
        kernel = _KERNEL_OF.get(current, current)
        can_set = getattr(self.model, "_can_set_attn_implementation", None)
        if kernel not in ATTENTION_CAPTURE or not callable(can_set) or not can_set():
            raise UnsupportedArchitectureError(
                f"ModelTaps(capture='attention') needs a model whose attention goes through transformers' "
                f"AttentionInterface with attn_implementation 'sdpa' or 'eager'; {type(self.model).__name__} has "
                f"{current!r}. Use capture='hooks'"
            )
        if kernel == "eager":
            _eager_kernel(attention)  # fails now, not in the first forward pass
        return kernel

    def _switch_attention(self, kernel: str) -> None:
        """Point the model at the recording attention function (shared per config, restored by the last user)."""
        _register_attention_functions()
        config = self.model.config
        entry = _SWITCHED_CONFIGS.get(id(config))
        if entry is None:
            original = config._attn_implementation
            self.model.set_attn_implementation(ATTENTION_CAPTURE[kernel])
            _SWITCHED_CONFIGS[id(config)] = [original, 1, config]
        else:
            entry[1] += 1

    def _restore_attention(self) -> None:
        for key, recorder in self._attention:
            recorders = _ATTENTION_RECORDERS.get(key, [])
            if recorder in recorders:
                recorders.remove(recorder)
            if not recorders:
                _ATTENTION_RECORDERS.pop(key, None)
        if not self._attention:
            return
        self._attention = []
        config = self.model.config
        entry = _SWITCHED_CONFIGS.get(id(config))
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                del _SWITCHED_CONFIGS[id(config)]
                self.model.set_attn_implementation(entry[0])

    def _make_recorder(self, taps: list[str], index: int) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]:
        def record_attention_inputs(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
            if self._active:
                for tap, tensor in zip(("queries", "keys", "values"), (query, key, value), strict=True):
                    if tap in taps:
                        self._record.setdefault(tap, {})[index] = tensor

        return record_attention_inputs

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
        """Number of hooks (and attention recorders) currently registered by this object (0 after :meth:`remove`)."""
        return len(self._handles) + len(self._attention)

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
        """Removes all hooks from the model (and restores its attention implementation after ``capture="attention"``).

        Idempotent; what was already recorded can still be popped.
        """
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._restore_attention()
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
            f"layers={list(self.layers)}, capture={self.capture!r}, hooks={self.num_hooks})"
        )
