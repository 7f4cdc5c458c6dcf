"""Self-attention adaptors: TinyBERT attention-score MSE and MiniLM attention/value-relation KL.

All losses are computed from the query/key/value projections in :class:`~adaptors.base.Taps`, shaped
``(M, B, heads, T, d_head)``, in one batched pass over layers, heads and examples. Padding is excluded through the
attention mask, so adding pad tokens to an example does not change the loss.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from adaptors.base import Adaptor, ModelDims, Taps, _is_int, as_float32
from adaptors.registry import register

__all__ = ["AttnMiniLM", "AttnTinyBERT", "ValMiniLM", "default_relation_heads", "split_relation_heads"]


def _scores(a: Tensor, b: Tensor) -> Tensor:
    """Scaled dot products ``a·bᵀ/√d`` of ``(..., T, d)`` tensors, ``d`` being their own last size."""
    return torch.matmul(a, b.transpose(-1, -2)) / math.sqrt(a.shape[-1])


def split_relation_heads(x: Tensor, num_relation_heads: int) -> Tensor:
    """Concatenate attention heads back to the full width and re-split it into relation heads (MiniLMv2).

    Args:
        x: ``(M, B, heads, T, d_head)``.
        num_relation_heads: ``R``; must divide ``heads * d_head``.

    Returns:
        ``(M, B, R, T, heads * d_head / R)``.
    """
    m, b, h, t, d = x.shape
    width = h * d
    if width % num_relation_heads:
        raise ValueError(f"relation_heads={num_relation_heads} does not divide the width {width} of a {tuple(x.shape)}")
    return x.transpose(2, 3).reshape(m, b, t, num_relation_heads, width // num_relation_heads).transpose(2, 3)


def default_relation_heads(teacher: ModelDims, student: ModelDims) -> int:
    """Default number of MiniLMv2 relation heads when the teacher and student head counts differ.

    Rule: the larger of the two head counts if it divides both hidden sizes, else the smaller one if it does, else
    the largest divisor of ``gcd(H_t, H_s)`` not above the larger head count (always >= 1). For a 12-head/768 teacher
    and a 6-head/384 student this gives 12, matching MiniLMv2's choice for base-size teachers.
    """
    widths = (teacher.hidden_size, student.hidden_size)
    for r in sorted({teacher.num_heads, student.num_heads}, reverse=True):
        if all(w % r == 0 for w in widths):
            return r
    g = math.gcd(*widths)
    cap = max(teacher.num_heads, student.num_heads)
    return max(r for r in range(1, min(g, cap) + 1) if g % r == 0)


def _masks(attention_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Boolean ``(B, T)`` token mask and its ``(1, B, 1, T, T)`` (query, key) pair mask."""
    valid = attention_mask.to(torch.bool)
    pairs = valid[:, :, None] & valid[:, None, :]
    return valid, pairs[None, :, None]


