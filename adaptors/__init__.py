"""Distillation adaptors: losses between what a teacher and a student expose for one batch.

Importing the package registers every built-in adaptor in :data:`ADAPTORS`:

* logits: :class:`LogitKD`, :class:`LogitCE`, :class:`LogitMSE` (single-label); :class:`LogitBinaryKD`,
  :class:`LogitBCE`, :class:`LogitMSE` (multi-label); :class:`LogitMSE` (regression);
* attention: :class:`AttnTinyBERT`, :class:`AttnCE`, :class:`AttnMiniLM`, :class:`ValMiniLM`, :class:`RelMiniLMv2`;
* hidden states: :class:`HidnTinyBERT`, :class:`EmbdTinyBERT`, :class:`HidnPKD`, :class:`HidnCos`.

Use :func:`build_adaptors` to turn a config's adaptor specification into instances and :func:`get_adaptor` to look a
class up by name; :func:`resolve_layer_map` turns an adaptor's ``layers`` (``"uniform"``, ``"last"``,
``"uniform_but_last"`` or explicit pairs) into ``(student_layer, teacher_layer)`` pairs. New adaptors subclass
:class:`Adaptor` and are decorated with :func:`register`.
"""

from __future__ import annotations

from adaptors.attention import (
    RELATIONS,
    AttnCE,
    AttnMiniLM,
    AttnTinyBERT,
    RelMiniLMv2,
    ValMiniLM,
    default_relation_heads,
    split_relation_heads,
)
from adaptors.base import PROBLEM_TYPES, TAP_NAMES, Adaptor, ModelDims, Taps
from adaptors.hidden import EmbdTinyBERT, HidnCos, HidnPKD, HidnTinyBERT, first_valid_position
from adaptors.layer_map import LAYER_MAP_STRATEGIES, resolve_layer_map
from adaptors.logits import LogitBCE, LogitBinaryKD, LogitCE, LogitKD, LogitMSE, logit_adaptors_for
from adaptors.registry import ADAPTORS, UnknownAdaptorError, accepted_options, build_adaptors, get_adaptor, register

__all__ = [
    "ADAPTORS",
    "LAYER_MAP_STRATEGIES",
    "RELATIONS",
    "TAP_NAMES",
    "Adaptor",
    "AttnCE",
    "AttnMiniLM",
    "AttnTinyBERT",
    "EmbdTinyBERT",
    "HidnCos",
    "HidnPKD",
    "HidnTinyBERT",
    "LogitBCE",
    "LogitBinaryKD",
    "LogitCE",
    "LogitKD",
    "LogitMSE",
    "ModelDims",
    "PROBLEM_TYPES",
    "RelMiniLMv2",
    "Taps",
    "UnknownAdaptorError",
    "ValMiniLM",
    "accepted_options",
    "build_adaptors",
    "default_relation_heads",
    "first_valid_position",
    "get_adaptor",
    "logit_adaptors_for",
    "register",
    "resolve_layer_map",
    "split_relation_heads",
]
