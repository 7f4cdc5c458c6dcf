"""Self-attention adaptors: TinyBERT attention-score MSE, attention cross-entropy, MiniLM attention/value-relation KL
and MiniLMv2's query-query, key-key and value-value relations.

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

__all__ = [
    "RELATIONS",
    "AttnCE",
    "AttnMiniLM",
    "AttnTinyBERT",
    "RelMiniLMv2",
    "ValMiniLM",
    "default_relation_heads",
    "split_relation_heads",
]

#: MiniLMv2's self-attention relations: name -> the two taps whose scaled dot products are distilled.
RELATIONS: dict[str, tuple[str, str]] = {
    "qq": ("queries", "queries"),
    "kk": ("keys", "keys"),
    "vv": ("values", "values"),
}


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


def _masked_log_softmax(scores: Tensor, key_valid: Tensor) -> Tensor:
    """``log_softmax`` over keys of ``(M, B, heads, T, T)`` scores with padded keys (``key_valid`` is ``(B, T)``) out.

    A large finite negative (not -inf) keeps fully padded rows finite (uniform) instead of NaN.
    """
    scores = scores.masked_fill(~key_valid[None, :, None, None, :], torch.finfo(scores.dtype).min)
    return torch.log_softmax(scores, dim=-1)


def _masks(attention_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Boolean ``(B, T)`` token mask and its ``(1, B, 1, T, T)`` (query, key) pair mask."""
    valid = attention_mask.to(torch.bool)
    pairs = valid[:, :, None] & valid[:, None, :]
    return valid, pairs[None, :, None]


def _require_equal_heads(name: str, teacher: ModelDims, student: ModelDims) -> None:
    if teacher.num_heads != student.num_heads:
        raise ValueError(
            f"{name}: teacher has num_heads={teacher.num_heads} but student has num_heads={student.num_heads}; "
            "head-by-head attention losses need equal head counts (use AttnMiniLM or RelMiniLMv2 with "
            "relation_heads instead)"
        )


def _require_equal_tap_heads(name: str, teacher: Taps, student: Taps) -> None:
    if teacher.queries.shape[2] != student.queries.shape[2]:
        raise ValueError(
            f"{name}: teacher taps have {teacher.queries.shape[2]} heads but student taps have "
            f"{student.queries.shape[2]}"
        )


