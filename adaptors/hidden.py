"""Hidden-state adaptors: TinyBERT hidden/embedding MSE and Patient-KD normalised [CLS] distance.

When the teacher and student widths differ, a learned ``nn.Linear(d_s, d_t)`` projection of the student states
lives inside the adaptor (it trains with the student but is never part of the student model).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adaptors.base import Adaptor, ModelDims, Taps, as_float32, check_bool
from adaptors.registry import register

__all__ = ["EmbdTinyBERT", "HidnPKD", "HidnTinyBERT"]


class _ProjectedStates(Adaptor):
    """Shared projection handling: ``proj`` is an ``nn.Linear(d_s, d_t)`` when widths differ, else None."""

    kind = "inter"

    def __init__(
        self,
        teacher: ModelDims,
        student: ModelDims,
        *,
        weight: float = 1.0,
        layers: str | list | None = None,
        projection: bool = True,
    ) -> None:
        super().__init__(teacher, student, weight=weight, layers=layers)
        self.projection = check_bool("projection", projection, self.name)
        d_s, d_t = student.hidden_size, teacher.hidden_size
        if d_s != d_t and not projection:
            raise ValueError(
                f"{self.name}: student hidden_size={d_s} differs from teacher hidden_size={d_t}, so projection must "
                f"be True (a learned Linear({d_s}, {d_t})), got projection={projection!r}"
            )
        self.proj: nn.Linear | None = nn.Linear(d_s, d_t) if d_s != d_t else None

    def _project(self, states: Tensor) -> Tensor:
        states = as_float32(states)
        return states if self.proj is None else self.proj(states)


class _TokenMSE(_ProjectedStates):
    """MSE over valid tokens between projected student states and teacher states of shape ``(M, B, T, H)``."""

    def _token_mse(self, t_states: Tensor, s_states: Tensor, attention_mask: Tensor) -> Tensor:
        valid = attention_mask.to(torch.bool)
        # Boolean indexing keeps only real tokens: (M, N, H), N = valid tokens of the batch.
        h_t = as_float32(t_states.detach())[:, valid]
        h_s = self._project(s_states[:, valid])
        if h_t.shape[1] == 0:
            return h_s.sum() * 0.0
        return F.mse_loss(h_s, h_t, reduction="mean")


@register
class HidnTinyBERT(_TokenMSE):
    r"""Hidden-state MSE (Jiao et al., 2020, "TinyBERT: Distilling BERT for Natural Language Understanding",
    arXiv:1909.10351).

    .. math::
        L = \frac{1}{M \, N \, d_t} \sum_m \sum_{(b, i)\ \text{valid}} \lVert h^s_{m,b,i} W - h^t_{m,b,i} \rVert_2^2

    over the outputs of the mapped encoder layers, where ``N`` is the number of valid (non-padding) tokens in the
    batch and ``W`` is a learned ``nn.Linear(d_s, d_t)`` (with bias) present only when the widths differ. Averaging
    over tokens, layers and the teacher's features makes the scale independent of padding and width.

    Args:
        teacher: Teacher dimensions.
        student: Student dimensions.
        weight: Loss weight (>= 0), applied by the distiller.
        layers: Layer mapping (None: ``"uniform"``).
        projection: Allow the learned projection. It is created only when widths differ; ``False`` with different
            widths is an error.
    """

    needs = frozenset({"hidden"})
    default_layers = "uniform"

    def compute_loss(self, teacher: Taps, student: Taps) -> Tensor:
        return self._token_mse(teacher.hidden, student.hidden, student.attention_mask)


@register
class EmbdTinyBERT(_TokenMSE):
    r"""Embedding-layer MSE (Jiao et al., 2020, "TinyBERT: Distilling BERT for Natural Language Understanding",
    arXiv:1909.10351).

    .. math::
        L = \frac{1}{N \, d_t} \sum_{(b, i)\ \text{valid}} \lVert e^s_{b,i} W - e^t_{b,i} \rVert_2^2

    on the outputs of the embedding layers, over the ``N`` valid tokens; ``W`` as in :class:`HidnTinyBERT`.

    Args:
        teacher: Teacher dimensions.
        student: Student dimensions.
        weight: Loss weight (>= 0), applied by the distiller.
        layers: Must be None (the embedding layer is not an encoder layer).
        projection: Allow the learned projection (needed when widths differ).
    """

    needs = frozenset({"embeddings"})
    default_layers = None

    def compute_loss(self, teacher: Taps, student: Taps) -> Tensor:
        return self._token_mse(teacher.embeddings[None], student.embeddings[None], student.attention_mask)


@register
class HidnPKD(_ProjectedStates):
    r"""Patient knowledge distillation of normalised [CLS] states (Sun et al., 2019, "Patient Knowledge Distillation
    for BERT Model Compression", arXiv:1908.09355).

    .. math::
        L = \frac{1}{M \, B} \sum_m \sum_b \left\lVert \frac{h^s_{m,b,0} W}{\lVert h^s_{m,b,0} W \rVert_2}
        - \frac{h^t_{m,b,0}}{\lVert h^t_{m,b,0} \rVert_2} \right\rVert_2^2

    over the mapped intermediate layers, ``[CLS]`` being position 0 (right padding assumed, as Hugging Face
    tokenizers do for BERT-style models). ``W`` is a learned ``nn.Linear(d_s, d_t)`` applied *before*
    normalisation, present only when widths differ.

    Args:
        teacher: Teacher dimensions.
        student: Student dimensions.
        weight: Loss weight (>= 0), applied by the distiller.
        layers: Layer mapping (None: ``"uniform"``).
        projection: Allow the learned projection (needed when widths differ).
    """

    needs = frozenset({"hidden"})
    default_layers = "uniform"

    def compute_loss(self, teacher: Taps, student: Taps) -> Tensor:
        cls_t = F.normalize(as_float32(teacher.hidden.detach()[:, :, 0]), p=2.0, dim=-1)
        cls_s = F.normalize(self._project(student.hidden[:, :, 0]), p=2.0, dim=-1)
        return (cls_s - cls_t).pow(2).sum(dim=-1).mean()
