"""Hidden-state adaptors: TinyBERT hidden/embedding MSE, Patient-KD normalised [CLS] distance, DistilBERT cosine.

When the teacher and student widths differ, a learned ``nn.Linear(d_s, d_t)`` projection of the student states
lives inside the adaptor (it trains with the student but is never part of the student model).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adaptors.base import Adaptor, ModelDims, Taps, as_float32, check_bool
from adaptors.registry import register

__all__ = ["EmbdTinyBERT", "HidnCos", "HidnPKD", "HidnTinyBERT", "first_valid_position"]


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
        if self.proj is None:
            return states
        # float32 maths even when the module itself was cast to half precision (precision="bf16-true").
        weight, bias = self.proj.weight, self.proj.bias
        return F.linear(states, as_float32(weight), None if bias is None else as_float32(bias))


def first_valid_position(attention_mask: Tensor) -> Tensor:
    """Index of the first real token of each example, ``(B,)``: 0 with right padding, the [CLS] after left padding.

    An example without any real token gets 0 (its state is then a pad state, as for an all-padding row anywhere).
    """
    return attention_mask.to(torch.bool).to(torch.uint8).argmax(dim=1)


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
        L = \frac{1}{M \, B} \sum_m \sum_b \left\lVert \frac{h^s_{m,b,c_b} W}{\lVert h^s_{m,b,c_b} W \rVert_2}
        - \frac{h^t_{m,b,c_b}}{\lVert h^t_{m,b,c_b} \rVert_2} \right\rVert_2^2

    over the mapped intermediate layers, where ``c_b`` is the first *valid* position of example ``b`` (the
    ``[CLS]`` token: position 0 with right padding, and still the ``[CLS]`` when a tokenizer pads on the left).
    ``W`` is a learned ``nn.Linear(d_s, d_t)`` applied *before* normalisation, present only when widths differ.

    **Default layers** (``"uniform_but_last"``): Patient-KD distils the intermediate layers only; the last student
    layer is left out of the patient loss (its output feeds the classifier, which the logit loss already trains; the
    official code drops the last layer's state, ``full_output[:-1]``). So student layer ``i < M - 1`` learns from
    teacher layer ``(i + 1) N / M - 1`` (PKD-skip: a 6-layer student of a 12-layer teacher learns from teacher layers
    1, 3, 5, 7, 9, 0-based). Pass ``layers="uniform"`` to include the last layer as well.

    **Scale:** the squared distance is summed over the ``d_t`` features; the official code averages it
    (``mse_loss``), so PKD's :math:`\beta` corresponds to ``weight = beta / d_t``.

    Args:
        teacher: Teacher dimensions.
        student: Student dimensions.
        weight: Loss weight (>= 0), applied by the distiller.
        layers: Layer mapping (None: ``"uniform_but_last"``, which needs a student of at least 2 layers).
        projection: Allow the learned projection (needed when widths differ).
    """

    needs = frozenset({"hidden"})
    default_layers = "uniform_but_last"

    def compute_loss(self, teacher: Taps, student: Taps) -> Tensor:
        first = first_valid_position(student.attention_mask)
        rows = torch.arange(first.shape[0], device=first.device)
        cls_t = F.normalize(as_float32(teacher.hidden.detach()[:, rows, first]), p=2.0, dim=-1)
        cls_s = F.normalize(self._project(student.hidden[:, rows, first]), p=2.0, dim=-1)
        return (cls_s - cls_t).pow(2).sum(dim=-1).mean()


@register
class HidnCos(_ProjectedStates):
    r"""Cosine hidden-state loss (Sanh et al., 2019, "DistilBERT, a distilled version of BERT: smaller, faster,
    cheaper and lighter", arXiv:1910.01108).

    DistilBERT aligns the directions of the student's and teacher's hidden-state vectors with a cosine embedding
    loss (target 1):

    .. math::
        L = \frac{1}{M \, N} \sum_m \sum_{(b, i)\ \text{valid}} \left(1 - \cos\big(h^s_{m,b,i} W,\, h^t_{m,b,i}
        \big)\right)

    over the ``N`` valid tokens of the batch and the mapped layers (DistilBERT: the last layer, so
    ``default_layers`` is ``"last"``). ``W`` as in :class:`HidnTinyBERT`, present only when widths differ
    (DistilBERT's student has the teacher's width). Per layer this is TextBrewer's ``cos_loss`` with the mask.

    Args:
        teacher: Teacher dimensions.
        student: Student dimensions.
        weight: Loss weight (>= 0), applied by the distiller.
        layers: Layer mapping (None: ``"last"``).
        projection: Allow the learned projection (needed when widths differ).
    """

    needs = frozenset({"hidden"})
    default_layers = "last"

    def compute_loss(self, teacher: Taps, student: Taps) -> Tensor:
        valid = student.attention_mask.to(torch.bool)
        h_t = as_float32(teacher.hidden.detach())[:, valid]  # (M, N, d_t)
        h_s = self._project(student.hidden[:, valid])
        if h_t.shape[1] == 0:
            return h_s.sum() * 0.0
        return (1.0 - F.cosine_similarity(h_s, h_t, dim=-1)).mean()