class _PerHeadScores(Adaptor):
    """Shared set-up of the losses that compare attention scores head by head: teacher and student need the same
    head count (checked on the configs here, and on the captured tensors in each loss)."""

    needs = frozenset({"queries", "keys"})
    kind = "inter"
    default_layers = "uniform"

    def __init__(
        self, teacher: ModelDims, student: ModelDims, *, weight: float = 1.0, layers: str | list | None = None
    ) -> None:
        super().__init__(teacher, student, weight=weight, layers=layers)
        _require_equal_heads(self.name, teacher, student)


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

    def _relation_log_probs(self, taps: Taps, key_valid: Tensor, relation: tuple[str, str]) -> Tensor:
        """``log softmax(a·bᵀ/√d)`` with padded keys masked out; ``(M, B, R, T, T)``."""
        a, b = (as_float32(getattr(taps, n)) for n in relation)
        if self.num_relation_heads is not None:
            a = split_relation_heads(a, self.num_relation_heads)
            b = a if relation[0] == relation[1] else split_relation_heads(b, self.num_relation_heads)
        return _masked_log_softmax(_scores(a, b), key_valid)

    def _relation_kl(self, teacher: Taps, student: Taps, relation: tuple[str, str]) -> Tensor:
        """KL of one relation, averaged over valid queries, relation heads and layers."""
        if self.num_relation_heads is None:
            h_t, h_s = (getattr(taps, relation[0]).shape[2] for taps in (teacher, student))
            if h_t != h_s:
                raise ValueError(
                    f"{self.name}: teacher taps have {h_t} heads but student taps have {h_s}; per-head "
                    "distillation needs equal head counts (or set relation_heads)"
                )
        valid, pairs = _masks(student.attention_mask)
        log_p_t = self._relation_log_probs(teacher.detach(), valid, relation)
        log_p_s = self._relation_log_probs(student, valid, relation)
        # p_t·(log p_t − log p_s) on valid (query, key) pairs only; padded keys have p_t = 0 and 0·log 0 := 0.
        diff = torch.where(pairs, log_p_t - log_p_s, torch.zeros((), dtype=log_p_s.dtype, device=log_p_s.device))
        kl_per_query = (log_p_t.exp() * diff).sum(dim=-1)  # (M, B, R, T); padded queries are all-zero rows
        m, _, r, _ = kl_per_query.shape
        n_queries = valid.sum().clamp(min=1)
        return kl_per_query.sum() / (m * r * n_queries)

    def compute_loss(self, teacher: Taps, student: Taps) -> Tensor:
        return self._relation_kl(teacher, student, self.relation)


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

    **Relation-head mode.** When the teacher and student head counts differ, or ``relation_heads`` is given, the
    heads are concatenated back to ``(B, T, H)`` and re-split into ``R`` relation heads of size ``H/R`` for each model
    separately, each scaled by its own new head size. This borrows MiniLMv2's relation heads (Wang et al., 2021,
    arXiv:2012.15828) but is *not* MiniLMv2: it still distils the query-key relation (the attention distribution of
    MiniLM), which MiniLMv2 does not use; MiniLMv2's query-query, key-key and value-value relations are
    :class:`RelMiniLMv2`. MiniLM distils the last layer, so ``default_layers`` is ``"last"``.

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

    Relation heads (MiniLMv2, Wang et al., 2021, arXiv:2012.15828) are used as in :class:`AttnMiniLM`; with them
    this is MiniLMv2's value-value relation alone (``RelMiniLMv2(relations=["vv"])`` gives the same loss).

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
class AttnTinyBERT(_PerHeadScores):
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

    def compute_loss(self, teacher: Taps, student: Taps) -> Tensor:
        _require_equal_tap_heads(self.name, teacher, student)
        valid, pairs = _masks(student.attention_mask)
        a_t = _scores(as_float32(teacher.queries.detach()), as_float32(teacher.keys.detach()))
        a_s = _scores(as_float32(student.queries), as_float32(student.keys))
        sq = torch.where(pairs, a_s - a_t, torch.zeros((), dtype=a_s.dtype, device=a_s.device)).pow(2)
        m, _, h, _, _ = sq.shape
        n_pairs = valid.sum(dim=1).pow(2).sum().clamp(min=1)
        return sq.sum() / (m * h * n_pairs)


@register
class RelMiniLMv2(_RelationKL):
    r"""Multi-head self-attention relation distillation (Wang et al., 2021, "MiniLMv2: Multi-Head Self-Attention
    Relation Distillation for Compressing Pretrained Transformers", arXiv:2012.15828).

    For each relation :math:`(X, X) \in \{(Q, Q), (K, K), (V, V)\}` the heads of each model are concatenated and
    re-split into ``R`` relation heads of size ``d_r = H / R`` (so teacher and student head counts may differ), and
    the relation is :math:`\mathrm{softmax}(X_r X_r^\top / \sqrt{d_r})` over valid tokens:

    .. math::
        L = \sum_{X \in \text{relations}} \frac{1}{M \, R \, N} \sum_{m, r} \sum_{(b, i)\ \text{valid}}
        \mathrm{KL}\big(\mathrm{softmax}(X^t_{m,b,r} X^{t\top}_{m,b,r} / \sqrt{d^t_r})_i \,\|\,
        \mathrm{softmax}(X^s_{m,b,r} X^{s\top}_{m,b,r} / \sqrt{d^s_r})_i\big)

    i.e. the relations' KLs are summed (MiniLMv2 weights the three equally), each averaged like :class:`AttnMiniLM`.
    MiniLMv2 distils the *last* student layer from one teacher layer chosen by the user: the last layer for
    base-size teachers, an upper-middle layer for large ones (the paper's layer-selection study). Choose it with
    ``teacher_layer`` (0-based encoder block), or give explicit ``layers``.

    Args:
        teacher: Teacher dimensions.
        student: Student dimensions.
        weight: Loss weight (>= 0), applied by the distiller.
        layers: Layer mapping (None: the last student layer from ``teacher_layer``, or from the last teacher layer).
            Cannot be combined with ``teacher_layer``.
        relation_heads: ``R``, which must divide both hidden sizes (None: :func:`default_relation_heads`).
        relations: Which relations to distil, a non-empty subset of ``"qq"``, ``"kk"``, ``"vv"``.
        teacher_layer: 0-based teacher layer distilled into the last student layer.
    """

    needs = frozenset({"queries", "keys", "values"})
    default_layers = "last"

    def __init__(
        self,
        teacher: ModelDims,
        student: ModelDims,
        *,
        weight: float = 1.0,
        layers: str | list | None = None,
        relation_heads: int | None = None,
        relations: list[str] | tuple[str, ...] = ("qq", "kk", "vv"),
        teacher_layer: int | None = None,
    ) -> None:
        problems = []
        if isinstance(relations, str) or not isinstance(relations, (list, tuple)) or not relations:
            problems.append(f"relations must be a non-empty list of {sorted(RELATIONS)}, got {relations!r}")
        else:
            unknown = [r for r in relations if r not in RELATIONS]
            if unknown:
                problems.append(f"relations has unknown entries {unknown}; valid relations: {sorted(RELATIONS)}")
            elif len(set(relations)) != len(relations):
                problems.append(f"relations has repeated entries: {list(relations)}")
        if teacher_layer is not None:
            if not _is_int(teacher_layer) or not 0 <= teacher_layer < teacher.num_layers:
                problems.append(
                    f"teacher_layer must be an int in 0..{teacher.num_layers - 1} (0 = first encoder block), "
                    f"got {teacher_layer!r}"
                )
            elif layers is not None:
                problems.append(f"give teacher_layer or layers, not both (teacher_layer={teacher_layer}, {layers=})")
        if problems:
            raise ValueError(f"{RelMiniLMv2.__name__}: " + "; ".join(problems))
        if teacher_layer is not None:
            layers = [[student.num_layers - 1, teacher_layer]]
        super().__init__(teacher, student, weight=weight, layers=layers, relation_heads=relation_heads)
        self.relations = tuple(r for r in RELATIONS if r in relations)  # canonical order
        self.teacher_layer = teacher_layer
        if self.num_relation_heads is None:  # MiniLMv2 always uses relation heads
            self.num_relation_heads = default_relation_heads(teacher, student)
        # This instance reads only the taps of its relations (the distiller captures just those).
        self.needs = frozenset(tap for r in self.relations for tap in RELATIONS[r])

    def compute_loss(self, teacher: Taps, student: Taps) -> Tensor:
        return sum(self._relation_kl(teacher, student, RELATIONS[r]) for r in self.relations)