class _RelationKL(Adaptor):
    """KL between teacher and student relation distributions ``softmax(a·bᵀ/√d)`` over valid keys (MiniLM)."""

    kind = "inter"
    default_layers = "last"
    #: Names of the two taps whose relation is distilled (rows, columns).
    relation: ClassVar[tuple[str, str]] = ("queries", "keys")

    def __init__(
        self,
        teacher: ModelDims,
        student: ModelDims,
        *,
        weight: float = 1.0,
        layers: str | list | None = None,
        relation_heads: int | None = None,
    ) -> None:
        super().__init__(teacher, student, weight=weight, layers=layers)
        if relation_heads is not None:
            if not _is_int(relation_heads) or relation_heads <= 0:
                raise ValueError(f"{self.name}: relation_heads must be a positive int or None, got {relation_heads!r}")
            bad = [w for w in (teacher.hidden_size, student.hidden_size) if w % relation_heads]
            if bad:
                raise ValueError(
                    f"{self.name}: relation_heads={relation_heads} must divide both hidden sizes "
                    f"(teacher {teacher.hidden_size}, student {student.hidden_size})"
                )
        self.relation_heads = relation_heads
        # Per-head MiniLM when head counts match and no R was asked for; MiniLMv2 relation heads otherwise.
        if relation_heads is None and teacher.num_heads != student.num_heads:
            self.num_relation_heads: int | None = default_relation_heads(teacher, student)
        else:
            self.num_relation_heads = relation_heads

    def _relation_log_probs(self, taps: Taps, key_valid: Tensor) -> Tensor:
        """``log softmax(a·bᵀ/√d)`` with padded keys masked out; ``(M, B, R, T, T)``."""
        a, b = (as_float32(getattr(taps, n)) for n in self.relation)
        if self.num_relation_heads is not None:
            a = split_relation_heads(a, self.num_relation_heads)
            b = split_relation_heads(b, self.num_relation_heads)
        scores = _scores(a, b)
        # A large finite negative (not -inf) keeps fully padded rows finite (uniform) instead of NaN.
        scores = scores.masked_fill(~key_valid[None, :, None, None, :], torch.finfo(scores.dtype).min)
        return torch.log_softmax(scores, dim=-1)

    def compute_loss(self, teacher: Taps, student: Taps) -> Tensor:
        if self.num_relation_heads is None:
            h_t, h_s = (getattr(taps, self.relation[0]).shape[2] for taps in (teacher, student))
            if h_t != h_s:
                raise ValueError(
                    f"{self.name}: teacher taps have {h_t} heads but student taps have {h_s}; per-head "
                    "distillation needs equal head counts (or set relation_heads)"
                )
        valid, pairs = _masks(student.attention_mask)
        log_p_t = self._relation_log_probs(teacher.detach(), valid)
        log_p_s = self._relation_log_probs(student, valid)
        # p_t·(log p_t − log p_s) on valid (query, key) pairs only; padded keys have p_t = 0 and 0·log 0 := 0.
        diff = torch.where(pairs, log_p_t - log_p_s, torch.zeros((), dtype=log_p_s.dtype, device=log_p_s.device))
        kl_per_query = (log_p_t.exp() * diff).sum(dim=-1)  # (M, B, R, T); padded queries are all-zero rows
        m, _, r, _ = kl_per_query.shape
        n_queries = valid.sum().clamp(min=1)
        return kl_per_query.sum() / (m * r * n_queries)


@register
class AttnMiniLM(_RelationKL):
    r"""Self-attention distribution transfer (Wang et al., 2020, "MiniLM: Deep Self-Attention Distillation for
    Task-Agnostic Compression of Pre-Trained Transformers", arXiv:2002.10957).

    For each mapped layer and head, with :math:`A = \mathrm{softmax}(Q K^\top / \sqrt{d} + \text{mask})`:

    .. math::
        L = \frac{1}{M \, R \, N} \sum_{m, r} \sum_{(b, i)\ \text{valid}} \sum_{j\ \text{valid}}
        A^t_{m,b,r,i,j} \log \frac{A^t_{m,b,r,i,j}}{A^s_{m,b,r,i,j}}

    i.e. KL over keys, averaged over the ``N`` valid query tokens of the batch, the heads and the layers. Padded keys
    get probability 0 (masked with a large finite negative score, and their terms are zeroed, so 0·log 0 = 0 and no
    NaN appears); padded queries are left out.

    When the teacher and student head counts differ, or ``relation_heads`` is given, the heads are concatenated back
    to ``(B, T, H)`` and re-split into ``R`` relation heads of size ``H/R`` for each model separately, each scaled by
    its own new head size (Wang et al., 2021, "MiniLMv2: Multi-Head Self-Attention Relation Distillation for
    Compressing Pretrained Transformers", arXiv:2012.15828). MiniLM distils the last layer, so ``default_layers`` is
    ``"last"``.

    Args:
        teacher: Teacher dimensions.
        student: Student dimensions.
        weight: Loss weight (>= 0), applied by the distiller.
        layers: Layer mapping (None: ``"last"``).
        relation_heads: ``R``, which must divide both hidden sizes. None: per-head when head counts match, else
            :func:`default_relation_heads`.
    """

    needs = frozenset({"queries", "keys"})
    relation = ("queries", "keys")


