"""Recording queries, keys and values from inside the model's attention function (``ModelTaps(capture="attention")``).

transformers 5.x models call their attention through the ``AttentionInterface`` registry
(``config._attn_implementation``). This module registers a function there (under :data:`ATTENTION_CAPTURE`'s names,
with the matching mask function) that hands the tensors of tapped attention modules to their recorders and then runs
the kernel the model used before (SDPA or eager). Switching a model to it is shared per config and undone by the
last user. Nothing in transformers is patched.
"""

import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from helper.taps.layouts import UnsupportedArchitectureError

CAPTURE_MODES = ("hooks", "attention")
"""How :class:`~helper.taps.ModelTaps` records queries/keys/values: forward hooks on the projections, or the attention
function."""

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


def attention_kernel(model: nn.Module, attention: nn.Module) -> str:
    """The kernel the recording attention function must run for ``model``: its current implementation.

    Raises:
        UnsupportedArchitectureError: The model's attention does not go through ``AttentionInterface`` with
            ``"sdpa"`` or ``"eager"``, or (eager) its modeling file has no eager attention function.
    """
    current = model.config._attn_implementation
    kernel = _KERNEL_OF.get(current, current)
    can_set = getattr(model, "_can_set_attn_implementation", None)
    if kernel not in ATTENTION_CAPTURE or not callable(can_set) or not can_set():
        raise UnsupportedArchitectureError(
            f"ModelTaps(capture='attention') needs a model whose attention goes through transformers' "
            f"AttentionInterface with attn_implementation 'sdpa' or 'eager'; {type(model).__name__} has "
            f"{current!r}. Use capture='hooks'"
        )
    if kernel == "eager":
        _eager_kernel(attention)  # fails now, not in the first forward pass
    return kernel


Recorder = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]


def start_recording(model: nn.Module, kernel: str, recorders: list[tuple[nn.Module, Recorder]]) -> list[tuple]:
    """Point ``model`` at the recording attention function (shared per config) and register the recorders.

    Returns:
        The registrations, to pass to :func:`stop_recording`.
    """
    _register_attention_functions()
    config = model.config
    entry = _SWITCHED_CONFIGS.get(id(config))
    if entry is None:
        original = config._attn_implementation
        model.set_attn_implementation(ATTENTION_CAPTURE[kernel])
        _SWITCHED_CONFIGS[id(config)] = [original, 1, config]
    else:
        entry[1] += 1
    for module, recorder in recorders:
        _ATTENTION_RECORDERS.setdefault(id(module), []).append(recorder)
    return [(id(module), recorder) for module, recorder in recorders]


def stop_recording(model: nn.Module, registrations: list[tuple]) -> None:
    """Remove the recorders of :func:`start_recording`; the last user of the config restores its implementation."""
    for key, recorder in registrations:
        recorders = _ATTENTION_RECORDERS.get(key, [])
        if recorder in recorders:
            recorders.remove(recorder)
        if not recorders:
            _ATTENTION_RECORDERS.pop(key, None)
    if not registrations:
        return
    config = model.config
    entry = _SWITCHED_CONFIGS.get(id(config))
    if entry is not None:
        entry[1] -= 1
        if entry[1] <= 0:
            del _SWITCHED_CONFIGS[id(config)]
            model.set_attn_implementation(entry[0])