@register
class AttnCE(_PerHeadScores):
    r"""Attention cross-entropy: the student's attention distributions trained on the teacher's as soft targets
    (TextBrewer's ``att_ce``; Yang et al., 2020, "TextBrewer: An Open-Source Knowledge Distillation Toolkit for
    Natural Language Processing", arXiv:2002.12620).

    With :math:`A = \mathrm{softmax}(Q K^\top / \sqrt{d_{head}})` over valid keys:

    .. math::
        L = -\frac{1}{M \, h \, N} \sum_{m, h} \sum_{(b, i)\ \text{valid}} \sum_{j\ \text{valid}}
        A^t_{m,b,h,i,j} \log A^s_{m,b,h,i,j}

    averaged over the ``N`` valid queries, the heads and the layers. Per layer this is TextBrewer's ``att_ce_loss``
    with the mask. It differs from :class:`AttnMiniLM` only by the teacher's attention entropy, a constant for the
    student (same gradients), so its minimum is that entropy, not 0. Heads are compared one to one, so teacher and
    student need the same head count.

    Args:
        teacher: Teacher dimensions.
        student: Student dimensions (same ``num_heads``).
        weight: Loss weight (>= 0), applied by the distiller.
        layers: Layer mapping (None: ``"uniform"``, as TextBrewer's TinyBERT-style configs map attention).
    """

    def compute_loss(self, teacher: Taps, student: Taps) -> Tensor:
        _require_equal_tap_heads(self.name, teacher, student)
        valid, pairs = _masks(student.attention_mask)
        t = teacher.detach()
        log_p_t = _masked_log_softmax(_scores(as_float32(t.queries), as_float32(t.keys)), valid)
        log_p_s = _masked_log_softmax(_scores(as_float32(student.queries), as_float32(student.keys)), valid)
        zero = torch.zeros((), dtype=log_p_s.dtype, device=log_p_s.device)
        ce = -(log_p_t.exp() * torch.where(pairs, log_p_s, zero)).sum(dim=-1)  # (M, B, h, T)
        ce = torch.where(valid[None, :, None, :], ce, zero)
        m, _, h, _ = ce.shape
        return ce.sum() / (m * h * valid.sum().clamp(min=1))
