"""Core types of the adaptor package: model dimensions, per-batch taps and the :class:`Adaptor` base class.

An *adaptor* turns what a teacher and a student expose for one batch (their :class:`Taps`) into one unweighted
scalar distillation loss. Adaptors never select or stack layers themselves: the distiller hands them teacher and
student taps whose mapped-layer axes (``M``) are already aligned, the i-th teacher slice being mapped to the i-th
student slice. Learned parts (e.g. a width projection) are submodules of the adaptor, so they train together with the
student but never end up inside the student model.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from numbers import Real
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from adaptors.layer_map import LAYER_MAP_STRATEGIES

__all__ = [
    "ADAPTOR_KINDS",
    "LAYER_DEFAULTS",
    "PROBLEM_TYPES",
    "TAP_NAMES",
    "Adaptor",
    "ModelDims",
    "Taps",
    "as_float32",
    "check_bool",
    "check_positive_float",
    "check_weight",
]

#: Names of the tensors an adaptor can ask for (see :class:`Taps`).
TAP_NAMES: frozenset[str] = frozenset({"logits", "embeddings", "hidden", "queries", "keys", "values"})
#: What a classifier's outputs mean (Hugging Face's ``config.problem_type`` values).
PROBLEM_TYPES: tuple[str, ...] = ("single_label_classification", "multi_label_classification", "regression")
#: Values of :attr:`Adaptor.kind`.
ADAPTOR_KINDS: frozenset[str] = frozenset({"logit", "inter"})
#: Values of :attr:`Adaptor.default_layers` (``None``: the adaptor uses no encoder layers).
LAYER_DEFAULTS: tuple[str | None, ...] = (*LAYER_MAP_STRATEGIES, None)

# Expected number of dimensions of each tap and the names of its axes (for error messages).
_TAP_AXES: dict[str, tuple[str, ...]] = {
    "logits": ("B", "C"),
    "embeddings": ("B", "T", "H"),
    "hidden": ("M", "B", "T", "H"),
    "queries": ("M", "B", "heads", "T", "d_head"),
    "keys": ("M", "B", "heads", "T", "d_head"),
    "values": ("M", "B", "heads", "T", "d_head"),
}

# Config attribute names, canonical (BERT/RoBERTa/ELECTRA) first, then DistilBERT and other common spellings.
_CONFIG_ALIASES: dict[str, tuple[str, ...]] = {
    "hidden_size": ("hidden_size", "dim", "d_model", "n_embd"),
    "num_heads": ("num_attention_heads", "n_heads", "num_heads", "n_head"),
    "num_layers": ("num_hidden_layers", "n_layers", "num_layers", "n_layer"),
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


@dataclass
class ModelDims:
    """Shape facts of one model, read from its Hugging Face config.

    Attributes:
        hidden_size: Width ``H`` of the hidden states.
        num_heads: Number of self-attention heads per layer.
        num_layers: Number of encoder layers.
        num_labels: Number of classes of the classification head (outputs: 1 for regression).
        problem_type: What the outputs mean (:data:`PROBLEM_TYPES`): one softmax over the classes
            (``single_label_classification``), one sigmoid per label (``multi_label_classification``), or a number
            (``regression``). Logit adaptors accept the problem types they are made for.
    """

    hidden_size: int
    num_heads: int
    num_layers: int
    num_labels: int
    problem_type: str = "single_label_classification"

    def __post_init__(self) -> None:
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"ModelDims.problem_type must be one of {list(PROBLEM_TYPES)}, got {self.problem_type!r}")
        for f in fields(self):
            if f.name == "problem_type":
                continue
            value = getattr(self, f.name)
            if not _is_int(value) or value <= 0:
                raise ValueError(f"ModelDims.{f.name} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"ModelDims: hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}"
            )

    @property
    def head_dim(self) -> int:
        """Size ``d_head = H / heads`` of one attention head."""
        return self.hidden_size // self.num_heads

    @classmethod
    def from_config(cls, config: Any) -> ModelDims:
        """Read the dimensions from a Hugging Face ``PretrainedConfig`` (or a plain mapping of the same keys).

        BERT, RoBERTa and ELECTRA configs name the fields ``hidden_size``/``num_attention_heads``/
        ``num_hidden_layers``; DistilBERT names them ``dim``/``n_heads``/``n_layers``. Both are understood.

        Args:
            config: A ``transformers.PretrainedConfig`` or a mapping such as ``config.to_dict()``.

        Returns:
            The model's dimensions.

        Raises:
            ValueError: If a field cannot be found or is not a positive integer.
        """

        def lookup(key: str) -> Any:
            if isinstance(config, Mapping):
                return config.get(key)
            return getattr(config, key, None)

        values: dict[str, Any] = {}
        missing: list[str] = []
        for field_name, aliases in _CONFIG_ALIASES.items():
            found = next((v for v in map(lookup, aliases) if v is not None), None)
            if found is None:
                missing.append(f"{field_name} (looked for {', '.join(aliases)})")
            values[field_name] = found
        num_labels = lookup("num_labels")
        if num_labels is None and lookup("id2label") is not None:
            num_labels = len(lookup("id2label"))
        if num_labels is None:
            missing.append("num_labels (looked for num_labels, id2label)")
        if missing:
            raise ValueError(f"cannot read model dimensions from {type(config).__name__}: missing {'; '.join(missing)}")
        # Unset: what Hugging Face infers at the first loss (regression for one output, else single-label).
        problem_type = lookup("problem_type") or ("regression" if num_labels == 1 else "single_label_classification")
        return cls(num_labels=num_labels, problem_type=problem_type, **values)


@dataclass
class Taps:
    """What one model exposes to the adaptors for one batch.

    Attributes:
        attention_mask: ``(B, T)``; 1 for real tokens, 0 for padding.
        logits: ``(B, C)`` classifier logits.
        embeddings: ``(B, T, H)`` output of the embedding layer.
        hidden: ``(M, B, T, H)`` outputs of the ``M`` mapped encoder layers, stacked in mapping order.
        queries: ``(M, B, heads, T, d_head)`` self-attention query projections (after bias) of the mapped layers.
        keys: Same shape as ``queries``, for the key projections.
        values: Same shape as ``queries``, for the value projections.
    """

    attention_mask: Tensor
    logits: Tensor | None = None
    embeddings: Tensor | None = None
    hidden: Tensor | None = None
    queries: Tensor | None = None
    keys: Tensor | None = None
    values: Tensor | None = None

    def detach(self) -> Taps:
        """A copy whose tensors are detached from the autograd graph."""
        return Taps(**{f.name: None if (t := getattr(self, f.name)) is None else t.detach() for f in fields(self)})


def check_weight(weight: Any, owner: str = "Adaptor") -> float:
    """Validate an adaptor weight.

    Args:
        weight: The value to check.
        owner: Name used in the error message.

    Returns:
        ``weight`` as a float.

    Raises:
        ValueError: If ``weight`` is not a finite real number ``>= 0``.
    """
    if not _is_real(weight) or not math.isfinite(float(weight)) or weight < 0:
        raise ValueError(f"{owner}: weight must be a finite number >= 0, got {weight!r}")
    return float(weight)


def check_positive_float(name: str, value: Any, owner: str) -> float:
    """Validate an option that must be a finite real number ``> 0`` (e.g. a temperature).

    Args:
        name: Option name, for the error message.
        value: The value to check.
        owner: Adaptor name, for the error message.

    Returns:
        ``value`` as a float.

    Raises:
        ValueError: If the value is not a finite real number ``> 0``.
    """
    if not _is_real(value) or not math.isfinite(float(value)) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_bool(name: str, value: Any, owner: str) -> bool:
    """Validate a boolean option (``True``/``False`` only, so ``"false"`` from a config does not pass as true)."""
    if not isinstance(value, bool):
        raise ValueError(f"{owner}: {name} must be True or False, got {value!r}")
    return value


def as_float32(x: Tensor) -> Tensor:
    """Upcast half-precision tensors to float32 so softmax/log and reductions stay accurate; others pass through."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class Adaptor(nn.Module):
    """Base class of all distillation adaptors.

    Subclasses set the class attributes below, accept
    ``__init__(self, teacher, student, *, weight=1.0, layers=None, **own_options)`` (validating their own options
    with errors that name the option, the value and what was expected) and implement :meth:`compute_loss`.
    :meth:`forward` checks that the needed taps are present and consistent, then returns the *unweighted* loss;
    the distiller multiplies it by :attr:`weight`.

    Attributes:
        name: Registry key; always the class name.
        needs: The :class:`Taps` fields the adaptor reads.
        kind: ``"logit"`` (compares classifier outputs) or ``"inter"`` (compares intermediate representations).
        default_layers: Layer mapping used when ``layers`` is None: ``"uniform"``, ``"last"``, ``"uniform_but_last"``
            (Patient-KD: uniform without the last student layer), or None when the adaptor uses no encoder layers.
        weight: Non-negative loss weight.
        layers: The raw layer specification given by the user (None: use ``default_layers``). Validating it is
            the distiller's job.
        teacher_dims: Dimensions of the teacher.
        student_dims: Dimensions of the student.
    """

    name: ClassVar[str] = "Adaptor"
    needs: ClassVar[frozenset[str]] = frozenset()
    kind: ClassVar[str] = "inter"
    default_layers: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = cls.__name__

    def __init__(
        self, teacher: ModelDims, student: ModelDims, *, weight: float = 1.0, layers: str | list | None = None
    ) -> None:
        super().__init__()
        for role, dims in (("teacher", teacher), ("student", student)):
            if not isinstance(dims, ModelDims):
                raise TypeError(f"{self.name}: {role} must be a ModelDims, got {type(dims).__name__}")
        self.weight = check_weight(weight, self.name)
        if layers is not None and self.default_layers is None:
            raise ValueError(
                f"{self.name}: layers must be None because this adaptor uses no encoder layers, got {layers!r}"
            )
        self.layers = layers
        self.teacher_dims = teacher
        self.student_dims = student

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """Keyword options of the constructor and their defaults (``layers`` only for adaptors that use layers)."""
        out: dict[str, Any] = {}
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.name in ("self", "teacher", "student") or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                continue
            if p.name == "layers" and cls.default_layers is None:
                continue
            out[p.name] = p.default
        return out

    def extra_repr(self) -> str:
        opts = {k: getattr(self, k, v) for k, v in self.option_defaults().items()}
        return ", ".join(f"{k}={v!r}" for k, v in opts.items())

    def forward(self, teacher: Taps, student: Taps) -> Tensor:
        """Unweighted scalar loss between the teacher's and the student's taps.

        Args:
            teacher: Teacher taps (treated as constants: they are detached).
            student: Student taps.

        Returns:
            A 0-dim tensor, float32 (or float64 for float64 taps) even under autocast.

        Raises:
            ValueError: If a needed tap is missing or shapes are inconsistent.
        """
        self.check_taps(teacher, student)
        # Under mixed precision (e.g. precision="bf16-mixed") autocast would run matmuls and softmaxes in half
        # precision again, whatever the inputs' dtype: the loss is computed in float32 with autocast off.
        device_type = teacher.attention_mask.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            loss = self.compute_loss(teacher, student)
        return loss.float() if loss.dtype in (torch.float16, torch.bfloat16) else loss

    def compute_loss(self, teacher: Taps, student: Taps) -> Tensor:
        """The loss itself, on taps already checked by :meth:`check_taps`; implemented by subclasses."""
        raise NotImplementedError

    def check_taps(self, teacher: Taps, student: Taps) -> None:
        """Check that every needed tap is present and that teacher and student shapes line up.

        Raises:
            ValueError: Naming the tap and the offending shapes.
        """
        n = self.name
        for role, taps in (("teacher", teacher), ("student", student)):
            mask = taps.attention_mask
            if not isinstance(mask, Tensor) or mask.dim() != 2:
                shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
                raise ValueError(f"{n}: {role} attention_mask must be a (B, T) tensor, got {shape}")
            for tap in sorted(self.needs):
                t = getattr(taps, tap)
                if t is None:
                    raise ValueError(f"{n} needs the {role} tap {tap!r}, but it is None")
                axes = _TAP_AXES[tap]
                if t.dim() != len(axes):
                    raise ValueError(f"{n}: {role} {tap} must be ({', '.join(axes)}), got shape {tuple(t.shape)}")
                b = t.shape[axes.index("B")]
                if b != mask.shape[0]:
                    raise ValueError(f"{n}: {role} {tap} has batch size {b} but attention_mask has {mask.shape[0]}")
                if "T" in axes and t.shape[axes.index("T")] != mask.shape[1]:
                    raise ValueError(
                        f"{n}: {role} {tap} has {t.shape[axes.index('T')]} positions but attention_mask has "
                        f"{mask.shape[1]}"
                    )
                dims = self.teacher_dims if role == "teacher" else self.student_dims
                width = t.shape[-1] if "H" in axes else t.shape[2] * t.shape[4] if "heads" in axes else None
                if width is not None and width != dims.hidden_size:
                    raise ValueError(
                        f"{n}: {role} {tap} of shape {tuple(t.shape)} has width {width}, but the {role}'s "
                        f"hidden_size is {dims.hidden_size}"
                    )
        for tap in sorted(self.needs):
            axes = _TAP_AXES[tap]
            t_shape, s_shape = getattr(teacher, tap).shape, getattr(student, tap).shape
            for axis in ("M", "B", "T", "C"):
                if axis in axes and t_shape[axes.index(axis)] != s_shape[axes.index(axis)]:
                    raise ValueError(
                        f"{n}: teacher and student {tap} differ on axis {axis}: {tuple(t_shape)} vs {tuple(s_shape)}"
                    )
        if self.kind == "inter" and not torch.equal(
            teacher.attention_mask.to(torch.bool), student.attention_mask.to(torch.bool)
        ):
            raise ValueError(
                f"{n}: teacher and student attention masks differ; token-level adaptors need the same tokenisation"
            )