@register
class ValMiniLM(_RelationKL):
    r"""Value-relation transfer (Wang et al., 2020, "MiniLM: Deep Self-Attention Distillation for Task-Agnostic
    Compression of Pre-Trained Transformers", arXiv:2002.10957).

    Like :class:`AttnMiniLM` with the value relation :math:`\mathrm{VR} = \mathrm{softmax}(V V^\top / \sqrt{d})`
    (keys are the other tokens' values, masked the same way):

    .. math::
        L = \frac{1}{M \, R \, N} \sum_{m, r} \sum_{(b, i)\ \text{valid}} \mathrm{KL}\big(\mathrm{VR}^t_{m,b,r,i}
        \,\|\, \mathrm{VR}^s_{m,b,r,i}\big)

    Relation heads (MiniLMv2, Wang et al., 2021, arXiv:2012.15828) are used as in :class:`AttnMiniLM`.

    Args:
        teacher: Teacher dimensions.
        student: Student dimensions.
        weight: Loss weight (>= 0), applied by the distiller.
        layers: Layer mapping (None: ``"last"``).
        relation_heads: ``R``, which must divide both hidden sizes. None: per-head when head counts match, else
            :func:`default_relation_heads`.
    """

    needs = frozenset({"values"})
    relation = ("values", "values")


@register
class AttnTinyBERT(Adaptor):
    r"""Attention-score MSE (Jiao et al., 2020, "TinyBERT: Distilling BERT for Natural Language Understanding",
    arXiv:1909.10351).

    TinyBERT matches the *un-normalised* attention scores :math:`A = Q K^\top / \sqrt{d_{head}}` (before softmax):

    .. math::
        L = \frac{1}{M \, h \, P} \sum_{m, h} \sum_{b} \sum_{i, j\ \text{valid}} (A^s_{m,b,h,i,j} - A^t_{m,b,h,i,j})^2

    where ``P`` is the number of valid (query, key) pairs in the batch: both padded queries and padded keys are left
    out. Teacher and student must have the same number of heads (their head sizes may differ: each uses its own
    scale).

    Args:
        teacher: Teacher dimensions.
        student: Student dimensions (same ``num_heads``).
        weight: Loss weight (>= 0), applied by the distiller.
        layers: Layer mapping (None: ``"uniform"``).
    """

    needs = frozenset({"queries", "keys"})
    kind = "inter"
    default_layers = "uniform"

    def __init__(
        self, teacher: ModelDims, student: ModelDims, *, weight: float = 1.0, layers: str | list | None = None
    ) -> None:
        super().__init__(teacher, student, weight=weight, layers=layers)
        if teacher.num_heads != student.num_heads:
            raise ValueError(
                f"{self.name}: teacher has num_heads={teacher.num_heads} but student has num_heads="
                f"{student.num_heads}; attention-score MSE needs equal head counts (use AttnMiniLM with "
                "relation_heads instead)"
            )

    def compute_loss(self, teacher: Taps, student: Taps) -> Tensor:
        if teacher.queries.shape[2] != student.queries.shape[2]:
            raise ValueError(
                f"{self.name}: teacher taps have {teacher.queries.shape[2]} heads but student taps have "
                f"{student.queries.shape[2]}"
            )
        valid, pairs = _masks(student.attention_mask)
        a_t = _scores(as_float32(teacher.queries.detach()), as_float32(teacher.keys.detach()))
        a_s = _scores(as_float32(student.queries), as_float32(student.keys))
        sq = torch.where(pairs, a_s - a_t, torch.zeros((), dtype=a_s.dtype, device=a_s.device)).pow(2)
        m, _, h, _, _ = sq.shape
        n_pairs = valid.sum(dim=1).pow(2).sum().clamp(min=1)
        return sq.sum() / (m * h * n_pairs)
