"""The :class:`ModelTaps` hooks: what one encoder recorded in its last forward pass (see :mod:`helper.taps`)."""

from collections.abc import Callable, Iterable
from numbers import Integral
from types import TracebackType
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from helper.taps.attention_capture import CAPTURE_MODES, attention_kernel, start_recording, stop_recording
from helper.taps.layouts import (
    MODEL_OUTPUT_NAMES,
    PER_LAYER_TAP_NAMES,
    PROJECTION_TAPS,
    TAP_NAMES,
    ArchitectureNames,
    UnsupportedArchitectureError,
    config_int,
    find_submodule,
    first_tensor,
    resolve_architecture,
    supported,
)

_Hook = Callable[[nn.Module, Any, Any], None]


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
        self.base_model, self.model_type, names = resolve_architecture(model)
        config = model.config
        self.num_heads = config_int(config, "num_attention_heads", "n_heads")
        self.hidden_size = config_int(config, "hidden_size", "dim")

        layer_list = self._submodule(self.base_model, names.layers, "encoder layers")
        self._layer_modules = list(layer_list)
        self.num_layers = len(self._layer_modules)
        self.layers = self._validate_layers(layers, self.num_layers)

        self._handles: list[RemovableHandle] = []
        self._record: dict[str, Any] = {}
        self._expected: set[tuple[str, int | None]] = set()
        self._active = False
        self._attention: list[tuple] = []  # attention recorders while registered (attention_capture)
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

    def _submodule(self, root: nn.Module, path: str, what: str, where: str = "") -> nn.Module:
        module = find_submodule(root, path)
        if module is None:
            prefix = f"{where}." if where else ""
            raise UnsupportedArchitectureError(
                f"{type(self.model).__name__} (model_type={self.model_type!r}): expected the {what} at "
                f"{type(self.base_model).__name__}.{prefix}{path}, which is missing. ModelTaps supports the model "
                f"types {supported()} with their standard Hugging Face module layout"
            )
        return module

    # ------------------------------------------------------------------ hooks

    def _register(self, names: ArchitectureNames) -> None:
        to_hook: list[tuple[nn.Module, _Hook]] = []
        if "embeddings" in self.needs:
            module = None
            if names.embeddings_project is not None:
                module = find_submodule(self.base_model, names.embeddings_project)
            if module is None:
                module = self._submodule(self.base_model, names.embeddings, "embeddings")
            to_hook.append((module, self._make_hook("embeddings", None)))
            self._expected.add(("embeddings", None))

        projection_taps = [tap for tap in PROJECTION_TAPS if tap in self.needs]
        recorders: list[tuple[nn.Module, Callable]] = []
        for index in self.layers:
            layer = self._layer_modules[index]
            where = f"{names.layers}.{index}"
            if "hidden" in self.needs:
                to_hook.append((layer, self._make_hook("hidden", index)))
                self._expected.add(("hidden", index))
            for tap in projection_taps:
                path = getattr(names, PROJECTION_TAPS[tap])
                projection = self._submodule(layer, path, f"{PROJECTION_TAPS[tap]} projection", where)
                if self.capture == "hooks":
                    to_hook.append((projection, self._make_hook(tap, index)))
                self._expected.add((tap, index))
            if projection_taps and self.capture == "attention":
                attention_path = names.query.rpartition(".")[0]
                attention = self._submodule(layer, attention_path, "attention module", where)
                recorders.append((attention, self._make_recorder(projection_taps, index)))

        if not to_hook and not recorders:
            return
        kernel = attention_kernel(self.model, recorders[0][0]) if recorders else None
        # All modules are resolved before any hook is registered, so a failure above leaves the model untouched.
        self._handles.append(self.base_model.register_forward_pre_hook(self._begin_forward))
        self._handles.append(self.base_model.register_forward_hook(self._end_forward, always_call=True))
        for module, hook in to_hook:
            self._handles.append(module.register_forward_hook(hook))
        if recorders:
            self._attention = start_recording(self.model, kernel, recorders)

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
                    self._record["embeddings"] = first_tensor(output)

            return record_embeddings

        if tap == "hidden":

            def record_hidden(module: nn.Module, args: Any, output: Any) -> None:
                if self._active:
                    self._record.setdefault("hidden", {})[index] = first_tensor(output)

            return record_hidden

        heads = self.num_heads

        def record_projection(module: nn.Module, args: Any, output: Any) -> None:
            if self._active:
                projected = first_tensor(output)
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
        stop_recording(self.model, self._attention)
        self._attention = []
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
